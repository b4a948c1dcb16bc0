"""``avfusion datasets check``: validate a dataset folder and summarise it.

Problems found (:class:`avfusion.datasets.base.Problem` kinds): missing or unreadable files,
malformed metadata rows, label times beyond the media's duration, unknown split names,
keyboard corners outside the frame, pickled labels refused, and the same recording in two
splits (by the dataset's recording id, e.g. a YouTube id, or by identical video files), also
against a second dataset (``--against``: PianoYT's test split holds a video that Audeo trains
on).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avfusion.data import Performance
from avfusion.datasets import get_format, scan_dataset
from avfusion.datasets.base import MediaInfo, Problem, corners_inside, image_size, probe_media

LABEL_TOLERANCE_S: float = 0.5
"""A note may end this much after the media ends before it is reported (onsets may not)."""


@dataclass
class SplitSummary:
    """One split: performances, hours, notes, the video frame rates seen (fps)."""

    performances: int = 0
    hours: float = 0.0
    notes: int = 0
    fps: set[float] = field(default_factory=set)


@dataclass
class CheckReport:
    """What :func:`check_dataset` found."""

    root: Path
    format: str
    problems: list[Problem]
    splits: dict[str, SplitSummary]

    @property
    def ok(self) -> bool:
        """True when the check found no problem."""
        return not self.problems

    def table(self) -> str:
        """The problems (kind, file, detail) and the summary, as aligned text."""
        lines = []
        if self.problems:
            rows = [("problem", "file", "detail")] + [
                (p.kind, p.file, p.detail) for p in self.problems
            ]
            w0 = max(len(r[0]) for r in rows)
            w1 = min(max(len(r[1]) for r in rows), 80)
            lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
            lines.append("")
        lines.append(f"{self.format} at {self.root}: {len(self.problems)} problem(s)")
        lines.append(f"{'split':<12} {'performances':>12} {'hours':>8} {'notes':>9}  fps")
        for name, s in sorted(self.splits.items()):
            fps = ", ".join(f"{f:g}" for f in sorted(s.fps)) or "-"
            lines.append(f"{name:<12} {s.performances:>12} {s.hours:>8.3f} {s.notes:>9}  {fps}")
        return "\n".join(lines)


def _fingerprint(path: Path) -> str:
    """Size and sha256 of the first MiB: equal for copies of one video file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return f"{path.stat().st_size}:{h.hexdigest()}"


def _frame_size(perf: Performance, probed: dict[Path, MediaInfo]) -> tuple[int, int]:
    """The video's frame size (pixels): from the adapter's probe when it made one."""
    assert perf.video_path is not None
    if perf.video_path.is_dir():
        from avfusion.data import frame_images

        return image_size(frame_images(perf.video_path)[0][1])
    info = probed.get(perf.video_path) or probe_media(perf.video_path)
    return info.width_px, info.height_px


def _duplicates(
    perfs: Sequence[Performance], problems: list[Problem], others: Sequence[Performance] = ()
) -> None:
    """Report recordings (same source key or identical video file) found in two splits; with
    ``others``, only those shared between ``perfs`` and ``others``."""
    groups: dict[str, list[Performance]] = {}
    for p in [*perfs, *others]:
        keys = {p.source_key} if p.source_key else set()
        if p.video_path is not None and p.video_path.is_file():
            keys.add("file:" + _fingerprint(p.video_path))
        for k in keys:
            groups.setdefault(k, []).append(p)
    other_ids = {id(p) for p in others}
    seen: set[tuple[str, ...]] = set()
    for key, group in groups.items():
        if len({p.split for p in group}) < 2:
            continue
        if others and not ({id(p) for p in group} & other_ids and
                           {id(p) for p in group} - other_ids):  # fmt: skip
            continue
        names = tuple(sorted({f"{p.dataset}:{p.split}/{p.id}" for p in group}))
        if names in seen:
            continue
        seen.add(names)
        kind, _, value = key.partition(":")
        problems.append(Problem(
            "duplicate-across-splits", str(group[0].video_path or group[0].notes_path),
            f"one recording ({kind} {value[:24]}) in " + ", ".join(names),
        ))  # fmt: skip


def check_dataset(
    root: str | Path,
    format_name: str,
    *,
    allow_pickle: bool = False,
    against: tuple[str | Path, str] | None = None,
) -> CheckReport:
    """Validate a dataset folder: every problem, not only the first, and a summary.

    Args:
        root: the dataset folder. format_name: a :data:`avfusion.datasets.FORMATS` name.
        allow_pickle: read Audeo's pickled labels (else they are reported as refused).
        against: (root, format) of a second dataset whose recordings must not sit in
            another split of this one (e.g. PianoYT's test split against Audeo's training).
    Raises:
        FileNotFoundError: ``root`` is not a folder. ValueError: an unknown format.
    """
    root = Path(root)
    fmt = get_format(format_name)
    scan = scan_dataset(root, fmt.name, lenient=True, allow_pickle=allow_pickle)
    problems = list(scan.problems)
    splits: dict[str, SplitSummary] = {}
    for perf in scan.performances:
        s = splits.setdefault(perf.split, SplitSummary())
        s.performances += 1
        s.hours += perf.duration_s / 3600
        if perf.fps:
            s.fps.add(round(perf.fps, 3))
        label_file = str(perf.notes_path)
        try:
            notes = perf.notes()
        except (OSError, ValueError) as exc:
            problems.append(
                Problem("unreadable", label_file, str(exc).removeprefix(f"{label_file}: "))
            )
            continue
        s.notes += len(notes)
        if perf.audio_path is not None and perf.audio_path != perf.video_path:
            from avfusion.datasets.base import audio_duration_s

            try:
                audio_duration_s(perf.audio_path)
            except (OSError, ValueError) as exc:
                problems.append(Problem("unreadable", str(perf.audio_path), str(exc)))
        late = [
            n
            for n in notes
            if n.onset_s >= perf.duration_s or n.offset_s > perf.duration_s + LABEL_TOLERANCE_S
        ]
        if late:
            problems.append(Problem(
                "labels-beyond-media", label_file,
                f"{len(late)} note(s) end after the media's {perf.duration_s:.2f} s "
                f"(latest offset {max(n.offset_s for n in late):.2f} s)",
            ))  # fmt: skip
        if perf.video_path is not None and perf.corners_px is not None:
            try:
                w, h = _frame_size(perf, scan.media)
            except (OSError, ValueError) as exc:
                problems.append(Problem("unreadable", str(perf.video_path), str(exc)))
                continue
            if not corners_inside(perf.corners_px, w, h):
                problems.append(Problem(
                    "corners-outside-frame", str(perf.video_path),
                    f"keyboard corners {perf.corners_px.round(1).tolist()} outside the {w}x{h} frame",
                ))  # fmt: skip
    _duplicates(scan.performances, problems)
    if against is not None:
        other = scan_dataset(against[0], against[1], lenient=True, allow_pickle=allow_pickle)
        _duplicates(scan.performances, problems, others=other.performances)
    if not scan.performances and not problems:
        problems.append(Problem("empty", str(root), f"no {fmt.name} performances found"))
    return CheckReport(root, fmt.name, problems, splits)
