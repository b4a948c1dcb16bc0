"""Run a robustness suite: every system on every test piece under every named condition.

    python -m eval.run eval/suites/snr-sweep.yaml --out experiments/results/snr-sweep
    python -m eval.run eval/suites/quick.yaml --out /tmp/quick --workers 2 \\
        --corpus data/corpus --bank data/noise --systems avfusion-audio basic-pitch
    python -m eval.run eval/suites/snr-sweep.yaml --out experiments/results/snr-sweep \\
        --systems avfusion-fusion avfusion-audio --keep-others   # re-run two, keep the rest
    python -m eval.run eval/suites/quick.yaml --out /tmp/quick-pianovam \\
        --dataset data/PianoVAM_v1 --format pianovam --split test

``--dataset ROOT --format NAME [--split S]`` takes the test set from a real dataset
(:mod:`avfusion.datasets`: pianovam, omaps, pianoyt, audeo, maestro, maps) instead of the
suite's corpus (``max_performances`` and ``seconds`` still apply; the split defaults to the
suite's). Systems that need a modality the dataset lacks (video on MAESTRO and MAPS, audio on
Audeo) are skipped with a message on stderr.

A *suite* is a YAML file::

    name: quick                      # a label for reports
    description: …                   # optional, free text
    test_set:
      corpus: data/corpus            # corpus root (relative paths: to the working directory)
      split: test                    # train | validation | test
      max_performances: 2            # optional: the first N performances of the split
      seconds: 10                    # optional: score the first S seconds of each
    bank: data/noise                 # noise bank (babble, music, reverb); its TEST half is used
                                     # on the test split, its train half on the others
    conditions:                      # named degradations, applied one per cell
      - clean
      - music@0db                    # any avfusion.noise condition, '+' composes them
      - {noise: [white, pink], snr_db: [0, -10]}   # a grid: white@0db, white@-10db, pink@0db, …
      - video:occlusion              # a video condition (below), or video:occlusion@50%
      - pink@-10db+video:blur        # audio and video degradation together
    systems:                         # eval.systems.make_system entries
      - avfusion-fusion
      - denoise+transkun
      - {name: mine, command: "my-tool {audio} -o {midi}", needs: [audio]}
      - {name: run7, checkpoint: runs/7/model}
      - {system: transkun, conditions: [clean, {noise: [pink], snr_db: [0, -10]}]}
                                     # 'conditions' (any system): run it on these only, e.g.
                                     # a slow baseline where the whole sweep would take days
    seeds: [0]                       # optional; one degradation draw per seed

A *cell* is (system, piece, condition, seed). Its degradation is seeded from the piece, the
condition and the seed only (``zlib.crc32("<piece>|<condition>")`` for seed 0 — what
``eval/measure_models.py`` draws — and ``crc32("<piece>|<condition>|<seed>")`` otherwise; the
audio and the video part of a condition each from its own text), so a rerun, on any number of
workers, gives identical numbers. Noise comes from the bank's test half when the test split is
scored, and from its train half otherwise (as in ``eval/measure_models.py``), so that a choice
made on validation never hears the test noise.

Video conditions act on the rectified keyboard frames (uint8 (T, H, W), each avfusion model's
own size, 416 × 40 px by default, x linear in millimetres over the keyboard;
:func:`avfusion.data.rectified_frames`) with a seeded generator; see
:data:`eval.conditions.VIDEO_KINDS`. A system only sees the modalities it
``needs``: an audio-only system's output under ``video:blur`` is its clean output, and a
video-only system's output under ``pink@-10db`` is its clean output; such cells reuse the
cached output of the condition part the system reads instead of transcribing again. A system that needs a modality
the condition removes (``silence`` for audio) still runs: it hears zeros.

Outputs under ``OUT``:

- ``cache/SYSTEM/CONDITION/PIECE.mid``: each system output (``PIECE.seedN.mid`` for seeds other
  than 0), written atomically. An interrupted run, run again, skips the cells already there.
  ``cache/settings.json`` and ``cache/SYSTEM/system.json`` record what the cache was made with;
  a rerun with another corpus or dataset, split, length or bank, or another spec or
  checkpoint under a system's name, is refused.
- ``cache/_degradations/CONDITION/PIECE[.seedN].json``: the drawn degradation parameters
  (:func:`avfusion.noise.replay` reproduces the audio from them).
- ``results.csv``: tidy, one row per (system, piece, condition, seed, metric): the
  :data:`avfusion.metrics.METRIC_KEYS` of :func:`avfusion.metrics.transcription_metrics` against
  the reference notes whose onsets lie in the first S seconds (minus 50 ms), always computed
  from the cached MIDI file, so a resumed run gives the same file byte for byte.
- ``run.json``: suite, test set, pieces, systems (spec, needs, checkpoint sha256), machine
  (:func:`eval.machine.machine`), cell counts, wall time; ``suite.yaml``: a copy of the suite.
- with ``--keep-others``: the rows and ``run.json`` records of the systems that an earlier run
  into ``OUT`` scored and this one does not run are kept (same test set, pieces, conditions,
  seeds and bank, else refused), each record stamped with the run that made it (``from_run``:
  commit, CPU, finish time). Re-running only the systems that changed (a new bundled model)
  updates a sweep whose slow baselines need hours.
- ``errors.log``: the traceback of every cell that failed in the last run (absent when none
  did); failed cells are left out of ``results.csv`` and retried by the next run.
- the report of :mod:`eval.report` (``summary.md`` and plots).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import string
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.config import SAMPLE_RATE_HZ
from avfusion.fileio import atomic_path, sha256_file
from avfusion.metrics import METRIC_KEYS, transcription_metrics
from avfusion.noise.conditions import KINDS, parse_condition
from avfusion.notes import Notes
from eval.conditions import (
    BenchCondition,
    SuiteError,
    degrade_video,
    expand_conditions,
    noise_half,
)
from eval.systems import (
    AvfusionSystem,
    Clip,
    CommandSystem,
    DenoiseThen,
    MissingBaselineError,
    System,
    known_systems,
    make_system,
)

CSV_COLUMNS: tuple[str, ...] = ("system", "piece", "condition", "seed", "metric", "value")
"""Columns of ``results.csv`` (tidy: one metric value per row)."""

END_MARGIN_S: float = 0.05
"""Notes (reference and estimate) are scored when their onset is this much before the end of
the scored excerpt, as in ``eval/systems.py`` and ``eval/measure_models.py``."""

RECT_SIZE_PX: tuple[int, int] = (416, 40)
"""(width, height) of the rectified frames handed to a system that reads video and names no
size of its own (:class:`avfusion.data.DataConfig` defaults); an avfusion model gets frames
rectified at its checkpoint's size (:attr:`eval.systems.AvfusionSystem.rect_size_px`)."""

