"""What every dataset adapter shares: the format record, problems found while reading a
dataset, media probes (duration, fps, frame size) and label readers.

An adapter turns a dataset folder in its published layout into
:class:`avfusion.data.Performance` objects (video, audio, labels, corners, split), the same
in-memory form as the synthetic corpus, so that training, transcription and the benchmark need
no special cases. Times are seconds, pitches MIDI numbers (21..108), splits ``train``,
``validation``, ``test`` (or a dataset's own extra split names).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN, N_KEYS
from avfusion.data import Performance
from avfusion.notes import Note, Notes
from avfusion.streams import MediaInfo, probe_media

CACHE_DIR_NAME = ".avfusion-cache"
"""Folder under a dataset root for cached rectified frames and detected corners."""


class DatasetError(ValueError):
    """A dataset folder is not in the published layout (missing metadata file, malformed row);
    the message names the file and the problem."""


@dataclass(frozen=True)
class Problem:
    """One problem that ``avfusion datasets check`` reports.

    Attributes:
        kind: ``missing``, ``unreadable``, ``malformed``, ``labels-beyond-media``,
            ``unknown-split``, ``corners-outside-frame``, ``duplicate-across-splits``,
            ``pickle-refused``, ``empty``.
        file: the file (or folder) concerned.
        detail: one line saying what is wrong.
        split: the split of the entry concerned, when known.
    """

    kind: str
    file: str
    detail: str
    split: str | None = None


@dataclass
class Scan:
    """What an adapter found in a dataset folder: the performances it could build, and (in
    lenient mode) the problems that made it skip or doubt entries."""

    performances: list[Performance] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lenient: bool = False
    media: dict[Path, MediaInfo] = field(default_factory=dict)
    """What :meth:`probe` read of each video (size, fps, duration), so checks need not read
    the headers again."""

    def problem(self, kind: str, file: Path | str, detail: str, split: str | None = None) -> None:
        """Record a problem (lenient mode) or raise it.

        Raises:
            DatasetError: when not lenient, naming the file and the problem.
        """
        if not self.lenient:
            raise DatasetError(f"{file}: {detail}")
        self.problems.append(Problem(kind, str(file), detail, split))

    def unreadable(self, file: Path, exc: Exception, split: str | None = None) -> None:
        """Record (or raise, see :meth:`problem`) that ``file`` could not be read, with the
        error's message less its leading ``"<file>: "``."""
        self.problem("unreadable", file, str(exc).removeprefix(f"{file}: "), split=split)

    def probe(self, video: Path, split: str | None = None) -> MediaInfo | None:
        """:func:`probe_media` of a video (kept in :attr:`media`), or None after recording it
        as unreadable.

        Raises:
            DatasetError: when not lenient and the file cannot be read.
        """
        try:
            info = probe_media(video)
        except ValueError as exc:
            self.unreadable(video, exc, split)
            return None
        self.media[video] = info
        return info


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset's on-disk format and how to read it.

    Attributes:
        name: the ``--format`` name.
        title: the dataset and its paper or repository (the source of the format).
        licence: the dataset's licence, as its authors state it.
        url: where to get it.
        modalities: ``{"audio", "video"}``, or ``{"audio"}`` for audio-only datasets.
        splits: the split names the adapter yields.
        scan: ``scan(root, lenient, allow_pickle) -> Scan``.
    """

    name: str
    title: str
    licence: str
    url: str
    modalities: frozenset[str]
    splits: tuple[str, ...]
    scan: Callable[[Path, bool, bool], Scan]


# ------------------------------------------------------------------------------- media probes


def audio_duration_s(path: Path) -> float:
    """Duration of an audio file in seconds (soundfile's header, else PyAV).

    Raises:
        FileNotFoundError: no such file. ValueError: not readable audio.
    """
    import soundfile as sf

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError):
        return probe_media(path).duration_s


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image in pixels.

    Raises:
        ValueError: not a readable image (names the file).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from exc


def rect_corners(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners of an axis-aligned rectangle, clockwise from top-left: float64 (4, 2), px."""
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)


def whole_frame_corners(width_px: int, height_px: int) -> np.ndarray:
    """Corners of a frame that is all keyboard (a crop): its outer pixel edges (pixel centres
    at integers, so the edges are at -0.5 and size - 0.5)."""
    return rect_corners(-0.5, -0.5, width_px - 0.5, height_px - 0.5)


