"""Pack a corpus and noise bank small enough to travel to a lent GPU machine in two calls, and
unpack them there (the ``gpu-base`` run; see ``experiments/gpu-base/README.md``).

A device call carries the whole working tree (tracked and untracked, not ignored: about 29 MB)
plus the folders it names, 64 MiB in all, and the machine has PyTorch and Lightning but not our
audio and MIDI packages. The training split is ~1 GB of video and 90 MB of FLAC, so what
travels is what training reads, compressed, in two parts:

* part 1 (``.gpu/p1``, the first call: unpack and smoke tests): ``site.tgz``, the missing Python
  packages installed here for the device's Python (3.12, x86-64) with pretty_midi's 6 MB
  soundfont left out; the cached rectified keyboard frames (uint8 (N, 40, 416) per
  performance) as H.264 (``--crf``), their timestamps, the MIDI, meta and manifest files; the
  noise bank's train half and the audio of ``--smoke`` training performances and one
  validation performance as Opus (``--opus-level``; a small corpus for a real training smoke
  test).
* part 2 (``.gpu/p2``, the second call: training): the other performances' audio as Opus.

``pack`` fills missing frame caches first (`avfusion.data.rectified_frames`) and refuses (exit
2) when the tree and a part together would not fit under the limit, less a margin for files
written before the call. ``size`` re-checks the packed parts against the tree as it is now.
``unpack`` decodes a part into a corpus folder with the frame cache filled and FLAC audio
(``--part 1`` also writes the smoke corpus ``<dest>/smoke``, links into the corpus). The
audio is therefore Opus-coded once: a lossy step that the CPU-trained models did not have
(training degrades the sound far more, e.g. MP3 at 32 kb/s). The test split never travels.

    python experiments/gpu-base/transfer.py wheels --out .gpu/whl
    python experiments/gpu-base/transfer.py pack --corpus data/corpus --bank data/noise \\
        --wheels .gpu/whl --out .gpu --val 8
    python experiments/gpu-base/transfer.py size --out .gpu
    python experiments/gpu-base/transfer.py unpack --src .gpu --dest /root/avdata --part 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

RECT_W, RECT_H = 416, 40
RECT = f"rect_{RECT_W}x{RECT_H}"
CALL_LIMIT_BYTES = 64 * 2**20
"""What one device call may carry: the working tree and the carried folders together."""
MARGIN_BYTES = 2**20
"""Kept free under the limit for files written between ``pack`` and the call."""
DEVICE_PIP_TARGET = (
    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
    "--platform", "manylinux1_x86_64",
)  # fmt: skip
"""pip options that fetch or install wheels for the device's Python (3.12 on x86-64), whatever
runs here."""
DEVICE_WHEELS = (
    "nnaudio==0.3.4", "librosa==0.11.0", "audioread==3.1.0", "decorator==5.3.2", "pooch==1.9.0",
    "platformdirs==4.14.9", "soundfile==0.14.0", "cffi==2.1.1", "pycparser==3.12", "soxr==1.1.0",
    "mido==1.3.3", "pretty_midi==0.2.11.post0", "importlib_resources==7.1.0", "mir_eval==0.8.2",
    "audiomentations==0.43.1", "numpy-minmax==0.6.0", "numpy-rms==0.7.0", "python-stretch==0.3.1",
    "fast-mp3-augment==0.2.0",
)  # fmt: skip
"""What training needs that the device image lacks (the device tool's KINDS.md): the versions
rehearsed on Python 3.12 (experiments/gpu-base/README.md)."""


def download_wheels(dst: Path) -> None:
    """Fetch :data:`DEVICE_WHEELS` for the device's Python into ``dst`` (pip, from PyPI)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *DEVICE_PIP_TARGET,
                    "-d", str(dst), *DEVICE_WHEELS], check=True)  # fmt: skip


