"""Training through the CLI: a tiny config runs, is killed after a checkpoint, resumes, and
exports a model that loads back."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avfusion.midi import write_midi
from avfusion.synth.corpus import CorpusConfig, build_corpus
from tests.conftest import make_notes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    mids = root / "midis"
    mids.mkdir()
    for i in range(10):  # enough files that the hash split gives train and validation pieces
        write_midi(make_notes(offset_pitch=i - 5), mids / f"piece{i}.mid")
    build_corpus(
        root / "corpus",
        CorpusConfig(hours=0, seed=0, size_px=(320, 180), midi_dir=str(mids)),
        progress=False,
    )
    splits = {
        json.loads(x)["split"]
        for x in (root / "corpus" / "manifest.jsonl").read_text().splitlines()
    }
    assert {"train", "validation"} <= splits
    return root / "corpus"


def _config(tmp: Path, corpus: Path, max_steps: int) -> Path:
    cfg = tmp / "tiny.yaml"
    cfg.write_text(
        f"""
name: tiny
corpus: {corpus}
noise_bank: null
mode: fusion
model_preset: tiny
batch_size: 2
lr: 0.003
max_steps: {max_steps}
val_every_n_steps: 3
val_performances: 1
val_seconds: 2.0
val_conditions: [clean, dropout@30%, video:lowlight@0.3]
num_workers: 0
data:
  window_s: 1.0
  rect_width_px: 208
  rect_height_px: 20
  windows_per_epoch: 64
"""
    )
    return cfg


def _run(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "avfusion.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)  # fmt: skip


def test_train_killed_and_resumed_then_exported(tmp_path, corpus):
    from avfusion.model.checkpoint import load_checkpoint

    cfg = _config(tmp_path, corpus, max_steps=24)
    out = tmp_path / "run"
    args = [
        "train",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--no-progress",
        "--accelerator",
        "cpu",
    ]
    proc = _run(args)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert last.is_file(), proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGKILL)  # killed mid-run
    proc.wait()
    assert not (out / "model" / "model.safetensors").exists()

    proc = _run(args)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    assert "Restoring states from the checkpoint" in log or "Restored all states" in log
    model, meta = load_checkpoint(out / "model")
    assert model.config.mode == "fusion"
    assert meta["global_step"] == 24
    assert 0 <= meta["decode"]["onset_threshold"] <= 1
    assert "note_f1/clean" in meta["validation"]
    assert "note_f1/video:lowlight@0.3" in meta["validation"]  # a video condition validates too
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    assert any(r.get("val/note_f1") for r in rows)
    assert any(r.get("val/note_f1/video:lowlight@0.3") for r in rows)
    assert (out / "learning_curves.png").is_file()


def test_train_stops_at_max_time_in_audio_mode(tmp_path, corpus):
    """--max-time-min ends training by Lightning's timer long before max_steps, and the
    audio-only run (which reads no video frames) still validates and exports."""
    from avfusion.model.checkpoint import load_checkpoint

    cfg = _config(tmp_path, corpus, max_steps=100_000)
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--mode", "audio", "--out", str(out),
            "--max-time-min", "0.002", "--no-progress", "--accelerator", "cpu"]  # fmt: skip
    proc = _run(args)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    model, meta = load_checkpoint(out / "model")
    assert model.config.mode == "audio"
    assert 1 <= meta["global_step"] < 1000
    assert "note_f1/clean" in meta["validation"]


def test_val_conditions_split_and_refused():
    """A validation condition is an audio condition or a video one (clean audio, degraded
    frames); a malformed one is refused when the config is made, not after training starts."""
    from avfusion.train import TrainConfig, split_val_condition

    assert split_val_condition("pink@-10db") == ("pink@-10db", None)
    assert split_val_condition("video:lowlight@0.3") == ("clean", "video:lowlight@0.3")
    assert split_val_condition("pink@-10db+video:blur@2px") == ("pink@-10db", "video:blur@2px")
    with pytest.raises(ValueError, match="video:dark"):
        TrainConfig(val_conditions=["clean", "video:dark"])
    with pytest.raises(ValueError, match="val_conditions"):
        TrainConfig(val_conditions=["pink@-10"])
