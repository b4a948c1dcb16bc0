"""Make the bundled demo input of `avfusion demo`: a test-split performance of a real
composition (held-out soundfont and camera) whose audio track is replaced by the same audio
degraded with other instruments playing at 0 dB (``music@0db``, test half of the noise bank),
the condition where audio-only transcription invents and loses notes.

    python -m eval.make_demo_input --corpus data/corpus --bank data/noise \\
        --piece 00007-beethoven-movement3 --condition music@0db --out avfusion/assets/demo

Writes ``performance.mp4`` (the video stream copied bit for bit, the degraded audio as AAC),
``reference.mid`` (the ground truth) and ``meta.json`` (source, condition, the degradation
record that replays it, and this command). The degradation is seeded from the piece and the
condition, so the same corpus and bank give the same audio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from avfusion.audio import load_audio
from avfusion.config import SAMPLE_RATE_HZ
from avfusion.fileio import atomic_path
from avfusion.noise import NoiseBank, degrade


def remux_with_audio(video_in: Path, audio: np.ndarray, out: Path, sample_rate_hz: int) -> None:
    """Copy the video stream of ``video_in`` and mux ``audio`` (float32 mono) as AAC, atomically.

    Raises:
        ValueError: ``video_in`` has no video stream.
    """
    import av

    with av.open(str(video_in)) as inp:
        if not inp.streams.video:
            raise ValueError(f"{video_in}: no video stream")
        vin = inp.streams.video[0]
        with atomic_path(out) as tmp:
            with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as dst:
                dst.metadata.clear()
                vout = dst.add_stream_from_template(vin)
                aout = dst.add_stream("aac", rate=sample_rate_hz, layout="mono")
                aout.bit_rate = 64_000
                aout.time_base = Fraction(1, sample_rate_hz)
                for packet in inp.demux(vin):
                    if packet.dts is None:
                        continue
                    packet.stream = vout
                    dst.mux(packet)
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(audio[None, :], np.float32), format="fltp", layout="mono"
                )
                frame.sample_rate = sample_rate_hz
                frame.pts = 0
                for packet in aout.encode(frame):
                    dst.mux(packet)
                for packet in aout.encode():
                    dst.mux(packet)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--bank", type=Path, default=Path("data/noise"))
    ap.add_argument("--piece", default="00007-beethoven-movement3")
    ap.add_argument("--condition", default="music@0db")
    ap.add_argument("--out", type=Path, default=Path("avfusion/assets/demo"))
    args = ap.parse_args(argv)

    folder = args.corpus / "test" / args.piece
    if not (folder / "meta.json").is_file():
        print(f"{folder}: not a test-split performance of this corpus", file=sys.stderr)
        return 2
    meta = json.loads((folder / "meta.json").read_text())
    clean = load_audio(folder / "audio.flac", SAMPLE_RATE_HZ)
    seed = zlib.crc32(f"{args.piece}|{args.condition}".encode())
    deg = degrade(
        clean, args.condition, np.random.default_rng(seed), bank=NoiseBank(args.bank), half="test"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    remux_with_audio(folder / "video.mp4", deg.audio, args.out / "performance.mp4", SAMPLE_RATE_HZ)
    with atomic_path(args.out / "reference.mid") as tmp:
        shutil.copyfile(folder / "notes.mid", tmp)
    info = {
        "piece_id": args.piece,
        "split": "test",
        "composition": meta.get("composition"),
        "source": meta.get("source"),
        "licence": meta.get("licence"),
        "soundfont": meta.get("soundfont"),
        "duration_s": meta.get("duration_s"),
        "fps": meta.get("fps"),
        "keyboard_corners_px": meta.get("keyboard_corners_px"),
        "condition": args.condition,
        "noise_bank_half": "test",
        "seed": seed,
        "degradation_record": deg.record,
        "command": "python -m eval.make_demo_input " + " ".join(argv or sys.argv[1:]),
    }
    with atomic_path(args.out / "meta.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1, default=str) + "\n")
    size = (args.out / "performance.mp4").stat().st_size
    print(f"wrote {args.out}/performance.mp4 ({size / 1e6:.2f} MB), reference.mid, meta.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
