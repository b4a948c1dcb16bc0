"""Pack a corpus and noise bank small enough to travel to a rented GPU machine, and unpack
them there (used for the ``gpu-base`` run; see ``experiments/gpu-base/README.md``).

The device takes at most 64 MiB per call, and the training split is ~1 GB of video and
90 MB of FLAC, so what travels is what training reads, compressed:

* part 1: the cached rectified keyboard frames (uint8 (N, 40, 416) per performance) as
  H.264 at CRF 10 (mean absolute error under one grey level), their timestamps, the MIDI,
  meta and manifest files.
* part 2: the reference audio and the noise bank's train half as Opus (libsndfile,
  compression level 0.8: ~57 kb/s at 16 kHz).

``unpack`` decodes it back into a corpus folder with the frame cache filled, FLAC audio,
and manifests whose sha256 entries match the new files. The audio is therefore Opus-coded
once: a lossy step that the CPU-trained models did not have (training degrades the sound
far more, e.g. MP3 at 32 kb/s). The test split never travels.

    python experiments/gpu-base/transfer.py pack --corpus data/corpus --bank data/noise \
        --out .gpu --val 8
    python experiments/gpu-base/transfer.py unpack --src .gpu --dest /root/avdata --part 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from avfusion.fileio import sha256_file

RECT = "rect_416x40"
OPUS_LEVEL = 0.8
CRF = 10


def _encode_frames(args: tuple[str, str]) -> int:
    import av  # PyAV, here only

    src, dst = args
    frames = np.load(src, mmap_mode="r")
    with av.open(dst + ".tmp", "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": str(CRF), "preset": "medium"}
        for f in frames:
            img = av.VideoFrame.from_ndarray(np.repeat(np.asarray(f)[:, :, None], 3, 2), "rgb24")
            for p in s.encode(img):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    Path(dst + ".tmp").rename(dst)
    return len(frames)


def _encode_audio(args: tuple[str, str]) -> None:
    import soundfile as sf

    src, dst = args
    x, sr = sf.read(src, dtype="float32")
    sf.write(dst + ".tmp", x, sr, format="OGG", subtype="OPUS", compression_level=OPUS_LEVEL)
    Path(dst + ".tmp").rename(dst)


def pack(corpus: Path, bank: Path, out: Path, n_val: int) -> None:
    recs = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    val = [r for r in recs if r["split"] == "validation"][:n_val]
    keep = [r for r in recs if r["split"] == "train"] + val
    p1, p2 = out / "p1", out / "p2"
    for p in (p1, p2):
        shutil.rmtree(p, ignore_errors=True)
    (p1 / "corpus").mkdir(parents=True)
    (p1 / "corpus" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    shutil.copy(corpus / "corpus.json", p1 / "corpus")
    frame_jobs, audio_jobs = [], []
    for r in keep:
        d = p1 / "corpus" / r["split"] / r["id"]
        d.mkdir(parents=True)
        for k in ("notes", "meta"):
            shutil.copy(corpus / r["paths"][k], d)
        cache = corpus / ".cache" / RECT / r["split"]
        (p1 / "frames" / r["split"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(cache / f"{r['id']}.times.npy", p1 / "frames" / r["split"])
        frame_jobs.append(
            (str(cache / f"{r['id']}.npy"), str(p1 / "frames" / r["split"] / f"{r['id']}.mp4"))
        )
        (p2 / "audio" / r["split"]).mkdir(parents=True, exist_ok=True)
        audio_jobs.append(
            (str(corpus / r["paths"]["audio"]), str(p2 / "audio" / r["split"] / f"{r['id']}.ogg"))
        )
    man = json.loads((bank / "manifest.json").read_text())
    man["entries"] = [e for e in man["entries"] if e["half"] == "train"]
    (p2 / "noise").mkdir(parents=True)
    (p2 / "noise" / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    for e in man["entries"]:
        dst = p2 / "noise" / (e["path"] + ".ogg")
        dst.parent.mkdir(parents=True, exist_ok=True)
        audio_jobs.append((str(bank / e["path"]), str(dst)))
    with ProcessPoolExecutor() as ex:
        n = sum(ex.map(_encode_frames, frame_jobs))
        list(ex.map(_encode_audio, audio_jobs))
    print(f"packed {len(keep)} performances ({len(val)} validation), {n} frames, "
          f"{len(man['entries'])} noise files into {out}")  # fmt: skip


def _decode_frames(args: tuple[str, str]) -> None:
    import cv2  # OpenCV is on the device; PyAV is not

    src, dst = args
    cap = cv2.VideoCapture(src)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    if not frames:
        raise ValueError(f"{src}: no frames decoded")
    np.save(dst + ".tmp.npy", np.stack(frames))
    Path(dst + ".tmp.npy").rename(dst)


def _decode_audio(args: tuple[str, str]) -> None:
    import soundfile as sf

    src, dst = args
    x, sr = sf.read(src, dtype="float32")
    sf.write(dst + ".tmp.flac", x, sr, subtype="PCM_16")
    Path(dst + ".tmp.flac").rename(dst)


def unpack(src: Path, dest: Path, part: int) -> None:
    corpus, noise = dest / "corpus", dest / "noise"
    if part == 1:
        shutil.copytree(src / "p1" / "corpus", corpus, dirs_exist_ok=True)
        jobs = []
        for mp4 in sorted((src / "p1" / "frames").glob("*/*.mp4")):
            cache = corpus / ".cache" / RECT / mp4.parent.name
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copy(mp4.with_suffix(".times.npy"), cache)
            jobs.append((str(mp4), str(cache / f"{mp4.stem}.npy")))
        with ProcessPoolExecutor() as ex:
            list(ex.map(_decode_frames, jobs))
        # the frame counts must match the timestamps
        for _, dst in jobs:
            n, m = (
                len(np.load(dst, mmap_mode="r")),
                len(np.load(dst[: -len(".npy")] + ".times.npy")),
            )
            if n != m:
                raise ValueError(f"{dst}: {n} decoded frames but {m} timestamps")
        print(f"part 1: {len(jobs)} frame caches in {corpus}")
    else:
        recs = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
        jobs = [
            (
                str(src / "p2" / "audio" / r["split"] / f"{r['id']}.ogg"),
                str(corpus / r["paths"]["audio"]),
            )
            for r in recs
        ]
        noise.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "p2" / "noise" / "manifest.json", noise)
        man = json.loads((noise / "manifest.json").read_text())
        for e in man["entries"]:
            (noise / e["path"]).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(src / "p2" / "noise" / (e["path"] + ".ogg")), str(noise / e["path"])))
        with ProcessPoolExecutor() as ex:
            list(ex.map(_decode_audio, jobs))
        for e in man["entries"]:
            e["sha256"] = sha256_file(noise / e["path"])
        (noise / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
        for r in recs:
            r["sha256"]["audio"] = sha256_file(corpus / r["paths"]["audio"])
        (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        print(f"part 2: {len(recs)} audio files in {corpus}, {len(man['entries'])} in {noise}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--bank", type=Path, default=Path("data/noise"))
    p.add_argument("--out", type=Path, default=Path(".gpu"))
    p.add_argument("--val", type=int, default=8, help="validation performances to take")
    u = sub.add_parser("unpack")
    u.add_argument("--src", type=Path, default=Path(".gpu"))
    u.add_argument("--dest", type=Path, required=True)
    u.add_argument("--part", type=int, choices=(1, 2), required=True)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        pack(a.corpus, a.bank, a.out, a.val)
    else:
        unpack(a.src, a.dest, a.part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
