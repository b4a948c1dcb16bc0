"""Paired comparison of two models measured by `eval.measure_models` on the same pieces: per
condition, each model's mean note metrics, the mean difference, on how many pieces the new model
is higher, and a Wilcoxon signed-rank test over the pieces (`eval.report.paired_wilcoxon`).

    python -m eval.paired --new runs/val-new-a runs/val-new-b --old runs/val-old \\
        --system avfusion-fusion --out experiments/runs/NAME/paired-validation.json

Each of ``--new`` and ``--old`` is one or more `eval.measure_models` output folders (or their
``metrics.json``), e.g. one per share of the conditions; a (condition, piece) found twice on one
side is an error. Only the conditions and pieces that both sides hold are compared.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.fileio import write_json

METRICS = ("note/f1", "note/precision", "note/recall")
"""The per-piece metrics averaged for each side (the test is on the first)."""


def per_piece(paths: list[Path], system: str) -> dict[tuple[str, str], dict[str, float]]:
    """``(condition, piece) → metrics`` of ``system`` from `eval.measure_models` outputs.

    Raises:
        FileNotFoundError: a folder without ``metrics.json``.
        ValueError: a (condition, piece) twice, or no row of ``system`` (names the files).
    """
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for path in paths:
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no metrics.json (run eval.measure_models)")
        for r in json.loads(file.read_text())["per_piece"]:
            if r["system"] != system:
                continue
            key = (r["condition"], r["piece"])
            if key in rows:
                raise ValueError(f"{file}: {key[0]} / {key[1]} is also in an earlier file")
            rows[key] = {m: float(r[m]) for m in METRICS}
    if not rows:
        raise ValueError(f"{', '.join(map(str, paths))}: no rows of system {system!r}")
    return rows


def compare(
    new: dict[tuple[str, str], dict[str, float]], old: dict[tuple[str, str], dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """Per condition held by both sides: ``{n, new: {metric: mean}, old: {...}, difference,
    pieces_higher, wilcoxon_p}`` on note F1 over the pieces both hold.

    Raises:
        ValueError: the two sides share no (condition, piece).
    """
    from eval.report import paired_wilcoxon

    out: dict[str, dict[str, Any]] = {}
    for cond in sorted({c for c, _ in new} & {c for c, _ in old}):
        pieces = sorted(p for c, p in new if c == cond and (c, p) in old)
        a = np.array([new[cond, p]["note/f1"] for p in pieces])
        b = np.array([old[cond, p]["note/f1"] for p in pieces])
        test = paired_wilcoxon(a, b)
        out[cond] = {
            "n": len(pieces),
            "new": {m: float(np.mean([new[cond, p][m] for p in pieces])) for m in METRICS},
            "old": {m: float(np.mean([old[cond, p][m] for p in pieces])) for m in METRICS},
            "difference": float(np.mean(a - b)),
            "pieces_higher": int(np.sum(a > b)),
            "wilcoxon_p": test.p_value,
        }
    if not out:
        raise ValueError("the two sides share no (condition, piece)")
    return out


def main(argv: list[str] | None = None) -> int:
    from eval.machine import machine

    ap = argparse.ArgumentParser(prog="python -m eval.paired", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--new", type=Path, nargs="+", required=True, help="measure_models outputs")
    ap.add_argument("--old", type=Path, nargs="+", required=True, help="measure_models outputs")
    ap.add_argument("--system", default="avfusion-fusion", help="system name in both")
    ap.add_argument("--out", type=Path, help="JSON with the comparison (default: print only)")
    args = ap.parse_args(argv)
    try:
        res = compare(per_piece(args.new, args.system), per_piece(args.old, args.system))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'condition':18s} {'n':>3s} {'old F1 (P/R)':>18s} {'new F1 (P/R)':>18s} "
          f"{'diff':>7s} {'higher':>7s} {'p':>8s}")  # fmt: skip
    for cond, r in res.items():
        o, n = r["old"], r["new"]
        print(f"{cond:18s} {r['n']:3d} {o['note/f1']:.3f} ({o['note/precision']:.2f}/"
              f"{o['note/recall']:.2f}) {n['note/f1']:.3f} ({n['note/precision']:.2f}/"
              f"{n['note/recall']:.2f}) {r['difference']:+.3f} {r['pieces_higher']:3d}/"
              f"{r['n']:<3d} {r['wilcoxon_p']:8.3g}")  # fmt: skip
    if args.out:
        doc = {"system": args.system, "new": [str(p) for p in args.new],
               "old": [str(p) for p in args.old], "conditions": res, "machine": machine()}  # fmt: skip
        write_json(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
