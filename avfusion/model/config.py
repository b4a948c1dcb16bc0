"""The model's configuration: one frozen dataclass, its presets, and the frame-time convention.

A `ModelConfig` is saved beside every checkpoint as JSON (`to_dict` / `from_dict` round-trip
exactly), so a model can always be rebuilt from its checkpoint alone.

Time convention (checked against nnAudio 0.3.4's centred ``CQT2010v2``): an audio window of
``n_samples`` samples gives ``n_frames(n_samples) = n_samples // hop_length + 1`` model frames,
and model frame ``i`` is centred on time ``i * hop_length / sample_rate_hz`` seconds after the
window's first sample (sample 0 is time 0). With the defaults (16 kHz, hop 512) that is
31.25 frames/s, and 5 s of audio (80 000 samples) gives 157 frames.

Pitch convention (DESIGN.md): 88 keys, key index = MIDI − 21. The CQT has ``bins_per_semitone``
bins per key, ``n_bins = 88 * bins_per_semitone``; bins ``[k*bps, (k+1)*bps)`` belong to key ``k``
and the centre of that group (bin ``k*bps + bps//2`` for odd ``bps``) is key ``k``'s equal-tempered
frequency ``27.5 * 2**(k/12)`` Hz (A0 = 27.5 Hz, A4 = MIDI 69 = key 48 = 440 Hz).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from avfusion.config import N_KEYS, SAMPLE_RATE_HZ

MODES: tuple[str, ...] = ("fusion", "audio", "video")
"""``fusion`` uses audio and video; ``audio`` / ``video`` switch the other branch off."""
FUSIONS: tuple[str, ...] = ("xattn", "concat")
"""``xattn``: local cross-attention with a gated residual (the model); ``concat``: ablation."""

TEMPORALS: tuple[str, ...] = ("conv", "gru")
"""Temporal layer after the fusion: dilated 1D convs or a bidirectional GRU."""

A0_HZ: float = 27.5
"""Frequency of the lowest piano key, A0 = MIDI 21 (Hz)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build an `avfusion.model.AVTranscriber` (sizes, rates, modes).

    Attributes:
        mode: ``"fusion"`` (audio + video), ``"audio"`` or ``"video"``; the unused encoder is
            not built.
        fusion: ``"xattn"`` (local cross-attention, gated residual) or ``"concat"`` (ablation:
            audio and video key tokens concatenated, then a linear layer).
        sample_rate_hz: audio sample rate the model expects (Hz).
        hop_length: CQT hop in samples; sets the model frame rate ``sample_rate_hz / hop_length``.
            Must be divisible by ``2**(n_octaves - 1)`` (nnAudio's CQT2010v2 halves it per octave).
        bins_per_semitone: CQT bins per key (odd values put a bin exactly on each key).
        cqt_log_gain: the log front end is ``log1p(cqt_log_gain * |CQT|)``; a full-scale sine
            has ``|CQT|`` ≈ 21, so the default 100 puts the knee ≈ 47 dB below that.
        rect_width_px, rect_height_px: size of the rectified keyboard frames. x spans the
            keyboard's 0…1222 mm linearly, so key k covers columns
            ``left_mm[k] * W / 1222 … right_mm[k] * W / 1222`` (`avfusion.keyboard`).
        d_model: width of every key token.
        audio_channels: channels of the audio conv stack (O&F acoustic model style).
        video_channels: channels of the per-frame video CNN.
        video_stem_layers: convolutions of the video CNN's pixel stage, each with
            ``video_channels // 2`` channels: 1 (one 8×3 conv with stride (8, 1): the models
            bundled so far) or 3 (three 3×3 convs with stride (2, 1): a 7-pixel receptive
            field across the keys and finer vertical detail, where a finger tip and a key's
            front edge are a few pixels tall).
        video_stem_stride: pixel rows per output row of the one-layer stem: its conv is
            ``video_stem_stride`` × 3 with stride (``video_stem_stride``, 1), so
            ``rect_height_px // video_stem_stride`` rows remain (8: five 30 mm bands of a 40-pixel
            frame, the models bundled so far; 16 keeps five bands of an 80-pixel frame). Ignored
            by the three-layer stem.
        video_reference: give the video CNN a third input channel, each frame minus the
            per-pixel median over the window's frames (a background reference: the keys as they
            look up and uncovered most of the time), so that a held key's small, lasting change
            of shading stands out, not only the frame-to-frame change. Off in the models
            bundled before stage 14.
        harmonic_offsets_keys: key offsets (semitones) whose conv features are gathered into
            each audio key token: sub-harmonics below, harmonics 2, 3, 4, 5, 6 above.
        n_heads: attention heads in the cross-attention (divides ``d_model``).
        time_window: model frames on each side of the query frame that the cross-attention sees.
        key_window: keys on each side of the query key that the cross-attention sees.
        n_fusion_layers: stacked (cross-attention + FFN) blocks.
        temporal: the layer over time per key after the fusion: ``"conv"`` (residual
            depthwise-separable 1D convs, kernel 3, dilations 1, 2, 4, …: cheap on a CPU) or
            ``"gru"`` (bidirectional GRU as in Onsets and Frames' BiLSTM; fast with cuDNN, slow
            to train on a CPU).
        n_temporal_layers: conv blocks (dilation doubling per block; 4 blocks see ±15 frames
            ≈ ±0.5 s) or GRU layers.
        ffn_mult: hidden width of the FFNs as a multiple of ``d_model``.
        gate_init: initial value of the per-channel gate ``g`` of the gated residual
            ``q + tanh(g) * attn``: small, so training starts near the audio path, but not 0,
            so the video branch gets a gradient from the first step.
        dropout: dropout probability inside the network.
        velocity_channels: channels of a separate velocity stack over the log-CQT
            (`avfusion.model.fusion.VelocityStack`, after Onsets and Frames' velocity stack);
            0: velocity is a linear map of the shared key features (models bundled before the
            stack). Only built in the modes with audio.
        p_drop_audio, p_drop_video: modality drop-out probabilities per training sample, applied
            by the model only in training and ``mode == "fusion"``; the two events are exclusive
            (never both for one sample), so ``p_drop_audio + p_drop_video <= 1``.
    """

    mode: str = "fusion"
    fusion: str = "xattn"
    sample_rate_hz: int = SAMPLE_RATE_HZ
    hop_length: int = 512
    bins_per_semitone: int = 3
    cqt_log_gain: float = 100.0
    rect_width_px: int = 416
    rect_height_px: int = 40
    d_model: int = 64
    audio_channels: int = 32
    video_channels: int = 24
    video_stem_layers: int = 1
    video_stem_stride: int = 8
    video_reference: bool = False
    harmonic_offsets_keys: tuple[int, ...] = field(default=(-19, -12, 0, 12, 19, 24, 28, 31))
    n_heads: int = 4
    time_window: int = 2
    key_window: int = 6
    n_fusion_layers: int = 1
    temporal: str = "conv"
    n_temporal_layers: int = 4
    ffn_mult: int = 2
    gate_init: float = 0.1
    dropout: float = 0.1
    p_drop_audio: float = 0.2
    p_drop_video: float = 0.2
    velocity_channels: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"ModelConfig.mode={self.mode!r}: must be one of {MODES}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"ModelConfig.fusion={self.fusion!r}: must be one of {FUSIONS}")
        if self.temporal not in TEMPORALS:
            raise ValueError(f"ModelConfig.temporal={self.temporal!r}: must be one of {TEMPORALS}")
        positive = (
            "sample_rate_hz",
            "hop_length",
            "bins_per_semitone",
            "d_model",
            "audio_channels",
            "video_channels",
            "n_heads",
            "n_fusion_layers",
            "n_temporal_layers",
            "ffn_mult",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name}={value!r}: must be a positive integer")
        for name in ("time_window", "key_window", "velocity_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ModelConfig.{name}={value!r}: must be an integer >= 0")
        if self.video_stem_layers not in (1, 3):
            raise ValueError(
                f"ModelConfig.video_stem_layers={self.video_stem_layers!r}: must be 1 or 3"
            )
        if not isinstance(self.video_stem_stride, int) or not (
            1 <= self.video_stem_stride <= self.rect_height_px
        ):
            raise ValueError(
                f"ModelConfig.video_stem_stride={self.video_stem_stride!r}: must be an integer "
                f"in 1..rect_height_px ({self.rect_height_px})"
            )
        if self.key_window >= N_KEYS:
            raise ValueError(f"ModelConfig.key_window={self.key_window}: must be < {N_KEYS}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if self.d_model % 2:
            raise ValueError(
                f"ModelConfig.d_model={self.d_model}: must be even (bidirectional GRU)"
            )
        if self.audio_channels % 2:
            raise ValueError(f"ModelConfig.audio_channels={self.audio_channels}: must be even")
        if self.video_channels % 2:
            raise ValueError(f"ModelConfig.video_channels={self.video_channels}: must be even")
        if self.rect_width_px < N_KEYS:
            raise ValueError(
                f"ModelConfig.rect_width_px={self.rect_width_px}: must be >= {N_KEYS} "
                "(at least about one column per key)"
            )
        if self.rect_height_px < 8:
            raise ValueError(f"ModelConfig.rect_height_px={self.rect_height_px}: must be >= 8")
        if not self.cqt_log_gain > 0:
            raise ValueError(f"ModelConfig.cqt_log_gain={self.cqt_log_gain}: must be > 0")
        if not self.harmonic_offsets_keys or 0 not in self.harmonic_offsets_keys:
            raise ValueError(
                f"ModelConfig.harmonic_offsets_keys={self.harmonic_offsets_keys}: must contain 0"
            )
        if any(abs(o) >= N_KEYS for o in self.harmonic_offsets_keys):
            raise ValueError(
                f"ModelConfig.harmonic_offsets_keys={self.harmonic_offsets_keys}: "
                f"offsets must lie within ±{N_KEYS - 1}"
            )
        for name in ("dropout", "p_drop_audio", "p_drop_video"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ModelConfig.{name}={value}: must be in [0, 1]")
        if self.dropout >= 1.0:
            raise ValueError("ModelConfig.dropout must be < 1")
        if self.p_drop_audio + self.p_drop_video > 1.0 + 1e-9:
            raise ValueError(
                f"ModelConfig: p_drop_audio + p_drop_video = "
                f"{self.p_drop_audio + self.p_drop_video:g} > 1; the two drop-outs are exclusive "
                "(never both for one sample), so their probabilities must sum to at most 1"
            )
        top_hz = self.fmin_hz * 2.0 ** ((self.n_bins - 1) / self.bins_per_octave)
        if top_hz >= self.sample_rate_hz / 2:
            raise ValueError(
                f"ModelConfig: the top CQT bin ({top_hz:.0f} Hz) is above the Nyquist frequency "
                f"of sample_rate_hz={self.sample_rate_hz}"
            )
        step = 2 ** (self.n_octaves - 1)
        if self.hop_length % step:
            raise ValueError(
                f"ModelConfig.hop_length={self.hop_length}: must be divisible by {step} "
                f"(the CQT halves the hop once per octave, {self.n_octaves} octaves)"
            )

    # ---- derived values -------------------------------------------------------------------
    @property
    def frame_rate_hz(self) -> float:
        """Model frames per second, ``sample_rate_hz / hop_length`` (31.25 by default)."""
        return self.sample_rate_hz / self.hop_length

    @property
    def n_keys(self) -> int:
        """Number of piano keys (88)."""
        return N_KEYS

    @property
    def n_bins(self) -> int:
        """Number of CQT bins, ``88 * bins_per_semitone``."""
        return N_KEYS * self.bins_per_semitone

    @property
    def bins_per_octave(self) -> int:
        """CQT bins per octave, ``12 * bins_per_semitone``."""
        return 12 * self.bins_per_semitone

    @property
    def n_octaves(self) -> int:
        """Octaves the CQT spans (rounded up), as nnAudio's CQT2010v2 counts them."""
        return math.ceil(self.n_bins / self.bins_per_octave)

    @property
    def fmin_hz(self) -> float:
        """Centre frequency of CQT bin 0 (Hz): chosen so that the centre of each key's group of
        ``bins_per_semitone`` bins is that key's frequency (between two bins for even values)."""
        return A0_HZ * 2.0 ** (-((self.bins_per_semitone - 1) / 2) / self.bins_per_octave)

    # ---- JSON round trip ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; missing keys take their defaults.

        Raises:
            ValueError: on an unknown key (the message lists the known ones) or a bad value.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"ModelConfig: unknown key(s) {unknown}; known keys are {known}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # e.g. a string where a number belongs
            raise ValueError(f"ModelConfig: bad value type: {exc}") from exc

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    # For tests: seconds on a CPU, still every part of the architecture (≈ 10 k parameters).
    "tiny": ModelConfig(
        rect_width_px=176,
        rect_height_px=16,
        d_model=16,
        audio_channels=8,
        video_channels=8,
        harmonic_offsets_keys=(-12, 0, 12, 19),
        n_heads=2,
        time_window=1,
        key_window=2,
        ffn_mult=2,
        n_temporal_layers=2,
    ),
    # The defaults: trains on a CPU (≈ 0.12 M parameters in fusion mode).
    "cpu-small": ModelConfig(),
    # For a GPU: wider tokens, more channels and layers (≈ 0.65 M parameters in fusion mode).
    "gpu-base": ModelConfig(
        d_model=128,
        audio_channels=64,
        video_channels=48,
        n_heads=8,
        n_fusion_layers=2,
        temporal="gru",
        n_temporal_layers=2,
    ),
}
"""Named configurations; get one with `preset`."""


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The named preset (``"tiny"``, ``"cpu-small"``, ``"gpu-base"``), with optional changes,
    e.g. ``preset("tiny", mode="audio")``.

    Raises:
        ValueError: for an unknown name (lists the known ones) or a bad override.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known presets are {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def n_frames(n_samples: int, config: ModelConfig | None = None) -> int:
    """Number of model frames for an audio window of ``n_samples`` samples.

    ``n_samples // hop_length + 1``: nnAudio's centred CQT pads ``n_fft // 2`` zeros on each
    side and steps by ``hop_length``, so frame ``i`` is centred on sample ``i * hop_length``.

    Raises:
        ValueError: if ``n_samples`` is negative.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples={n_samples}: must be >= 0")
    config = config or ModelConfig()
    return n_samples // config.hop_length + 1


def frame_times_s(n_frames: int, config: ModelConfig | None = None) -> np.ndarray:
    """Centre times of model frames ``0 … n_frames-1``: float64 array, shape (n_frames,),
    seconds from the window's first audio sample, ``i * hop_length / sample_rate_hz``."""
    config = config or ModelConfig()
    return np.arange(n_frames, dtype=np.float64) * (config.hop_length / config.sample_rate_hz)