def corners_inside(
    corners_px: np.ndarray, width_px: int, height_px: int, tol_px: float = 1.0
) -> bool:
    """Whether all four corners lie within the frame (``tol_px`` beyond its edges allowed)."""
    c = np.asarray(corners_px, np.float64)
    return bool(
        (c[:, 0] >= -0.5 - tol_px).all()
        and (c[:, 0] <= width_px - 0.5 + tol_px).all()
        and (c[:, 1] >= -0.5 - tol_px).all()
        and (c[:, 1] <= height_px - 0.5 + tol_px).all()
    )


# ----------------------------------------------------------------------------- label readers


def make_note(onset_s: float, offset_s: float, pitch: int, velocity: int, where: str) -> Note:
    """A label file's note, checked: a piano key, offset after onset, velocity clipped to
    1..127.

    Raises:
        ValueError: naming ``where`` (file:line).
    """
    if not MIDI_MIN <= pitch <= MIDI_MAX:
        raise ValueError(f"{where}: MIDI pitch {pitch} is not a piano key ({MIDI_MIN}..{MIDI_MAX})")
    if not offset_s > onset_s:
        raise ValueError(f"{where}: offset {offset_s:g} s does not follow onset {onset_s:g} s")
    return Note(onset_s, offset_s, pitch, int(np.clip(velocity, 1, 127)))


def read_tab_notes(path: Path, *, header: str | None, velocity_column: int | None = None) -> Notes:
    """Notes from a tab-separated text file with columns ``onset_s offset_s midi_pitch [...]``.

    Args:
        path: the file.
        header: the expected first line's fields (whitespace-separated, compared
            case-insensitively), or None when the file has no header.
        velocity_column: column index of MIDI velocity, or None (velocity 64).
    Raises:
        FileNotFoundError: no such file. ValueError: a wrong header or a malformed row (names
            the file and the line).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such label file")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    start = 0
    if header is not None:
        got = lines[0].split() if lines else []
        if [g.lower() for g in got] != header.lower().split():
            raise ValueError(f"{path}: line 1 should be the header {header!r}, got {lines[:1]}")
        start = 1
    notes = []
    for i, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        where = f"{path}:{i}"
        try:
            onset_s, offset_s, pitch = float(fields[0]), float(fields[1]), round(float(fields[2]))
            vel = round(float(fields[velocity_column])) if velocity_column is not None else 64
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{where}: malformed row {line!r} ({exc})") from exc
        notes.append(make_note(onset_s, offset_s, pitch, vel, where))
    return Notes.from_iterables(notes)


def notes_from_roll(roll: np.ndarray, fps: float, first_frame_s: float = 0.0) -> Notes:
    """Notes from a piano roll: each run of consecutive active frames of a key is one note.

    Args:
        roll: (n_frames, 88), key index = MIDI − 21; active where > 0. Values above 1 are
            taken as MIDI velocities (the run's maximum), else velocity 64.
        fps: frames per second of the roll.
        first_frame_s: time of roll frame 0 in seconds.
    Returns:
        Notes from ``first_frame_s + start / fps`` to ``first_frame_s + stop / fps``.
    """
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != N_KEYS:
        raise ValueError(f"a piano roll must have shape (n_frames, {N_KEYS}), got {roll.shape}")
    active = roll > 0
    padded = np.zeros((len(roll) + 2, N_KEYS), bool)
    padded[1:-1] = active
    notes = []
    for k in range(N_KEYS):
        d = np.diff(padded[:, k].astype(np.int8))
        starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        for a, b in zip(starts, stops, strict=True):
            peak = float(roll[a:b, k].max())
            vel = round(peak) if peak > 1 else 64
            notes.append(
                Note(first_frame_s + a / fps, first_frame_s + b / fps, MIDI_MIN + k,
                     int(np.clip(vel, 1, 127)))
            )  # fmt: skip
    return Notes.from_iterables(notes)


def read_csv_rows(path: Path, scan: Scan, **kw: object) -> list[list[str]]:
    """All rows of a CSV file (any line ends, CRLF included).

    Raises:
        DatasetError: (when not lenient) missing or undecodable file.
    """
    if not path.is_file():
        scan.problem("missing", path, "metadata file not found")
        return []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [row for row in csv.reader(f, **kw) if any(c.strip() for c in row)]  # type: ignore[arg-type]
    except (UnicodeDecodeError, csv.Error) as exc:
        scan.problem("unreadable", path, f"not a readable CSV file ({exc})")
        return []


def cache_dir_for(root: Path) -> Path:
    """Where a dataset's caches go: ``<root>/.avfusion-cache``."""
    return root / CACHE_DIR_NAME