def tree_bytes(repo: Path = Path(".")) -> int:
    """Bytes of the files a device call sends whatever it carries: tracked, and untracked but
    not ignored (``git ls-files -co --exclude-standard``)."""
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo,
                         check=True, capture_output=True).stdout  # fmt: skip
    paths = [repo / p for p in out.decode().split("\0") if p]
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def check_sizes(out: Path, repo: Path = Path(".")) -> bool:
    """Print what each call would carry (tree + part) against the limit; True if both fit."""
    from avfusion.synth.corpus import folder_size_bytes

    tree = tree_bytes(repo)
    ok = True
    for part in ("p1", "p2"):
        size = folder_size_bytes(out / part)
        total = tree + size
        fits = total <= CALL_LIMIT_BYTES - MARGIN_BYTES
        ok &= fits
        print(f"call carrying {out / part}: tree {tree / 1e6:.1f} MB + part {size / 1e6:.1f} MB "
              f"= {total / 2**20:.1f} MiB of {CALL_LIMIT_BYTES / 2**20:.0f} MiB "
              f"({'fits' if fits else 'TOO LARGE'}, margin {MARGIN_BYTES / 2**20:.0f} MiB)")  # fmt: skip
    return ok


def _read_manifest(corpus: Path) -> list[dict[str, Any]]:
    """The records of ``corpus/manifest.jsonl``, one a line."""
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]


def _write_manifest(corpus: Path, records: list[dict[str, Any]]) -> None:
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _fill_frame_cache(perf: Any) -> None:
    """Make the rectified-frame cache of ``perf`` (an `avfusion.data.Performance`)."""
    from avfusion.data import rectified_frames

    rectified_frames(perf, RECT_W, RECT_H)


def _encode_frames(args: tuple[str, str, int]) -> int:
    import av  # PyAV, here only

    src, dst, crf = args
    frames = np.load(src, mmap_mode="r")
    with av.open(dst + ".tmp", "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            img = av.VideoFrame.from_ndarray(np.repeat(np.asarray(f)[:, :, None], 3, 2), "rgb24")
            for p in s.encode(img):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    Path(dst + ".tmp").rename(dst)
    return len(frames)


def _encode_audio(args: tuple[str, str, float]) -> None:
    import soundfile as sf

    src, dst, level = args
    x, sr = sf.read(src, dtype="float32")
    sf.write(dst + ".tmp", x, sr, format="OGG", subtype="OPUS", compression_level=level)
    Path(dst + ".tmp").rename(dst)


def build_site(wheels: Path, dst: Path) -> None:
    """``dst`` (a .tgz): the wheels in ``wheels`` installed for the device's Python, without
    pretty_midi's soundfont (6 MB; training never synthesises), tests and caches."""
    whl = sorted(wheels.glob("*.whl"))
    if not whl:
        raise SystemExit(f"{wheels}: no wheels (see experiments/gpu-base/README.md)")
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                        *DEVICE_PIP_TARGET, "--target", str(site), *map(str, whl)],
                       check=True)  # fmt: skip
        for junk in [*site.rglob("*.sf2"), *site.rglob("__pycache__"), *site.glob("*/tests")]:
            shutil.rmtree(junk) if junk.is_dir() else junk.unlink()
        with tarfile.open(str(dst) + ".tmp", "w:gz") as tar:
            tar.add(site, arcname="site")
    Path(str(dst) + ".tmp").rename(dst)


