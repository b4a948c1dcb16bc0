"""Training with Lightning: the LightningModule (losses live here, not in the model), data
loaders, validation with mir_eval note F1 on whole validation performances, checkpoints that
resume after a kill, CSV logs and learning curves, threshold tuning on validation, and export
of the best model to safetensors + JSON.

    avfusion train --config experiments/configs/cpu-small.yaml [--mode audio] [--out runs/NAME]
    avfusion train --init fusion --dataset data/PianoVAM_v1 --format pianovam --max-steps 500

The second form fine-tunes a bundled model (or any checkpoint folder) on a real dataset
(:mod:`avfusion.datasets`): training windows from its train split, validation on its
validation split (or, when it has none, on every tenth train performance, held out).

The same config runs on several GPUs through Lightning's DDP (``--devices 4``); nothing here
is hand-written distributed code.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from avfusion.config import check_known_keys
from avfusion.data import DataConfig, WindowDataset, list_performances, load_performance
from avfusion.decoding import DecodeConfig, decode_notes, fit_onset_calibration
from avfusion.inference import predict_posteriors
from avfusion.metrics import transcription_metrics
from avfusion.rescore import RESCORER_FITS, Rescorer, fit_rescorer


@dataclass(frozen=True)
class TrainConfig:
    """A training run, as written in ``experiments/configs/*.yaml``."""

    name: str = "run"
    corpus: str = "data/corpus"
    noise_bank: str | None = "data/noise"
    mode: str = "fusion"
    model_preset: str = "cpu-small"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    data: dict[str, Any] = field(default_factory=dict)  # DataConfig overrides (degradation inside)
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_steps: int = 2000
    max_time_min: float | None = None
    # the one-cycle learning-rate schedule's clock: "steps" (over max_steps, torch's
    # OneCycleLR) or "time" (over max_time_min, counted over resumed calls: a run stopped by
    # time, whose step count the machine decides, still warms up and anneals; `one_cycle_factor`)
    lr_schedule: str = "steps"
    val_every_n_steps: int = 250
    val_performances: int = 6
    val_seconds: float = 20.0
    val_conditions: tuple[str, ...] = ("clean", "music@0db", "pink@-10db", "dropout@30%")
    max_train_performances: int | None = None
    num_workers: int = 2
    seed: int = 0
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {
            "onset": 1.0,
            "frame": 1.0,
            "offset": 0.5,
            "velocity": 0.5,
            "pedal": 0.3,
        }
    )
    onset_pos_weight: float = 5.0
    # "mse": velocity / 127 regressed as is (Onsets and Frames); "centred": its deviation from
    # the window's mean (plus a tenth of the plain MSE), see `transcription_loss`
    velocity_loss: str = "mse"
    dataset: str | None = None  # a dataset folder (avfusion.datasets) instead of the corpus
    dataset_format: str | None = None  # its format name
    init_from: str | None = None  # a bundled model name or checkpoint folder to start from
    # parameter-name prefixes (e.g. velocity_stack, velocity_head) that train; all others are
    # frozen and their modules kept in eval mode (batch-norm statistics do not move), so the
    # other outputs stay exactly those of the starting model; () trains everything
    train_only: tuple[str, ...] = ()
    # the validation metric that picks the checkpoint to export: note/f1 (onset),
    # note_offset/f1, note_velocity/f1 or note_offset_velocity/f1 (VAL_METRICS; e.g. a
    # velocity one when only the velocity stack trains)
    val_metric: str = "note/f1"
    # note-candidate rescoring (avfusion.rescore), fitted at export on the posteriors of this
    # many training performances (first rescorer_seconds each) under each of
    # rescorer_conditions (val_conditions syntax; noise from the bank's train half), and kept
    # if it raises mean validation note F1; 0: none
    rescorer_performances: int = 0
    rescorer_seconds: float = 30.0
    rescorer_conditions: tuple[str, ...] = (
        "clean", "pink@0db", "babble@0db", "music@0db", "white@-5db", "pink@-10db", "dropout@30%",
    )  # fmt: skip
    rescorer_hidden: int = 32
    # what the rescorer reads: "posteriors", "posteriors+cqt" (also the log-CQT per key
    # around each candidate: avfusion.rescore.spectral_features; a video-only model has no
    # sound to read and keeps the posteriors), "posteriors+history" (also the key's own recent
    # past: avfusion.rescore.history_features), "posteriors+cqt+history", or either of the
    # last two "+patch" (also the raw posteriors and log-CQT around each candidate:
    # avfusion.rescore.patch_features)
    rescorer_features: str = "posteriors"
    # how the rescorer's classifier is trained (avfusion.rescore.RESCORER_FITS): "sklearn"
    # (MLPClassifier) or "torch" (AdamW, dropout; better on wide features such as "+patch")
    rescorer_fit: str = "sklearn"
    # distillation for the missing-audio case (fusion mode only): a video-only model (bundled
    # name or checkpoint folder) whose onset and frame posteriors on the same video are soft
    # targets for the fusion model's, on the training windows whose audio the modality
    # drop-out removed, with this weight (`distillation_loss`); None: no teacher
    distill_from: str | None = None
    distill_weight: float = 1.0
    allow_pickle: bool = False  # let the Audeo adapter read its pickled labels

    def __post_init__(self) -> None:
        # YAML and JSON give lists; the config is frozen and hashable-minded, so keep a tuple
        object.__setattr__(self, "val_conditions", tuple(self.val_conditions))
        object.__setattr__(self, "train_only", tuple(self.train_only))
        object.__setattr__(self, "rescorer_conditions", tuple(self.rescorer_conditions))
        for name in ("val_conditions", "rescorer_conditions"):  # fail at load, not after the
            for cond in getattr(self, name):  # first training steps
                try:
                    split_val_condition(cond)
                except ValueError as e:
                    raise ValueError(f"{name}: {e}") from None
        # the data section and its degradation sampler too: a typo there must stop the run
        # before it writes anything, not raise a TypeError when the data loader is built
        check_known_keys(DataConfig, self.data, "data")
        DataConfig(**self.data)  # its own range checks (e.g. the occluder's shares)
        from avfusion.noise import SamplerConfig

        SamplerConfig.from_dict(self.data.get("degradation"))
        if self.rescorer_performances < 0 or self.rescorer_hidden < 1:
            raise ValueError(
                f"rescorer_performances={self.rescorer_performances} must be >= 0 and "
                f"rescorer_hidden={self.rescorer_hidden} >= 1"
            )
        if self.rescorer_fit not in RESCORER_FITS:
            raise ValueError(
                f"rescorer_fit={self.rescorer_fit!r}: must be one of "
                + ", ".join(map(repr, RESCORER_FITS))
            )
        if self.rescorer_features not in RESCORER_FEATURES:
            raise ValueError(
                f"rescorer_features={self.rescorer_features!r}: must be one of "
                + ", ".join(map(repr, RESCORER_FEATURES))
            )
        if self.velocity_loss not in ("mse", "centred"):
            raise ValueError(f"velocity_loss={self.velocity_loss!r}: must be 'mse' or 'centred'")
        if self.val_metric not in VAL_METRICS:
            raise ValueError(f"val_metric={self.val_metric!r}: must be one of {VAL_METRICS}")
        if self.distill_from is not None and self.mode != "fusion":
            raise ValueError(
                f"distill_from: a video-only teacher is for a fusion model's missing audio; "
                f"this run's mode is {self.mode}"
            )
        if self.distill_weight < 0:
            raise ValueError(f"distill_weight={self.distill_weight} must be >= 0")
        if self.lr_schedule not in ("steps", "time"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: must be 'steps' or 'time'")
        if self.lr_schedule == "time" and not self.max_time_min:
            raise ValueError("lr_schedule: 'time' needs max_time_min (the schedule's length)")

    @property
    def val_metrics(self) -> tuple[str, ...]:
        """The metrics validation logs: note F1, and ``val_metric`` if it is another."""
        return tuple(dict.fromkeys(("note/f1", self.val_metric)))

    @property
    def val_monitor(self) -> str:
        """The logged name of ``val_metric`` (``val/note_f1``, ``val/note_offset_velocity_f1``…)."""
        return val_log_name(self.val_metric)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML config; ``overrides`` that are not None replace its values.

        Raises:
            FileNotFoundError: no such file. ValueError: unknown keys (lists the known ones).
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such training config")
        d = yaml.safe_load(path.read_text()) or {}
        d.update({k: v for k, v in overrides.items() if v is not None})
        check_known_keys(cls, d, str(path))
        try:
            return cls(**d)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def data_config(self) -> DataConfig:
        """The ``data:`` section as a `avfusion.data.DataConfig` (TypeError on a key that
        DataConfig does not have)."""
        return DataConfig(**self.data)


VAL_METRICS: tuple[str, ...] = (
    "note/f1",
    "note_offset/f1",
    "note_velocity/f1",
    "note_offset_velocity/f1",
)
"""Metrics (`avfusion.metrics`) that `TrainConfig.val_metric` may name."""


def val_log_name(metric: str) -> str:
    """The name a validation metric is logged under: ``note_offset/f1`` → ``val/note_offset_f1``."""
    return "val/" + metric.replace("/", "_")


BUNDLED_MODELS_DIR = Path(__file__).resolve().parent / "models"
"""The bundled checkpoints (``fusion``, ``audio``, ``video``, ``concat``)."""
VAL_HOLDOUT_EVERY: int = 10
"""A dataset without a validation split validates on every tenth train performance."""


def split_val_condition(condition: str) -> tuple[str, str | None]:
    """A validation condition as (audio condition, video condition or None).

    Steps joined by ``+`` (`avfusion.noise.video.split_condition`, as in the benchmark):
    ``clean``, ``pink@-10db`` … degrade the audio (:mod:`avfusion.noise`), ``video:lowlight``,
    ``video:blur@2px`` … the rectified frames (:mod:`avfusion.noise.video`);
    ``video:lowlight`` alone leaves the audio clean, and ``pink@-10db+video:blur`` degrades
    both. Both parts come back canonical (lower case).

    Raises:
        ValueError: an unknown or malformed step (the message lists what is accepted).
    """
    from avfusion.noise.video import split_condition

    audio, video = split_condition(condition)
    return audio or "clean", video


def resolve_init(init: str) -> Path:
    """A bundled model name (``fusion``, ``audio``, ``video``, ``concat``) or a checkpoint
    folder, as a folder.

    Raises:
        FileNotFoundError: neither a bundled name nor a folder with ``config.json``.
    """
    bundled = BUNDLED_MODELS_DIR / init
    for folder in (bundled, Path(init)):
        if (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(
        f"--init {init}: not a bundled model ({', '.join(sorted(p.name for p in BUNDLED_MODELS_DIR.iterdir() if p.is_dir()))}) "
        "nor a checkpoint folder with config.json"
    )


def fine_tune_config(
    config_path: str | Path | None,
    *,
    init: str | None,
    dataset: str | Path | None,
    dataset_format: str | None,
    allow_pickle: bool = False,
    mode: str | None = None,
    max_steps: int | None = None,
    max_time_min: float | None = None,
    num_workers: int | None = None,
) -> TrainConfig:
    """The config of a fine-tuning run: ``config_path`` (YAML), else the training config
    saved in the ``init`` checkpoint, with the dataset and the starting model set; ``mode``,
    ``max_steps``, ``max_time_min`` and ``num_workers`` replace the config's when not None.

    Raises:
        ValueError: neither a config nor ``init``; a dataset without a format.
        FileNotFoundError: no such config or checkpoint.
    """
    overrides: dict[str, Any] = {"mode": mode, "max_steps": max_steps,
                                 "max_time_min": max_time_min, "num_workers": num_workers}  # fmt: skip
    if config_path is not None:
        cfg = TrainConfig.from_yaml(config_path, **overrides)
    elif init is not None:
        doc = json.loads((resolve_init(init) / "config.json").read_text())
        saved = dict((doc.get("extra") or {}).get("train_config") or {})
        mc = doc.get("model_config", {})
        saved["mode"] = mc.get("mode", saved.get("mode", "fusion"))
        # the data's frame grid and rectified size are the model's own
        grid = ("hop_length", "sample_rate_hz", "rect_width_px", "rect_height_px")
        saved["data"] = {**(saved.get("data") or {}), **{k: mc[k] for k in grid if k in mc}}
        known = {f.name for f in fields(TrainConfig)}
        saved = {k: v for k, v in saved.items() if k in known}
        saved.update({k: v for k, v in overrides.items() if v is not None})
        cfg = TrainConfig(**saved)
    else:
        raise ValueError("give --config or --init MODEL")
    if dataset is not None and not dataset_format:
        raise ValueError("--dataset needs --format NAME")

    name = cfg.name if dataset_format is None else f"{cfg.name}-{dataset_format}"
    return replace(
        cfg, name=name, dataset=None if dataset is None else str(dataset),
        dataset_format=dataset_format, init_from=init, allow_pickle=allow_pickle,
    )  # fmt: skip


def split_performances(cfg: TrainConfig, split: str) -> list[Any]:
    """The performances a run trains (``train``) or validates (``validation``) on: the
    corpus split, or the dataset's (its train split less a held-out tenth when it has no
    validation split).

    Raises:
        ValueError: a dataset that lacks the modality the run's mode needs, or no
            performances.
    """
    if cfg.dataset is None:
        return list_performances(cfg.corpus, split)
    from avfusion.datasets import get_format, load_dataset

    fmt = get_format(cfg.dataset_format or "")
    needs = {"fusion": {"audio", "video"}, "audio": {"audio"}, "video": {"video"}}[cfg.mode]
    if not needs <= fmt.modalities:
        raise ValueError(
            f"{cfg.dataset}: {fmt.name} has only {'/'.join(sorted(fmt.modalities))}; "
            f"a {cfg.mode} model needs {'/'.join(sorted(needs))} (use --mode or --init "
            f"{'audio' if 'audio' in fmt.modalities else 'video'})"
        )
    perfs = load_dataset(cfg.dataset, fmt.name, allow_pickle=cfg.allow_pickle)
    val = [p for p in perfs if p.split == "validation"]
    train = [p for p in perfs if p.split == "train"]
    if not val:  # hold out every tenth train performance
        val = train[::VAL_HOLDOUT_EVERY]
        train = [p for i, p in enumerate(train) if i % VAL_HOLDOUT_EVERY] or val
    out = train if split == "train" else val
    if not out:
        raise ValueError(f"{cfg.dataset}: no {fmt.name} performances for {split}")
    return out


def model_config_for(cfg: TrainConfig) -> Any:
    """The ModelConfig of a run: preset, overrides, mode, and the data's frame grid."""
    from avfusion.model import ModelConfig, preset

    d = {**preset(cfg.model_preset).to_dict(), **cfg.model, "mode": cfg.mode}
    dc = cfg.data_config()
    d.update(hop_length=dc.hop_length, sample_rate_hz=dc.sample_rate_hz, rect_width_px=dc.rect_width_px,
             rect_height_px=dc.rect_height_px)  # fmt: skip
    return ModelConfig.from_dict(d)


def _with_velocity_stack(start: Any, velocity_channels: int, where: str) -> Any:
    """``start`` (an AVTranscriber) rebuilt with another ``velocity_channels``: every weight
    but the velocity stack's and head's copied, those two freshly initialised (to be trained,
    e.g. with ``train_only: [velocity_stack, velocity_head]``).

    Raises:
        ValueError: a video-only model (it has no audio to read velocity from).
    """
    from avfusion.model import AVTranscriber

    if start.config.mode == "video":
        raise ValueError(f"--init {where}: a video-only model has no velocity stack (no audio)")
    model = AVTranscriber(start.config.replace(velocity_channels=velocity_channels)).train()
    fresh = ("velocity_stack.", "velocity_head.")
    kept = {k: v for k, v in start.state_dict().items() if not k.startswith(fresh)}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith(fresh) for k in missing), (missing, unexpected)
    return model


def _with_video_reference(start: Any, where: str) -> Any:
    """``start`` (an AVTranscriber) rebuilt with ``video_reference`` on: every weight copied,
    the video stem's first convolution given a third input channel (the frame minus the
    window's median frame) with zero weights, so the outputs are exactly ``start``'s until
    training moves them.

    Raises:
        ValueError: an audio-only model (no video encoder), or a stem that is not the
            expected first convolution.
    """
    from avfusion.model import AVTranscriber

    if start.config.mode == "audio":
        raise ValueError(f"--init {where}: an audio-only model has no video encoder")
    model = AVTranscriber(start.config.replace(video_reference=True)).train()
    state = start.state_dict()
    key = "video_encoder.stem.0.weight"
    old = state.get(key)
    if old is None or old.shape[1] != 2:
        raise ValueError(f"--init {where}: no 2-channel {key} to extend")
    state[key] = torch.cat([old, torch.zeros_like(old[:, :1])], dim=1)
    model.load_state_dict(state, strict=True)
    return model


def _with_wider_video(start: Any, video_channels: int, where: str) -> Any:
    """``start`` (an AVTranscriber) rebuilt with a wider video CNN (``video_channels``, and
    ``video_channels // 2`` in the stem), function-preserving: every old weight is copied; the
    new stem and key-stage channels get the fresh model's random initial weights, and every
    weight that reads a new channel into an old one (key-stage conv, key projection) is zero,
    so the outputs are exactly ``start``'s until training moves them (the zero-extension
    variant of Net2WiderNet, Chen et al., "Net2Net", ICLR 2016).

    Raises:
        ValueError: an audio-only model (no video encoder), a three-layer stem
            (``video_stem_layers`` 3), or ``video_channels`` not above the model's.
    """
    from avfusion.model import AVTranscriber

    if start.config.mode == "audio":
        raise ValueError(f"--init {where}: an audio-only model has no video encoder")
    if start.config.video_stem_layers != 1:
        raise ValueError(f"--init {where}: only a one-layer video stem can be widened")
    if video_channels <= start.config.video_channels:
        raise ValueError(
            f"--init {where}: video_channels {video_channels} is not above the model's "
            f"{start.config.video_channels}"
        )
    model = AVTranscriber(start.config.replace(video_channels=video_channels)).train()
    old, state = start.state_dict(), model.state_dict()
    c, p = start.config.video_channels, start.config.video_channels // 2
    rows = start.video_encoder.rows
    for key, value in old.items():
        new = state[key]
        if new.shape == value.shape:
            state[key] = value.clone()
        elif key == "video_encoder.key_block.0.weight":  # (c', p', 3, 3)
            new[:c, :p] = value
            new[:c, p:] = 0.0
        elif key == "video_encoder.key_proj.weight":  # (d, c' * rows), channel-major
            wide = new.view(new.shape[0], -1, rows)
            wide[:, :c] = value.view(value.shape[0], c, rows)
            wide[:, c:] = 0.0
        elif new.ndim and value.ndim and new.shape[1:] == value.shape[1:]:
            new[: value.shape[0]] = value  # stem conv rows, batch-norm parameters and stats
        else:
            raise ValueError(f"--init {where}: cannot widen {key} {tuple(value.shape)}")
    model.load_state_dict(state, strict=True)
    return model


def _with_resized_video(start: Any, width_px: int, height_px: int, where: str) -> Any:
    """``start`` (an AVTranscriber) rebuilt for larger rectified frames, ``width_px`` ×
    ``height_px``, with ``height_px`` an integer multiple f of the model's height: the one-layer
    stem's stride grows f times (``video_stem_stride``, so the same number of rows remain) and
    its kernel is stretched to match, each kernel row repeated f times and divided by f; every
    other weight is copied (key pooling follows the new width by itself: it is computed from
    the key geometry). On a frame that is the old frame with each row repeated f times, the
    outputs are exactly ``start``'s. A wider frame has more pixels per key: the 3-pixel
    horizontal kernel then spans fewer millimetres, so training must adapt it.

    Raises:
        ValueError: an audio-only model, a three-layer stem, a smaller frame, or a height that
            is not a multiple of the model's.
    """
    from avfusion.model import AVTranscriber

    old_cfg = start.config
    if old_cfg.mode == "audio":
        raise ValueError(f"--init {where}: an audio-only model has no video encoder to resize")
    if old_cfg.video_stem_layers != 1:
        raise ValueError(f"--init {where}: only a one-layer video stem can be resized")
    factor, rest = divmod(height_px, old_cfg.rect_height_px)
    if width_px < old_cfg.rect_width_px or factor < 1 or rest:
        raise ValueError(
            f"--init {where}: rectified frames {width_px}x{height_px} cannot grow from the "
            f"model's {old_cfg.rect_width_px}x{old_cfg.rect_height_px} (the width must not "
            "shrink and the height must be a whole multiple)"
        )
    resized = old_cfg.replace(
        rect_width_px=width_px,
        rect_height_px=height_px,
        video_stem_stride=old_cfg.video_stem_stride * factor,
    )
    model = AVTranscriber(resized).train()
    state = start.state_dict()
    key = "video_encoder.stem.0.weight"  # (p, inputs, s, 3)
    state[key] = state[key].repeat_interleave(factor, dim=2) / factor
    model.load_state_dict(state, strict=True)
    return model


def _freeze_all_but(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[torch.nn.Module]:
    """Freeze every parameter whose name does not start with one of ``prefixes``; return the
    top-level modules without any trainable parameter (to be kept in eval mode).

    Raises:
        ValueError: a prefix that names no parameter (lists the model's top-level modules).
    """
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"train_only: {prefix!r} names no parameter of the model ({tops})")
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
    return [
        module
        for module in model.children()
        if not any(p.requires_grad for p in module.parameters())
    ]


CENTRED_VELOCITY_ABS_WEIGHT = 0.1
"""Weight of the plain velocity MSE beside the centred one (``velocity_loss: centred``), which
keeps the predictions near the training velocities' level."""


def transcription_loss(
    logits: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: TrainConfig
) -> dict[str, torch.Tensor]:
    """Onsets and Frames losses (Hawthorne et al. 2018): BCE on onset (positives up-weighted),
    frame, offset and pedal; velocity on onset frames only. Returns each term and ``loss``.

    Velocity (targets velocity / 127): ``cfg.velocity_loss == "mse"`` is O&F's squared error.
    ``"centred"`` is the squared error of each onset's deviation from its window's mean
    (predicted and target means over the window's onsets), plus
    `CENTRED_VELOCITY_ABS_WEIGHT` × the plain one: a recording's gain and a piece's overall
    dynamics cannot be heard in a few seconds of sound, and their spread swamps the plain loss
    (experiments/runs/cpu-small-velocity compares the two); the note metrics with velocity
    (mir_eval) fit each piece's scale and offset anyway. The scale-invariant loss of Eigen et
    al. 2014 (depth from one image) is the same idea.
    """
    w = cfg.loss_weights
    pos = torch.tensor(cfg.onset_pos_weight, device=logits["onset"].device)
    terms = {
        "onset": F.binary_cross_entropy_with_logits(
            logits["onset"].float(), batch["onset"], pos_weight=pos
        ),
        "frame": F.binary_cross_entropy_with_logits(logits["frame"].float(), batch["frame"]),
        "offset": F.binary_cross_entropy_with_logits(logits["offset"].float(), batch["offset"]),
        "pedal": F.binary_cross_entropy_with_logits(logits["pedal"].float(), batch["pedal"]),
    }
    mask, pred, target = batch["onset"], logits["velocity"].float(), batch["velocity"]
    n_onsets = mask.sum().clamp(min=1)
    plain = (mask * (pred - target) ** 2).sum() / n_onsets
    if cfg.velocity_loss == "centred":
        per_window = mask.sum(dim=(1, 2)).clamp(min=1)  # (B,)
        pred_mean = (mask * pred).sum(dim=(1, 2)) / per_window
        target_mean = (mask * target).sum(dim=(1, 2)) / per_window
        dev = (pred - pred_mean[:, None, None]) - (target - target_mean[:, None, None])
        terms["velocity"] = (mask * dev**2).sum() / n_onsets + CENTRED_VELOCITY_ABS_WEIGHT * plain
    else:
        terms["velocity"] = plain
    terms["loss"] = torch.stack([w.get(k, 0.0) * v for k, v in terms.items()]).sum()
    return terms


def distillation_loss(
    student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], weight: torch.Tensor
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015) of onset and frame posteriors: binary cross
    entropy of the student's logits against the teacher's probabilities (soft targets), the mean
    over frames and keys of each window, averaged over the windows with ``weight`` > 0 (weighted
    by it) and summed over the two heads.

    Args:
        student, teacher: logits, ``onset`` and ``frame`` each (batch, T, 88).
        weight: (batch,), >= 0; e.g. 1 for the windows that lost their audio, 0 elsewhere.
    Returns:
        A scalar; 0 (still in the student's graph) when every weight is 0.
    """
    w = weight.to(student["onset"].dtype)
    total = student["onset"].new_zeros(())
    for head in ("onset", "frame"):
        target = torch.sigmoid(teacher[head].float())
        per_window = F.binary_cross_entropy_with_logits(
            student[head].float(), target, reduction="none"
        ).mean(dim=(1, 2))  # (B,)
        total = total + (w * per_window).sum() / w.sum().clamp(min=1e-8)
    return total


class _Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _grid_differences(a: Any, b: Any) -> dict[str, tuple[Any, Any]]:
    """The settings two model configs must share to read the same windows (frame grid, sample
    rate, rectified video size): ``{name: (a's, b's)}`` for each that differs."""
    keys = ("hop_length", "sample_rate_hz", "rect_width_px", "rect_height_px")
    return {k: (getattr(a, k), getattr(b, k)) for k in keys if getattr(a, k) != getattr(b, k)}


class TranscriptionSystem(L.LightningModule):
    """The model plus what training needs: losses, optimiser, validation by note F1."""

    def __init__(self, train_config: dict[str, Any]):
        super().__init__()
        from avfusion.model import AVTranscriber

        self.save_hyperparameters()
        self.cfg = TrainConfig(**train_config)
        self.model = AVTranscriber(model_config_for(self.cfg))
        self.init_extra: dict[str, Any] = {}  # the starting model's export metadata (--init)
        if self.cfg.init_from:
            from avfusion.model.checkpoint import load_checkpoint

            start, self.init_extra = load_checkpoint(resolve_init(self.cfg.init_from))
            if start.config.mode != self.cfg.mode:
                raise ValueError(
                    f"--init {self.cfg.init_from} is a {start.config.mode} model; the run's mode "
                    f"is {self.cfg.mode}"
                )
            want = model_config_for(self.cfg)
            diff = _grid_differences(start.config, want)
            rect = ("rect_width_px", "rect_height_px")
            resize = self.cfg.mode != "audio" and bool(diff) and set(diff) <= set(rect)
            if diff and not resize:
                raise ValueError(
                    f"--init {self.cfg.init_from}: the model was trained on other data settings "
                    f"{diff} (model, config); drop --config to use the model's own"
                )
            self.model = start.train()
            # the starting model's own architecture, but a config may add (or resize) a
            # velocity stack; a config without one keeps the model's
            if want.velocity_channels and want.velocity_channels != start.config.velocity_channels:
                self.model = _with_velocity_stack(start, want.velocity_channels, self.cfg.init_from)
            if want.video_reference and not self.model.config.video_reference:
                self.model = _with_video_reference(self.model, self.cfg.init_from)
            # a config that names a wider video CNN than the model's widens it
            wider = self.cfg.model.get("video_channels", 0)
            if self.cfg.mode != "audio" and wider > self.model.config.video_channels:
                self.model = _with_wider_video(self.model, wider, self.cfg.init_from)
            # a config that names larger rectified frames resizes the video stem
            if resize:
                self.model = _with_resized_video(
                    self.model, want.rect_width_px, want.rect_height_px, self.cfg.init_from
                )
        # the distillation teacher: frozen, in eval mode, and not a submodule (so it is in no
        # checkpoint or export; `on_fit_start` moves it to the run's device)
        self._teacher: list[torch.nn.Module] = []
        if self.cfg.distill_from:
            from avfusion.model.checkpoint import load_checkpoint

            teacher, _ = load_checkpoint(resolve_init(self.cfg.distill_from))
            if teacher.config.mode != "video":
                raise ValueError(
                    f"distill_from {self.cfg.distill_from}: a {teacher.config.mode} model; the "
                    "teacher must be a video-only model"
                )
            diff = _grid_differences(teacher.config, self.model.config)
            if diff:
                raise ValueError(
                    f"distill_from {self.cfg.distill_from}: the teacher's frame grid or video "
                    f"size differs from the model's: {diff} (teacher, model)"
                )
            self._teacher = [teacher.eval().requires_grad_(False)]
        self._frozen: list[torch.nn.Module] = []
        if self.cfg.train_only:
            self._frozen = _freeze_all_but(self.model, self.cfg.train_only)
        self._val: list[Any] | None = None
        self._val_scores: dict[tuple[str, str], list[float]] = {}
        self._val_cache: tuple[tuple[int, int], list[Any]] | None = None
        self.bank: Any = None

    def on_fit_start(self) -> None:
        for teacher in self._teacher:
            teacher.to(self.device)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Lightning puts the whole model in train mode after each validation
        for module in self._frozen:
            module.eval()

    def _inputs(self, batch: dict[str, torch.Tensor]) -> tuple[Any, Any, Any, int]:
        mode = self.cfg.mode
        audio = batch["audio"] if mode != "video" else None
        video = batch["video"] if mode != "audio" else None
        times = batch["video_times_s"] if mode != "audio" else None
        return audio, video, times, batch["onset"].shape[1]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        audio, video, times, n_frames = self._inputs(batch)
        if not self._teacher:
            logits = self.model(audio, video, times, n_frames=n_frames)
            terms = transcription_loss(logits, batch, self.cfg)
        else:  # the drop-out drawn here, to know which windows lost their audio
            keep = self.model.draw_modality_keep(batch["onset"].shape[0], self.device)
            logits = self.model(audio, video, times, n_frames=n_frames, modality_keep=keep)
            terms = transcription_loss(logits, batch, self.cfg)
            with torch.no_grad():
                target = self._teacher[0](None, video, times, n_frames=n_frames)
            terms["distill"] = distillation_loss(logits, target, 1.0 - keep[0])
            terms["loss"] = terms["loss"] + self.cfg.distill_weight * terms["distill"]
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in terms.items()},
            prog_bar=False,
            on_step=True,
            on_epoch=False,
        )
        self.log("loss", terms["loss"].detach(), prog_bar=True)
        return terms["loss"]

    # -- validation: whole performances (first val_seconds), several conditions, note F1 --
    def _val_items(self) -> list[Any]:
        if self._val is None:
            dc = self.cfg.data_config()
            perfs = split_performances(self.cfg, "validation")[: self.cfg.val_performances]
            self._val = [load_performance(p, dc, video=self.cfg.mode != "audio") for p in perfs]
        return self._val

    def on_validation_epoch_start(self) -> None:
        self._val_scores = {}

    def validation_step(self, index: torch.Tensor, batch_idx: int) -> None:
        # note F1 (and val_metric) at the best of a few onset thresholds, so that an early model
        # whose onset probabilities have not reached 0.5 yet is still ranked (the export tunes
        # them finely)
        per_threshold = [
            self._validate_one(int(index[0]), DecodeConfig(onset_threshold=t, frame_threshold=t))
            for t in VAL_THRESHOLDS
        ]
        for k, cond in enumerate(c for c, _, _ in per_threshold[0]):
            scores = [transcription_metrics(r[k][2], r[k][1]) for r in per_threshold]
            for metric in self.cfg.val_metrics:
                self._val_scores.setdefault((metric, cond), []).append(
                    max(m[metric] for m in scores)
                )

    def _validate_one(
        self, i: int, decode: DecodeConfig | None = None
    ) -> list[tuple[str, Any, Any]]:
        decode = decode or DecodeConfig()
        it = self._val_items()[i]
        out = []
        if self._val_cache is None or self._val_cache[0] != (i, self.global_step):
            self._val_cache = ((i, self.global_step), self._posteriors(it))
        for cond, post in self._val_cache[1]:
            est = decode_notes(
                post["onset"],
                post["frame"],
                post["velocity"],
                self.model.config.frame_rate_hz,
                decode,
                post["pedal"],
                post.get("key_cqt"),
            )
            out.append(
                (
                    cond,
                    est,
                    _clip_notes(it.perf.notes(), self.cfg.val_seconds),
                )
            )
        return out

    def _posteriors(
        self, it: Any, conditions: Sequence[str] | None = None, seconds: float | None = None
    ) -> list[tuple[str, dict[str, np.ndarray]]]:
        """The model's posteriors on the first ``seconds`` (default ``val_seconds``) of a loaded
        performance under each of ``conditions`` (default ``val_conditions``; noise from the
        bank's train half), one seeded draw per (performance, condition index)."""
        from avfusion.noise import NoiseBank, degrade
        from avfusion.noise.video import degrade_video

        if (
            self.bank is None
            and self.cfg.noise_bank
            and Path(self.cfg.noise_bank, "manifest.json").is_file()
        ):
            self.bank = NoiseBank(self.cfg.noise_bank)
        sr = self.model.config.sample_rate_hz
        n = min(len(it.audio), round((seconds or self.cfg.val_seconds) * sr))
        clean = it.audio[:n]
        keep = it.times_s < n / sr + 0.5
        res = []
        for k, cond in enumerate(self.cfg.val_conditions if conditions is None else conditions):
            audio_cond, video_cond = split_val_condition(cond)
            needs_bank = audio_cond.split("@")[0] in ("babble", "music", "reverb")
            if needs_bank and self.bank is None:
                continue
            rng = np.random.default_rng([self.cfg.seed, k, zlib.crc32(it.perf.id.encode())])
            audio = (
                degrade(clean, audio_cond, rng, bank=self.bank, half="train").audio
                if np.any(clean)
                else clean
            )
            frames = np.asarray(it.frames[keep]) if self.cfg.mode != "audio" else None
            if frames is not None and video_cond is not None:
                frames = degrade_video(frames, video_cond, rng)[0]
            post = predict_posteriors(
                self.model,
                audio if self.cfg.mode != "video" else None,
                frames,
                it.times_s[keep] if self.cfg.mode != "audio" else None,
                n_samples=n,
                window_s=self.cfg.data_config().window_s,
                device=self.device,
            )
            res.append((cond, post))
        return res

    def on_validation_epoch_end(self) -> None:
        for metric in self.cfg.val_metrics:
            name = val_log_name(metric)
            means = {
                c: float(np.mean(v)) for (m, c), v in self._val_scores.items() if m == metric and v
            }
            for c, m in means.items():
                self.log(f"{name}/{c}", m)
            self.log(name, float(np.mean(list(means.values()))) if means else 0.0, prog_bar=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=self.cfg.lr,
            weight_decay=self.cfg.weight_decay,
        )
        sched: torch.optim.lr_scheduler.LRScheduler
        if self.cfg.lr_schedule == "time":
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda _step: one_cycle_factor(self._time_fraction(), ONE_CYCLE_PCT_START)
            )
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=self.cfg.lr, total_steps=self.cfg.max_steps,
                pct_start=ONE_CYCLE_PCT_START,
            )  # fmt: skip
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _time_fraction(self) -> float:
        """How much of ``max_time_min`` the training has used, from Lightning's Timer (which
        the trainer makes from ``max_time`` and restores on resume), in [0, 1]."""
        from lightning.pytorch.callbacks import Timer

        timer = next(cb for cb in self.trainer.callbacks if isinstance(cb, Timer))  # type: ignore[attr-defined]
        return time_fraction(timer, float(self.cfg.max_time_min or 0) * 60)


VAL_THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5)


def _checkpoint_to_export(folder: Path, monitor: str = "val/note_f1") -> str:
    """``best.ckpt`` (highest ``monitor``: validation note F1 by default), or ``last.ckpt``
    when no validation ever scored above 0 (then "best" is only the first validation, and the
    latest weights are the better guess)."""
    last, best = folder / "last.ckpt", folder / "best.ckpt"
    if not best.is_file():
        return str(last)
    state = torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})
    scores = [v.get("best_model_score") for k, v in state.items() if f"'{monitor}'" in k]
    score = float(scores[0]) if scores and scores[0] is not None else 0.0
    return str(best) if score > 0 else str(last)


def _clip_notes(notes: Any, seconds: float) -> Any:
    from avfusion.notes import Notes

    return Notes.from_iterables([n for n in notes.notes if n.onset_s < seconds - 0.05], [])


def _collate_val(items: list[int]) -> torch.Tensor:
    return torch.tensor(items)


def _train_loaders(config: TrainConfig) -> dict[str, Any]:
    """The training windows (`WindowDataset`, the training split, degraded with the noise bank's
    training half and augmented) and the validation performances' indices, as Lightning's
    ``fit`` takes them."""
    from avfusion.noise import NoiseBank

    bank = (
        NoiseBank(config.noise_bank)
        if config.noise_bank and Path(config.noise_bank, "manifest.json").is_file()
        else None
    )
    train_ds = WindowDataset(config.dataset or config.corpus, "train", config.data_config(), train=True,
                             seed=config.seed, bank=bank, max_performances=config.max_train_performances,
                             performances=split_performances(config, "train"),
                             video=config.mode != "audio")  # fmt: skip
    n_val = min(config.val_performances, len(split_performances(config, "validation")))
    return {
        "train_dataloaders": DataLoader(
            train_ds,
            batch_size=config.batch_size,
            shuffle=True,
            num_workers=config.num_workers,
            persistent_workers=config.num_workers > 0,
            drop_last=True,
        ),
        "val_dataloaders": DataLoader(_Indices(n_val), batch_size=1, collate_fn=_collate_val),
    }


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    accelerator: str = "auto",
    devices: int | str = "auto",
    strategy: str = "auto",
    resume: bool = True,
    progress: bool = True,
    export_only: bool = False,
    export: bool = True,
) -> Path:
    """Train a model, resuming from ``out/checkpoints/last.ckpt`` if it exists, then tune
    thresholds on validation and export the best model to ``out/model/`` (safetensors + JSON).
    With ``export_only``, skip training: re-tune and re-export the run's best checkpoint, or,
    when the run has none and ``config.init_from`` names a model, that model's weights as they
    are (a new rescorer or decoder for a bundled model). With ``export=False``, stop after
    training (checkpoints, logs and learning curves only): the export, which fits the rescorer
    and tunes the decoder on the CPU, can then run elsewhere with ``export_only`` (e.g. after a
    timed GPU lease).

    Raises:
        FileNotFoundError: ``export_only`` without a checkpoint in ``out`` or an ``init_from``.
        ValueError: ``export_only`` with ``export=False`` (nothing to do).

    Returns:
        The export folder, or with ``export=False`` the checkpoint folder.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from avfusion.model.checkpoint import save_checkpoint

    if export_only and not export:
        raise ValueError("export_only with export=False: nothing to do")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    L.seed_everything(config.seed, workers=True)
    loaders = None if export_only else _train_loaders(config)  # export: no windows read
    system = TranscriptionSystem(asdict(config))
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor=config.val_monitor, mode="max"
    )
    # last.ckpt every few steps whatever the validation says (Lightning's save_last only copies
    # a checkpoint when the monitored one is saved), so a killed run loses little
    latest = ModelCheckpoint(dirpath=out / "checkpoints", filename="latest-{step}", save_top_k=1,
                             every_n_train_steps=max(1, min(50, config.val_every_n_steps)), save_last=True)  # fmt: skip
    max_time = timedelta(minutes=config.max_time_min) if config.max_time_min else None
    precision: Any = (
        "bf16-mixed"
        if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
        else "32-true"
    )
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, strategy=strategy, max_steps=config.max_steps, max_time=max_time,
        val_check_interval=config.val_every_n_steps, check_val_every_n_epoch=None, callbacks=[ckpt, latest],
        logger=CSVLogger(out, name="logs", version=""), precision=precision, enable_progress_bar=progress,
        log_every_n_steps=10, num_sanity_val_steps=0, deterministic=False,
    )  # fmt: skip
    last = out / "checkpoints" / "last.ckpt"
    t0 = time.perf_counter()
    resumed = resume and last.is_file()
    if loaders is not None:
        trainer.fit(system, **loaders, ckpt_path=str(last) if resumed else None)
    plot_learning_curves(
        out / "logs" / "metrics.csv", out / "learning_curves.png", config.val_monitor
    )
    if not export:  # what the export will record as this run's training time (all calls)
        trained, wall = out / "trained.json", time.perf_counter() - t0
        if resumed and trained.is_file():
            wall += float(json.loads(trained.read_text())["train_wall_s"])
        trained.write_text(json.dumps({"train_wall_s": round(wall, 1)}) + "\n")
        return out / "checkpoints"
    # export-only with --init and no checkpoint of its own: the starting model as it is
    # (re-tuned thresholds, a refitted rescorer), its steps and time from its own export
    from_init = export_only and not last.is_file() and config.init_from is not None
    if from_init:
        best_step = int(system.init_extra.get("best_step", -1))
        checkpoint = f"--init {config.init_from}"
    elif not last.is_file():
        raise FileNotFoundError(f"{last}: no checkpoint to export (train first, or give --init)")
    else:
        best = _checkpoint_to_export(out / "checkpoints", config.val_monitor)
        ck_meta = torch.load(best, map_location="cpu", weights_only=True)
        system.load_state_dict(ck_meta["state_dict"], strict=True)
        best_step, checkpoint = int(ck_meta.get("global_step", -1)), Path(best).name
    system.model.to("cpu")
    system.to("cpu")
    rescorer, rescorer_fit = (
        fit_export_rescorer(system, progress) if config.rescorer_performances else (None, None)
    )
    decode, val_metrics = tune_thresholds(system, rescorer)
    if rescorer_fit is not None:
        rescorer_fit["kept"] = decode.rescorer is not None
    wall_s: float | None = round(time.perf_counter() - t0, 1)
    if from_init:
        wall_s = system.init_extra.get("train_wall_s")
        global_step = int(system.init_extra.get("global_step", -1))
    elif export_only:  # keep the training time of an earlier export, or of a --no-export run
        old, trained = out / "model" / "config.json", out / "trained.json"
        wall_s = None
        if old.is_file():
            wall_s = json.loads(old.read_text()).get("extra", {}).get("train_wall_s")
        elif trained.is_file():
            wall_s = json.loads(trained.read_text()).get("train_wall_s")
        global_step = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
    else:
        global_step = trainer.global_step
    extra = {"decode": decode.to_dict(), "validation": val_metrics, "train_config": asdict(config),
             "train_wall_s": wall_s, "global_step": global_step,
             "best_step": best_step, "checkpoint": checkpoint,
             "rescorer_fit": rescorer_fit}  # fmt: skip
    return save_checkpoint(system.model, out / "model", extra=extra)


ONE_CYCLE_PCT_START: float = 0.1
"""Share of the schedule spent warming up (torch's OneCycleLR ``pct_start``)."""


def one_cycle_factor(
    fraction: float, pct_start: float = ONE_CYCLE_PCT_START, div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:  # fmt: skip
    """The one-cycle learning rate at ``fraction`` in [0, 1] of the schedule, as a factor of
    the peak: cosine from ``1 / div_factor`` up to 1 over ``pct_start``, then cosine down to
    ``1 / (div_factor · final_div_factor)`` (Smith & Topin 2019; torch's OneCycleLR with
    cosine annealing and the same defaults, on a continuous clock). Out-of-range fractions are
    clipped."""
    f = min(max(float(fraction), 0.0), 1.0)
    start, low = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def cos(a: float, b: float, t: float) -> float:
        return b + (a - b) / 2.0 * (math.cos(math.pi * t) + 1.0)

    if f <= pct_start:
        return cos(start, 1.0, f / pct_start)
    return cos(1.0, low, (f - pct_start) / (1.0 - pct_start))


def time_fraction(timer: Any, duration_s: float) -> float:
    """Lightning ``Timer``'s training time elapsed (resumed calls included) over
    ``duration_s``, clipped to [0, 1]."""
    if duration_s <= 0:
        return 1.0
    return min(max(float(timer.time_elapsed("train")) / duration_s, 0.0), 1.0)


RESCORER_FEATURES: tuple[str, ...] = (
    "posteriors", "posteriors+cqt", "posteriors+history", "posteriors+cqt+history",
    "posteriors+history+patch", "posteriors+cqt+history+patch",
)  # fmt: skip
"""The values of `TrainConfig.rescorer_features` (`avfusion.rescore.FEATURE_SETS`)."""

ONSET_THRESHOLD_GRID: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
"""Fixed onset thresholds tried by `tune_thresholds` (for note F1)."""
FRAME_THRESHOLD_GRID: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
"""Frame thresholds tried by `tune_thresholds` (for note-with-offset F1)."""

FRAME_CAP_QUANTILE_GRID: tuple[float, ...] = (0.0, 0.1, 0.25)
"""With a rescorer, the quantiles of a block's kept onset posteriors tried as the cap of its
frame threshold (`avfusion.decoding.DecodeConfig.frame_cap_quantile`)."""


def rescorer_training_clips(
    system: TranscriptionSystem, progress: bool = True
) -> tuple[list[tuple[Any, ...]], list[str], int]:
    """The clips a rescorer of ``system`` is fitted on: the system's posteriors on the first
    ``rescorer_performances`` of the training split (seeded shuffle), first
    ``rescorer_seconds`` each, under each of ``rescorer_conditions`` (an audio-only model sees
    no video and a video-only one hears no audio: one clip per condition of the modality it
    reads, the first that names it).

    Returns:
        (items, conditions, n_performances): items as `avfusion.rescore.fit_rescorer` takes
        them, (onset, frame, reference notes, key_cqt or None) per clip; the conditions drawn.
    """
    from tqdm.auto import tqdm

    cfg = system.cfg
    system.eval()
    conditions = list(cfg.rescorer_conditions)
    if cfg.mode != "fusion":  # one clip per condition of the modality the model reads
        part = 0 if cfg.mode == "audio" else 1
        first: dict[str | None, str] = {}
        for c in conditions:
            first.setdefault(split_val_condition(c)[part], c)
        conditions = list(first.values())
    perfs = list(split_performances(cfg, "train"))
    order = np.random.default_rng(cfg.seed).permutation(len(perfs))
    perfs = [perfs[i] for i in sorted(order[: cfg.rescorer_performances])]
    dc = cfg.data_config()
    items = []
    for perf in tqdm(perfs, desc="rescorer: training posteriors", disable=not progress):
        it = load_performance(perf, dc, video=cfg.mode != "audio")
        ref = _clip_notes(perf.notes(), cfg.rescorer_seconds)
        for _, post in system._posteriors(it, conditions, cfg.rescorer_seconds):
            items.append((post["onset"], post["frame"], ref, post.get("key_cqt")))
    return items, conditions, len(perfs)


def rescorer_parts(cfg: TrainConfig) -> tuple[bool, bool, bool]:
    """(spectral, history, patch): what a rescorer of ``cfg`` reads (its
    ``rescorer_features``; a video-only model has no sound to read)."""
    parts = cfg.rescorer_features.split("+")
    return "cqt" in parts and cfg.mode != "video", "history" in parts, "patch" in parts


def fit_export_rescorer(
    system: TranscriptionSystem, progress: bool = True
) -> tuple[Rescorer | None, dict[str, Any]]:
    """Fit the note-candidate rescorer (`avfusion.rescore.fit_rescorer`) on the system's
    posteriors on training performances (`rescorer_training_clips`).

    Returns:
        The rescorer, or None when the training clips give nothing to fit (no true or no false
        candidate: an untrained model); and a record of the fit (performances, clips,
        conditions, feature set, fit, wall time in seconds, error if any) for the export's
        metadata.
    """
    cfg = system.cfg
    t0 = time.perf_counter()
    items, conditions, n_perfs = rescorer_training_clips(system, progress)
    spectral, history, patch = rescorer_parts(cfg)
    features = "+".join(
        ["posteriors"] + ["cqt"] * spectral + ["history"] * history + ["patch"] * patch
    )
    info: dict[str, Any] = {"performances": n_perfs, "clips": len(items),
                            "conditions": conditions, "seconds": cfg.rescorer_seconds,
                            "features": features, "fit": cfg.rescorer_fit}  # fmt: skip
    try:
        rescorer = fit_rescorer(items, system.model.config.frame_rate_hz, cfg.rescorer_hidden,
                                cfg.seed, spectral, history, patch, cfg.rescorer_fit)  # fmt: skip
    except ValueError as exc:
        rescorer, info["error"] = None, str(exc)
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    return rescorer, info


def tune_thresholds(
    system: TranscriptionSystem, rescorer: Rescorer | None = None
) -> tuple[DecodeConfig, dict[str, float]]:
    """Choose the decoder's thresholds on the validation split (never the test split): the
    system's posteriors on each validation performance and condition, then `tune_decoder`
    (which keeps ``rescorer`` if it raises mean validation note F1)."""
    system.eval()
    cached = []  # (condition, posteriors, reference notes) per validation clip
    for it in system._val_items():
        ref = _clip_notes(it.perf.notes(), system.cfg.val_seconds)
        cached += [(c, post, ref) for c, post in system._posteriors(it)]
    return tune_decoder(cached, system.model.config.frame_rate_hz, rescorer)


def tune_decoder(
    clips: Sequence[tuple[str, dict[str, np.ndarray], Any]],
    frame_rate_hz: float,
    rescorer: Rescorer | None = None,
) -> tuple[DecodeConfig, dict[str, float]]:
    """Decoder thresholds that do best on the given clips (validation clips only).

    1. The onset threshold: a fixed one from `ONSET_THRESHOLD_GRID` for mean note F1 (onset
       only); then an onset calibration fitted on the same posteriors
       (`avfusion.decoding.fit_onset_calibration`), kept (one adaptive threshold per block,
       `avfusion.decoding.onset_thresholds`) if its mean note F1 is higher; then ``rescorer``
       (fitted on the training split, `fit_export_rescorer`), kept if it raises mean note F1
       further (each block keeps its best-rescored peaks: `avfusion.decoding.block_onsets`).
    2. The frame threshold, which only sets where notes end (their onsets and pitches, so note
       F1, do not depend on it): from `FRAME_THRESHOLD_GRID` for mean note-with-offset F1
       (mir_eval: offset within 20 % of the note or 50 ms), and with a rescorer the quantile
       of the kept peaks' posteriors that caps it in each block (`FRAME_CAP_QUANTILE_GRID`,
       `avfusion.decoding.DecodeConfig.frame_cap_quantile`). Ties keep the lower values.

    Args:
        clips: (condition, posteriors with ``onset``, ``frame`` and ``velocity`` of shape
            (n_frames, 88) and, with audio, ``key_cqt`` (read by a rescorer fitted on sound),
            reference :class:`~avfusion.notes.Notes`) per clip.
        frame_rate_hz: model frames per second.
    Returns:
        The chosen config and its mean scores per condition: ``note_f1/<condition>`` and
        ``note_offset_f1/<condition>``.
    """

    def scores(dec: DecodeConfig) -> list[dict[str, float]]:  # the metrics of each clip
        return [
            transcription_metrics(ref, decode_notes(p["onset"], p["frame"], p["velocity"], frame_rate_hz, dec, spec=p.get("key_cqt")))
            for _, p, ref in clips
        ]  # fmt: skip

    def mean(ms: list[dict[str, float]], key: str) -> float:
        return float(np.mean([m[key] for m in ms]))

    onset: tuple[float, DecodeConfig] = (-1.0, DecodeConfig())
    for on in ONSET_THRESHOLD_GRID:
        dec = DecodeConfig(onset_threshold=on)
        if (f1 := mean(scores(dec), "note/f1")) > onset[0]:
            onset = (f1, dec)
    try:
        x, y = fit_onset_calibration([(p["onset"], ref) for _, p, ref in clips], frame_rate_hz)
    except ValueError:  # no onset peaks at all (an untrained model): keep the fixed one
        pass
    else:
        adaptive = replace(onset[1], onset_calibration_x=x, onset_calibration_y=y)
        if (f1 := mean(scores(adaptive), "note/f1")) > onset[0]:
            onset = (f1, adaptive)
    if rescorer is not None:
        rescored = replace(onset[1], rescorer=rescorer)
        if (f1 := mean(scores(rescored), "note/f1")) > onset[0]:
            onset = (f1, rescored)
    best: tuple[float, DecodeConfig, list[dict[str, float]]] = (-1.0, onset[1], [])
    caps = FRAME_CAP_QUANTILE_GRID if onset[1].rescorer is not None else (0.0,)
    for cap in caps:
        for fr_t in FRAME_THRESHOLD_GRID:
            dec = replace(onset[1], frame_threshold=fr_t, frame_cap_quantile=cap)
            ms = scores(dec)
            if (f1 := mean(ms, "note_offset/f1")) > best[0]:
                best = (f1, dec, ms)
    per_cond: dict[str, list[dict[str, float]]] = {}
    for (c, _, _), m in zip(clips, best[2], strict=True):
        per_cond.setdefault(c, []).append(m)
    return best[1], {
        **{f"note_f1/{c}": mean(ms, "note/f1") for c, ms in per_cond.items()},
        **{f"note_offset_f1/{c}": mean(ms, "note_offset/f1") for c, ms in per_cond.items()},
    }


def plot_learning_curves(metrics_csv: Path, out_png: Path, monitor: str = "val/note_f1") -> None:
    """Training loss and the validation metric ``monitor`` (`TrainConfig.val_monitor`: note F1
    unless the run picks its checkpoint by another) against step, from Lightning's CSV log."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics_csv.is_file():
        return
    rows = list(csv.DictReader(metrics_csv.open()))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    tr = [(int(r["step"]), float(r["train/loss"])) for r in rows if r.get("train/loss")]
    if tr:
        s, v = zip(*tr, strict=True)
        a.plot(s, v, lw=0.8)
    a.set(xlabel="step", ylabel="training loss", yscale="log")
    keys = [k for k in rows[0] if k == monitor or k.startswith(monitor + "/")] if rows else []
    for key in sorted(keys):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if pts:
            s, v = zip(*pts, strict=True)
            b.plot(
                s,
                v,
                marker="o",
                label=key.removeprefix(monitor + "/") if key != monitor else "mean",
            )
    name = monitor.removeprefix("val/").removesuffix("_f1").replace("_", "-")
    b.set(xlabel="step", ylabel=f"validation {name} F1", ylim=(0, 1))
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
