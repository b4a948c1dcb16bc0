"""A contact sheet of a performance that a person can look at: video frames with the
ground-truth pressed keys outlined (green: key down per notes.mid), and the piano roll with
the frame times marked."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN
from avfusion.fileio import atomic_path
from avfusion.keyboard import key_polygon_mm, keyboard_corners_mm
from avfusion.midi import read_midi
from avfusion.video import iter_frames


def _frames_at(video: Path, times_s: list[float]) -> list[np.ndarray]:
    """The frames shown at ``times_s`` (RGB uint8), reading the stream once."""
    want = sorted(times_s)
    out: dict[float, np.ndarray] = {}
    for t, frame in iter_frames(video):
        for w in want:
            if w not in out and t + 1e-6 >= w:
                out[w] = frame
        if len(out) == len(want):
            break
    return [out[t] for t in times_s if t in out]


def make_preview(folder: str | Path, out_png: str | Path, n_frames: int = 6) -> Path:
    """Write a PNG contact sheet of the performance in ``folder``.

    Frames are taken at evenly spaced moments when many keys are down; on each, the keys that
    notes.mid says are down are outlined in green, projected with the keyboard corners of
    meta.json. Below, the piano roll (MIDI 21..108 against seconds) with the frame times.

    Raises:
        FileNotFoundError: the folder lacks video.mp4, notes.mid or meta.json.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    for f in ("video.mp4", "notes.mid", "meta.json"):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"{folder / f}: missing; not a complete performance folder")
    meta = json.loads((folder / "meta.json").read_text())
    notes = read_midi(folder / "notes.mid")
    fps = float(meta["fps"])
    roll = notes.key_roll(fps, round(meta["duration_s"] * fps))
    counts = roll.sum(axis=1)
    slots = np.array_split(np.arange(len(counts)), n_frames)
    idx = [int(s[np.argmax(counts[s])]) for s in slots if len(s)]
    times = [i / fps for i in idx]
    frames = _frames_at(folder / "video.mp4", times)
    h = cv2.getPerspectiveTransform(
        keyboard_corners_mm().astype(np.float32),
        np.array(meta["keyboard_corners_px"], dtype=np.float32),
    )
    cols = 3
    rows = int(np.ceil(len(frames) / cols))
    fig = plt.figure(figsize=(cols * 5.4, rows * 3.3 + 3.2), dpi=110)
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[3.0] * rows + [3.0])
    for k, (frame, i) in enumerate(zip(frames, idx, strict=False)):
        img = frame.copy()
        for key in np.flatnonzero(roll[i]):
            poly = key_polygon_mm(int(key) + MIDI_MIN).astype(np.float32)[None]
            px = cv2.perspectiveTransform(poly, h)[0]
            cv2.polylines(img, [np.round(px).astype(np.int32)], True, (0, 255, 0), 1, cv2.LINE_AA)
        ax = fig.add_subplot(grid[k // cols, k % cols])
        ax.imshow(img)
        ax.set_title(f"t = {times[k]:.2f} s, {int(roll[i].sum())} keys down", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[rows, :])
    ax.imshow(roll.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
              extent=(0, len(roll) / fps, MIDI_MIN - 0.5, MIDI_MAX + 0.5))  # fmt: skip
    for t in times:
        ax.axvline(t, color="tab:green", lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    title = meta.get("title") or meta.get("composition") or meta["source"]
    fig.suptitle(
        f"{meta['piece_id']} ({meta['split']}): {title}; {meta['soundfont']}, {meta['camera']} camera",
        fontsize=10,
    )
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out_png
