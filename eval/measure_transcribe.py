"""Speed and memory of ``avfusion transcribe`` on long videos: real-time factor and peak RSS.

    python -m eval.measure_transcribe --minutes 5 20 --modes fusion audio \\
        --out experiments/runs/transcribe-speed/metrics.json

For each length, a test-split performance of the corpus (video.mp4: H.264 + AAC) is looped to
that length by copying its packets with shifted timestamps (no re-encoding; each loop starts on
the source's first key frame; audio packets past the video's end are dropped so the streams
stay in step) into a temporary mp4. Each (mode, length) then runs ``avfusion transcribe`` in a
fresh Python process; its peak resident memory and CPU time come from ``os.wait4`` (that child
alone), its wall time from the parent, and the transcription's own time (without Python and
torch start-up) from the command's log line. The models are the bundled ones, or, when those
are missing, random weights of ``--fallback-preset`` (labelled so in the JSON: speed only, the
notes mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from avfusion.fileio import atomic_path


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """:func:`eval.machine.machine`'s record, with the memory, ``OMP_NUM_THREADS`` and the load
    average before and after the runs (other jobs on the machine slow the wall times)."""
    from eval.machine import machine as machine_record

    rec = machine_record()
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        rec["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, StopIteration):
        pass
    rec["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    rec["load_average_1_5_15_before"] = [round(x, 2) for x in load_before]
    rec["load_average_1_5_15_after"] = [round(x, 2) for x in os.getloadavg()]
    return rec


def loop_video(src: Path, dst: Path, target_s: float) -> dict[str, float]:
    """Write ``dst``: ``src``'s video and audio packets repeated until ``target_s`` seconds.

    Returns:
        ``{"duration_s", "loops", "source_s"}``.
    Raises:
        ValueError: the source has no video stream.
    """
    import av

    with av.open(str(src)) as c:
        v = c.streams.video[0]
        n_frames = sum(1 for p in c.demux(v) if p.dts is not None)
        fps = float(v.average_rate)
    loop_s = n_frames / fps
    loops = max(1, math.ceil(target_s / loop_s))
    with atomic_path(dst) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        with av.open(str(src)) as c:
            streams = [c.streams.video[0], *c.streams.audio[:1]]
            outs = {s.index: out.add_stream_from_template(s) for s in streams}
        for k in range(loops):
            with av.open(str(src)) as c:
                streams = [c.streams.video[0], *c.streams.audio[:1]]
                for p in c.demux(*streams):
                    if p.dts is None or p.pts is None or p.time_base is None:
                        continue
                    tb = p.time_base
                    if (
                        p.stream.type == "audio"
                        and float((p.pts + (p.duration or 0)) * tb) > loop_s
                    ):
                        continue  # keep the audio within the loop: no drift, no overlap
                    shift = round(k * loop_s / tb)
                    p.pts += shift
                    p.dts += shift
                    p.stream = outs[p.stream.index]
                    out.mux(p)
    return {"duration_s": loops * loop_s, "loops": loops, "source_s": loop_s}


FALLBACK_DECODE = {"onset_threshold": 0.9, "frame_threshold": 0.9}
"""Thresholds stored with random-weight checkpoints: few notes, as from real music, rather
than a note on every key and frame (which would time MIDI writing, not transcription)."""


def random_checkpoints(folder: Path, preset_name: str) -> dict[str, Path]:
    """Random-weight checkpoints of a preset for the three modes (speed measurements only)."""
    import torch

    from avfusion.model import AVTranscriber, preset, save_checkpoint

    torch.manual_seed(0)
    extra = {"decode": FALLBACK_DECODE, "random_weights": True}
    return {
        m: save_checkpoint(AVTranscriber(preset(preset_name, mode=m)), folder / m, extra=extra)
        for m in ("fusion", "audio", "video")
    }


_INFO = re.compile(
    r"(?P<mode>fusion|audio|video) mode.*?; (?P<notes>\d+) notes; (?P<dur>[\d.]+) s in "
    r"(?P<wall>[\d.]+) s on (?P<dev>\S+) \(real-time factor (?P<rtf>[\d.]+)\)"
)


def run_one(cmd: list[str], log_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process; its wall time, CPU time and peak RSS, and what its log
    line says about the transcription."""
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text()
    m = _INFO.search(text)
    rec: dict[str, Any] = {
        "exit_code": proc.returncode,
        "process_wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
    }
    if m:
        rec.update(
            mode_used=m["mode"],
            n_notes=int(m["notes"]),
            transcribe_wall_s=float(m["wall"]),
            device=m["dev"],
            real_time_factor=float(m["rtf"]),
        )
    else:
        rec["log_tail"] = text[-2000:]
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", nargs="+", type=float, default=[5.0, 20.0])
    ap.add_argument("--modes", nargs="+", default=["fusion", "audio"],
                    choices=["fusion", "audio", "video"])  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--piece", help="test-split performance id (default: the first)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the long videos (default: a temporary folder)")  # fmt: skip
    ap.add_argument("--checkpoint", action="append", default=[], metavar="MODE=PATH",
                    help="use this checkpoint folder for MODE (repeat per mode)")  # fmt: skip
    ap.add_argument("--fallback-preset", default="tiny",
                    help="random-weight preset when the bundled models are missing (default tiny)")  # fmt: skip
    ap.add_argument("--extra-args", default="",
                    help="more arguments for avfusion transcribe, e.g. '--batch-size 16'")  # fmt: skip
    args = ap.parse_args(argv)
    load_before = os.getloadavg()

    from avfusion.data import list_performances
    from avfusion.transcribe import TranscriptionError, default_checkpoint

    try:
        perfs = list_performances(args.corpus, "test")
    except (FileNotFoundError, ValueError) as e:  # no corpus there, or no test split
        ap.error(f"--corpus: {e}")
    perf = next((p for p in perfs if p.id == args.piece), None) if args.piece else perfs[0]
    if perf is None:
        raise SystemExit(f"{args.piece}: not in the test split of {args.corpus}")
    work_ctx = tempfile.TemporaryDirectory(prefix="avfusion-speed-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    try:
        given = dict(c.split("=", 1) for c in args.checkpoint)
        checkpoints: dict[str, Path] = {m: Path(p) for m, p in given.items()}
        labels = {m: f"given: {p}" for m, p in given.items()}
        fallback: dict[str, Path] | None = None
        for m in args.modes:
            if m in checkpoints:
                continue
            try:
                checkpoints[m], labels[m] = default_checkpoint(m), "bundled"
            except TranscriptionError:
                if fallback is None:
                    fallback = random_checkpoints(work / "checkpoints", args.fallback_preset)
                checkpoints[m] = fallback[m]
                labels[m] = (
                    f"random weights, preset {args.fallback_preset}, decode {FALLBACK_DECODE} "
                    "(bundled model missing: speed only)"
                )
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        runs = []
        for minutes in args.minutes:
            video = work / f"{perf.id}-{minutes:g}min.mp4"
            t0 = time.perf_counter()
            made = loop_video(perf.folder / "video.mp4", video, minutes * 60)
            print(f"{video.name}: {made['duration_s']:.0f} s, {made['loops']} loops "
                  f"({time.perf_counter() - t0:.0f} s to build)", flush=True)  # fmt: skip
            for mode in args.modes:
                cmd = [sys.executable, "-m", "avfusion.cli", "transcribe", str(video),
                       "-o", str(work / f"{mode}-{minutes:g}.mid"), "--mode", mode,
                       "--checkpoint", str(checkpoints[mode]), "--device", args.device,
                       "--no-progress", *shlex.split(args.extra_args)]  # fmt: skip
                rec = run_one(cmd, work / f"{mode}-{minutes:g}.log", env)
                rec.update(minutes=minutes, mode=mode, input_s=round(made["duration_s"], 2),
                           input_bytes=video.stat().st_size,
                           command=shlex.join(["avfusion", *cmd[3:]]))  # fmt: skip
                runs.append(rec)
                print(json.dumps(rec), flush=True)
            video.unlink()
    finally:
        if work_ctx:
            work_ctx.cleanup()
    record = {
        "what": "avfusion transcribe on a looped test-split performance, one process per run",
        "source": {
            "piece": perf.id,
            "split": "test",
            "duration_s": perf.duration_s,
            "fps": perf.fps,
        },
        "checkpoints": labels,
        "command": shlex.join(
            [
                Path(sys.executable).name,
                "-m",
                "eval.measure_transcribe",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "machine": machine(load_before),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
