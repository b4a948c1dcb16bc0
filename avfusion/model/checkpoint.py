"""Checkpoints: a folder with ``model.safetensors`` (weights) and ``config.json`` (how to rebuild).

``config.json``::

    {"format": "avfusion-checkpoint", "format_version": 1,
     "model_config": {...ModelConfig.to_dict()...},
     "weights_file": "model.safetensors", "weights_sha256": "<hex>",
     "extra": {...caller's metadata, e.g. decoding thresholds...}}

Both files are written atomically (temporary file + rename), weights first, so a crash leaves
either the old pair or a config whose sha256 does not match (refused on load). Loading rebuilds
the model from the config and loads the weights with ``strict=True``; never pickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avfusion.fileio import atomic_path, sha256_file
from avfusion.model.config import ModelConfig
from avfusion.model.fusion import AVTranscriber

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "avfusion-checkpoint"
FORMAT_VERSION = 1


def _checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder for a folder path or a path to one of its two files."""
    path = Path(path)
    if path.name in (WEIGHTS_FILE, CONFIG_FILE):
        return path.parent
    return path


def save_checkpoint(
    model: AVTranscriber, path_stem_or_dir: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` as a checkpoint folder (created if missing).

    Args:
        model: the model; its ``config`` is saved beside the weights.
        path_stem_or_dir: the checkpoint folder (e.g. ``runs/x/best``), or a path to its
            ``model.safetensors`` / ``config.json``.
        extra: JSON-serialisable metadata stored under ``"extra"`` and returned by
            `load_checkpoint` (e.g. decoding thresholds, training step).
    Returns:
        The checkpoint folder.
    Raises:
        ValueError: if ``extra`` is not JSON-serialisable.
    """
    folder = _checkpoint_dir(path_stem_or_dir)
    extra = dict(extra or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_checkpoint: extra is not JSON-serialisable: {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = folder / WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights),
        "extra": extra,
    }
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return folder


def _read_config(config_path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{config_path}: not an avfusion checkpoint config (no format={FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format_version {doc.get('format_version')!r} is not supported "
            f"(this avfusion reads {FORMAT_VERSION})"
        )
    for key in ("model_config", "weights_sha256"):
        if key not in doc:
            raise ValueError(f"{config_path}: missing {key!r}")
    return doc


def _mismatch_report(model: AVTranscriber, state: dict[str, torch.Tensor]) -> str:
    """A few keys where the weights and the model built from the config disagree."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = []
    if shapes:
        parts.append(
            "shape mismatch: "
            + ", ".join(f"{k} (config {expected[k]}, weights {found[k]})" for k in shapes[:3])
        )
    if missing:
        parts.append(f"missing from the weights: {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"not in the model: {', '.join(unexpected[:3])}")
    return "; ".join(parts) or "unknown difference"


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[AVTranscriber, dict[str, Any]]:
    """Rebuild a model from a checkpoint folder written by `save_checkpoint`.

    Args:
        path: the checkpoint folder, or a path to its ``model.safetensors`` / ``config.json``.
        device: where to put the model (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a torch.device,
            or ``"auto"``: CUDA if available, else CPU).
    Returns:
        (model in eval mode on ``device``, the ``extra`` metadata dict given at save time).
    Raises:
        ValueError: naming the file, if a file is missing, the config is invalid, the weights'
            sha256 does not match the config (corrupt or swapped file), the weights are not
            readable safetensors, or the config's shapes do not match the weights.
    """
    folder = _checkpoint_dir(path)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{config_path}: checkpoint config not found")
    doc = _read_config(config_path)
    weights = folder / str(doc.get("weights_file", WEIGHTS_FILE))
    if not weights.is_file():
        raise ValueError(f"{weights}: checkpoint weights not found")
    digest = sha256_file(weights)
    if digest != doc["weights_sha256"]:
        raise ValueError(
            f"{weights}: sha256 {digest[:12]}… does not match {doc['weights_sha256'][:12]}… "
            f"recorded in {config_path.name}; the weights file is corrupt or from another "
            "checkpoint"
        )
    try:
        config = ModelConfig.from_dict(doc["model_config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{config_path}: invalid model_config: {exc}") from exc
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from exc
    model = AVTranscriber(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{config_path}: the model config does not match the weights in {weights.name}: "
            f"{_mismatch_report(model, state)}"
        ) from exc
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    extra = doc.get("extra", {})
    return model, dict(extra) if isinstance(extra, dict) else {}
