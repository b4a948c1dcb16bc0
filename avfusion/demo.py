"""`avfusion demo`: the main job on the bundled default input.

The input (``avfusion/assets/demo/``, made by ``python -m eval.make_demo_input``) is a
test-split performance of a real composition, rendered with the held-out soundfont and camera,
whose audio track has other instruments playing at 0 dB (``music@0db`` from the test half of
the noise bank). The demo transcribes it with the bundled fusion and audio-only models, writes
the fusion MIDI and a PNG of the ground-truth and predicted piano rolls, and prints note-level
precision, recall and F1 (mir_eval, onset within 50 ms) of both against the ground truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.fileio import atomic_path
from avfusion.notes import Notes

ASSETS = Path(__file__).resolve().parent / "assets" / "demo"
DEMO_VIDEO = ASSETS / "performance.mp4"
DEMO_REFERENCE = ASSETS / "reference.mid"
DEMO_META = ASSETS / "meta.json"


def _matched(reference: Notes, estimate: Notes) -> set[int]:
    """Indices of ``estimate`` notes whose onset and pitch match a reference note
    (mir_eval.transcription.match_notes, 50 ms onset tolerance, offsets ignored)."""
    import mir_eval

    ref_i, ref_p, _ = reference.to_mir_eval()
    est_i, est_p, _ = estimate.to_mir_eval()
    if len(ref_i) == 0 or len(est_i) == 0:
        return set()
    pairs = mir_eval.transcription.match_notes(ref_i, ref_p, est_i, est_p, offset_ratio=None)
    return {j for _, j in pairs}


def plot_rolls(
    reference: Notes, estimates: dict[str, Notes], out_png: str | Path, title: str
) -> Path:
    """Ground-truth and predicted piano rolls, one panel per system, as a PNG.

    Each panel shows the ground truth as grey boxes and the system's notes on top: green where
    the onset and pitch match a ground-truth note (50 ms), red where they do not. Axes: seconds,
    MIDI pitch.

    Returns:
        ``out_png``, written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    end = max([reference.end_s, *(e.end_s for e in estimates.values()), 1.0])
    pitches = [n.pitch for n in reference.notes] or [60]
    lo, hi = min(pitches) - 3, max(pitches) + 3
    fig, axes = plt.subplots(len(estimates), 1, figsize=(12, 2.6 * len(estimates)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (name, est) in zip(axes, estimates.items(), strict=True):
        for n in reference.notes:
            ax.add_patch(Rectangle((n.onset_s, n.pitch - 0.5), n.offset_s - n.onset_s, 1.0,
                                   color="0.75", lw=0))  # fmt: skip
        hits = _matched(reference, est)
        for j, n in enumerate(est.notes):
            ax.add_patch(Rectangle((n.onset_s, n.pitch - 0.4), max(n.offset_s - n.onset_s, 0.02), 0.8,
                                   color="tab:green" if j in hits else "tab:red", alpha=0.8, lw=0))  # fmt: skip
        ax.set(xlim=(0, end), ylim=(lo, hi), ylabel="MIDI pitch")
        ax.set_title(f"{name}: {len(hits)} of {len(est)} notes correct, {len(reference)} in the "
                     "ground truth (grey)", fontsize=9, loc="left")  # fmt: skip
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return out_png


def run_demo(out_dir: str | Path = "runs/demo", device: str = "auto") -> dict[str, Any]:
    """Transcribe the bundled input with the bundled fusion and audio-only models.

    Writes ``OUT/demo-fusion.mid``, ``OUT/demo-audio.mid``, ``OUT/demo-rolls.png`` and
    ``OUT/demo-metrics.json``.

    Returns:
        ``{"fusion": metrics, "audio": metrics}`` with the keys of
        :func:`avfusion.metrics.transcription_metrics`.
    Raises:
        FileNotFoundError: the bundled input or models are missing from the installation.
    """
    from avfusion.metrics import transcription_metrics
    from avfusion.midi import read_midi
    from avfusion.transcribe import transcribe

    for f in (DEMO_VIDEO, DEMO_REFERENCE, DEMO_META):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: the bundled demo input is missing from this install")
    meta = json.loads(DEMO_META.read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reference = read_midi(DEMO_REFERENCE)
    estimates: dict[str, Notes] = {}
    scores: dict[str, Any] = {}
    for mode in ("fusion", "audio"):
        notes = transcribe(DEMO_VIDEO, mode=mode, device=device)
        notes.to_midi(out / f"demo-{mode}.mid")
        estimates[f"{mode}{' (audio + video)' if mode == 'fusion' else '-only'}"] = notes
        scores[mode] = transcription_metrics(reference, notes)
    title = (f"{meta['composition']} (test split, held-out soundfont and camera), audio: "
             f"{meta['condition']} (other instruments at 0 dB)")  # fmt: skip
    plot_rolls(reference, estimates, out / "demo-rolls.png", title)
    with atomic_path(out / "demo-metrics.json") as tmp:
        tmp.write_text(json.dumps({"input": meta["piece_id"], "condition": meta["condition"],
                                   "metrics": scores}, indent=1) + "\n")  # fmt: skip
    return scores


def main(out_dir: str | Path = "runs/demo", device: str = "auto") -> int:
    """Run the demo and print what a user needs: the input, the outputs, note P/R/F1."""
    meta = json.loads(DEMO_META.read_text()) if DEMO_META.is_file() else {}
    print(f"avfusion demo: {meta.get('composition', '?')} ({meta.get('piece_id', '?')}, test split), "
          f"audio degraded with {meta.get('condition', '?')}")  # fmt: skip
    try:
        scores = run_demo(out_dir, device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"avfusion demo: {exc}", file=sys.stderr)
        return 1
    print(f"{'model':<10}{'note precision':>16}{'recall':>8}{'F1':>7}")
    for mode, m in scores.items():
        print(f"{mode:<10}{m['note/precision']:>16.3f}{m['note/recall']:>8.3f}{m['note/f1']:>7.3f}")
    print(f"wrote {out_dir}/demo-fusion.mid, demo-audio.mid, demo-rolls.png, demo-metrics.json")
    return 0
