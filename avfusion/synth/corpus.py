"""Make a corpus: plan performances from a seed, render them in parallel, resume after an
interruption, and index them in ``manifest.jsonl``.

```
<root>/corpus.json               the arguments it was made with (a resumed run must match)
<root>/<split>/<piece_id>/...    one performance (see avfusion.synth.performance)
<root>/manifest.jsonl            one line per performance: id, split, paths, sha256, duration
```

Splits are by composition: a music21 work (or a user's MIDI file) goes to one split by a
stable hash of its path, whatever the seed. Generated etudes are new compositions each. The
test split renders with the MuseScore General piano and the test camera ranges only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.config import MIDI_MIN, N_KEYS, SOUNDFONTS, SPLITS
from avfusion.fileio import atomic_path, sha256_file
from avfusion.synth.performance import (
    PERFORMANCE_FILES,
    PerformanceSpec,
    is_complete,
    render_performance,
)
from avfusion.synth.scores import list_corpus_pieces, piece_composer, piece_split

SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class CorpusConfig:
    """The arguments that determine a corpus (same config, same corpus)."""

    hours: float
    seed: int
    etude_share: float = 0.2
    min_excerpt_s: float = 20.0
    max_excerpt_s: float = 60.0
    size_px: tuple[int, int] = (640, 360)
    midi_dir: str | None = None


@dataclass
class CorpusReport:
    """What a run did: counts, durations and the sources it had to skip."""

    written: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds_by_split: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    rendered_s: float = 0.0
    workers: int = 1
    missing_keys: list[int] = field(default_factory=list)


def _slug(source: str) -> str:
    if source == "generated":
        return "etude"
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    comp = source.split("/", 1)[0] if "/" in source else ""
    text = f"{comp}-{stem}" if comp and not source.startswith("/") else stem
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


def _midi_sources(midi_dir: Path) -> list[str]:
    if not midi_dir.is_dir():
        raise ValueError(f"{midi_dir}: --midi-dir is not a folder")
    files = sorted(str(p) for p in midi_dir.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise ValueError(f"{midi_dir}: no .mid or .midi files in this folder")
    return files


def _midi_split(path: str) -> str:
    u = (zlib.crc32(Path(path).name.encode()) & 0xFFFFFFFF) / 2**32
    return (
        "train"
        if u < SPLIT_FRACTIONS[0]
        else "validation"
        if u < sum(SPLIT_FRACTIONS[:2])
        else "test"
    )


def plan_corpus(config: CorpusConfig) -> list[PerformanceSpec]:
    """The performances of a corpus, in order; deterministic in ``config``.

    Each performance draws its split (80/10/10 by share of time), then either a generated
    etude (``etude_share``) or a composition of that split: a composer (weighted by the square
    root of their number of works, so that 1300 Palestrina masses do not drown Chopin), then a
    work. Excerpt lengths are uniform in [min_excerpt_s, max_excerpt_s] until ``hours`` are
    planned.

    With ``midi_dir``, every MIDI file of the folder is one performance, played whole as
    written, its split a stable hash of its file name; ``hours`` is not used.
    """
    if config.midi_dir:
        return [
            PerformanceSpec(
                piece_id=f"{i:05d}-{_slug(path)}",
                split=_midi_split(path),
                kind="midi",
                source=path,
                seed=int(np.random.SeedSequence([config.seed, i]).generate_state(1)[0]),
                target_s=0.0,
                camera="test" if _midi_split(path) == "test" else "train",
            )
            for i, path in enumerate(_midi_sources(Path(config.midi_dir)))
        ]
    rng = np.random.default_rng([config.seed, 7919])
    by_split: dict[str, dict[str, list[str]]] = {s: defaultdict(list) for s in SPLITS}
    for p in list_corpus_pieces():
        by_split[piece_split(p, SPLIT_FRACTIONS)][piece_composer(p)].append(p)
    specs: list[PerformanceSpec] = []
    total = 0.0
    while total < config.hours * 3600:
        i = len(specs)
        split = SPLITS[int(rng.choice(3, p=SPLIT_FRACTIONS))]
        target = float(rng.uniform(config.min_excerpt_s, config.max_excerpt_s))
        groups = {k: v for k, v in by_split[split].items() if v}
        if rng.random() < config.etude_share or not groups:
            source, k = "generated", "etude"
        else:
            names = sorted(groups)
            w = np.sqrt([len(groups[n]) for n in names])
            comp = names[int(rng.choice(len(names), p=w / w.sum()))]
            source, k = groups[comp][int(rng.integers(len(groups[comp])))], "corpus"
        seed = int(np.random.SeedSequence([config.seed, i]).generate_state(1)[0])
        specs.append(
            PerformanceSpec(
                piece_id=f"{i:05d}-{_slug(source)}",
                split=split,
                kind=k,
                source=source,
                seed=seed,
                target_s=target,
                camera="test" if split == "test" else "train",
            )
        )
        total += target
    return specs


def _render_one(
    spec: PerformanceSpec, root: str, size_px: tuple[int, int]
) -> tuple[str, float, str | None]:
    """Worker: render a spec unless it is done. Returns (piece_id, duration_s, error)."""
    folder = Path(root) / spec.split / spec.piece_id
    if is_complete(folder):
        return spec.piece_id, json.loads((folder / "meta.json").read_text())["duration_s"], None
    try:
        meta = render_performance(spec, folder, size_px=size_px)
    except (ValueError, OSError) as exc:
        return spec.piece_id, 0.0, str(exc)
    return spec.piece_id, float(meta["duration_s"]), None


def _check_config(root: Path, config: CorpusConfig) -> None:
    """Write corpus.json, or check that a resumed run has the same arguments."""
    path = root / "corpus.json"
    record = {**asdict(config), "size_px": list(config.size_px)}
    if path.exists():
        old = json.loads(path.read_text())
        if old != record:
            diff = {k: (old.get(k), v) for k, v in record.items() if old.get(k) != v}
            raise ValueError(
                f"{path}: this corpus was made with other arguments {diff} (old, new); "
                "use another --out or the same arguments to resume"
            )
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def build_corpus(
    root: str | Path,
    config: CorpusConfig,
    *,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> CorpusReport:
    """Render every planned performance that is not already complete under ``root``, then
    write ``manifest.jsonl``. Safe to interrupt and run again: unfinished performances live in
    hidden ``.tmp-*`` folders, which are removed at the next start.

    Args:
        root: output folder (created).
        config: what to make; a resumed run must use the same config.
        workers: processes rendering in parallel.
        progress: show a tqdm progress bar.
        log: where messages go (skipped sources, summary).
    Returns:
        A :class:`CorpusReport`; ``skipped`` names every source that could not be read or
        rendered, with the reason.
    Raises:
        ValueError: bad arguments, or ``root`` holds a corpus made with other arguments.
    """
    from tqdm import tqdm

    if config.hours <= 0 and not config.midi_dir:
        raise ValueError(f"--hours must be positive, got {config.hours}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    missing = [str(p) for p in SOUNDFONTS.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"soundfonts not found: {missing}; run `make setup` (Debian packages)"
        )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _check_config(root, config)
    for split in SPLITS:
        for tmp in (root / split).glob(".tmp-*") if (root / split).is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True)
    specs = plan_corpus(config)
    report = CorpusReport(workers=workers)
    todo = [s for s in specs if not is_complete(root / s.split / s.piece_id)]
    report.already_done = len(specs) - len(todo)
    if report.already_done:
        log(f"resuming: {report.already_done} of {len(specs)} performances already complete")
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), unit="perf", desc="synth", disable=not progress, dynamic_ncols=True)
    try:
        if workers == 1:
            results = (_render_one(s, str(root), config.size_px) for s in todo)
            _collect(results, report, bar, log)
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = [pool.submit(_render_one, s, str(root), config.size_px) for s in todo]
                _collect((f.result() for f in futures), report, bar, log)
    finally:
        bar.close()
    report.wall_s = time.perf_counter() - t0
    write_manifest(root, specs)
    _summarise(root, specs, report)
    return report


def _collect(
    results: Iterable[tuple[str, float, str | None]],
    report: CorpusReport,
    bar: Any,
    log: Callable[[str], None],
) -> None:
    """Tally worker results into the report; name each skipped source as it happens."""
    for piece_id, duration_s, error in results:
        if error is None:
            report.written += 1
            report.rendered_s += duration_s
        else:
            report.skipped.append((piece_id, error))
            bar.write(f"skipped {piece_id}: {error}") if not bar.disable else log(
                f"skipped {piece_id}: {error}"
            )
        bar.update(1)
        bar.set_postfix(audio_s=f"{report.rendered_s:.0f}", skipped=len(report.skipped))


def write_manifest(root: Path, specs: list[PerformanceSpec]) -> Path:
    """Index the complete performances of ``specs`` in ``root/manifest.jsonl`` (atomically):
    one JSON object a line with id, split, kind, source, duration_s, relative paths and the
    sha256 of each file."""
    lines = []
    for spec in specs:
        folder = root / spec.split / spec.piece_id
        if not is_complete(folder):
            continue
        meta = json.loads((folder / "meta.json").read_text())
        rel = {f.split(".")[0]: f"{spec.split}/{spec.piece_id}/{f}" for f in PERFORMANCE_FILES}
        sha = {f.split(".")[0]: sha256_file(folder / f) for f in PERFORMANCE_FILES}
        record = {
            "id": spec.piece_id,
            "split": spec.split,
            "kind": spec.kind,
            "source": spec.source,
            "duration_s": meta["duration_s"],
            "paths": rel,
            "sha256": sha,
        }
        lines.append(json.dumps(record))
    path = root / "manifest.jsonl"
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines))
    return path


def _summarise(root: Path, specs: list[PerformanceSpec], report: CorpusReport) -> None:
    """Fill the report's per-split durations and key coverage from the complete performances."""
    from avfusion.midi import read_midi

    seconds: Counter[str] = Counter()
    played = np.zeros(N_KEYS, dtype=bool)
    for spec in specs:
        folder = root / spec.split / spec.piece_id
        if is_complete(folder):
            seconds[spec.split] += json.loads((folder / "meta.json").read_text())["duration_s"]
            for n in read_midi(folder / "notes.mid").notes:
                played[n.pitch - MIDI_MIN] = True
    report.seconds_by_split = {s: round(seconds[s], 1) for s in SPLITS}
    report.missing_keys = [int(i + MIDI_MIN) for i in np.flatnonzero(~played)]


def folder_size_bytes(root: Path) -> int:
    """Bytes of all files under ``root``."""
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def find_performance(root: Path, piece_id: str) -> Path:
    """The folder of performance ``piece_id`` (or of a unique id prefix) under ``root``.

    Raises:
        FileNotFoundError: no such complete performance (lists a few that exist).
    """
    if is_complete(root):
        return root
    hits = [root / s / d for s in SPLITS if (root / s).is_dir() for d in os.listdir(root / s)
            if d.startswith(piece_id) and not d.startswith(".")]  # fmt: skip
    hits = [h for h in hits if is_complete(h)]
    if len(hits) == 1:
        return hits[0]
    some = sorted(d.name for s in SPLITS if (root / s).is_dir() for d in (root / s).iterdir())[:5]
    what = "several performances match" if hits else "no complete performance"
    raise FileNotFoundError(f"{root}: {what} {piece_id!r} (e.g. {', '.join(some) or 'none'})")