def pack(corpus: Path, bank: Path, wheels: Path | None, out: Path, n_val: int, n_smoke: int,
         crf: int, opus_level: float) -> bool:  # fmt: skip
    """Write ``out/p1`` and ``out/p2`` (module docstring); True if each call fits. Without
    ``wheels`` no ``site.tgz`` (a rehearsal where the packages are installed)."""
    from avfusion.synth.corpus import folder_size_bytes

    recs = _read_manifest(corpus)
    train = [r for r in recs if r["split"] == "train"]
    val = [r for r in recs if r["split"] == "validation"][:n_val]
    keep = train + val
    smoke = {r["id"] for r in train[:n_smoke] + val[:1]}
    p1, p2 = out / "p1", out / "p2"
    for p in (p1, p2):
        shutil.rmtree(p, ignore_errors=True)
    (p1 / "corpus").mkdir(parents=True)
    p2.mkdir(parents=True)
    if wheels is not None:
        build_site(wheels, p1 / "site.tgz")
    _write_manifest(p1 / "corpus", keep)
    (p1 / "smoke.txt").write_text("".join(f"{i}\n" for i in sorted(smoke)))
    if (corpus / "corpus.json").is_file():  # how `avfusion synth` made it
        shutil.copy(corpus / "corpus.json", p1 / "corpus")
    from avfusion.data import list_performances

    perfs = {p.id: p for split in ("train", "validation") for p in list_performances(corpus, split)}
    cache_jobs, frame_jobs, audio_jobs = [], [], []
    for r in keep:
        d = p1 / "corpus" / r["split"] / r["id"]
        d.mkdir(parents=True)
        for k in ("notes", "meta"):
            shutil.copy(corpus / r["paths"][k], d)
        cache = corpus / ".cache" / RECT / r["split"]
        if not (cache / f"{r['id']}.npy").is_file():
            cache_jobs.append(perfs[r["id"]])
        (p1 / "frames" / r["split"]).mkdir(parents=True, exist_ok=True)
        frame_jobs.append((str(cache / f"{r['id']}.npy"),
                           str(p1 / "frames" / r["split"] / f"{r['id']}.mp4"), crf))  # fmt: skip
        part = p1 if r["id"] in smoke else p2
        (part / "audio" / r["split"]).mkdir(parents=True, exist_ok=True)
        audio_jobs.append((str(corpus / r["paths"]["audio"]),
                           str(part / "audio" / r["split"] / f"{r['id']}.ogg"), opus_level))  # fmt: skip
    man = json.loads((bank / "manifest.json").read_text())
    man["entries"] = [e for e in man["entries"] if e["half"] == "train"]
    (p1 / "noise").mkdir(parents=True)
    (p1 / "noise" / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    for e in man["entries"]:
        dst = p1 / "noise" / (e["path"] + ".ogg")
        dst.parent.mkdir(parents=True, exist_ok=True)
        audio_jobs.append((str(bank / e["path"]), str(dst), opus_level))
    with ProcessPoolExecutor() as ex:
        list(ex.map(_fill_frame_cache, cache_jobs))
        for r in keep:  # the caches that existed and those just made
            times = corpus / ".cache" / RECT / r["split"] / f"{r['id']}.times.npy"
            shutil.copy(times, p1 / "frames" / r["split"])
        n = sum(ex.map(_encode_frames, frame_jobs))
        list(ex.map(_encode_audio, audio_jobs))
    print(f"packed {len(keep)} performances ({len(val)} validation, {len(smoke)} with their audio "
          f"in part 1), {n} frames at CRF {crf}, {len(man['entries'])} noise files, Opus level "
          f"{opus_level} into {out}: part 1 {folder_size_bytes(p1) / 1e6:.1f} MB, part 2 "
          f"{folder_size_bytes(p2) / 1e6:.1f} MB")  # fmt: skip
    return check_sizes(out)


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


def _audio_jobs(part: Path, corpus: Path) -> list[tuple[str, str]]:
    recs = _read_manifest(corpus)
    return [
        (str(ogg), str(corpus / r["paths"]["audio"]))
        for r in recs
        if (ogg := part / "audio" / r["split"] / f"{r['id']}.ogg").is_file()
    ]


def _refresh_sha256(corpus: Path, noise: Path | None) -> None:
    """Manifests whose sha256 entries match the decoded audio that is there so far."""
    from avfusion.fileio import sha256_file

    recs = _read_manifest(corpus)
    for r in recs:
        if (corpus / r["paths"]["audio"]).is_file():
            r["sha256"]["audio"] = sha256_file(corpus / r["paths"]["audio"])
    _write_manifest(corpus, recs)
    if noise is not None:
        man = json.loads((noise / "manifest.json").read_text())
        for e in man["entries"]:
            e["sha256"] = sha256_file(noise / e["path"])
        (noise / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")


def _smoke_corpus(src: Path, dest: Path) -> None:
    """``dest/smoke``: the performances whose audio came in part 1, as a corpus of links."""
    corpus, smoke = dest / "corpus", dest / "smoke"
    ids = set((src / "p1" / "smoke.txt").read_text().split())
    recs = _read_manifest(corpus)
    shutil.rmtree(smoke, ignore_errors=True)
    smoke.mkdir(parents=True)
    os.symlink(corpus / ".cache", smoke / ".cache")
    kept = [r for r in recs if r["id"] in ids]
    for r in kept:
        (smoke / r["split"]).mkdir(exist_ok=True)
        os.symlink(corpus / r["split"] / r["id"], smoke / r["split"] / r["id"])
    _write_manifest(smoke, kept)


def unpack(src: Path, dest: Path, part: int) -> None:
    """Decode part ``part`` of ``src`` into ``dest/corpus`` and ``dest/noise`` (module
    docstring). Raises ValueError when a frame cache's frames and timestamps disagree."""
    corpus, noise = dest / "corpus", dest / "noise"
    p = src / f"p{part}"
    jobs = []
    frame_jobs = []
    if part == 1:
        shutil.copytree(p / "corpus", corpus, dirs_exist_ok=True)
        for mp4 in sorted((p / "frames").glob("*/*.mp4")):
            cache = corpus / ".cache" / RECT / mp4.parent.name
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copy(mp4.with_suffix(".times.npy"), cache)
            frame_jobs.append((str(mp4), str(cache / f"{mp4.stem}.npy")))
        noise.mkdir(parents=True, exist_ok=True)
        shutil.copy(p / "noise" / "manifest.json", noise)
        man = json.loads((noise / "manifest.json").read_text())
        for e in man["entries"]:
            (noise / e["path"]).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(p / "noise" / (e["path"] + ".ogg")), str(noise / e["path"])))
    jobs += _audio_jobs(p, corpus)
    with ProcessPoolExecutor() as ex:
        list(ex.map(_decode_frames, frame_jobs))
        list(ex.map(_decode_audio, jobs))
    for _, dst in frame_jobs:  # the frame counts must match the timestamps
        n = len(np.load(dst, mmap_mode="r"))
        m = len(np.load(dst[: -len(".npy")] + ".times.npy"))
        if n != m:
            raise ValueError(f"{dst}: {n} decoded frames but {m} timestamps")
    _refresh_sha256(corpus, noise if part == 1 else None)
    if part == 1:
        _smoke_corpus(src, dest)
    print(f"part {part}: {len(frame_jobs)} frame caches, {len(jobs)} audio files into {dest}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--bank", type=Path, default=Path("data/noise"))
    p.add_argument("--wheels", type=Path, default=Path(".gpu/whl"))
    p.add_argument("--no-site", action="store_true",
                   help="no site.tgz (a local rehearsal, where the packages are installed)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path(".gpu"))
    p.add_argument("--val", type=int, default=8, help="validation performances to take")
    p.add_argument("--smoke", type=int, default=4,
                   help="training performances whose audio goes in part 1")  # fmt: skip
    p.add_argument("--crf", type=int, default=17, help="H.264 CRF of the frame caches")
    p.add_argument("--opus-level", type=float, default=0.85,
                   help="libsndfile's Opus compression level (higher: fewer bits)")  # fmt: skip
    w = sub.add_parser("wheels", help="fetch the packages the device lacks, as wheels")
    w.add_argument("--out", type=Path, default=Path(".gpu/whl"))
    s = sub.add_parser("size")
    s.add_argument("--out", type=Path, default=Path(".gpu"))
    u = sub.add_parser("unpack")
    u.add_argument("--src", type=Path, default=Path(".gpu"))
    u.add_argument("--dest", type=Path, required=True)
    u.add_argument("--part", type=int, choices=(1, 2), required=True)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        ok = pack(
            a.corpus,
            a.bank,
            None if a.no_site else a.wheels,
            a.out,
            a.val,
            a.smoke,
            a.crf,
            a.opus_level,
        )
        return 0 if ok else 2
    if a.cmd == "wheels":
        download_wheels(a.out)
        return 0
    if a.cmd == "size":
        return 0 if check_sizes(a.out) else 2
    unpack(a.src, a.dest, a.part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
