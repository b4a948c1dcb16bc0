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
import yaml

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
    assert meta["rescorer_fit"] is None and meta["decode"]["rescorer"] is None

    # re-export with a note-candidate rescorer fitted on 2 training performances x 2 conditions,
    # reading the sound (the posteriors' log-CQT per key) and each key's own history too
    text = cfg.read_text() + "rescorer_performances: 2\nrescorer_seconds: 2.0\n"
    text += "rescorer_features: posteriors+cqt+history\n"
    cfg.write_text(text + "rescorer_conditions: [clean, pink@0db]\n")
    proc = _run([*args, "--export-only"])
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    _, meta = load_checkpoint(out / "model")
    fit = meta["rescorer_fit"]
    assert (
        fit["performances"] == 2
        and fit["clips"] == 4
        and fit["conditions"] == ["clean", "pink@0db"]
        and fit["features"] == "posteriors+cqt+history"
    )
    assert fit["kept"] == (meta["decode"]["rescorer"] is not None)
    if fit["kept"]:
        assert meta["decode"]["rescorer"]["feature_set"] == "peaks-cqt-hist-v1"


def test_train_stops_at_max_time_in_audio_mode(tmp_path, corpus):
    """--max-time-min ends training by Lightning's timer long before max_steps, and the
    audio-only run (which reads no video frames) still validates; with --no-export it stops
    there (what a timed GPU lease runs), and --export-only exports it afterwards."""
    import torch

    from avfusion.model.checkpoint import load_checkpoint

    cfg = _config(tmp_path, corpus, max_steps=100_000)
    cfg.write_text(cfg.read_text() + "lr_schedule: time\n")  # one cycle over the 0.12 s
    # no periodic checkpoint within the 0.12 s (every min(50, val_every_n_steps) steps): the
    # last.ckpt below is the one Lightning writes when the timer ends the run
    cfg.write_text(cfg.read_text().replace("val_every_n_steps: 3", "val_every_n_steps: 1000"))
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--mode", "audio", "--out", str(out),
            "--max-time-min", "0.002", "--no-progress", "--accelerator", "cpu"]  # fmt: skip
    proc = _run([*args, "--no-export"])
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    assert "export later with --export-only" in log
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # the time schedule ended annealed (by steps, 100 000 of them, it would still be warming up
    # from lr / 25 = 1.2e-4)
    assert ck["optimizer_states"][0]["param_groups"][0]["lr"] < 0.003 / 25 / 10
    assert 1 <= ck["global_step"] < 50
    assert (out / "learning_curves.png").is_file() and not (out / "model").exists()
    wall_s = json.loads((out / "trained.json").read_text())["train_wall_s"]
    proc = _run([*args, "--no-export", "--export-only"])
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "exclude each other" in log, log[-3000:]
    proc = _run([*args, "--export-only"])
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    model, meta = load_checkpoint(out / "model")
    assert model.config.mode == "audio" and meta["train_wall_s"] == wall_s > 0
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


def test_velocity_stack_trains_alone_from_a_model_without_one(tmp_path, corpus):
    """--init a model without a velocity stack, a config with ``velocity_channels`` and
    ``train_only``: the stack and its head are added and trained, every other weight and
    batch-norm statistic stays the starting model's, and the checkpoint is chosen by the
    velocity-aware validation metric."""
    import torch

    from avfusion.model import AVTranscriber, preset
    from avfusion.model.checkpoint import load_checkpoint, save_checkpoint

    start = AVTranscriber(preset("tiny", rect_width_px=208, rect_height_px=20))
    save_checkpoint(start, tmp_path / "start")
    cfg = _config(tmp_path, corpus, max_steps=3)
    cfg.write_text(
        cfg.read_text()
        + "model: {velocity_channels: 4}\n"
        + "train_only: [velocity_stack, velocity_head]\n"
        + "loss_weights: {velocity: 1.0}\n"
        + "val_metric: note_offset_velocity/f1\n"
    )
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--init", str(tmp_path / "start"), "--out", str(out),
            "--no-progress", "--accelerator", "cpu"]  # fmt: skip
    proc = _run(args)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    model, meta = load_checkpoint(out / "model")
    assert model.config.velocity_channels == 4
    old, new = start.state_dict(), model.state_dict()
    fresh = ("velocity_stack.", "velocity_head.")
    assert any(k.startswith("velocity_stack.") for k in new)
    for key, value in old.items():
        if not key.startswith(fresh):
            assert torch.equal(value, new[key]), key  # weights and running statistics
    assert "velocity_head.weight" in old and "velocity_head.0.weight" in new  # a new head
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    assert any(r.get("val/note_offset_velocity_f1") for r in rows)
    assert "note_offset_f1/clean" in meta["validation"]
    assert meta["train_config"]["train_only"] == ["velocity_stack", "velocity_head"]


