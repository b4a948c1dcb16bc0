"""Speed and memory of benchmark systems on the same clips, measured in one run.

    python -m eval.speed --systems avfusion-fusion avfusion-audio basic-pitch transkun \\
        --corpus data/corpus --performances 3 --seconds 20 --out experiments/results/speed/speed.json

Each system runs in a fresh Python process (so peak memory is its own: ``ru_maxrss`` of that
child from ``os.wait4``) on the first ``--seconds`` of the first ``--performances`` test-split
performances (clean audio; avfusion's video systems get the cached rectified frames, so video
decoding is not counted here: ``eval.measure_transcribe`` times the whole ``avfusion
transcribe`` pipeline). Reported per system: model load time, transcription wall time, real-time
factor (transcription time / audio duration), peak RSS, and both as ratios to Basic Pitch and to
Transkun when they are in the run. The machine record says CPU or GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from avfusion.fileio import write_json
from eval.machine import machine


def _worker(system_name: str, folders: list[Path], seconds: float, device: str) -> dict[str, Any]:
    """In the child: load the system, transcribe every clip, return the timings."""
    from avfusion.config import SAMPLE_RATE_HZ
    from eval.systems import make_system, performance_clip

    t0 = time.perf_counter()
    system = make_system(system_name, device=device)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        clips = [performance_clip(f, seconds, "video" in system.needs, Path(tmp)) for f in folders]
        audio_s = sum(len(c.audio) / SAMPLE_RATE_HZ for c in clips if c.audio is not None)
        t0 = time.perf_counter()
        for clip in clips:
            system.transcribe(clip)
        transcribe_s = time.perf_counter() - t0
    import resource

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"load_s": round(load_s, 3), "transcribe_s": round(transcribe_s, 3),
            "audio_s": round(audio_s, 3), "real_time_factor": round(transcribe_s / audio_s, 4),
            "peak_rss_mib": round(peak_mib, 1)}  # fmt: skip


def measure(system_name: str, folders: list[Path], seconds: float, device: str) -> dict[str, Any]:
    """Run :func:`_worker` for one system in a fresh process (its own peak RSS, MiB).

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    cmd = [sys.executable, "-m", "eval.speed", "--worker", system_name, "--seconds", str(seconds),
           "--device", device, "--folders", *map(str, folders)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{system_name}: exit {proc.returncode}: {proc.stderr[-1500:]}")
    rec: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--systems", nargs="+", default=["avfusion-fusion", "avfusion-audio", "basic-pitch", "transkun"])  # fmt: skip
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--performances", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--out", type=Path, default=Path("experiments/results/speed/speed.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--folders", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.folders, args.seconds, args.device)))
        return 0

    test = args.corpus / "test"
    if not test.is_dir():
        print(f"{test}: no test split (make it with `avfusion synth`)", file=sys.stderr)
        return 2
    folders = sorted(p for p in test.iterdir() if (p / "meta.json").is_file())[: args.performances]
    results: dict[str, Any] = {}
    for name in args.systems:
        try:
            results[name] = measure(name, folders, args.seconds, args.device)
        except RuntimeError as exc:
            print(f"eval.speed: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {results[name]}", flush=True)
    for ref in ("basic-pitch", "transkun"):
        if ref in results:
            for rec in results.values():
                rec[f"rtf_vs_{ref}"] = round(
                    rec["real_time_factor"] / results[ref]["real_time_factor"], 3
                )
                if rec["peak_rss_mib"] and results[ref]["peak_rss_mib"]:
                    rec[f"memory_vs_{ref}"] = round(
                        rec["peak_rss_mib"] / results[ref]["peak_rss_mib"], 3
                    )
    record = {"command": "python -m eval.speed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "device": args.device, "machine": machine(), "clips": [f.name for f in folders],
              "seconds_per_clip": args.seconds, "systems": results}  # fmt: skip
    print(f"wrote {write_json(args.out, record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
