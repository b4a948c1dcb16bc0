"""The report of a benchmark run: means with bootstrap intervals, paired tests, plots.

    python -m eval.report experiments/results/snr-sweep        # also run by eval.run at the end

Reads ``OUT/results.csv`` (and ``OUT/run.json`` for the machine, commit and model checksums,
written by :mod:`eval.run`) and writes into ``OUT``:

- ``summary.md``: per condition and system, the mean over pieces of note F1, precision and
  recall (onset within 50 ms, mir_eval) with a 95 % percentile bootstrap interval over pieces;
  a paired two-sided Wilcoxon signed-rank test over pieces of the reference system
  (``avfusion-fusion``) against each other system, per condition; the machine, commit and
  sha256 of each avfusion checkpoint's ``model.safetensors``; the systems kept from an
  earlier run (``eval.run --keep-others``) with that run's commit, CPU and finish time.
- ``f1_vs_snr.png``: note F1 against SNR, one panel per noise type, one line per system with
  its interval as a band (the clean F1 as a dotted line).
- ``f1_other_conditions.png``: bars of note F1 with interval for the other conditions (reverb,
  MP3, clipping, telephone, drop-outs, silence, video conditions, …), clean first.

A piece's value is the mean over the run's seeds; pieces are the unit of resampling and
pairing (they are the independent draws; seeds only redraw the noise of the same piece).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.fileio import atomic_path
from avfusion.noise.conditions import KINDS, parse_condition
from eval.conditions import parse_bench_condition
from eval.run import CSV_COLUMNS

REFERENCE_SYSTEM = "avfusion-fusion"
"""The system tested against every other one (pairs over pieces)."""
N_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0


# --------------------------------------------------------------------------------------------
# Statistics


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993, *An Introduction
    to the Bootstrap*, ch. 13): resample the values with replacement ``n_resamples`` times,
    take the mean of each resample, and return the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of those means.

    Args:
        values: shape (n,), one value per independent unit (here: per piece).
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval, in (0, 1).
        seed: seeds the resampling (same values and seed, same interval).
    Returns:
        (low, high); both the mean for a single value or constant values; (nan, nan) for none.
    Raises:
        ValueError: ``confidence`` outside (0, 1), ``n_resamples`` < 1, or non-finite values.
    """
    if not 0 < confidence < 1 or n_resamples < 1:
        raise ValueError(f"confidence {confidence} must be in (0, 1), n_resamples >= 1")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError("bootstrap_interval: values must be finite")
    if len(x) == 0:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_resamples, len(x)))  # (n_resamples, n)
    means = x[idx].mean(axis=1)  # (n_resamples,)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison over pieces.

    Attributes:
        n: number of pairs.
        n_nonzero: pairs whose difference is not zero (the ones the test ranks).
        mean_diff: mean of ``a - b``.
        statistic: Wilcoxon's statistic (the smaller of the positive and negative rank sums
            for a two-sided test, as scipy reports it); 0 when every difference is zero.
        p_value: two-sided; 1.0 when every difference is zero; nan without pairs.
    """

    n: int
    n_nonzero: int
    mean_diff: float
    statistic: float
    p_value: float


def paired_wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of ``a - b`` (Wilcoxon 1945, "Individual
    comparisons by ranking methods", Biometrics Bulletin 1(6)), with scipy.stats.wilcoxon.

    Zero differences are dropped before ranking (Wilcoxon's own treatment,
    ``zero_method="wilcox"``); scipy then uses the exact null distribution for small samples
    without ties and the normal approximation otherwise. When every difference is zero there
    is no evidence of a difference: p = 1 (scipy would warn and divide by zero).

    Args:
        a, b: shape (n,), paired values (same piece at the same index).
    Raises:
        ValueError: ``a`` and ``b`` differ in length, or hold non-finite values.
    """
    from scipy.stats import wilcoxon

    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired_wilcoxon: {len(x)} values against {len(y)}; pair them by piece")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired_wilcoxon: values must be finite")
    d = x - y
    if len(d) == 0:
        return PairedTest(0, 0, math.nan, math.nan, math.nan)
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return PairedTest(len(d), 0, 0.0, 0.0, 1.0)
    res = wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
    return PairedTest(
        len(d), len(nonzero), float(d.mean()), float(res.statistic), float(res.pvalue)
    )


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Results:
    """``results.csv`` as per-piece values.

    Attributes:
        systems, conditions, pieces: in order of first appearance (the suite's order).
        values: (metric, system, condition) → {piece: mean over seeds}.
    """

    systems: tuple[str, ...]
    conditions: tuple[str, ...]
    pieces: tuple[str, ...]
    values: dict[tuple[str, str, str], dict[str, float]]

    def per_piece(self, metric: str, system: str, condition: str) -> dict[str, float]:
        """``{piece: value}`` of one metric, system and condition, averaged over seeds
        (empty when the run has no such cells)."""
        return self.values.get((metric, system, condition), {})