def test_a_typo_in_the_data_section_stops_the_cli_before_it_writes(tmp_path, capsys):
    """Unknown keys under ``data:`` or ``data.degradation:`` are refused when the config is
    read, with the file and the known keys, a non-zero exit and no run folder."""
    from avfusion.cli import main

    cfg = {"name": "t", "model_preset": "tiny", "max_steps": 1,
           "data": {"window_s": 1.0, "degradation": {"p_clean": 0.5}}}  # fmt: skip
    for section, bad in (("data", {"widnow_s": 1.0}), ("degradation", {"pclean": 0.5})):
        d = {**cfg, "data": {**cfg["data"]}}
        if section == "data":
            d["data"].update(bad)
        else:
            d["data"]["degradation"] = {**d["data"]["degradation"], **bad}
        path = tmp_path / f"{section}.yaml"
        path.write_text(yaml.safe_dump(d))
        out = tmp_path / f"run-{section}"
        assert main(["train", "--config", str(path), "--out", str(out)]) != 0
        err = capsys.readouterr().err
        assert str(path) in err and f"{section}: unknown keys" in err and next(iter(bad)) in err
        assert "window_s" in err or "p_clean" in err  # the known keys are listed
        assert not out.exists()


def test_run_settings_given_on_the_command_line_replace_the_configs():
    from avfusion.train import TrainConfig, fine_tune_config

    cfg = Path("experiments/configs/gpu-base-short.yaml")
    base = TrainConfig.from_yaml(cfg)
    assert (base.num_workers, base.max_time_min) != (3, 2.5)
    run = {"num_workers": 3, "max_time_min": 2.5}
    tuned = {"init": "audio", "dataset": None, "dataset_format": None, **run}
    for got in (
        TrainConfig.from_yaml(cfg, **run),
        fine_tune_config(cfg, **tuned),
        fine_tune_config(None, **tuned),
    ):
        assert (got.num_workers, got.max_time_min) == (3, 2.5)
    from avfusion.train import resolve_init

    saved = json.loads((resolve_init("audio") / "config.json").read_text())["extra"]
    kept = fine_tune_config(None, init="audio", dataset=None, dataset_format=None)
    assert kept.num_workers == saved["train_config"]["num_workers"]  # None keeps the saved value


def test_the_time_schedule_is_torchs_one_cycle_on_the_clock():
    from datetime import timedelta

    import torch
    from lightning.pytorch.callbacks import Timer

    from avfusion.train import TrainConfig, one_cycle_factor, time_fraction

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    n = 2001
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=n, pct_start=0.1)
    for step in range(n - 1):
        want = opt.param_groups[0]["lr"]
        assert one_cycle_factor(step / (n - 1)) == pytest.approx(want, abs=0.01), step
        opt.step()
        sched.step()
    assert one_cycle_factor(0.0) == pytest.approx(1 / 25) and one_cycle_factor(0.1) == 1.0
    assert one_cycle_factor(1.0) == pytest.approx(1 / 25e4) == one_cycle_factor(3.0)
    timer = Timer(duration=timedelta(seconds=100))
    assert time_fraction(timer, 100.0) == 0.0  # not started
    timer.load_state_dict({"time_elapsed": {"train": 25.0}})  # a resumed run's clock
    assert time_fraction(timer, 100.0) == 0.25 and time_fraction(timer, 10.0) == 1.0
    with pytest.raises(ValueError, match="needs max_time_min"):
        TrainConfig(lr_schedule="time")
    with pytest.raises(ValueError, match="'steps' or 'time'"):
        TrainConfig(lr_schedule="epochs")


