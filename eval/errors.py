"""Where the notes go wrong: an error breakdown of a benchmark run's cached outputs.

    python -m eval.errors experiments/results/snr-sweep --conditions clean pink@-10db

For every (system, condition) of a finished `eval.run` folder, the cached MIDI of each piece is
matched to the reference as the benchmark scores it (mir_eval note matching: onset within
50 ms, same pitch, offsets ignored; only notes starting in the scored seconds), and every
estimated note left unmatched (a false positive) is put in the first class that fits it:

- ``harmonic``: a reference note starts within 50 ms at a pitch below it by an interval of the
  harmonic series (12, 19, 24, 28, 31, 34 or 36 semitones: partials 2–8): the system heard an
  overtone as a note.
- ``subharmonic``: ... or at a pitch above it by such an interval.
- ``neighbour``: ... or one or two semitones away.
- ``repeat``: a reference note of the same pitch is sounding (between its onset and offset):
  a second onset inside one note.
- ``timing``: a reference note of the same pitch starts within 200 ms (too early or late).
- ``other``.

Every reference note left unmatched (a miss) is put in the first class that fits it:

- ``missed:over-partial``: another reference note starts within 50 ms at a pitch below it by
  an interval of the harmonic series: the note sat on an overtone of a played note (an octave
  played with its lower note, say), where a system that rejects overtones drops it too.
- ``missed:fast-repeat``: a reference note of the same pitch starts up to 200 ms before it.
- ``missed:other``.

With ``--coverage [BINS]`` it answers another question instead: how recall depends on what
the camera could see. Each reference note's hand coverage (the share of its key's top surface
under the pianist's hands at the onset) comes from the renderer that drew the video
(`avfusion.synth.performance.load_renderer`); the notes fall into BINS equal-count bins, and
``coverage.csv`` (system, condition, keys = all / white / black, bin, its edges, notes, matched,
recall) and ``coverage.png`` are written:

    python -m eval.errors experiments/results/snr-sweep --coverage --conditions clean pink@-10db

With ``--overlap`` it asks which branch finds each note: the reference notes of each condition
are split by whether the audio-only and the video-only system found them (each one's output
under that condition, else its clean output, as `eval.run` reuses it), and
fusion's recall is given in each of the four groups, beside the union of the two branches.
The union is what an ideal late fusion of the two single-modality outputs could recall.
``overlap.csv`` (condition, audio_found, video_found, notes, share, fusion_matched,
fusion_recall) is written; ``--systems AUDIO VIDEO FUSION`` names the three (default
avfusion-audio, avfusion-video, avfusion-fusion):

    python -m eval.errors experiments/results/snr-sweep --overlap --conditions pink@-10db

Writes ``errors.csv`` (tidy: system, condition, class, count, share of the false positives)
under ``--out`` (default: the run folder) and prints one table per condition. With
``--keep-others``, the rows that an existing ``errors.csv`` there holds for systems this call
does not read are kept (after ``eval.run --systems … --keep-others`` has re-run some systems and
the cache holds only theirs).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from avfusion.fileio import atomic_path
from avfusion.notes import Notes, matched_pairs
from eval.run import first_notes

HARMONIC_INTERVALS = (12, 19, 24, 28, 31, 34, 36)
"""Semitones from a fundamental to its partials 2..8 (rounded: 12·log2(k))."""

CLASSES = ("harmonic", "subharmonic", "neighbour", "repeat", "timing", "other")
MISS_CLASSES = ("missed:over-partial", "missed:fast-repeat", "missed:other")
ONSET_TOLERANCE_S = 0.05
TIMING_WINDOW_S = 0.2


def classify_false_positives(
    reference: Notes, estimate: Notes, pairs: list[tuple[int, int]] | None = None
) -> tuple[Counter[str], int, int]:
    """Match ``estimate`` to ``reference`` as the note metrics do (onsets only,
    `avfusion.notes.matched_pairs`) and class each unmatched estimate.

    Args:
        reference, estimate: notes with times in seconds.
        pairs: their `avfusion.notes.matched_pairs`, if the caller has them already.
    Returns:
        (count per class of `CLASSES`, number of matched notes, number of reference notes).
    """
    ref = list(reference)
    pairs = matched_pairs(reference, estimate) if pairs is None else pairs
    matched = {j for _, j in pairs}
    counts: Counter[str] = Counter({c: 0 for c in CLASSES})
    for j, note in enumerate(estimate):
        if j not in matched:
            counts[_class_of(note.onset_s, note.pitch, ref)] += 1
    return counts, len(matched), len(ref)


def classify_misses(
    reference: Notes, estimate: Notes, pairs: list[tuple[int, int]] | None = None
) -> Counter[str]:
    """Class each reference note that ``estimate`` misses (onset matching as the note metrics
    do: `avfusion.notes.matched_pairs`, or ``pairs`` if the caller has them) into
    `MISS_CLASSES` (see the module docstring). Returns the count per class."""
    ref = list(reference)
    pairs = matched_pairs(reference, estimate) if pairs is None else pairs
    found = {i for i, _ in pairs}
    counts: Counter[str] = Counter({c: 0 for c in MISS_CLASSES})
    for i, note in enumerate(ref):
        if i in found:
            continue
        below = [n.pitch - note.pitch for n in ref
                 if n is not note and abs(n.onset_s - note.onset_s) <= ONSET_TOLERANCE_S]  # fmt: skip
        if any(-d in HARMONIC_INTERVALS for d in below):
            counts["missed:over-partial"] += 1
        elif any(n.pitch == note.pitch and 0 < note.onset_s - n.onset_s <= TIMING_WINDOW_S
                 for n in ref):  # fmt: skip
            counts["missed:fast-repeat"] += 1
        else:
            counts["missed:other"] += 1
    return counts


def _class_of(onset_s: float, pitch: int, ref: list) -> str:
    """The class of a false positive at ``onset_s`` (s), ``pitch`` (MIDI) among ``ref``."""
    near = [n.pitch - pitch for n in ref if abs(n.onset_s - onset_s) <= ONSET_TOLERANCE_S]
    if any(-d in HARMONIC_INTERVALS for d in near):
        return "harmonic"
    if any(d in HARMONIC_INTERVALS for d in near):
        return "subharmonic"
    if any(abs(d) in (1, 2) for d in near):
        return "neighbour"
    same = [n for n in ref if n.pitch == pitch]
    if any(n.onset_s < onset_s < n.offset_s for n in same):
        return "repeat"
    if any(abs(n.onset_s - onset_s) <= TIMING_WINDOW_S for n in same):
        return "timing"
    return "other"


@dataclass(frozen=True)
class CachedOutput:
    """One cached benchmark output, read back and matched to its reference.

    Attributes:
        system, condition, piece: the cell (names as in the run's cache folders).
        folder: the piece's performance folder in the corpus.
        reference, estimate: the notes starting in the scored seconds (`eval.run.first_notes`).
        pairs: their `avfusion.notes.matched_pairs` (reference index, estimate index).
    """

    system: str
    condition: str
    piece: str
    folder: Path
    reference: Notes
    estimate: Notes
    pairs: list[tuple[int, int]]


def cached_outputs(
    run_dir: Path, conditions: list[str] | None = None, systems: list[str] | None = None
) -> Iterator[CachedOutput]:
    """The cached MIDI outputs of a benchmark run folder, system by system and condition by
    condition, each matched to its reference as the benchmark scores it.

    Raises:
        FileNotFoundError: no ``run.json`` or no cache under ``run_dir``.
        ValueError: the run is on a dataset adapter (only corpus runs are read), or a named
            condition has no cached outputs of any system (one system without them is
            skipped with a note on stderr).
    """
    from avfusion.data import list_performances
    from avfusion.midi import read_midi

    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise FileNotFoundError(f"{run_json}: not found (is {run_dir} an eval.run folder?)")
    run = json.loads(run_json.read_text())
    test_set = run["test_set"]
    if test_set.get("dataset_format"):
        raise ValueError(f"{run_json}: a dataset-adapter run; only corpus runs are read")
    perfs = {p.id: p for p in list_performances(Path(test_set["corpus"]), test_set["split"])}
    cache = run_dir / "cache"
    refs: dict[str, Notes] = {}

    def end_of(piece: str) -> float:  # the scored seconds, as eval.run
        return min(perfs[piece].duration_s, float(test_set.get("seconds") or np.inf))

    names = systems or sorted(
        p.name for p in cache.iterdir() if p.is_dir() and not p.name.startswith("_")
    )
    seen: set[str] = set()
    for system in names:
        conds = conditions or sorted(p.name for p in (cache / system).iterdir() if p.is_dir())
        for cond in conds:
            folder = cache / system / cond
            files = sorted(folder.glob("*.mid")) if folder.is_dir() else []
            if not files:  # e.g. a video-only system under an audio condition: eval.run
                print(f"note: {folder}: no cached outputs, skipped", file=sys.stderr)  # reuses
                continue  # its clean output there and caches nothing under the condition
            seen.add(cond)
            for path in files:
                piece = path.name.split(".")[0]
                if piece not in refs:  # read once for all systems and conditions
                    refs[piece] = first_notes(perfs[piece].notes(), end_of(piece))
                est = first_notes(read_midi(path), end_of(piece))
                yield CachedOutput(system, cond, piece, perfs[piece].folder, refs[piece], est,
                                   matched_pairs(refs[piece], est))  # fmt: skip
    missing = [c for c in conditions or [] if c not in seen]
    if missing or not seen:
        raise ValueError(f"{cache}: no cached outputs under {missing or 'any condition'}")


def breakdown(
    run_dir: Path, conditions: list[str] | None = None, systems: list[str] | None = None
) -> list[dict[str, object]]:
    """The error breakdown of a benchmark run folder (see the module docstring).

    Returns:
        rows ``{system, condition, class, count, share}``, plus per (system, condition) the
        rows of class ``matched`` and ``missed`` (false negatives), share = their share of the
        reference notes, and the rows of `MISS_CLASSES`, share = their share of the misses.
    Raises:
        FileNotFoundError, ValueError: as `cached_outputs`.
    """
    rows: list[dict[str, object]] = []
    outputs = cached_outputs(run_dir, conditions, systems)
    for (system, cond), cell in groupby(outputs, key=lambda o: (o.system, o.condition)):
        total: Counter[str] = Counter({c: 0 for c in CLASSES})
        misses: Counter[str] = Counter({c: 0 for c in MISS_CLASSES})
        n_matched = n_ref = 0
        for o in cell:
            counts, m, r = classify_false_positives(o.reference, o.estimate, o.pairs)
            total.update(counts)
            misses.update(classify_misses(o.reference, o.estimate, o.pairs))
            n_matched, n_ref = n_matched + m, n_ref + r
        n_fp = sum(total.values())
        for c in CLASSES:
            rows.append({"system": system, "condition": cond, "class": c, "count": total[c],
                         "share": total[c] / n_fp if n_fp else 0.0})  # fmt: skip
        for c, k in (("matched", n_matched), ("missed", n_ref - n_matched)):
            rows.append({"system": system, "condition": cond, "class": c, "count": k,
                         "share": k / n_ref if n_ref else 0.0})  # fmt: skip
        n_missed = n_ref - n_matched
        for c in MISS_CLASSES:
            rows.append({"system": system, "condition": cond, "class": c, "count": misses[c],
                         "share": misses[c] / n_missed if n_missed else 0.0})  # fmt: skip
    return rows


def coverage_breakdown(
    run_dir: Path,
    conditions: list[str] | None = None,
    systems: list[str] | None = None,
    n_bins: int = 4,
) -> list[dict[str, object]]:
    """Recall by how much of the key the pianist's hands hid when the note started.

    Each reference note's hand coverage is the renderer's own ground truth
    (`avfusion.synth.performance.load_renderer`, `KeyboardRenderer.hand_coverage`: the share
    of the key's top surface in the frame under the hands at the onset). The notes are put
    into ``n_bins`` bins of equal count by the quantiles of the coverage of all reference
    notes read (so the edges depend on the pieces, not on a choice made after the results),
    and each (system, condition) gets its recall per bin.

    Returns:
        rows ``{system, condition, keys, bin, coverage_from, coverage_to, notes, matched,
        recall}``: ``keys`` is ``all``, ``white`` or ``black`` (the same bin edges for each);
        ``bin`` 1 = least hidden; the last bin includes its upper edge.
    Raises:
        FileNotFoundError, ValueError: as `cached_outputs`; ValueError also for a corpus whose
            performances were not rendered by avfusion.synth (no video parameters).
    """
    from avfusion.keyboard import is_black
    from avfusion.synth.performance import load_renderer

    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins}: need at least 1")
    coverage: dict[str, np.ndarray] = {}  # piece -> per reference note
    black_keys: dict[str, np.ndarray] = {}  # piece -> per reference note: a black key?
    found: list[tuple[str, str, str, np.ndarray]] = []  # (system, condition, piece, matched?)
    for o in cached_outputs(run_dir, conditions, systems):
        if o.piece not in coverage:
            renderer, _ = load_renderer(o.folder)
            coverage[o.piece] = renderer.hand_coverage(o.reference)
            black_keys[o.piece] = np.array([is_black(n.pitch) for n in o.reference], bool)
        hit = np.zeros(len(o.reference), bool)
        hit[[i for i, _ in o.pairs]] = True
        found.append((o.system, o.condition, o.piece, hit))
    every = np.concatenate(list(coverage.values()))
    every = every[np.isfinite(every)]
    edges = np.quantile(every, np.linspace(0, 1, n_bins + 1)) if every.size else np.zeros(2)
    rows: list[dict[str, object]] = []
    for (system, cond), group in groupby(found, key=lambda f: (f[0], f[1])):
        cell = list(group)
        cov = np.concatenate([coverage[piece] for _, _, piece, _ in cell])
        hit = np.concatenate([h for *_, h in cell])
        black = np.concatenate([black_keys[piece] for _, _, piece, _ in cell])
        which = np.clip(np.searchsorted(edges, cov, side="right") - 1, 0, len(edges) - 2)
        ok = np.isfinite(cov)
        for keys, of_keys in (("all", ok), ("white", ok & ~black), ("black", ok & black)):
            for b in range(len(edges) - 1):
                sel = of_keys & (which == b)
                n, m = int(sel.sum()), int(hit[sel].sum())
                rows.append({"system": system, "condition": cond, "keys": keys, "bin": b + 1,
                             "coverage_from": float(edges[b]), "coverage_to": float(edges[b + 1]),
                             "notes": n, "matched": m, "recall": m / n if n else 0.0})  # fmt: skip
    return rows


FIELDS = ("system", "condition", "class", "count", "share")
"""The columns of ``errors.csv``."""


def kept_rows(path: Path, replaced: set[str]) -> list[dict[str, str]]:
    """The rows of an earlier ``errors.csv`` whose system is not in ``replaced`` (none when the
    file does not exist).

    Raises:
        ValueError: the file is not an errors.csv (other columns); names the file.
    """
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {list(FIELDS)}")
        return [r for r in reader if r["system"] not in replaced]


OVERLAP_SYSTEMS = ("avfusion-audio", "avfusion-video", "avfusion-fusion")
"""The default (audio-only, video-only, fusion) systems of `overlap_breakdown`."""

OVERLAP_FIELDS = ("condition", "audio_found", "video_found", "notes", "share", "fusion_matched",
                  "fusion_recall")  # fmt: skip
"""The columns of ``overlap.csv``."""


def overlap_breakdown(
    run_dir: Path,
    conditions: list[str] | None = None,
    systems: tuple[str, str, str] = OVERLAP_SYSTEMS,
) -> list[dict[str, object]]:
    """Which branch finds each reference note, and what fusion finds of each group.

    Per condition, every reference note of each piece that the fusion system was scored on is
    put in one of four groups by whether the audio-only and the video-only system matched it
    (onset within 50 ms, same pitch; `avfusion.notes.matched_pairs`). A single-modality
    system's output is its cached output under the condition if there is one, else under
    ``clean`` (audio conditions do not touch a video-only system, nor camera conditions an
    audio-only one, and `eval.run` caches such a system once, under ``clean``).

    Args:
        run_dir: an `eval.run` folder (``run.json``, ``cache/``) on a corpus.
        conditions: condition folders (default: every condition cached for the fusion system).
        systems: the (audio-only, video-only, fusion) system names.
    Returns:
        four rows per condition, ``{condition, audio_found, video_found, notes, share,
        fusion_matched, fusion_recall}``, in the order (found by both, audio only, video
        only, neither); ``share`` is the group's share of the condition's reference notes.
    Raises:
        FileNotFoundError, ValueError: as `cached_outputs`; ValueError also when a condition
            has no piece with all three outputs.
    """
    audio, video, fusion = systems
    found_by: dict[tuple[str, str, str], set[int]] = {}
    n_ref: dict[str, int] = {}
    for o in cached_outputs(run_dir, None, [audio, video]):
        found_by[(o.system, o.condition, o.piece)] = {i for i, _ in o.pairs}
    for o in cached_outputs(run_dir, conditions, [fusion]):
        found_by[(o.system, o.condition, o.piece)] = {i for i, _ in o.pairs}
        n_ref[o.piece] = len(o.reference)
    conds = conditions or sorted({c for s, c, _ in found_by if s == fusion})
    groups = ((True, True), (True, False), (False, True), (False, False))
    rows: list[dict[str, object]] = []
    for cond in conds:
        notes = dict.fromkeys(groups, 0)
        matched = dict.fromkeys(groups, 0)
        for piece, n in n_ref.items():
            a = found_by.get((audio, cond, piece), found_by.get((audio, "clean", piece)))
            f = found_by.get((fusion, cond, piece))
            v = found_by.get((video, cond, piece), found_by.get((video, "clean", piece)))
            if a is None or f is None or v is None:
                continue
            for i in range(n):
                g = (i in a, i in v)
                notes[g] += 1
                matched[g] += i in f
        total = sum(notes.values())
        if not total:
            raise ValueError(f"{run_dir}: no piece under {cond} has {audio}, {video} and {fusion}")
        for g in groups:
            rows.append({"condition": cond, "audio_found": g[0], "video_found": g[1],
                         "notes": notes[g], "share": notes[g] / total,
                         "fusion_matched": matched[g],
                         "fusion_recall": matched[g] / notes[g] if notes[g] else 0.0})  # fmt: skip
    return rows


def print_overlap(rows: list[dict[str, object]], systems: tuple[str, str, str]) -> None:
    """Print `overlap_breakdown` rows: per condition, the recall of each branch, of their
    union and of fusion, then each group's share of the notes and fusion's recall in it."""
    audio, video, fusion = systems
    print(f"which branch finds each note (audio-only {audio}, video-only {video}, fusion {fusion})")
    print(f"{'condition':<16}{'audio':>8}{'video':>8}{'union':>8}{'fusion':>8}   "
          "share of notes / fusion recall: both, audio only, video only, neither")  # fmt: skip
    for cond, group in groupby(rows, key=lambda r: r["condition"]):
        g = list(group)
        share = [float(r["share"]) for r in g]  # type: ignore[arg-type]
        total = sum(int(r["notes"]) for r in g)  # type: ignore[call-overload]
        fused = sum(int(r["fusion_matched"]) for r in g) / total  # type: ignore[call-overload]
        recall = [float(r["fusion_recall"]) for r in g]  # type: ignore[arg-type]
        cells = "  ".join(f"{sh:.2f}/{rc:.2f}" for sh, rc in zip(share, recall, strict=True))
        print(f"{cond!s:<16}{share[0] + share[1]:>8.3f}{share[0] + share[2]:>8.3f}"
              f"{1 - share[3]:>8.3f}{fused:>8.3f}   {cells}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="an eval.run output folder (run.json, cache/)")
    ap.add_argument("--conditions", nargs="+", help="condition folders (default: all cached)")
    ap.add_argument("--systems", nargs="+", help="system names (default: all cached)")
    ap.add_argument("--out", type=Path, help="folder for errors.csv (default: the run folder)")
    ap.add_argument("--keep-others", action="store_true",
                    help="keep the rows of an existing errors.csv in --out for the systems not "
                    "read now")  # fmt: skip
    ap.add_argument("--coverage", type=int, nargs="?", const=4, metavar="BINS",
                    help="instead: recall by how much of the key the hands hid at the onset, in "
                    "BINS equal-count bins (default 4); writes coverage.csv and coverage.png")  # fmt: skip
    ap.add_argument("--overlap", action="store_true",
                    help="instead: which of audio-only and video-only finds each note, and "
                    "fusion's recall in each group (--systems AUDIO VIDEO FUSION); writes "
                    "overlap.csv")  # fmt: skip
    args = ap.parse_args(argv)
    out = args.out or args.run
    kept: list[dict[str, str]] = []
    if args.overlap and args.coverage is not None:
        ap.error("--overlap and --coverage are separate questions: give one")
    if args.overlap and args.systems is not None and len(args.systems) != 3:
        ap.error("--overlap --systems takes three names: AUDIO VIDEO FUSION")
    systems = tuple(args.systems) if args.systems else OVERLAP_SYSTEMS
    try:
        if args.overlap:
            rows = overlap_breakdown(args.run, args.conditions, systems)
        elif args.coverage is not None:
            rows = coverage_breakdown(args.run, args.conditions, args.systems, args.coverage)
        else:
            rows = breakdown(args.run, args.conditions, args.systems)
            read_now = {str(r["system"]) for r in rows}
            kept = kept_rows(out / "errors.csv", read_now) if args.keep_others else []
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    name, fields = (
        ("overlap.csv", OVERLAP_FIELDS) if args.overlap
        else ("coverage.csv", COVERAGE_FIELDS) if args.coverage is not None
        else ("errors.csv", FIELDS)
    )  # fmt: skip
    with atomic_path(out / name) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)
        w.writerows(kept)
    if args.overlap:
        print_overlap(rows, systems)
        print(f"\nwrote {out / name}")
        return
    if args.coverage is not None:
        plot_coverage(rows, out / "coverage.png")
        print_coverage(rows)
        print(f"\nwrote {out / 'coverage.csv'} and {out / 'coverage.png'}")
        return
    if kept:
        names = ", ".join(dict.fromkeys(r["system"] for r in kept))
        print(f"kept {len(kept)} rows of {names} from the earlier errors.csv")
    for cond in dict.fromkeys(str(r["condition"]) for r in rows):
        print(f"\n{cond}: false positives by class (share), matched and missed notes, "
              "misses by class (share of misses)")  # fmt: skip
        cols = (*CLASSES, "matched", "missed", *MISS_CLASSES)
        print(f"{'system':<26}" + "".join(f"{c.removeprefix('missed:'):>13}" for c in cols))
        for system in dict.fromkeys(str(r["system"]) for r in rows if r["condition"] == cond):
            sel = {r["class"]: r for r in rows if r["condition"] == cond and r["system"] == system}
            print(f"{system:<26}" + "".join(
                f"{sel[c]['count']:>6} ({sel[c]['share']:.2f})" for c in cols))  # fmt: skip
    print(f"\nwrote {out / 'errors.csv'}")


COVERAGE_FIELDS = ("system", "condition", "keys", "bin", "coverage_from", "coverage_to",
                   "notes", "matched", "recall")  # fmt: skip
"""The columns of ``coverage.csv``."""


def plot_coverage(rows: list[dict[str, object]], path: Path) -> Path:
    """Recall against hand coverage (`coverage_breakdown` rows): one panel per condition, one
    line per system, a point per bin at the mean of its edges."""
    from matplotlib.figure import Figure

    conds = list(dict.fromkeys(str(r["condition"]) for r in rows))
    systems = list(dict.fromkeys(str(r["system"]) for r in rows))
    ncols = min(len(conds), 3)
    nrows = -(-len(conds) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax, cond in zip(axes, conds, strict=False):
        for i, system in enumerate(systems):
            sel = [
                r for r in rows if (r["condition"], r["system"], r["keys"]) == (cond, system, "all")
            ]
            if not sel:
                continue
            x = [(float(r["coverage_from"]) + float(r["coverage_to"])) / 2 for r in sel]  # type: ignore[arg-type]
            ax.plot(
                x, [r["recall"] for r in sel], marker="o", ms=3, color=f"C{i % 10}", label=system
            )
        ax.set_title(cond)
        ax.set_xlabel("share of the key hidden by the hands at the onset")
        ax.set_ylabel("note recall (onset 50 ms)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(conds) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncols=min(4, len(labels)), loc="outside lower center")
    fig.suptitle("Recall by hand coverage (equal-count bins of the reference notes)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def print_coverage(rows: list[dict[str, object]]) -> None:
    """Print `coverage_breakdown` rows: one table each for all, white and black keys, recall
    per bin and over all bins."""
    first = [r for r in rows if (r["system"], r["condition"], r["keys"])
             == (rows[0]["system"], rows[0]["condition"], "all")]  # fmt: skip
    heads = [f"{float(r['coverage_from']):.2f}-{float(r['coverage_to']):.2f}" for r in first]  # type: ignore[arg-type]
    print("note recall by the share of the key hidden by the hands at the onset "
          f"({first[0]['notes']}+ reference notes a bin over all keys)")  # fmt: skip
    for keys in ("all", "white", "black"):
        print(f"\n{keys} keys")
        print(f"{'system':<26}{'condition':<16}" + "".join(f"{h:>12}" for h in heads)
              + f"{'all bins':>12}")  # fmt: skip
        mine = [r for r in rows if r["keys"] == keys]
        for (system, cond), group in groupby(mine, key=lambda r: (r["system"], r["condition"])):
            cell = list(group)
            n = sum(int(r["notes"]) for r in cell)  # type: ignore[call-overload]
            m = sum(int(r["matched"]) for r in cell)  # type: ignore[call-overload]
            print(f"{system!s:<26}{cond!s:<16}" + "".join(f"{r['recall']:>12.3f}" for r in cell)
                  + f"{m / n if n else 0.0:>12.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