def read_results(path: str | Path) -> Results:
    """Read a tidy ``results.csv`` (:data:`eval.run.CSV_COLUMNS`).

    Raises:
        FileNotFoundError: no such file (says how to make one).
        ValueError: other columns or a non-numeric value (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results; run a suite with `python -m eval.run`")
    sums: dict[tuple[str, str, str, str], list[float]] = {}
    systems: dict[str, None] = {}
    conditions: dict[str, None] = {}
    pieces: dict[str, None] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if tuple(header or ()) != CSV_COLUMNS:
            raise ValueError(f"{path}: expected the columns {list(CSV_COLUMNS)}, got {header}")
        for line_no, row in enumerate(reader, start=2):
            try:
                system, piece, cond, _seed, metric, value = row
                v = float(value)
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: bad row {row!r}") from exc
            systems.setdefault(system)
            conditions.setdefault(cond)
            pieces.setdefault(piece)
            sums.setdefault((metric, system, cond, piece), []).append(v)
    values: dict[tuple[str, str, str], dict[str, float]] = {}
    for (metric, system, cond, piece), vs in sums.items():
        values.setdefault((metric, system, cond), {})[piece] = float(np.mean(vs))
    return Results(tuple(systems), tuple(conditions), tuple(pieces), values)


@dataclass(frozen=True)
class MeanInterval:
    """Mean and interval of one metric for one system and condition."""

    mean: float
    low: float
    high: float
    n: int


def summarise(
    results: Results, metric: str, **bootstrap: Any
) -> dict[tuple[str, str], MeanInterval]:
    """(system, condition) → mean over pieces and its bootstrap interval."""
    out = {}
    for s in results.systems:
        for c in results.conditions:
            v = list(results.per_piece(metric, s, c).values())
            if not v:
                continue
            lo, hi = bootstrap_interval(v, **bootstrap)
            out[s, c] = MeanInterval(float(np.mean(v)), lo, hi, len(v))
    return out


def paired_tests(
    results: Results, reference: str, metric: str = "note/f1"
) -> dict[tuple[str, str], PairedTest]:
    """(other system, condition) → :func:`paired_wilcoxon` of ``reference`` against it, over
    the pieces both have."""
    out = {}
    for c in results.conditions:
        ref = results.per_piece(metric, reference, c)
        for s in results.systems:
            if s == reference:
                continue
            other = results.per_piece(metric, s, c)
            common = [p for p in results.pieces if p in ref and p in other]
            if common:
                out[s, c] = paired_wilcoxon([ref[p] for p in common], [other[p] for p in common])
    return out


# --------------------------------------------------------------------------------------------
# Plots


def snr_of(condition: str) -> tuple[str, float] | None:
    """``("pink", -10.0)`` for an additive-noise condition like ``pink@-10db``, else None."""
    try:
        cond = parse_bench_condition(condition)
    except ValueError:
        return None
    if cond.video is not None or cond.audio is None:
        return None
    steps = parse_condition(cond.audio)
    if len(steps) != 1 or KINDS[steps[0].name].param != "snr_db" or steps[0].value is None:
        return None
    return steps[0].name, float(steps[0].value)


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def plot_f1_vs_snr(
    results: Results, f1: dict[tuple[str, str], MeanInterval], path: Path
) -> Path | None:
    """Note F1 against SNR (dB), one panel per noise type, one line per system with its
    bootstrap band; the system's clean F1 as a dotted line. None when there is no SNR
    condition."""
    from matplotlib.figure import Figure

    grid: dict[str, list[tuple[float, str]]] = {}
    for c in results.conditions:
        got = snr_of(c)
        if got is not None:
            grid.setdefault(got[0], []).append((got[1], c))
    if not grid:
        return None
    n = len(grid)
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.5 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    colours = {s: f"C{i % 10}" for i, s in enumerate(results.systems)}
    for ax, (noise, points) in zip(axes, grid.items(), strict=False):
        points.sort()
        for s in results.systems:
            pts = [(snr, f1[s, c]) for snr, c in points if (s, c) in f1]
            if not pts:
                continue
            x = np.array([p[0] for p in pts])
            mean = np.array([p[1].mean for p in pts])
            ax.plot(x, mean, marker="o", ms=3, color=colours[s], label=s)
            ax.fill_between(x, [p[1].low for p in pts], [p[1].high for p in pts],
                            color=colours[s], alpha=0.15, linewidth=0)  # fmt: skip
            if (s, "clean") in f1:
                ax.axhline(f1[s, "clean"].mean, color=colours[s], linestyle=":", linewidth=0.8)
        ax.set_title(f"{noise} noise")
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("note F1 (onset 50 ms)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncols=min(4, len(labels)), loc="outside lower center")
    fig.suptitle("Note F1 against SNR (mean over pieces, 95 % bootstrap band; dotted: clean)")
    return _save(fig, path)


def plot_other_conditions(
    results: Results, f1: dict[tuple[str, str], MeanInterval], path: Path
) -> Path | None:
    """Grouped bars of note F1 (with interval) for the conditions that are not additive noise
    at an SNR, clean first. None when there are none besides clean."""
    from matplotlib.figure import Figure

    conds = [c for c in results.conditions if snr_of(c) is None]
    conds.sort(key=lambda c: c != "clean")
    if not [c for c in conds if c != "clean"]:
        return None
    systems = results.systems
    width = 0.8 / len(systems)
    width_in = min(16.0, max(6.0, 1.5 + 0.3 * len(conds) + 0.08 * len(conds) * len(systems)))
    fig = Figure(figsize=(width_in, 4.8), layout="constrained")
    ax = fig.subplots()
    for i, s in enumerate(systems):
        xs, means, err_lo, err_hi = [], [], [], []
        for j, c in enumerate(conds):
            if (s, c) in f1:
                cell = f1[s, c]
                xs.append(j - 0.4 + width * (i + 0.5))
                means.append(cell.mean)
                err_lo.append(cell.mean - cell.low)
                err_hi.append(cell.high - cell.mean)
        ax.bar(xs, means, width, yerr=[err_lo, err_hi], capsize=2, label=s, color=f"C{i % 10}")
    ax.set_xticks(range(len(conds)), conds, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("note F1 (onset 50 ms)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize=7, ncols=min(4, len(systems)), loc="outside lower center")
    ax.set_title("Note F1 under other conditions (mean over pieces, 95 % bootstrap interval)")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# summary.md


def _fmt(cell: MeanInterval | None, full_n: int) -> str:
    if cell is None:
        return "–"
    n = "" if cell.n == full_n else f" (n={cell.n})"
    return f"{cell.mean:.3f} [{cell.low:.3f}, {cell.high:.3f}]{n}"


def _table(results: Results, cells: dict[tuple[str, str], MeanInterval]) -> list[str]:
    full_n = len(results.pieces)
    lines = ["| condition | " + " | ".join(results.systems) + " |",
             "|---|" + "---|" * len(results.systems)]  # fmt: skip
    for c in results.conditions:
        row = [_fmt(cells.get((s, c)), full_n) for s in results.systems]
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    return lines


def _p(p: float) -> str:
    if math.isnan(p):
        return "–"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def write_report(
    out: str | Path,
    *,
    reference: str = REFERENCE_SYSTEM,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Path:
    """Write ``summary.md`` and the plots for a run folder (see the module docstring).

    Args:
        out: a folder with ``results.csv`` (and ``run.json``).
        reference: the system tested against every other; when the run lacks it, the first
            system is the reference (the summary says so).
        n_resamples, seed: of the bootstrap.
    Returns:
        The path of ``summary.md``.
    Raises:
        FileNotFoundError, ValueError: as :func:`read_results`.
    """
    out = Path(out)
    results = read_results(out / "results.csv")
    run: dict[str, Any] = {}
    if (out / "run.json").is_file():
        run = json.loads((out / "run.json").read_text())
    boot = {"n_resamples": n_resamples, "seed": seed}
    f1 = summarise(results, "note/f1", **boot)
    precision = summarise(results, "note/precision", **boot)
    recall = summarise(results, "note/recall", **boot)
    ref_note = ""
    if reference not in results.systems and results.systems:
        ref_note = f" ({reference} is not in this run; the first system is the reference)"
        reference = results.systems[0]
    tests = paired_tests(results, reference)

    lines = [f"# Benchmark: {run.get('name', out.name)}", ""]
    if run.get("description"):
        lines += [str(run["description"]).strip(), ""]
    ts = run.get("test_set", {})
    seconds = ts.get("seconds")
    lines += [
        f"- suite: `{run.get('suite', '?')}`; results: `results.csv` "
        f"({len(results.systems)} systems × {len(results.conditions)} conditions × "
        f"{len(results.pieces)} pieces, seeds {run.get('seeds', '?')})",
        f"- test set: `{ts.get('corpus', '?')}` split `{ts.get('split', '?')}`, "
        f"{len(results.pieces)} performances, "
        + (f"first {seconds:g} s of each" if seconds else "whole performances"),
        f"- noise: bank `{run.get('bank')}`, {run.get('bank_half', 'test')} half; each cell "
        "seeded from (piece, condition, seed)",
    ]
    m = run.get("machine") or {}
    if m:
        lines.append(
            f"- machine: {m.get('cpu')} ({m.get('cpu_count')} cores, {m.get('torch_threads')} "
            f"torch threads), device {m.get('device')}, Python {m.get('python')}, "
            f"torch {m.get('torch')}; commit `{m.get('commit')}`"
        )
    cells = run.get("cells")
    if cells:
        lines.append(
            f"- cells: {cells.get('total')} ({cells.get('transcribed')} transcribed in the last "
            f"run, {cells.get('from_cache')} from the cache, {cells.get('failed')} failed); "
            f"wall time of the last run {run.get('wall_s')} s"
        )
    carried: dict[tuple[Any, ...], list[str]] = {}
    for name, rec in (run.get("systems") or {}).items():
        if rec.get("from_run"):
            key = tuple(rec["from_run"].get(k) for k in ("commit", "cpu", "finished_utc"))
            carried.setdefault(key, []).append(name)
    for (commit, cpu, finished), names in carried.items():
        lines.append(
            f"- kept from an earlier run into this folder (`--keep-others`): "
            f"{', '.join(names)} (commit `{commit}`, {cpu}, finished {finished})"
        )
    checkpoints = [
        (name, rec) for name, rec in (run.get("systems") or {}).items() if rec.get("sha256")
    ]
    if checkpoints:
        lines += ["", "Model checkpoints (sha256 of `model.safetensors` and `config.json`):", ""]
        lines += [
            "| system | checkpoint | sha256 (weights) | sha256 (config) |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | `{r['checkpoint']}` | `{r['sha256']}` | `{r.get('config_sha256', '–')}` |"
                  for n, r in checkpoints]  # fmt: skip
    lines += [
        "",
        "## Note F1 (onset within 50 ms)",
        "",
        f"Mean over pieces [95 % percentile bootstrap interval over pieces, {n_resamples} "
        "resamples]; (n=k) where fewer pieces were scored.",
        "",
        *_table(results, f1),
        "",
        f"## Paired test: {reference} against each system{ref_note}",
        "",
        f"Mean note-F1 difference ({reference} − system) over pieces and the two-sided "
        "Wilcoxon signed-rank p-value (zero differences dropped; p = 1 when all are zero). "
        "No correction for the many comparisons.",
        "",
    ]
    others = [s for s in results.systems if s != reference]
    if others:
        lines += ["| condition | " + " | ".join(f"vs {s}" for s in others) + " |",
                  "|---|" + "---|" * len(others)]  # fmt: skip
        for c in results.conditions:
            row = []
            for s in others:
                t = tests.get((s, c))
                row.append("–" if t is None else f"{t.mean_diff:+.3f} (p {_p(t.p_value)})")
            lines.append(f"| {c} | " + " | ".join(row) + " |")
    else:
        lines.append("(only one system)")
    lines += ["", "## Note precision", "", *_table(results, precision)]
    lines += ["", "## Note recall", "", *_table(results, recall), ""]
    plots = []
    if f1:
        snr_png = plot_f1_vs_snr(results, f1, out / "f1_vs_snr.png")
        if snr_png is not None:
            plots.append(f"![note F1 against SNR]({snr_png.name})")
        other_png = plot_other_conditions(results, f1, out / "f1_other_conditions.png")
        if other_png is not None:
            plots.append(f"![note F1 under other conditions]({other_png.name})")
    if plots:
        lines += ["## Plots", "", *plots, ""]
    lines += [
        "## Method",
        "",
        "- Metrics: avfusion.metrics.transcription_metrics (mir_eval) of each cell's cached "
        "MIDI against the reference notes with onsets in the scored excerpt; a piece's value "
        "is its mean over seeds.",
        "- Intervals: percentile bootstrap of the mean over pieces (Efron & Tibshirani 1993, "
        f"ch. 13), {n_resamples} resamples, seed {seed}.",
        "- Paired test: Wilcoxon signed-rank (Wilcoxon 1945) over pieces, scipy.stats.wilcoxon.",
        "",
    ]
    path = out / "summary.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m eval.report OUT``."""
    ap = argparse.ArgumentParser(
        prog="python -m eval.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("out", type=Path, help="a run folder with results.csv (from eval.run)")
    ap.add_argument("--reference", default=REFERENCE_SYSTEM, help=f"system tested against the others (default {REFERENCE_SYSTEM})")  # fmt: skip
    ap.add_argument("--resamples", type=int, default=N_RESAMPLES, help=f"bootstrap resamples (default {N_RESAMPLES})")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        path = write_report(args.out, reference=args.reference, n_resamples=args.resamples)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
