"""The avfusion network: audio and video encoders, cross-attention fusion, heads, checkpoints.

Public API::

    from avfusion.model import AVTranscriber, ModelConfig, preset, n_frames
    model = AVTranscriber(preset("cpu-small"))           # mode "fusion", fusion "xattn"
    logits = model(audio, video, video_times_s)          # dict of (B, T, 88) / (B, T) logits
    save_checkpoint(model, "runs/x/best", extra={...}); model, extra = load_checkpoint(...)

Conventions: audio (B, n_samples) float32 at 16 kHz; video (B, T_v, H, W) grayscale 0…255
rectified keyboard frames with timestamps (B, T_v) in seconds from audio sample 0; model
frames ``T = n_frames(n_samples) = n_samples // hop_length + 1``, frame i centred at
``i * hop_length / sample_rate_hz`` s; key index = MIDI − 21. The model returns logits only.
"""

from avfusion.model.checkpoint import load_checkpoint, save_checkpoint
from avfusion.model.config import (
    FUSIONS,
    MODES,
    PRESETS,
    TEMPORALS,
    ModelConfig,
    frame_times_s,
    n_frames,
    preset,
)
from avfusion.model.encoders import (
    AudioEncoder,
    VideoEncoder,
    key_pixel_spans,
    key_pooling_matrix,
    resample_to_frames,
)
from avfusion.model.fusion import AVTranscriber, FusionLayer, LocalCrossAttention

__all__ = [
    "FUSIONS",
    "MODES",
    "PRESETS",
    "TEMPORALS",
    "AVTranscriber",
    "AudioEncoder",
    "FusionLayer",
    "LocalCrossAttention",
    "ModelConfig",
    "VideoEncoder",
    "frame_times_s",
    "key_pixel_spans",
    "key_pooling_matrix",
    "load_checkpoint",
    "n_frames",
    "preset",
    "resample_to_frames",
    "save_checkpoint",
]
