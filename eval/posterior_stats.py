"""Is a model blind or only under-trained? Ranking quality and calibration of its posteriors.

    python -m eval.posterior_stats avfusion/models/fusion avfusion/models/video \\
        --corpus data/corpus --split validation --out experiments/runs/cpu-small/posterior_stats.json

Note F1 after thresholding hides *why* a model fails: a model whose frame posteriors rank key-down
frames well (high ROC AUC) but never rise above the decoding thresholds has learnt the task and
is only under-trained (its outputs are not yet confident), whereas a model with ROC AUC near 0.5
sees nothing. For each model and head (``frame``, ``onset``) this reports, over every (frame,
key) of the clean performances of a split: ROC AUC and average precision
(scikit-learn), the share of positive labels, the largest and the 99.9th-percentile posterior,
and the model's tuned threshold for that head (``extra.decode``, chosen on validation).

Defaults to the validation split, so it can guide tuning without touching the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.data import DataConfig, list_performances, load_performance
from avfusion.fileio import atomic_path
from eval.machine import machine

HEADS = ("frame", "onset")
"""The heads whose posteriors are scored against the labels of :func:`avfusion.data.make_labels`."""

THRESHOLD_KEYS = {"frame": "frame_threshold", "onset": "onset_threshold"}
"""The :class:`avfusion.decoding.DecodeConfig` field holding each head's threshold."""


def head_stats(labels: np.ndarray, posteriors: np.ndarray) -> dict[str, float]:
    """Ranking and calibration of one head.

    Args:
        labels: (n_frames, 88), 0/1 (onset or frame labels on the model's frame grid).
        posteriors: (n_frames, 88), probabilities in [0, 1].
    Returns:
        ``roc_auc``, ``average_precision`` (scikit-learn), ``positive_rate``,
        ``max_posterior``, ``p999_posterior`` (99.9th percentile).
    Raises:
        ValueError: shapes differ, or the labels hold only one class (AUC undefined).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if labels.shape != posteriors.shape:
        raise ValueError(f"labels {labels.shape} and posteriors {posteriors.shape} differ")
    y = labels.ravel() > 0
    p = posteriors.ravel().astype(np.float64)
    if y.all() or not y.any():
        raise ValueError("the labels hold one class only: ROC AUC is undefined")
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "positive_rate": float(y.mean()),
        "max_posterior": float(p.max()),
        "p999_posterior": float(np.quantile(p, 0.999)),
    }


def model_stats(
    checkpoint: Path, corpus: Path, split: str, max_performances: int | None, seconds: float | None
) -> dict[str, Any]:
    """:func:`head_stats` of one checkpoint over the clean performances of a split (posteriors
    and labels of all performances concatenated), with the model's tuned thresholds."""
    from avfusion.inference import predict_posteriors
    from eval.systems import AvfusionSystem

    system = AvfusionSystem(checkpoint, device="cpu")  # loads the model, window and thresholds
    mc = system.model.config
    cfg = DataConfig(rect_width_px=int(mc.rect_width_px), rect_height_px=int(mc.rect_height_px))
    perfs = list_performances(corpus, split)[:max_performances]
    labels: dict[str, list[np.ndarray]] = {h: [] for h in HEADS}
    posts: dict[str, list[np.ndarray]] = {h: [] for h in HEADS}
    for perf in perfs:
        it = load_performance(perf, cfg)
        n = (
            len(it.audio)
            if seconds is None
            else min(len(it.audio), round(seconds * cfg.sample_rate_hz))
        )
        keep = it.times_s < n / cfg.sample_rate_hz
        post = predict_posteriors(
            system.model,
            None if mc.mode == "video" else it.audio[:n],
            None if mc.mode == "audio" else np.asarray(it.frames[keep]),
            None if mc.mode == "audio" else it.times_s[keep],
            n_samples=n,
            window_s=system.window_s,
        )
        for h in HEADS:
            posts[h].append(post[h])
            labels[h].append(it.labels[h][: len(post[h])])
    decode = system.decode_config
    return {
        "checkpoint": str(checkpoint),
        "mode": mc.mode,
        "performances": len(perfs),
        "heads": {
            h: {
                **head_stats(np.concatenate(labels[h]), np.concatenate(posts[h])),
                "threshold": float(getattr(decode, THRESHOLD_KEYS[h])),
            }
            for h in HEADS
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m eval.posterior_stats CHECKPOINT... --out FILE.json``."""
    ap = argparse.ArgumentParser(prog="python -m eval.posterior_stats", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("checkpoints", nargs="+", type=Path, help="avfusion checkpoint folders")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--split", default="validation", help="default validation (never tune on test)")
    ap.add_argument("--max-performances", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=30.0, help="first S s of each (default 30)")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        models = [model_stats(c, args.corpus, args.split, args.max_performances, args.seconds)
                  for c in args.checkpoints]  # fmt: skip
    except (FileNotFoundError, ValueError) as e:  # no checkpoint or corpus there, empty split
        ap.error(str(e))
    record = {"split": args.split, "seconds": args.seconds, "models": models,
              "machine": machine(), "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    for m in models:
        for h, s in m["heads"].items():
            print(f"{m['checkpoint']} {h}: ROC AUC {s['roc_auc']:.3f}, AP {s['average_precision']:.3f}, "
                  f"max posterior {s['max_posterior']:.3f} (threshold {s['threshold']:.2f}), "
                  f"positives {s['positive_rate']:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
