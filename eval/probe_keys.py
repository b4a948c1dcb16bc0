"""How much a rectified keyboard frame says about which keys are down, at several frame sizes.

A diagnostic of the video input, not of a trained model: for each rectified size (e.g. the
model's 416 × 40 against 624 × 80, about the corpus videos' own 640 × 360 detail), per-key
pixel features are pooled from each video frame and a gradient-boosted classifier
(scikit-learn's ``HistGradientBoostingClassifier``) is fitted to say whether the key is down
in that frame ("key down" from the MIDI: onset <= t < offset). Fitted on training-split
performances, scored on validation-split ones: average precision and ROC AUC per key colour.
If a larger frame lifts them, the model's rectified size throws cues away.

The video CNN's own inputs (``avfusion.model.encoders.VideoEncoder``) are the features' source:
the frame standardised over its pixels, its difference to the previous one, and the frame minus
the per-pixel median of its block (the background reference). Per key and channel:

- ``bands``: the mean over the key's x-span in horizontal bands of about 4 pixels (so a taller
  frame gives more bands), from the back of the keys to the front;
- ``columns``: a white key's front part (in front of the black keys, y 95..150 mm) or a black
  key's whole top, averaged over y and pooled into 6 columns across the key (its side edges,
  where a pressed key shows its neighbours' sides).

Run (2-core CPU: rectifying a new size decodes each video once and caches it, then a few
minutes per size):

    python -m eval.probe_keys --corpus data/corpus --sizes 416x40 624x80 \
        --out experiments/runs/NAME/probe-keys.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

BLOCK_S = 3.0
"""Length of the blocks whose per-pixel median is the background reference (s): the
``cpu-small`` training window."""
N_COLUMNS = 6
BAND_PX = 4


def parse_size(text: str) -> tuple[int, int]:
    """``"416x40"`` → (416, 40).

    Raises:
        argparse.ArgumentTypeError: not two positive integers joined by ``x``.
    """
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 416x40") from None
    if w < 88 or h < 8:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least 88 x 8 pixels")
    return w, h


def video_channels(frames: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """The video CNN's three input channels.

    Args:
        frames: uint8 (n, H, W) rectified frames.
        times_s: float64 (n,) their times in seconds.
    Returns:
        float32 (3, n, H, W): the frame standardised over its pixels (``(x − mean) / (sd + 2)``
        in grey levels, as the model), its difference to the previous standardised frame, and
        the frame minus the per-pixel median of its ``BLOCK_S`` block.
    """
    x = frames.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    sd = x.std(axis=(1, 2), keepdims=True)
    x = (x - mean) / (sd + 2.0)
    diff = np.concatenate([np.zeros_like(x[:1]), np.diff(x, axis=0)])
    ref = np.empty_like(x)
    block = np.floor((times_s - times_s[0]) / BLOCK_S).astype(int)
    for b in np.unique(block):
        sel = block == b
        ref[sel] = x[sel] - np.median(x[sel], axis=0, keepdims=True)
    return np.stack([x, diff, ref])


def key_features(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-key pooled features of every frame.

    Args:
        channels: float32 (C, n, H, W) from :func:`video_channels`.
    Returns:
        (features, is_black): float32 (n, 88, F) with F = C · (H // 4 + 6), and bool (88,).
    """
    from avfusion.keyboard import (
        BLACK_KEY_LENGTH_MM,
        WHITE_KEY_LENGTH_MM,
        key_x_spans_px,
        keyboard_geometry,
    )

    n_ch, n, h, w = channels.shape
    spans = key_x_spans_px(w)
    black = keyboard_geometry().is_black
    n_bands = max(1, h // BAND_PX)
    band_edges = np.linspace(0, h, n_bands + 1).round().astype(int)
    front_row = round(BLACK_KEY_LENGTH_MM / WHITE_KEY_LENGTH_MM * h)
    out = np.empty((n, 88, n_ch * (n_bands + N_COLUMNS)), np.float32)
    for k in range(88):
        c0 = int(np.floor(spans[k, 0]))
        c1 = max(c0 + 1, int(np.ceil(spans[k, 1])))
        key = channels[:, :, :, c0:c1]  # (C, n, H, wk)
        bands = np.stack(
            [key[:, :, a:b].mean(axis=(2, 3)) for a, b in itertools.pairwise(band_edges)],
            axis=-1,
        )  # (C, n, n_bands)
        top = key[:, :, :front_row] if black[k] else key[:, :, front_row:]
        profile = top.mean(axis=2)  # (C, n, wk)
        cols = np.stack(
            [p.mean(axis=-1) for p in np.array_split(profile, N_COLUMNS, axis=-1) if p.shape[-1]],
            axis=-1,
        )
        if cols.shape[-1] < N_COLUMNS:  # a key narrower than 6 pixels: repeat its last column
            cols = np.concatenate([cols, np.repeat(cols[..., -1:], N_COLUMNS - cols.shape[-1], -1)], -1)
        out[:, k] = np.concatenate([bands, cols], axis=-1).transpose(1, 0, 2).reshape(n, -1)
    return out, black


def key_down(notes, times_s: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """bool (n, 88): key held at each frame time (onset <= t < offset, from the MIDI)."""
    down = np.zeros((len(times_s), 88), bool)
    for note in notes:
        sel = (times_s >= note.onset_s) & (times_s < note.offset_s)
        down[sel, note.pitch - 21] = True
    return down


def performance_rows(perf, size: tuple[int, int], seconds: float, stride: int):  # type: ignore[no-untyped-def]
    """Features and labels of the first ``seconds`` of a performance's video, every
    ``stride``-th frame: float32 (rows, F), bool (rows,), bool (rows,) is-black."""
    from avfusion.data import rectified_frames

    frames, times = rectified_frames(perf, *size)
    keep = times < seconds
    frames, times = np.asarray(frames[keep]), times[keep]
    feats, black = key_features(video_channels(frames, times))
    labels = key_down(perf.notes(), times)
    feats, labels = feats[::stride], labels[::stride]
    n = feats.shape[0]
    return (feats.reshape(n * 88, -1), labels.reshape(-1), np.tile(black, n))


def probe(
    corpus: Path, sizes: list[tuple[int, int]], n_train: int, n_val: int, seconds: float,
    stride: int, seed: int,
) -> dict:  # fmt: skip
    """Fit and score the key-down classifier for each size (see the module docstring).

    Returns:
        ``{"sizes": {"WxH": {"white": {...}, "black": {...}}}, ...}`` with ``average_precision``,
        ``roc_auc`` and the positive share per colour, and the performances used.
    Raises:
        ValueError: fewer performances in a split than asked for.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score
    from tqdm import tqdm

    from avfusion.data import list_performances

    train = list_performances(corpus, "train")[:n_train]
    val = list_performances(corpus, "validation")[:n_val]
    if len(train) < n_train or len(val) < n_val:
        raise ValueError(
            f"{corpus}: {len(train)} training and {len(val)} validation performances, "
            f"asked for {n_train} and {n_val}"
        )
    result: dict = {
        "train": [p.id for p in train], "validation": [p.id for p in val], "seconds": seconds,
        "stride": stride, "seed": seed, "sizes": {},
    }  # fmt: skip
    for size in sizes:
        name = f"{size[0]}x{size[1]}"
        t0 = time.time()
        rows = {}
        for split, perfs in (("train", train), ("validation", val)):
            parts = [performance_rows(p, size, seconds, stride)
                     for p in tqdm(perfs, desc=f"{name} {split}", unit="perf")]  # fmt: skip
            rows[split] = [np.concatenate(a) for a in zip(*parts, strict=True)]
        scores = {}
        for colour, is_black in (("white", False), ("black", True)):
            x, y, b = rows["train"]
            clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, random_state=seed)
            clf.fit(x[b == is_black], y[b == is_black])
            xv, yv, bv = rows["validation"]
            p = clf.predict_proba(xv[bv == is_black])[:, 1]
            scores[colour] = {
                "average_precision": float(average_precision_score(yv[bv == is_black], p)),
                "roc_auc": float(roc_auc_score(yv[bv == is_black], p)),
                "positive_share": float(yv[bv == is_black].mean()),
                "n_features": int(x.shape[1]),
            }
        scores["wall_s"] = round(time.time() - t0, 1)
        result["sizes"][name] = scores
        print(name, json.dumps(scores), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--sizes", type=parse_size, nargs="+", default=[(416, 40), (624, 80)])
    ap.add_argument("--train-performances", type=int, default=12)
    ap.add_argument("--val-performances", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=30.0, help="first seconds of each video")
    ap.add_argument("--stride", type=int, default=2, help="every n-th video frame")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    try:
        result = probe(args.corpus, args.sizes, args.train_performances, args.val_performances,
                       args.seconds, args.stride, args.seed)  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from avfusion.fileio import write_json

    print(f"wrote {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