def test_train_only_and_val_metric_are_checked():
    from avfusion.model import AVTranscriber, preset
    from avfusion.train import TrainConfig, _freeze_all_but

    with pytest.raises(ValueError, match="val_metric"):
        TrainConfig(val_metric="note/accuracy")
    with pytest.raises(ValueError, match="rescorer_features"):
        TrainConfig(rescorer_features="posteriors+mel")
    model = AVTranscriber(preset("tiny"))
    with pytest.raises(ValueError, match="velocity_stak"):
        _freeze_all_but(model, ("velocity_stak",))
    frozen = _freeze_all_but(model, ("velocity_head",))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"velocity_head.weight", "velocity_head.bias"}
    assert model.velocity_head not in frozen and model.audio_encoder in frozen


def test_tune_decoder_sets_note_ends_by_offset_f1():
    """The frame threshold is chosen for note-with-offset F1: here each key's frame posterior
    stays at 0.35 for 1 s after the key is released (as a sounding string under a model that
    cannot see the release), so the thresholds below 0.35 end every note too late."""
    import numpy as np

    from avfusion.notes import Note, Notes
    from avfusion.train import tune_decoder

    fr = 31.25
    notes = [Note(0.5 + 0.8 * i, 0.9 + 0.8 * i, 60 + i % 5, 80) for i in range(10)]
    n = int(10 * fr)
    onset, frame = np.zeros((n, 88)), np.zeros((n, 88))
    for note in notes:
        k, i, j = note.pitch - 21, round(note.onset_s * fr), round(note.offset_s * fr)
        onset[i, k] = 0.9
        frame[i:j, k] = 0.9
        frame[j : j + round(fr), k] = np.maximum(frame[j : j + round(fr), k], 0.35)
    post = {"onset": onset, "frame": frame, "velocity": np.full((n, 88), 80 / 127)}
    dec, scores = tune_decoder([("clean", post, Notes.from_iterables(notes))], fr)
    assert dec.frame_threshold > 0.35
    assert scores["note_f1/clean"] == 1.0 and scores["note_offset_f1/clean"] == 1.0


def test_centred_velocity_loss_ignores_each_windows_level():
    """``velocity_loss: centred`` scores each onset's velocity relative to its window's mean:
    predictions off by one constant per window cost only the small plain-MSE share, while a
    wrong ordering within the window costs fully; ``mse`` charges the constant in full."""
    import torch

    from avfusion.train import CENTRED_VELOCITY_ABS_WEIGHT, TrainConfig, transcription_loss

    g = torch.Generator().manual_seed(0)
    onset = (torch.rand(2, 30, 88, generator=g) < 0.05).float()
    target = onset * torch.rand(2, 30, 88, generator=g)
    zeros = torch.zeros(2, 30, 88)
    batch = {"onset": onset, "frame": zeros, "offset": zeros, "velocity": target,
             "pedal": torch.zeros(2, 30)}  # fmt: skip
    shift = torch.tensor([0.2, -0.1])[:, None, None]

    def velocity_loss(kind: str, pred: torch.Tensor) -> float:
        logits = {"onset": zeros, "frame": zeros, "offset": zeros, "velocity": pred,
                  "pedal": torch.zeros(2, 30)}  # fmt: skip
        return float(transcription_loss(logits, batch, TrainConfig(velocity_loss=kind))["velocity"])

    plain = float((onset * shift**2).sum() / onset.sum())
    assert velocity_loss("mse", target + shift) == pytest.approx(plain, rel=1e-5)
    assert velocity_loss("centred", target + shift) == pytest.approx(
        CENTRED_VELOCITY_ABS_WEIGHT * plain, rel=1e-4
    )
    reversed_order = onset * (1 - target)  # same window means only by chance: far worse
    assert velocity_loss("centred", reversed_order) > 10 * velocity_loss("centred", target + shift)
    with pytest.raises(ValueError, match="velocity_loss"):
        TrainConfig(velocity_loss="l1")


