"""The ``avfusion`` command: one subcommand per public function (thin by design)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_synth(args: argparse.Namespace) -> int:
    if args.from_midi:
        from avfusion.synth.performance import synthesize_from_midi

        meta = synthesize_from_midi(
            args.from_midi, args.out, soundfont=args.soundfont, camera=args.camera, seed=args.seed
        )
        print(f"wrote {args.out}: {meta['n_notes']} notes, {meta['duration_s']:.1f} s, "
              f"{meta['soundfont']}, {meta['camera']} camera")  # fmt: skip
        return 0
    if args.preview:
        from avfusion.synth.corpus import find_performance
        from avfusion.synth.preview import make_preview

        folder = find_performance(Path(args.out), args.preview)
        png = Path(args.preview_out or Path(args.out) / "previews" / f"{folder.name}.png")
        make_preview(folder, png)
        print(f"wrote {png}")
        return 0
    if args.hours is None:
        raise ValueError("give --hours H (corpus), --from-midi FILE or --preview ID")
    from avfusion.synth.corpus import CorpusConfig, build_corpus, folder_size_bytes

    config = CorpusConfig(
        hours=args.hours,
        seed=args.seed,
        size_px=(args.width, args.height),
        midi_dir=str(args.midi_dir) if args.midi_dir else None,
    )
    rep = build_corpus(args.out, config, workers=args.workers, progress=not args.no_progress)
    hours = {k: round(v / 3600, 3) for k, v in rep.seconds_by_split.items()}
    speed = rep.rendered_s / rep.wall_s / rep.workers if rep.wall_s > 0 and rep.written else 0.0
    print(f"corpus {args.out}: {rep.written} written, {rep.already_done} already complete, "
          f"{len(rep.skipped)} skipped")  # fmt: skip
    print(
        f"hours by split: {hours}; size on disk {folder_size_bytes(Path(args.out)) / 2**20:.1f} MiB"
    )
    print(
        f"synth speed: {speed:.2f} s of performance per s per worker ({rep.workers} workers, {rep.wall_s:.0f} s)"
    )
    if rep.missing_keys:
        print(f"keys never played: {rep.missing_keys}")
    print(f"skipped pieces: {len(rep.skipped)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    print("avfusion demo: not built yet (the transcribe issue adds the bundled models and input)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``avfusion`` command."""
    parser = argparse.ArgumentParser(
        prog="avfusion",
        description="Audio-visual piano transcription that survives degraded audio.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "synth",
        help="make a synthetic audio-visual piano corpus, or one performance from a MIDI file",
        description=(
            "Render performances (video.mp4 with audio, audio.flac 16 kHz mono, notes.mid, "
            "meta.json) of real compositions from the music21 corpus, humanised, with sampled "
            "pianos (FluidSynth) and a rendered top-down keyboard video. Resumable: run the "
            "same command again after an interruption."
        ),
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="corpus folder (or performance folder with --from-midi)",
    )
    p.add_argument("--hours", type=float, help="total duration of performances to make (hours)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, same corpus (default 0)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="parallel rendering processes (default 1)"
    )
    p.add_argument("--width", type=int, default=640, help="video width in pixels (default 640)")
    p.add_argument("--height", type=int, default=360, help="video height in pixels (default 360)")
    p.add_argument(
        "--midi-dir",
        type=Path,
        help="make the corpus from the MIDI files in this folder instead of music21",
    )
    p.add_argument(
        "--from-midi",
        type=Path,
        metavar="FILE",
        help="render one performance of this MIDI file into --out",
    )
    p.add_argument(
        "--soundfont", help="with --from-midi: fluidr3, timgm6mb, musescore or an .sf2/.sf3 path"
    )
    p.add_argument(
        "--camera",
        choices=["train", "test"],
        default="train",
        help="with --from-midi: camera ranges (default train)",
    )
    p.add_argument(
        "--preview",
        metavar="ID",
        help="write a PNG contact sheet of performance ID of the corpus --out",
    )
    p.add_argument(
        "--preview-out", type=Path, help="with --preview: PNG path (default OUT/previews/ID.png)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("demo", help="transcribe the bundled example (not built yet)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``avfusion`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError) as exc:
        print(f"avfusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"avfusion {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