SUITE_KEYS = frozenset(
    {"name", "description", "test_set", "bank", "conditions", "systems", "seeds"}
)
TEST_SET_KEYS = frozenset({"corpus", "split", "max_performances", "seconds"})
SPLITS = ("train", "validation", "test")


# --------------------------------------------------------------------------------------------
# Systems of a suite


@dataclass(frozen=True)
class SystemEntry:
    """A suite's system: its report name, its :func:`eval.systems.make_system` spec, and the
    conditions it runs on (texts after grid expansion; None: all of the suite's)."""

    name: str
    spec: str | dict[str, Any]
    conditions: tuple[str, ...] | None = None


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]*$")


def system_entry(spec: Any, where: str) -> SystemEntry:
    """Check a system spec without building it (no model is loaded, no baseline imported).

    Raises:
        SuiteError: an unknown name, a dict without ``name`` or without ``command`` /
            ``checkpoint``, or a name that cannot be a folder name.
    """
    if isinstance(spec, str):
        base = spec
        for prefix in ("denoise+", "denoise-nonstationary+"):
            base = base.removeprefix(prefix)
        if base not in known_systems():
            raise SuiteError(
                f"{where}: unknown system {spec!r}; known: {', '.join(known_systems())}, "
                "'denoise+NAME' / 'denoise-nonstationary+NAME', or a dict "
                "{name: …, command: '… {audio} … {midi}'} / {name: …, checkpoint: DIR}"
            )
        return SystemEntry(spec, spec)
    if isinstance(spec, dict) and "system" in spec:
        # {system: NAME, conditions: [...]}: a built-in system on a subset of the conditions
        # (a slow baseline where a full sweep would take too long); same cache as plain NAME.
        if set(spec) - {"system", "conditions"} or "conditions" not in spec:
            raise SuiteError(
                f"{where}: {spec!r}: a system restricted to some conditions is "
                "{system: NAME, conditions: [...]} with no other keys"
            )
        base_entry = system_entry(spec["system"], where)
        if not isinstance(base_entry.spec, str):
            raise SuiteError(f"{where}: {spec!r}: 'system' must be a built-in system's name")
        texts = [c.text for c in expand_conditions(spec["conditions"], f"{where} conditions")]
        return SystemEntry(base_entry.name, base_entry.spec, tuple(texts))
    if isinstance(spec, dict) and "conditions" in spec:
        rest = {k: v for k, v in spec.items() if k != "conditions"}
        texts = [c.text for c in expand_conditions(spec["conditions"], f"{where} conditions")]
        entry = system_entry(rest, where)
        return SystemEntry(entry.name, entry.spec, tuple(texts))
    if isinstance(spec, dict):
        name = spec.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SuiteError(
                f"{where}: system {spec!r} needs a 'name' of letters, digits and . _ + - "
                "(it names the cache folder and the report's column)"
            )
        if ("command" in spec) == ("checkpoint" in spec):
            raise SuiteError(
                f"{where}: system {name!r} needs either 'command' (a shell template with "
                "{midi}) or 'checkpoint' (an avfusion checkpoint folder)"
            )
        if spec.get("denoise"):
            name = f"denoise+{name}"
        return SystemEntry(name, dict(spec))
    raise SuiteError(f"{where}: system {spec!r}: expected a name or a dict")


def build_systems(
    entries: Sequence[SystemEntry], where: str, device: str = "auto"
) -> dict[str, System]:
    """Build every system (loading models), keyed by entry name, in order.

    Raises:
        SuiteError: :func:`eval.systems.make_system` refused a spec (wraps its message).
        FileNotFoundError, MissingBaselineError: as make_system (a missing checkpoint or
            baseline package; the message names the suite and says what to do).
    """
    built: dict[str, System] = {}
    for e in entries:
        try:
            system = make_system(e.spec, device=device)
        except ValueError as exc:
            raise SuiteError(f"{where}: system {e.spec!r}: {exc}") from exc
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{where}: system {e.spec!r}: {exc}") from exc
        except MissingBaselineError as exc:
            raise MissingBaselineError(f"{where}: system {e.spec!r}: {exc}") from exc
        built[e.name] = system
    return built


def _reads_video_file(system: System) -> bool:
    """Whether the system reads the video file (a command template with ``{video}``)."""
    while isinstance(system, DenoiseThen):
        system = system.system
    if not isinstance(system, CommandSystem):
        return False
    return any(f == "video" for _, f, _, _ in string.Formatter().parse(system.template))