def test_init_keeps_a_velocity_stack_unless_the_config_sets_one(tmp_path):
    """--init with a config that does not name velocity_channels keeps the starting model's
    stack (fine-tuning a bundled model must not drop it); a config that names another size
    rebuilds only the stack and its head."""
    from dataclasses import asdict

    import torch

    from avfusion.data import DataConfig
    from avfusion.model import AVTranscriber, preset
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.train import TrainConfig, TranscriptionSystem

    dc = DataConfig()
    start = AVTranscriber(preset("tiny", velocity_channels=4, rect_width_px=dc.rect_width_px,
                                 rect_height_px=dc.rect_height_px, hop_length=dc.hop_length))  # fmt: skip
    save_checkpoint(start, tmp_path / "start")
    kept = TranscriptionSystem(
        asdict(TrainConfig(model_preset="tiny", init_from=str(tmp_path / "start")))
    )
    assert kept.model.config.velocity_channels == 4
    for key, value in start.state_dict().items():
        assert torch.equal(value, kept.model.state_dict()[key]), key
    resized = TranscriptionSystem(
        asdict(TrainConfig(model_preset="tiny", model={"velocity_channels": 6},
                           init_from=str(tmp_path / "start")))
    )  # fmt: skip
    assert resized.model.config.velocity_channels == 6
    assert torch.equal(start.onset_head.weight, resized.model.onset_head.weight)


def test_init_with_larger_frames_resizes_the_video_stem_and_refuses_other_grids(tmp_path):
    """--init with a config whose ``data:`` names larger rectified frames resizes the starting
    model's video stem (`avfusion.train._with_resized_video`); an audio-only model, or a
    config with another frame grid, is still refused."""
    from dataclasses import asdict

    import torch

    from avfusion.data import DataConfig
    from avfusion.model import AVTranscriber, preset
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.train import TrainConfig, TranscriptionSystem

    dc = DataConfig()
    for mode in ("fusion", "audio"):
        save_checkpoint(AVTranscriber(preset("tiny", mode=mode, rect_width_px=dc.rect_width_px,
                                             rect_height_px=dc.rect_height_px,
                                             hop_length=dc.hop_length)), tmp_path / mode)  # fmt: skip
    bigger = {"rect_width_px": 624, "rect_height_px": 2 * dc.rect_height_px}
    system = TranscriptionSystem(
        asdict(TrainConfig(model_preset="tiny", init_from=str(tmp_path / "fusion"), data=bigger))
    )
    cfg = system.model.config
    assert (cfg.rect_width_px, cfg.rect_height_px, cfg.video_stem_stride) == (624, 80, 16)
    assert system.model.video_encoder.stem[0].weight.shape[2] == 16
    assert torch.isfinite(system.model.video_encoder.stem[0].weight).all()
    with pytest.raises(ValueError, match="other data settings"):
        TranscriptionSystem(asdict(TrainConfig(model_preset="tiny", mode="audio", data=bigger,
                                               init_from=str(tmp_path / "audio"))))  # fmt: skip
    with pytest.raises(ValueError, match="other data settings"):
        TranscriptionSystem(asdict(TrainConfig(model_preset="tiny", data={"hop_length": 256},
                                               init_from=str(tmp_path / "fusion"))))  # fmt: skip


def test_distillation_loss_is_zero_at_the_teacher_and_only_where_weighted():
    """Soft-target BCE: its gradient vanishes where the student's logits equal the teacher's,
    it does not reach windows of weight 0, and with every weight 0 it is 0."""
    import torch

    from avfusion.train import distillation_loss

    g = torch.Generator().manual_seed(0)
    teacher = {h: torch.randn(3, 5, 88, generator=g) for h in ("onset", "frame")}
    student = {h: torch.randn(3, 5, 88, generator=g, requires_grad=True) for h in teacher}
    weight = torch.tensor([1.0, 0.0, 1.0])
    distillation_loss(student, teacher, weight).backward()
    for h in teacher:
        assert student[h].grad[1].abs().max() == 0
        assert student[h].grad[0].abs().max() > 0
    at = {h: teacher[h].clone().requires_grad_(True) for h in teacher}
    distillation_loss(at, teacher, weight).backward()
    for h in teacher:
        assert at[h].grad.abs().max() < 1e-7
    with torch.no_grad():
        assert float(distillation_loss(student, teacher, torch.zeros(3))) == 0.0


