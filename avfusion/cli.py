"""The ``avfusion`` command: one subcommand per public function (thin by design)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
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
    if args.hours is None and not args.midi_dir:
        raise ValueError(
            "give --hours H (corpus), --midi-dir DIR, --from-midi FILE or --preview ID"
        )
    from avfusion.synth.corpus import CorpusConfig, build_corpus, folder_size_bytes

    config = CorpusConfig(
        hours=args.hours or 0.0,
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
        shown = (
            rep.missing_keys if len(rep.missing_keys) <= 12 else f"{len(rep.missing_keys)} of 88"
        )
        print(f"keys never played: {shown}")
    print(f"skipped pieces: {len(rep.skipped)}")
    return 0


def _cmd_noise(args: argparse.Namespace) -> int:
    from avfusion.noise.conditions import KINDS

    if args.list:
        print(f"{'condition':<26}{'parameter':<14}{'range':<16}{'needs':<8}description")
        for k in KINDS.values():
            rng = f"[{k.lo:g}, {k.hi:g}]" if k.param else "-"
            print(f"{k.syntax:<26}{k.param or '-':<14}{rng:<16}{k.bank or '-':<8}{k.description}")
        print(
            "compose with '+', e.g. reverb@rt60=0.8+babble@5db; units: db = dB SNR, s, kbps, hz, %"
        )
        return 0
    if not (args.input and args.output and args.condition):
        raise ValueError("give IN OUT CONDITION (or --list)")
    import json

    import numpy as np

    from avfusion.audio import load_audio, write_audio
    from avfusion.fileio import atomic_path
    from avfusion.noise import NoiseBank, degrade, parse_condition

    steps = parse_condition(args.condition)  # bad text fails before any reading
    needs_bank = any(KINDS[s.name].bank for s in steps)
    bank = NoiseBank(args.bank) if needs_bank else None
    audio = load_audio(args.input)
    out = degrade(audio, steps, np.random.default_rng(args.seed), bank=bank, half=args.half)
    write_audio(args.output, out.audio)
    record = {"input": str(args.input), "condition": args.condition, "seed": args.seed, "half": args.half,
              "bank": str(args.bank) if needs_bank else None, "steps": out.record}  # fmt: skip
    sidecar = Path(str(args.output) + ".json")
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output} ({args.condition}, seed {args.seed}) and its record {sidecar}")
    return 0


def _cmd_noisebank(args: argparse.Namespace) -> int:
    import time

    from avfusion.noise import build_noise_bank
    from avfusion.synth.corpus import folder_size_bytes

    t0 = time.perf_counter()
    manifest = build_noise_bank(
        args.out, seed=args.seed, size=args.size, progress=not args.no_progress
    )
    size_mib = folder_size_bytes(Path(args.out)) / 2**20
    print(f"wrote {manifest}: {size_mib:.1f} MiB in {time.perf_counter() - t0:.0f} s")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from avfusion.train import TrainConfig, fine_tune_config, train

    if args.dataset is not None and not args.dataset_format:
        raise ValueError("--dataset needs --format NAME")
    if args.no_export and args.export_only:
        raise ValueError("--no-export and --export-only exclude each other")
    if args.dataset is None and args.init is None:
        if args.config is None:
            raise ValueError("give --config (or --init MODEL to start from a bundled model)")
        config = TrainConfig.from_yaml(args.config, mode=args.mode, max_steps=args.max_steps,
                                       max_time_min=args.max_time_min,
                                       num_workers=args.num_workers)  # fmt: skip
    else:
        config = fine_tune_config(
            args.config, init=args.init, dataset=args.dataset, dataset_format=args.dataset_format,
            allow_pickle=args.allow_pickle, mode=args.mode, max_steps=args.max_steps,
            max_time_min=args.max_time_min, num_workers=args.num_workers,
        )  # fmt: skip
    out = args.out or Path("runs") / f"{config.name}-{config.mode}"
    export = train(config, out, accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                   resume=not args.no_resume, progress=not args.no_progress,
                   export_only=args.export_only, export=not args.no_export)  # fmt: skip
    if args.no_export:
        print(f"trained; checkpoints in {export} (export later with --export-only)")
    else:
        print(f"exported {export}")
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from avfusion.transcribe import transcribe_files

    logger = logging.getLogger("avfusion")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrefixFormatter("avfusion transcribe"))
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with contextlib.ExitStack() as stack:
            if not args.no_progress:
                from tqdm.contrib.logging import logging_redirect_tqdm

                stack.enter_context(logging_redirect_tqdm(loggers=[logger]))
            results = transcribe_files(
                args.inputs,
                args.out,
                audio_path=args.audio,
                roll_path=args.roll,
                csv_path=args.notes,
                progress=not args.no_progress,
                mode=args.mode,
                keyboard=args.keyboard,
                offset_s=args.offset_s,
                checkpoint=args.checkpoint,
                device=args.device,
                batch_size=args.batch_size,
                onset_threshold=args.onset_threshold,
            )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    failed = [r for r in results if r.error is not None]
    for r in results:
        if r.error is None:
            print(f"wrote {', '.join(str(p) for p in r.outputs)}")
    if failed and len(results) > 1:
        print(
            f"avfusion transcribe: {len(failed)} of {len(results)} inputs failed: "
            + ", ".join(str(r.input) for r in failed),
            file=sys.stderr,
        )
    return 1 if failed else 0


class _PrefixFormatter(logging.Formatter):
    """``<prog>: message``, with ``warning:`` / ``error:`` before warnings and errors."""

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        level = {logging.WARNING: "warning: ", logging.ERROR: "error: "}.get(record.levelno, "")
        return f"{self.prog}: {level}{record.getMessage()}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from avfusion.demo import main as demo_main

    return demo_main(args.out, args.device)


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
        help="make the corpus from the MIDI files in this folder (one performance each, played as written) instead of music21",
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

    p = sub.add_parser(
        "noise",
        help="degrade an audio file with a named condition, or list the conditions",
        description="Apply a named, seeded degradation (as the benchmark does) and write its record beside the output (OUT.json).",
    )
    p.add_argument(
        "input", nargs="?", type=Path, help="input audio (any format soundfile or FFmpeg reads)"
    )
    p.add_argument("output", nargs="?", type=Path, help="output audio (.wav or .flac), 16 kHz mono")
    p.add_argument(
        "condition", nargs="?", help="e.g. pink@-5db, music@0db, reverb@rt60=0.8+babble@5db"
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the conditions with their parameter ranges and units",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--bank",
        type=Path,
        default=Path("data/noise"),
        help="noise bank folder (default data/noise)",
    )
    p.add_argument(
        "--half",
        choices=["train", "test"],
        default="test",
        help="bank half to draw from (default test, as the benchmark)",
    )
    p.set_defaults(func=_cmd_noise)

    p = sub.add_parser(
        "noisebank",
        help="build the offline noise bank (babble, music, hum, coloured noise, room impulse responses)",
        description="Make the noise bank with no download, split into train and test halves that share no source.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("data/noise"), help="bank folder (default data/noise)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--size",
        choices=["full", "tiny"],
        default="full",
        help="full, or tiny for tests (default full)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_noisebank)

    p = sub.add_parser(
        "train",
        help="train a model (Lightning) from a config in experiments/configs",
        description="Train, validate with mir_eval note F1, tune thresholds on validation, export safetensors + JSON. "
        "Resumes from OUT/checkpoints/last.ckpt after a kill.",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="YAML config, e.g. experiments/configs/cpu-small.yaml (optional with --init: "
        "the model's own training config)",
    )
    p.add_argument(
        "--mode", choices=["fusion", "audio", "video"], help="override the config's mode"
    )
    p.add_argument("--out", type=Path, help="run folder (default runs/NAME-MODE)")
    p.add_argument("--max-steps", type=int, help="override the config's max_steps")
    p.add_argument(
        "--max-time-min",
        type=float,
        help="override the config's max_time_min: stop after this many minutes of training, "
        "counted over resumed runs (Lightning's Timer)",
    )
    p.add_argument(
        "--dataset",
        type=Path,
        help="fine-tune on a real dataset folder (with --format) instead of the config's corpus: "
        "its train split, validated on its validation split",
    )
    p.add_argument(
        "--format",
        dest="dataset_format",
        help="the dataset's format: pianovam, omaps, pianoyt, audeo, maestro, maps "
        "(`avfusion datasets list`)",
    )
    p.add_argument(
        "--init",
        help="start from this model: a bundled one (fusion, audio, video, concat) or a "
        "checkpoint folder",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read Audeo's pickled labels (they can run code; off by default)",
    )
    p.add_argument("--accelerator", default="auto", help="auto, cpu or gpu (default auto)")
    p.add_argument(
        "--devices",
        default="auto",
        help="number of devices, e.g. 4 for DDP on 4 GPUs (default auto)",
    )
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)")
    p.add_argument(
        "--no-resume", action="store_true", help="start afresh even if a last.ckpt exists"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="override the config's num_workers: data-loading processes (e.g. to share one "
        "machine's cores between runs)",
    )
    p.add_argument(
        "--export-only",
        action="store_true",
        help="do not train: re-tune thresholds on validation and re-export the best checkpoint",
    )
    p.add_argument(
        "--no-export",
        action="store_true",
        help="train only (checkpoints, logs, learning curves): skip the export, which fits the "
        "rescorer and tunes thresholds on the CPU; run it later with --export-only",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "transcribe",
        help="transcribe piano videos (or audio files) to MIDI",
        description=(
            "Transcribe a piano performance to MIDI (notes with velocities, sustain pedal as "
            "CC64) from a video of the keyboard with its sound (fusion), its sound alone "
            "(audio) or the keyboard alone (video). The keyboard is found automatically and "
            "the audio-video offset estimated (within ±1 s); long videos are streamed in "
            "overlapping windows. Several inputs: OUT is a folder that gets <stem>.mid each; "
            "a failing input is reported and the others still run (exit code 1)."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="video (mp4, mkv, mov, webm …) or audio file (wav, flac, mp3, ogg: audio mode)",
    )
    p.add_argument(
        "-o",
        "--out",
        required=True,
        type=Path,
        help="output .mid file (one input) or folder (several inputs, or an existing folder)",
    )
    p.add_argument(
        "--audio",
        type=Path,
        metavar="FILE",
        help="take the audio from FILE instead of the video's own track (one input only)",
    )
    p.add_argument(
        "--mode",
        choices=["auto", "fusion", "audio", "video"],
        default="auto",
        help="auto (default): fusion when there is sound and a keyboard is found, audio when no "
        "keyboard is found, video when the video has no sound; with --checkpoint, its mode",
    )
    p.add_argument(
        "--keyboard",
        metavar="X1,Y1,X2,Y2,X3,Y3,X4,Y4",
        help="the keyboard's corners in pixels, clockwise from the back-left (top-left in a "
        "top-down view): back-left, back-right, front-right, front-left (default: detected)",
    )
    p.add_argument(
        "--onset-threshold",
        type=float,
        metavar="P",
        help="a fixed onset threshold (probability 0..1) instead of the model's own decoder "
        "(tuned on validation: fixed, or adaptive per 30 s block)",
    )
    p.add_argument(
        "--offset-s",
        type=float,
        metavar="S",
        help="audio-video offset in seconds, t_audio - t_video (default: estimated within "
        "±1 s in fusion mode)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="model folder (model.safetensors + config.json; default: the bundled model of "
        "the mode, avfusion/models/MODE)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (default: CUDA if available), cpu, cuda or cuda:N"
    )
    p.add_argument(
        "--batch-size", type=int, help="windows per forward pass (default 2 on CPU, 32 on CUDA)"
    )
    p.add_argument(
        "--roll",
        type=Path,
        metavar="PNG",
        help="also draw a piano roll (a folder with several inputs)",
    )
    p.add_argument(
        "--notes",
        type=Path,
        metavar="CSV",
        help="also write the notes as CSV: onset_s,offset_s,pitch,velocity (a folder with "
        "several inputs)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser(
        "demo",
        help="transcribe the bundled example (test split, other instruments at 0 dB) and score it",
        description="Transcribe the bundled performance with the bundled fusion and audio-only "
        "models; write MIDI and a PNG of the piano rolls; print note P/R/F1 of each.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.set_defaults(func=_cmd_demo)

    # Subcommands that live beside their code: each module defines add_subparser(sub), which
    # adds its parser and sets ``func`` (heavy imports such as Gradio stay inside ``func``).
    for module in _MODULE_COMMANDS:
        importlib.import_module(module).add_subparser(sub)
    return parser


_MODULE_COMMANDS = ("avfusion.resynth", "avfusion.app", "avfusion.datasets.cli")
"""Modules that add their own ``avfusion`` subcommand: resynth, serve, datasets."""


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