def checkpoint_sha256(system: System) -> dict[str, str] | None:
    """``{"checkpoint": DIR, "sha256": <hex of model.safetensors>, "config_sha256": <hex of
    config.json>}`` for an avfusion system (also behind a denoiser), else None. The config
    counts too: it holds the decoder's thresholds, which change the notes."""
    from avfusion.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    while isinstance(system, DenoiseThen):
        system = system.system
    if isinstance(system, AvfusionSystem):
        folder = system.checkpoint_dir
        return {"checkpoint": str(folder), "sha256": sha256_file(folder / WEIGHTS_FILE),
                "config_sha256": sha256_file(folder / CONFIG_FILE)}  # fmt: skip
    return None


# --------------------------------------------------------------------------------------------
# The suite file


@dataclass(frozen=True)
class TestSet:
    """Which performances a suite scores.

    Attributes:
        corpus: corpus root (``manifest.jsonl`` inside).
        split: ``train``, ``validation`` or ``test``.
        max_performances: the first N of the split (manifest order), or all.
        seconds: the first S seconds of each performance are degraded, transcribed and scored;
            None for the whole performance.
    """

    __test__ = False  # not a pytest class

    corpus: Path
    split: str = "test"
    max_performances: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Suite:
    """A parsed suite file (see the module docstring)."""

    path: Path
    name: str
    test_set: TestSet
    conditions: tuple[BenchCondition, ...]
    systems: tuple[SystemEntry, ...]
    seeds: tuple[int, ...] = (0,)
    bank: Path | None = None
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file.

    Raises:
        FileNotFoundError: no such file.
        SuiteError: YAML that is not a mapping, unknown keys, a bad test set, condition,
            system or seed; the message names the file and the entry.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such suite file")
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a suite is a YAML mapping with keys {sorted(SUITE_KEYS)}")
    unknown = set(raw) - SUITE_KEYS
    if unknown:
        raise SuiteError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(SUITE_KEYS)}")
    for key in ("test_set", "conditions", "systems"):
        if key not in raw:
            raise SuiteError(f"{where}: missing {key!r}")
    ts = raw["test_set"]
    if not isinstance(ts, dict) or "corpus" not in ts or set(ts) - TEST_SET_KEYS:
        raise SuiteError(
            f"{where}: test_set must be a mapping with 'corpus' and optionally "
            f"'split', 'max_performances', 'seconds'; got {ts!r}"
        )
    split = ts.get("split", "test")
    if split not in SPLITS:
        raise SuiteError(f"{where}: test_set.split {split!r}: expected one of {SPLITS}")
    max_perf = ts.get("max_performances")
    if max_perf is not None and (not isinstance(max_perf, int) or max_perf < 1):
        raise SuiteError(f"{where}: test_set.max_performances must be a positive integer")
    seconds = ts.get("seconds")
    if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
        raise SuiteError(f"{where}: test_set.seconds must be a positive number of seconds")
    if not isinstance(raw["systems"], list) or not raw["systems"]:
        raise SuiteError(f"{where}: 'systems' must be a non-empty list")
    systems = [system_entry(s, f"{where}: systems[{i}]") for i, s in enumerate(raw["systems"])]
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise SuiteError(f"{where}: system names must be unique, got {names}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ) or len(set(seeds)) != len(seeds):  # fmt: skip
        raise SuiteError(f"{where}: 'seeds' must be a list of distinct integers >= 0")
    bank = raw.get("bank")
    return Suite(
        path=path,
        name=str(raw.get("name", path.stem)),
        test_set=TestSet(Path(ts["corpus"]), split, max_perf, None if seconds is None else float(seconds)),
        conditions=tuple(expand_conditions(raw["conditions"], where)),
        systems=tuple(systems),
        seeds=tuple(seeds),
        bank=None if bank is None else Path(bank),
        description=str(raw.get("description", "")),
        raw=raw,
    )  # fmt: skip


def select_systems(suite: Suite, chosen: Sequence[str | dict[str, Any]]) -> tuple[SystemEntry, ...]:
    """The ``--systems`` override: a suite system's name picks that entry, anything else is a
    new :func:`eval.systems.make_system` spec (a name, or a dict / JSON object string).

    Raises:
        SuiteError: an unknown name, a malformed JSON object or spec, or a repeated name.
    """
    by_name = {s.name: s for s in suite.systems}
    out = []
    for item in chosen:
        if isinstance(item, str) and item.lstrip().startswith("{"):
            try:
                item = json.loads(item)
            except json.JSONDecodeError as exc:
                raise SuiteError(f"--systems: {item!r} is not a JSON object: {exc}") from exc
        if isinstance(item, str) and item in by_name:
            out.append(by_name[item])
        else:
            out.append(system_entry(item, f"--systems (suite {suite.path})"))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise SuiteError(f"--systems: system names must be unique, got {names}")
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Cells


@dataclass(frozen=True)
class Cell:
    """One (system, piece, condition, seed), and where its output is cached.

    ``seen`` is the part of the condition the system reads (:meth:`BenchCondition.seen_by`),
    ``seen_seed`` the seed it is drawn with (0 when ``seen`` is clean): cells that agree on
    (system, piece, seen, seen_seed) share one transcription.
    """

    system: str
    piece: str
    condition: BenchCondition
    seed: int
    seen: BenchCondition
    seen_seed: int

    def cache_path(self, out: Path) -> Path:
        """Where this cell's MIDI is cached under the run folder ``out``
        (``cache/SYSTEM/CONDITION/PIECE[.seedN].mid``)."""
        suffix = "" if self.seen_seed == 0 else f".seed{self.seen_seed}"
        return out / "cache" / self.system / self.seen.text / f"{self.piece}{suffix}.mid"


def draw_seed(piece: str, condition: str, seed: int) -> int:
    """The seed of one degradation: ``crc32("<piece>|<condition>")`` for seed 0 (as
    ``eval/measure_models.py``), ``crc32("<piece>|<condition>|<seed>")`` otherwise."""
    key = f"{piece}|{condition}" if seed == 0 else f"{piece}|{condition}|{seed}"
    return zlib.crc32(key.encode())


def plan_cells(
    pieces: Sequence[str],
    systems: Mapping[str, frozenset[str]],
    conditions: Sequence[BenchCondition],
    seeds: Sequence[int],
    only: Mapping[str, Iterable[str]] | None = None,
) -> list[Cell]:
    """Every cell, piece-major (then condition, seed, system).

    Args:
        systems: name → what the system needs (``{"audio"}``, ``{"video"}`` or both).
        only: name → the condition texts that system runs on (absent: all of them).
    """
    allowed = {n: frozenset(c) for n, c in (only or {}).items()}
    cells = []
    for piece in pieces:
        for cond in conditions:
            for seed in seeds:
                for name, needs in systems.items():
                    if name in allowed and cond.text not in allowed[name]:
                        continue
                    seen = cond.seen_by(needs)
                    seen_seed = 0 if seen.text == "clean" else seed
                    cells.append(Cell(name, piece, cond, seed, seen, seen_seed))
    return cells


# --------------------------------------------------------------------------------------------
# One piece


@dataclass(frozen=True)
class _Env:
    """What a piece's worker needs besides the systems (picklable)."""

    out: Path
    seconds: float | None
    bank_root: Path | None
    bank_half: str  # eval.conditions.noise_half of the split


@dataclass
class PieceResult:
    """What one piece produced: metric rows, failures (cell, traceback), counts."""

    rows: list[tuple[str, str, str, int, str, float]] = field(default_factory=list)
    failures: list[tuple[Cell, str]] = field(default_factory=list)
    computed: int = 0
    cached: int = 0


def first_notes(notes: Notes, end_s: float) -> Notes:
    """The notes with an onset before ``end_s - END_MARGIN_S`` (and all pedal events)."""
    return Notes.from_iterables((n for n in notes if n.onset_s < end_s - END_MARGIN_S), notes.pedal)


def _video_with_audio(src: Path, audio: np.ndarray | None, dst: Path) -> Path:
    """Copy the video stream of ``src`` (no re-encoding) into ``dst`` (.mp4) with ``audio``
    (float32 (n_samples,), 16 kHz) as its AAC audio track, or with none when None."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = None
        if audio is not None:
            aout = out.add_stream("aac", rate=SAMPLE_RATE_HZ, layout="mono")
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
        if aout is not None and audio is not None and len(audio):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio[None, :], dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = SAMPLE_RATE_HZ
            frame.pts = 0
            for p in aout.encode(frame):
                out.mux(p)
            for p in aout.encode(None):
                out.mux(p)
    return dst


def run_piece(
    perf: Any,
    cells: Sequence[Cell],
    systems: Mapping[str, System],
    env: _Env,
    bank: Any = None,
    on_cell: Callable[[], None] | None = None,
) -> PieceResult:
    """Transcribe the missing cells of one performance, then score all its cells.

    Args:
        perf: an :class:`avfusion.data.Performance` (of the corpus or of a dataset).
        cells: this piece's cells.
        systems: built systems by name.
        env: output folder, seconds, bank root.
        bank: a :class:`avfusion.noise.NoiseBank` (for babble, music, reverb) or None.
        on_cell: called after each cell (progress).
    Returns:
        :class:`PieceResult`; a cell whose system raised is a failure, not a row.
    """
    from avfusion.midi import read_midi, write_midi
    from avfusion.noise import degrade

    result = PieceResult()
    audio_full = perf.load_audio(SAMPLE_RATE_HZ)  # silence when the performance has none
    n = len(audio_full)
    if env.seconds is not None:
        n = min(n, round(env.seconds * SAMPLE_RATE_HZ))
    clean = np.ascontiguousarray(audio_full[:n])
    end_s = n / SAMPLE_RATE_HZ
    reference = first_notes(perf.notes(), end_s)

    audio_memo: dict[tuple[str | None, int], tuple[np.ndarray, list[dict[str, Any]]]] = {}
    Size = tuple[int, int]
    frames_memo: dict[tuple[str | None, int, Size], tuple[np.ndarray, list[dict[str, Any]]]] = {}
    clean_frames: dict[Size, tuple[np.ndarray, np.ndarray]] = {}

    def audio_for(cond: str | None, seed: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if (cond, seed) not in audio_memo:
            if cond is None:
                audio_memo[cond, seed] = (clean, [])
            else:
                rng = np.random.default_rng(draw_seed(perf.id, cond, seed))
                d = degrade(clean, cond, rng, bank=bank, half=env.bank_half)
                audio_memo[cond, seed] = (d.audio, d.record)
        return audio_memo[cond, seed]

    def frames_for(cond: str | None, seed: int, size: Size) -> tuple[np.ndarray, np.ndarray, list]:
        if size not in clean_frames:
            from avfusion.data import rectified_frames  # imports torch: only when needed

            frames, times = rectified_frames(perf, *size)
            keep = times < end_s + 0.5
            clean_frames[size] = (np.asarray(frames[keep]), np.asarray(times[keep]))
        frames, times = clean_frames[size]
        if cond is None:
            return frames, times, []
        if (cond, seed, size) not in frames_memo:
            rng = np.random.default_rng(draw_seed(perf.id, cond, seed))
            frames_memo[cond, seed, size] = degrade_video(frames, cond, rng)
        got, rec = frames_memo[cond, seed, size]
        return got, times, rec

    todo: dict[Path, Cell] = {}  # one cell per missing output; others share it
    for cell in cells:
        path = cell.cache_path(env.out)
        if path.is_file() or path in todo:
            continue
        todo[path] = cell
    transcribed = set(todo.values())
    failed: set[Path] = set()
    work_dir = env.out / "work"
    for path, cell in todo.items():
        system = systems[cell.system]
        try:
            audio, a_rec = audio_for(cell.seen.audio, cell.seen_seed)
            frames = times = None
            v_rec: list[dict[str, Any]] = []
            if "video" in system.needs:
                size = getattr(system, "rect_size_px", RECT_SIZE_PX)
                frames, times, v_rec = frames_for(cell.seen.video, cell.seen_seed, size)
            _write_record(env.out, cell, a_rec, v_rec)
            clip_id = f"{perf.id}/{cell.seen.text}"
            with _VideoFile(perf, system, cell, audio, work_dir) as video_path:
                clip = Clip(
                    audio=audio,
                    video_path=video_path,
                    frames=frames,
                    times_s=times,
                    keyboard_corners_px=perf.corners_px,
                    work_dir=work_dir,
                    duration_s=end_s,
                    clip_id=clip_id,
                )
                notes = system.transcribe(clip)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_midi(notes, path)
            result.computed += 1
        except Exception:
            failed.add(path)
            result.failures.append((cell, traceback.format_exc()))
        if on_cell is not None:
            on_cell()
    for cell in cells:
        path = cell.cache_path(env.out)
        if cell not in transcribed and on_cell is not None:
            on_cell()
        if path in failed:
            continue
        if cell not in transcribed:
            result.cached += 1
        estimate = first_notes(read_midi(path), end_s)
        metrics = transcription_metrics(reference, estimate)
        for key in METRIC_KEYS:
            result.rows.append(
                (cell.system, cell.piece, cell.condition.text, cell.seed, key, metrics[key])
            )
    return result


class _VideoFile:
    """The video file a cell's clip offers: the performance's own, or (for a command system
    that reads ``{video}`` under a degraded-audio condition) a copy whose audio track is the
    degraded audio, without one when the system does not read audio; removed afterwards."""

    def __init__(self, perf: Any, system: System, cell: Cell, audio: np.ndarray, work: Path):
        video = getattr(perf, "video_path", None)
        self.src: Path | None = Path(video) if video is not None else None
        self.system, self.cell, self.audio, self.work = system, cell, audio, work
        self.tmp: Path | None = None

    def __enter__(self) -> Path | None:
        if self.src is None or not self.src.is_file():  # no video, or a folder of frames
            if _reads_video_file(self.system):
                raise ValueError(
                    f"{self.cell.system} reads a video file; {self.cell.piece} has none"
                )
            return None
        if not _reads_video_file(self.system):
            return self.src
        if self.cell.seen.video is not None:
            raise ValueError(
                f"{self.cell.system} reads the video file, but video conditions degrade only "
                "the rectified frames; leave video conditions out for this system"
            )
        if self.cell.seen.audio is None and "audio" in self.system.needs:
            return self.src
        import tempfile

        self.work.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="video-", dir=self.work))
        self.tmp = folder
        keep_audio = self.audio if "audio" in self.system.needs else None
        return _video_with_audio(self.src, keep_audio, folder / "video.mp4")

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _write_record(out: Path, cell: Cell, audio_rec: list, video_rec: list) -> None:
    """Keep the drawn degradation parameters of a cell's condition (once per piece, condition
    and seed)."""
    if not audio_rec and not video_rec:
        return
    suffix = "" if cell.seen_seed == 0 else f".seed{cell.seen_seed}"
    path = out / "cache" / "_degradations" / cell.seen.text / f"{cell.piece}{suffix}.json"
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"piece": cell.piece, "condition": cell.seen.text, "seed": cell.seen_seed,
              "audio": audio_rec, "video": video_rec}  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=float) + "\n")


# --------------------------------------------------------------------------------------------
# Process pool over pieces

_WORKER: dict[str, Any] = {}


def _init_worker(specs: list[tuple[str, Any]], device: str, env: _Env, threads: int) -> None:
    """Per worker process: ``threads`` intra-op threads (unless OMP_NUM_THREADS is set), the
    systems built once, the noise bank opened."""
    import os

    from avfusion.noise import NoiseBank

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # read when torch is imported
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    _WORKER["systems"] = build_systems([SystemEntry(n, s) for n, s in specs], "worker", device)
    _WORKER["env"] = env
    _WORKER["bank"] = NoiseBank(env.bank_root) if env.bank_root is not None else None


def _worker_piece(perf: Any, cells: list[Cell]) -> PieceResult:
    return run_piece(perf, cells, _WORKER["systems"], _WORKER["env"], _WORKER["bank"])


# --------------------------------------------------------------------------------------------
# The whole run


@dataclass
class RunSummary:
    """What a run did: cell counts, failures (cell, traceback), where the results are."""

    out: Path
    n_cells: int
    computed: int
    cached: int
    failures: list[tuple[Cell, str]]
    results_csv: Path
    wall_s: float


LEGACY_SETTINGS: dict[str, Any] = {"bank_half": "test"}
"""Settings that caches written before they were recorded had (every split drew test noise)."""


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume a cache made with another corpus, split, length or noise bank; record
    the settings on first use (and the bank when a later run first uses one)."""
    path = out / "cache" / "settings.json"
    old: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if old:
        old = {**LEGACY_SETTINGS, **old}
        diff = {
            k: (old.get(k), v)
            for k, v in settings.items()
            if old.get(k) != v and not (k == "bank" and (old.get(k) is None or v is None))
        }
        if diff:
            raise SuiteError(
                f"{out}: its cache was made with other settings {diff} (was, now); "
                "use another --out, or delete its cache/ folder to start again"
            )
        if old.get("bank") is not None or settings.get("bank") is None:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**old, **settings}, indent=1) + "\n")