def test_distillation_from_a_video_model_trains_the_fusion_model_only(tmp_path):
    """``distill_from``: a video-only teacher is loaded frozen and kept out of the checkpoint;
    a training step adds a ``distill`` term on the windows whose audio was dropped and leaves
    the teacher's weights as they were; a non-video teacher or a non-fusion run is refused."""
    from dataclasses import asdict

    import torch

    from avfusion.data import DataConfig
    from avfusion.model import AVTranscriber, preset
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.train import TrainConfig, TranscriptionSystem

    dc = DataConfig(window_s=1.0)
    geo = {"rect_width_px": dc.rect_width_px, "rect_height_px": dc.rect_height_px,
           "hop_length": dc.hop_length}  # fmt: skip
    save_checkpoint(AVTranscriber(preset("tiny", mode="video", **geo)), tmp_path / "teacher")
    save_checkpoint(AVTranscriber(preset("tiny", mode="audio", **geo)), tmp_path / "audio")
    cfg = TrainConfig(model_preset="tiny", data={"window_s": 1.0}, distill_weight=2.0,
                      distill_from=str(tmp_path / "teacher"),
                      model={"p_drop_audio": 1.0, "p_drop_video": 0.0})  # fmt: skip
    system = TranscriptionSystem(asdict(cfg))
    assert not any("teacher" in k for k in system.state_dict())
    teacher = system._teacher[0]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    n = dc.n_frames(16000)  # 1 s at 16 kHz
    g = torch.Generator().manual_seed(0)
    batch = {
        "audio": 0.1 * torch.randn(2, 16000, generator=g),
        "video": torch.randint(0, 256, (2, 30, dc.rect_height_px, dc.rect_width_px), generator=g,
                               dtype=torch.uint8),
        "video_times_s": (torch.arange(30) / 30.0).expand(2, 30).contiguous(),
        **{k: torch.zeros(2, n, 88) for k in ("onset", "frame", "offset", "velocity")},
        "pedal": torch.zeros(2, n),
    }  # fmt: skip
    logged = {}
    system.log_dict = lambda d, **kw: logged.update(d)
    system.log = lambda *a, **kw: None
    system.model.train()
    loss = system.training_step(batch, 0)
    assert float(logged["train/distill"]) > 0  # p_drop_audio = 1: every window distils
    plain = sum(w * float(logged[f"train/{k}"]) for k, w in cfg.loss_weights.items())
    assert float(loss) == pytest.approx(plain + 2.0 * float(logged["train/distill"]), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="video-only"):
        TranscriptionSystem(asdict(TrainConfig(model_preset="tiny", data={"window_s": 1.0},
                                               distill_from=str(tmp_path / "audio"))))  # fmt: skip
    with pytest.raises(ValueError, match="mode is audio"):
        TrainConfig(mode="audio", distill_from=str(tmp_path / "teacher"))


def test_export_only_refits_the_rescorer_of_a_starting_model(tmp_path, corpus):
    """--export-only with --init and no checkpoint of the run's own: the starting model's
    weights are exported as they are, with re-tuned thresholds and a rescorer fitted to them;
    without --init there is nothing to export and the error names the missing checkpoint."""
    import torch

    from avfusion.model import AVTranscriber, preset
    from avfusion.model.checkpoint import load_checkpoint, save_checkpoint

    start = AVTranscriber(preset("tiny", rect_width_px=208, rect_height_px=20, mode="audio"))
    save_checkpoint(start, tmp_path / "start", extra={"global_step": 7, "train_wall_s": 1.5})
    cfg = _config(tmp_path, corpus, max_steps=3)
    cfg.write_text(
        cfg.read_text() + "rescorer_performances: 2\nrescorer_seconds: 2.0\n"
        "rescorer_conditions: [clean, pink@0db]\n"
    )
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--mode", "audio", "--out", str(out), "--export-only",
            "--no-progress", "--accelerator", "cpu"]  # fmt: skip
    proc = _run(args)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "last.ckpt" in log and "no checkpoint to export" in log
    assert not (out / "model" / "model.safetensors").exists()

    proc = _run([*args, "--init", str(tmp_path / "start")])
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    assert not (out / "checkpoints" / "last.ckpt").exists()  # nothing was trained
    model, meta = load_checkpoint(out / "model")
    old, new = start.state_dict(), model.state_dict()
    assert old.keys() == new.keys()
    assert all(torch.equal(old[k], new[k]) for k in old)
    assert meta["global_step"] == 7 and meta["train_wall_s"] == 1.5
    assert meta["checkpoint"] == f"--init {tmp_path / 'start'}"
    assert meta["rescorer_fit"]["clips"] == 4  # 2 performances x 2 audio conditions
    assert "note_f1/clean" in meta["validation"]
