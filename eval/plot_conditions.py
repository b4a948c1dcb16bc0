"""Spectrograms of one clip under several degradation conditions (docs/noise-conditions.png).

    python -m eval.plot_conditions --bank data/noise --out docs/noise-conditions.png

The clip is 8 s of a Bach chorale (music21 corpus, bach/bwv269) performed by avfusion.synth
with the test split's soundfont; the conditions draw from the test half of the bank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avfusion.config import SAMPLE_RATE_HZ
from avfusion.fileio import atomic_path
from avfusion.noise import NoiseBank, degrade
from avfusion.synth.performance import PerformanceSpec, perform
from avfusion.synth.render_audio import draw_audio_params, render_audio

CONDITIONS = (
    "clean",
    "pink@0db",
    "babble@0db",
    "music@0db",
    "reverb@rt60=1.2",
    "mp3@16kbps",
    "dropout@30%",
    "pink@-10db",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bank", type=Path, default=Path("data/noise"))
    parser.add_argument("--out", type=Path, default=Path("docs/noise-conditions.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = PerformanceSpec(
        "plot", "test", "corpus", "bach/bwv269.mxl", seed=args.seed, target_s=8.0, camera="test"
    )
    notes, _ = perform(spec)
    audio = render_audio(notes, 8.0, draw_audio_params(np.random.default_rng(args.seed), "test"))
    bank = NoiseBank(args.bank)
    fig, axes = plt.subplots(
        len(CONDITIONS) // 2, 2, figsize=(12, 2.3 * len(CONDITIONS) // 2), sharex=True, sharey=True
    )
    for ax, cond in zip(axes.ravel(), CONDITIONS, strict=True):
        y = degrade(audio, cond, np.random.default_rng(args.seed), bank=bank, half="test").audio
        cqt = np.abs(
            librosa.cqt(
                y, sr=SAMPLE_RATE_HZ, hop_length=256, fmin=27.5, n_bins=88 * 2, bins_per_octave=24
            )
        )
        db = librosa.amplitude_to_db(cqt, ref=np.max)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-70, vmax=0,
                  extent=(0, len(y) / SAMPLE_RATE_HZ, 21, 109))  # fmt: skip
        for n in notes:
            if n.onset_s < 8.0:
                ax.plot(
                    [n.onset_s, min(n.offset_s, 8.0)],
                    [n.pitch + 0.5] * 2,
                    color="cyan",
                    lw=0.6,
                    alpha=0.6,
                )
        ax.set_title(cond, fontsize=10)
    for ax in axes[:, 0]:
        ax.set_ylabel("MIDI pitch (CQT)")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle(
        "One clip (bach/bwv269, MuseScore General piano) under eight conditions; cyan: ground-truth notes"
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