def _check_system_record(out: Path, name: str, record: dict[str, Any]) -> None:
    """Refuse a cache whose outputs under ``name`` came from another spec or checkpoint."""
    path = out / "cache" / name / "system.json"
    if path.is_file():
        old = json.loads(path.read_text())
        same = (
            (old.get("sha256"), old.get("config_sha256"))
            == (record.get("sha256"), record.get("config_sha256"))
            if record.get("sha256")
            else old.get("spec") == record.get("spec")
        )
        if not same:
            raise SuiteError(
                f"{out}: the cached outputs of {name!r} came from {old}, not {record}; "
                f"use another --out or delete {path.parent}"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _kept_from_earlier_run(
    out: Path, record: dict[str, Any], running: Sequence[str]
) -> tuple[list[tuple[str, str, str, int, str, float]], dict[str, dict[str, Any]], list[str]]:
    """The rows and system records of an earlier run into ``out`` for the systems this run
    does not run (``--keep-others``), and the earlier run's system order.

    Args:
        out: the run folder (its ``results.csv`` and ``run.json``, if any).
        record: this run's ``run.json`` keys that must match: ``test_set``, ``bank``,
            ``pieces``, ``conditions``, ``seeds``.
        running: the systems this run scores (their earlier rows are replaced).
    Returns:
        (rows, records, order); all empty when ``out`` has no earlier results.
    Raises:
        SuiteError: ``results.csv`` without ``run.json``, or an earlier run on another test
            set, pieces, conditions, seeds or bank (names the key, was and now).
    """
    csv_path, json_path = out / "results.csv", out / "run.json"
    if not csv_path.is_file():
        return [], {}, []
    if not json_path.is_file():
        raise SuiteError(
            f"{csv_path}: no run.json beside it, so what made these results is unknown; "
            "--keep-others keeps only the results of an eval.run run"
        )
    old = json.loads(json_path.read_text())
    for key in ("test_set", "bank", "pieces", "conditions", "seeds"):
        if old.get(key) != record[key]:
            raise SuiteError(
                f"{json_path}: --keep-others needs the same {key} as the earlier run "
                f"(was {old.get(key)!r}, now {record[key]!r}); use another --out"
            )
    stamp = {
        "commit": (old.get("machine") or {}).get("commit"),
        "cpu": (old.get("machine") or {}).get("cpu"),
        "finished_utc": old.get("finished_utc"),
    }
    records = {
        name: {**rec, "from_run": rec.get("from_run", stamp)}
        for name, rec in (old.get("systems") or {}).items()
        if name not in running
    }
    rows = []
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for system, piece, cond, seed, metric, value in reader:
            if system in records:
                rows.append((system, piece, cond, int(seed), metric, float(value)))
    return rows, records, list(old.get("systems") or {})


def write_results_csv(path: Path, rows: Iterable[tuple[str, str, str, int, str, float]]) -> Path:
    """Write ``rows`` as the tidy CSV (:data:`CSV_COLUMNS`), atomically; values as Python's
    shortest round-trip ``repr``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for system, piece, cond, seed, metric, value in rows:
        w.writerow([system, piece, cond, seed, metric, repr(float(value))])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def _entry_needs(entry: SystemEntry) -> frozenset[str]:
    """What a suite system reads, without building it (no model loaded): ``needs`` of a
    command, the mode of a bundled or checkpoint avfusion system (a checkpoint's
    ``config.json``), else audio (the baselines)."""
    spec = entry.spec
    if isinstance(spec, dict):
        if "command" in spec:
            return frozenset(spec.get("needs") or ["audio"])
        if "checkpoint" in spec:
            cfg = Path(spec["checkpoint"]) / "config.json"
            mode = spec.get("mode") or (
                json.loads(cfg.read_text()).get("model_config", {}).get("mode", "fusion")
                if cfg.is_file()
                else "fusion"
            )
            return frozenset({"audio", "video"} if mode == "fusion" else {mode})
        return frozenset({"audio"})
    base = spec
    for prefix in ("denoise+", "denoise-nonstationary+"):
        base = base.removeprefix(prefix)
    mode = base.removeprefix("avfusion-") if base.startswith("avfusion-") else "audio"
    return frozenset({"audio", "video"} if mode in ("fusion", "concat") else {mode})


def run_suite(
    suite_path: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    corpus: str | Path | None = None,
    bank: str | Path | None = None,
    systems: Sequence[str | dict[str, Any]] | None = None,
    device: str = "auto",
    progress: bool = True,
    report: bool = True,
    dataset: str | Path | None = None,
    dataset_format: str | None = None,
    split: str | None = None,
    allow_pickle: bool = False,
    keep_others: bool = False,
) -> RunSummary:
    """Run a suite into ``out`` (resuming what is cached there), write ``results.csv``,
    ``run.json`` and the report.

    Args:
        suite_path: the suite YAML file.
        out: output folder (created).
        workers: processes over pieces (1: in this process). Each worker loads every system
            and uses ``cpu_count // workers`` torch threads.
        corpus, bank: override the suite's corpus root and noise bank folder.
        systems: override the suite's systems (see :func:`select_systems`).
        device: for neural systems (``auto``: CUDA if available).
        progress: show a tqdm bar on stderr.
        report: write the report (:func:`eval.report.write_report`) at the end.
        dataset, dataset_format: take the test set from a real dataset folder in this
            :mod:`avfusion.datasets` format instead of the corpus; systems that need a
            modality it lacks are skipped (a message on stderr).
        split: the split to score (default: the suite's).
        allow_pickle: let the Audeo adapter read its pickled labels.
        keep_others: keep the results of the systems that an earlier run into ``out`` scored
            and this one does not run (see the module docstring).
    Returns:
        :class:`RunSummary`. Failed cells (see ``errors.log``) are listed there and left out
        of the CSV; run again to retry them.
    Raises:
        FileNotFoundError: no suite, corpus or needed noise bank.
        SuiteError: a bad suite, a cache in ``out`` made with other settings, or (with
            ``keep_others``) an earlier run on another test set.
    """
    import os

    from tqdm import tqdm

    from avfusion.data import list_performances
    from avfusion.noise import NoiseBank
    from eval.machine import machine

    t0 = time.perf_counter()
    ran_on = machine()  # before this run writes its outputs (which may be tracked files)
    suite = load_suite(suite_path)
    where = str(suite.path)
    entries = select_systems(suite, systems) if systems else suite.systems
    split = split or suite.test_set.split
    bank_half = noise_half(split)
    modalities = frozenset({"audio", "video"})
    data_setting: str | None = None
    if dataset is not None:
        from avfusion.datasets import get_format, load_dataset

        if not dataset_format:
            raise SuiteError("--dataset needs --format NAME")
        fmt = get_format(dataset_format)
        modalities = fmt.modalities
        corpus_root = Path(dataset)
        data_setting = f"{fmt.name}:{corpus_root.resolve()}"
        perfs = load_dataset(corpus_root, fmt.name, split, allow_pickle=allow_pickle)
        skipped = [e.name for e in entries if not _entry_needs(e) <= modalities]
        if skipped:
            print(f"eval.run: {fmt.name} has no {'/'.join(sorted({'audio', 'video'} - modalities))}: "
                  f"skipping {', '.join(skipped)}", file=sys.stderr)  # fmt: skip
            entries = tuple(e for e in entries if e.name not in skipped)
        if not entries:
            raise SuiteError(
                f"{where}: no system runs on {fmt.name}, which has only "
                f"{'/'.join(sorted(modalities))}; choose systems with --systems"
            )
    else:
        corpus_root = Path(corpus) if corpus is not None else suite.test_set.corpus
        perfs = list_performances(corpus_root, split)
    perfs = perfs[: suite.test_set.max_performances]
    needs_bank = any(
        KINDS[c.name].bank is not None
        for cond in suite.conditions
        if cond.audio is not None
        for c in parse_condition(cond.audio)
    )
    bank_root = Path(bank) if bank is not None else suite.bank
    if needs_bank and bank_root is None:
        raise SuiteError(
            f"{where}: babble, music or reverb conditions need a noise bank: give 'bank:' in "
            "the suite or --bank (build one with `avfusion noisebank --out data/noise`)"
        )
    noise_bank = NoiseBank(bank_root) if needs_bank and bank_root is not None else None

    built = build_systems(entries, where, device)
    for name, system in built.items():
        if _reads_video_file(system) and any(c.video for c in suite.conditions):
            raise SuiteError(
                f"{where}: system {name!r} reads the video file ({{video}}), but video "
                "conditions degrade only the rectified frames; drop them or the system"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, {
        "corpus": None if data_setting else str(corpus_root.resolve()), "dataset": data_setting,
        "split": split, "bank_half": bank_half,
        "seconds": suite.test_set.seconds,
        "bank": str(bank_root.resolve()) if noise_bank is not None and bank_root else None,
    })  # fmt: skip
    system_records: dict[str, dict[str, Any]] = {}
    for e in entries:
        record: dict[str, Any] = {"spec": e.spec, "needs": sorted(built[e.name].needs)}
        ck = checkpoint_sha256(built[e.name])
        if ck:
            record.update(ck)
        _check_system_record(out, e.name, record)
        system_records[e.name] = record

    suite_texts = {c.text for c in suite.conditions}
    only: dict[str, tuple[str, ...]] = {}
    for e in entries:
        if e.conditions is None:
            continue
        missing = [t for t in e.conditions if t not in suite_texts]
        if missing:
            raise SuiteError(
                f"{where}: system {e.name!r} is restricted to conditions that the suite does "
                f"not run: {missing}"
            )
        only[e.name] = e.conditions
    cells = plan_cells(
        [p.id for p in perfs], {n: s.needs for n, s in built.items()}, suite.conditions,
        suite.seeds, only,
    )  # fmt: skip
    same_run = {
        "test_set": {"corpus": str(corpus_root), "split": split,
                     "dataset_format": dataset_format if dataset is not None else None,
                     "max_performances": suite.test_set.max_performances,
                     "seconds": suite.test_set.seconds},
        "bank": str(bank_root) if noise_bank is not None else None,
        "pieces": [p.id for p in perfs], "conditions": [c.text for c in suite.conditions],
        "seeds": list(suite.seeds),
    }  # fmt: skip
    kept_rows: list[tuple[str, str, str, int, str, float]] = []
    kept: dict[str, dict[str, Any]] = {}
    old_order: list[str] = []
    if keep_others:
        kept_rows, kept, old_order = _kept_from_earlier_run(out, same_run, list(built))
    by_piece: dict[str, list[Cell]] = {}
    for c in cells:
        by_piece.setdefault(c.piece, []).append(c)
    env = _Env(out, suite.test_set.seconds, bank_root if noise_bank is not None else None,
               bank_half)  # fmt: skip
    results: dict[str, PieceResult] = {}
    bar = tqdm(total=len(cells), desc=f"bench {suite.name}", unit="cell", disable=not progress)
    try:
        if workers <= 1 or len(perfs) <= 1:
            for perf in perfs:
                results[perf.id] = run_piece(
                    perf, by_piece[perf.id], built, env, noise_bank, on_cell=lambda: bar.update(1)
                )
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            threads = max(1, (os.cpu_count() or 1) // workers)
            specs = [(e.name, e.spec) for e in entries]
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(specs, device, env, threads),
            ) as pool:
                futures = {
                    pool.submit(_worker_piece, perf, by_piece[perf.id]): perf.id for perf in perfs
                }
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(len(by_piece[futures[fut]]))
    finally:
        bar.close()

    rows = []
    failures: list[tuple[Cell, str]] = []
    for perf in perfs:
        rows += results[perf.id].rows
        failures += results[perf.id].failures
    rows += kept_rows
    order = [n for n in old_order if n in built or n in kept]
    order += [n for n in built if n not in order]
    sys_order = {n: i for i, n in enumerate(order)}
    cond_order = {c.text: i for i, c in enumerate(suite.conditions)}
    piece_order = {p.id: i for i, p in enumerate(perfs)}
    metric_order = {k: i for i, k in enumerate(METRIC_KEYS)}
    rows.sort(key=lambda r: (sys_order[r[0]], cond_order[r[2]], piece_order[r[1]], r[3], metric_order[r[4]]))  # fmt: skip
    results_csv = write_results_csv(out / "results.csv", rows)
    errors_log = out / "errors.log"
    if failures:
        with atomic_path(errors_log) as tmp:
            tmp.write_text("".join(
                f"== {c.system} | {c.piece} | {c.condition.text} | seed {c.seed}\n{tb}\n"
                for c, tb in failures
            ))  # fmt: skip
    else:
        errors_log.unlink(missing_ok=True)
    computed = sum(r.computed for r in results.values())
    cached = sum(r.cached for r in results.values())
    wall_s = time.perf_counter() - t0
    system_records.update(kept)
    record = {
        "suite": str(suite.path), "name": suite.name, "description": suite.description,
        **same_run, "bank_half": bank_half,
        "systems": {n: system_records[n] for n in order}, "machine": ran_on,
        "cells": {"total": len(cells), "transcribed": computed, "from_cache": cached,
                  "failed": len(failures)},
        "wall_s": round(wall_s, 1), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    with atomic_path(out / "run.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    with atomic_path(out / "suite.yaml") as tmp:
        shutil.copyfile(suite.path, tmp)
    if report:
        from eval.report import write_report

        write_report(out)
    return RunSummary(out, len(cells), computed, cached, failures, results_csv, wall_s)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m eval.run SUITE --out DIR``; exit status 1 when cells failed."""
    ap = argparse.ArgumentParser(
        prog="python -m eval.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("suite", type=Path, help="suite YAML file (e.g. eval/suites/quick.yaml)")
    ap.add_argument("--out", type=Path, required=True, help="output folder, e.g. experiments/results/NAME (resumed if it exists)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=1, help="processes over pieces (default 1)")
    ap.add_argument("--corpus", type=Path, default=None, help="corpus root (default: the suite's)")
    ap.add_argument("--bank", type=Path, default=None, help="noise bank folder (default: the suite's)")  # fmt: skip
    ap.add_argument("--systems", nargs="+", default=None,
                    help="run only these: names from the suite, other make_system names, or JSON dicts")  # fmt: skip
    ap.add_argument("--device", default="auto", help="for the neural systems (default: auto)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--no-report", action="store_true", help="skip summary.md and the plots")
    ap.add_argument("--dataset", type=Path, default=None,
                    help="a real dataset folder as the test set (with --format), instead of the corpus")  # fmt: skip
    ap.add_argument("--format", dest="dataset_format", default=None,
                    help="the dataset's format: pianovam, omaps, pianoyt, audeo, maestro, maps")  # fmt: skip
    ap.add_argument("--split", default=None, help="the split to score (default: the suite's, e.g. test)")  # fmt: skip
    ap.add_argument("--keep-others", action="store_true",
                    help="keep the results in OUT of the systems this run does not run (same test set)")  # fmt: skip
    ap.add_argument("--allow-pickle", action="store_true",
                    help="read Audeo's pickled labels (they can run code; off by default)")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        summary = run_suite(
            args.suite,
            args.out,
            workers=args.workers,
            corpus=args.corpus,
            bank=args.bank,
            systems=args.systems,
            device=args.device,
            progress=not args.no_progress,
            report=not args.no_report,
            dataset=args.dataset,
            dataset_format=args.dataset_format,
            split=args.split,
            allow_pickle=args.allow_pickle,
            keep_others=args.keep_others,
        )
    except (SuiteError, FileNotFoundError, MissingBaselineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{summary.n_cells} cells: {summary.computed} transcribed, {summary.cached} from the "
        f"cache, {len(summary.failures)} failed; {summary.results_csv} ({summary.wall_s:.0f} s)"
    )
    if summary.failures:
        print(
            f"{len(summary.failures)} cells failed (tracebacks in {summary.out / 'errors.log'}); "
            "run again to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
