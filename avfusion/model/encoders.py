"""The two encoders: audio (CQT → key tokens) and video (rectified keyboard → key tokens).

Both return **key tokens**, one ``d_model`` vector per (model frame, piano key): a tensor of shape
``(batch, n_frames, 88, d_model)`` whose frame ``i`` is centred on ``i * hop_length /
sample_rate_hz`` seconds and whose key index is MIDI − 21. That shared layout is what lets the
fusion attend from an audio key token to the video tokens of nearby keys and frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from nnAudio.features import CQT2010v2
from torch import Tensor, nn

from avfusion.config import N_KEYS
from avfusion.keyboard import KEYBOARD_WIDTH_MM, keyboard_geometry
from avfusion.model.config import ModelConfig


def _make_buffers_non_persistent(module: nn.Module) -> None:
    """Keep a module's buffers (fixed CQT kernels, filters) out of its state dict: they are
    rebuilt from the config, so checkpoints stay small and independent of nnAudio's internals."""
    for name, buf in list(module.named_buffers(recurse=False)):
        delattr(module, name)
        module.register_buffer(name, buf, persistent=False)


def gather_key_offsets(x: Tensor, offsets: tuple[int, ...]) -> Tensor:
    """Per-key features stacked with those of the keys ``offsets`` semitones away.

    Args:
        x: shape (batch, channels, n_frames, 88), key-resolution features.
        offsets: key offsets (e.g. harmonics +12, +19, … or sub-harmonics −12, −19).
    Returns:
        shape (batch, channels * len(offsets), n_frames, 88): channel block j holds, at key k,
        the features of key ``k + offsets[j]`` (zeros off the keyboard).
    """
    lo, hi = max(0, -min(offsets)), max(0, max(offsets))
    padded = F.pad(x, (lo, hi))  # (B, c, T, lo + 88 + hi), 0 off the keys
    return torch.cat([padded[..., lo + o : lo + o + N_KEYS] for o in offsets], dim=1)


class AudioEncoder(nn.Module):
    """Log-CQT front end and a conv stack that yields one audio token per key and frame.

    Front end: nnAudio's ``CQT2010v2`` (Schörkhuber & Klapuri 2010: one top-octave kernel,
    the signal halved per octave), chosen over ``CQT1992v2`` because it gives the same
    magnitudes with 0.15 MB of kernels instead of 69 MB (A0 at 36 bins/octave needs a 2 s
    kernel) and is faster on a CPU; zero ("constant") padding, centred frames. Bins are aligned
    to the keys (`ModelConfig.fmin_hz`), magnitude compressed with ``log1p(gain * |CQT|)``.

    Conv stack (after Onsets and Frames' acoustic model, Hawthorne et al. 2018): input batch
    norm per CQT bin, two 3×3 convs (c/2 channels) over (time, frequency) at full CQT resolution
    with batch norm, max-pooling over the ``bins_per_semitone`` bins of each key, one 3×3 conv
    (c channels) at key resolution. Each key's token is a linear map of (1×1-bottlenecked, c/2)
    features at that key and at the keys of its (sub)harmonics (``harmonic_offsets_keys``),
    plus a linear map of a per-frame summary over all keys (mean and max of the c channels), so
    a token can tell its own fundamental from another note's overtone.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.audio_channels
        self.cqt = CQT2010v2(
            sr=config.sample_rate_hz,
            hop_length=config.hop_length,
            fmin=config.fmin_hz,
            n_bins=config.n_bins,
            bins_per_octave=config.bins_per_octave,
            pad_mode="constant",
            output_format="Magnitude",
            trainable=False,
            verbose=False,
        )
        _make_buffers_non_persistent(self.cqt)
        # nnAudio's CQT2010v2 fails on inputs shorter than 2**(n_octaves-1) samples; shorter
        # inputs are right-padded with zeros (identical to its own constant padding).
        self._min_samples = 2**config.n_octaves
        self.input_norm = nn.BatchNorm1d(config.n_bins)
        self.conv_fine = nn.Sequential(
            nn.Conv2d(1, c // 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            nn.Conv2d(c // 2, c // 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
        )
        self.pool = nn.MaxPool2d((1, config.bins_per_semitone))
        self.drop = nn.Dropout(config.dropout)
        self.conv_key = nn.Sequential(
            nn.Conv2d(c // 2, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        )
        self.offsets = tuple(config.harmonic_offsets_keys)
        self.bottleneck = nn.Conv2d(c, c // 2, 1)
        self.harmonic_proj = nn.Linear(c // 2 * len(self.offsets), config.d_model)
        self.summary_proj = nn.Linear(2 * c, config.d_model)
        self.out_norm = nn.LayerNorm(config.d_model)

    def log_cqt(self, audio: Tensor) -> Tensor:
        """Key-aligned log-magnitude CQT.

        Args:
            audio: shape (batch, n_samples), float in [-1, 1] at ``config.sample_rate_hz``.
        Returns:
            float32, shape (batch, n_bins, n_frames) with ``n_bins = 88 * bins_per_semitone``
            and ``n_frames = n_samples // hop_length + 1``; ``log1p(cqt_log_gain * |CQT|)``
            (librosa-normalised magnitude). Bins ``k*bps … (k+1)*bps - 1`` belong to key k.
            Computed in float32 with autocast off (the CQT's long sums lose too much in fp16).
        """
        cfg = self.config
        n_samples = audio.shape[-1]
        n_out = n_samples // cfg.hop_length + 1
        with torch.autocast(device_type=audio.device.type, enabled=False):
            x = audio.float()
            if n_samples < self._min_samples:
                x = F.pad(x, (0, self._min_samples - n_samples))
            mag = self.cqt(x)[..., :n_out]  # (B, n_bins, T)
            return torch.log1p(cfg.cqt_log_gain * mag)

    def forward(self, audio: Tensor, spec: Tensor | None = None) -> Tensor:
        """Audio key tokens.

        Args:
            audio: shape (batch, n_samples), float in [-1, 1] at ``config.sample_rate_hz``.
            spec: ``self.log_cqt(audio)`` if the caller has it already (shape (batch, n_bins,
                n_frames)), so that it is not computed twice.
        Returns:
            shape (batch, n_frames, 88, d_model), layer-normed key tokens.
        """
        x = self.input_norm(self.log_cqt(audio) if spec is None else spec)  # (B, F, T)
        x = x.transpose(1, 2).unsqueeze(1)  # (B, 1, T, F)
        x = self.conv_fine(x)  # (B, c/2, T, F)
        x = self.drop(self.pool(x))  # (B, c/2, T, 88)
        x = self.conv_key(x)  # (B, c, T, 88)
        stacked = gather_key_offsets(self.bottleneck(x), self.offsets)  # (B, c/2 * n_off, T, 88)
        tokens = self.harmonic_proj(stacked.permute(0, 2, 3, 1))  # (B, T, 88, d)
        summary = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)  # (B, 2c, T)
        tokens = tokens + self.summary_proj(summary.transpose(1, 2))[:, :, None, :]
        return self.out_norm(tokens)


class VelocityStack(nn.Module):
    """Features for note velocity from the log-CQT, apart from the shared key features.

    Onsets and Frames (Hawthorne et al. 2018) give velocity its own acoustic stack: how hard a
    key was struck shows in the level of its partials, which features trained to detect notes
    (and layer-normed per key token here) keep poorly; with a velocity head on the shared
    features, the cpu-small models learnt little about velocity. Input:
    the key-aligned log-CQT and the same minus its maximum over the window (a recording's gain
    is unknown, so the level relative to the loudest bin carries the dynamics). Two 3×3 convs
    (``velocity_channels`` each) over (time, frequency) at CQT resolution, max-pooled over
    each key's bins; each key's feature is its own and those of its 2nd, 3rd and 4th
    harmonics (+12, +19, +24 keys; 0 above the keyboard).
    """

    HARMONICS_KEYS: tuple[int, ...] = (0, 12, 19, 24)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.velocity_channels
        if c < 1:
            raise ValueError(f"VelocityStack needs velocity_channels >= 1, got {c}")
        self.conv = nn.Sequential(
            nn.Conv2d(2, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.MaxPool2d((1, config.bins_per_semitone))
        self.n_features = c * len(self.HARMONICS_KEYS)

    def forward(self, spec: Tensor) -> Tensor:
        """spec: log-CQT, shape (batch, n_bins, n_frames) (`AudioEncoder.log_cqt`).
        Returns: shape (batch, n_frames, 88, n_features)."""
        x = spec.transpose(1, 2).unsqueeze(1)  # (B, 1, T, F)
        rel = x - x.amax(dim=(2, 3), keepdim=True)
        x = self.pool(self.conv(torch.cat([x, rel], dim=1)))  # (B, c, T, 88)
        stacked = gather_key_offsets(x, self.HARMONICS_KEYS)  # (B, n_features, T, 88)
        return stacked.permute(0, 2, 3, 1)  # (B, T, 88, n_features)


class _TemporalBlock(nn.Module):
    """Residual depthwise-separable 1D conv over time, shared over keys: x + pw(gelu(dw(x)))."""

    def __init__(self, d_model: int, kernel_size: int) -> None:
        super().__init__()
        self.dw = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)
        self.pw = nn.Conv1d(d_model, d_model, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: shape (batch * 88, d_model, n_video_frames), contiguous → same shape."""
        return x + self.pw(F.gelu(self.dw(x)))


def key_pixel_spans(width_px: int) -> tuple[Tensor, Tensor]:
    """Left and right x of each key's full width in a rectified image ``width_px`` wide.

    The rectified x axis spans the keyboard's 0…1222 mm linearly (`avfusion.keyboard`), so
    key k covers ``left_mm[k] * W / 1222 … right_mm[k] * W / 1222`` (continuous pixel
    coordinates: pixel j covers ``[j, j + 1)``). Returns two float32 tensors of shape (88,).
    """
    geo = keyboard_geometry()
    scale = width_px / KEYBOARD_WIDTH_MM
    left = torch.tensor(geo.left_mm * scale, dtype=torch.float32)
    right = torch.tensor(geo.right_mm * scale, dtype=torch.float32)
    return left, right


def key_pooling_matrix(width_px: int) -> Tensor:
    """Matrix that averages image columns over each key's x-span.

    ``P[j, k]`` is the fraction of key k's span ``[left_px[k], right_px[k])`` covered by
    column j (which covers ``[j, j + 1)``), divided by the span's width, so ``features @ P``
    is the exact box average of the piecewise-constant columns over each key (partly covered
    columns weighted by the covered fraction). Each column of P sums to 1.

    Returns:
        float32, shape (width_px, 88).
    """
    left, right = key_pixel_spans(width_px)  # (88,)
    cols = torch.arange(width_px, dtype=torch.float32)[:, None]  # (W, 1)
    overlap = (torch.minimum(cols + 1, right) - torch.maximum(cols, left)).clamp_min(0.0)
    return overlap / (right - left)


def resample_to_frames(
    tokens: Tensor, times_s: Tensor, n_frames: int, frame_period_s: float
) -> Tensor:
    """Linearly interpolate per-video-frame tokens to the model's frame times.

    Model frame i is at ``i * frame_period_s``; for each, the two video frames whose timestamps
    bracket it are blended linearly; times before the first or after the last video frame take
    that frame (clamped). Works for any frame rate and for dropped frames.

    Args:
        tokens: shape (batch, n_video_frames, ...), e.g. (B, T_v, 88, d).
        times_s: shape (batch, n_video_frames), seconds from the window start (audio sample 0),
            non-decreasing along each row.
        n_frames: number of model frames T.
        frame_period_s: ``hop_length / sample_rate_hz``.
    Returns:
        shape (batch, n_frames, ...), the dtype of ``tokens``.
    """
    batch, n_video = times_s.shape
    times = times_s.float().contiguous()
    frame_t = torch.arange(n_frames, device=times.device, dtype=torch.float32) * frame_period_s
    frame_t = frame_t.expand(batch, n_frames).contiguous()  # (B, T)
    hi = torch.searchsorted(times, frame_t, right=True).clamp(max=n_video - 1)  # first > t
    lo = (hi - 1).clamp(min=0)
    t_lo, t_hi = times.gather(1, lo), times.gather(1, hi)
    dt = t_hi - t_lo
    weight = torch.where(dt > 0, (frame_t - t_lo) / dt.clamp_min(1e-9), torch.zeros_like(dt))
    weight = weight.clamp(0.0, 1.0)  # (B, T); 0 before the first frame, 1 after the last
    extra = (1,) * (tokens.dim() - 2)
    v_lo = torch.take_along_dim(tokens, lo.view(batch, n_frames, *extra), dim=1)
    v_hi = torch.take_along_dim(tokens, hi.view(batch, n_frames, *extra), dim=1)
    w = weight.view(batch, n_frames, *extra).to(tokens.dtype)
    return v_lo + w * (v_hi - v_lo)


class VideoEncoder(nn.Module):
    """Rectified keyboard frames → key tokens at the model's frame times.

    Per frame (shared over frames):

    1. Input: the frame standardised over its pixels (robust to exposure and low light) and its
       difference to the previous standardised frame (0 for the first): 2 channels; with
       ``video_reference`` a third, the frame minus the per-pixel median of the window's
       standardised frames (a background reference, as background subtraction in video
       analysis: the median frame shows the keys up and mostly uncovered).
    2. Pixel stage at full width resolution (only the height is pooled): an (s×3) conv with
       stride (s, 1), s = ``video_stem_stride`` (8), batch norm, ReLU; ``rows = H // s`` rows
       remain (5 for H = 40 and s = 8, or H = 80 and s = 16: each a 30 mm band of the 150 mm
       key length). With ``video_stem_layers = 3``: three 3×3 convs
       with stride (2, 1) (batch norm, ReLU each), ``ceil(H / 8)`` rows.
    3. Key pooling: each key's columns are averaged over its known x-span
       (`key_pooling_matrix`: exact box average, partly covered columns weighted), one average
       per row, so "front of the key" (where a pressed key's edge moves back) and "back of the
       key" stay apart.
    4. Key stage: a 3×3 conv over (rows, keys) with batch norm (context of neighbouring keys),
       then the rows are flattened into a linear projection to ``d_model``, plus a learned key
       embedding.

    Per key over time: two residual depthwise-separable temporal convs (kernel 5 video frames).
    Finally the tokens are interpolated to the model frame times by the frames' timestamps
    (`resample_to_frames`), so any frame rate (25, 30 fps, dropped frames) works.

    Cost at the ``cpu-small`` size (416×40 frames, 24 channels, d 64), per video frame:
    ≈ 6 M multiply-adds (stem 1.2 M, key pooling 2.2 M as one dense matrix product, key conv
    1.1 M, projection 0.7 M, temporal convs 0.8 M); the largest activation is
    (frames, 12, 5, 416) after the stem.
    """

    pooling: Tensor  # (W, 88) buffer, see key_pooling_matrix

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config.video_channels, config.d_model
        p = c // 2
        self.n_inputs = 3 if config.video_reference else 2
        # (kernel, stride, padding) per conv: one 8x3 of stride 8, or three 3x3 of stride 2
        convs = (
            [((config.video_stem_stride, 3), (config.video_stem_stride, 1), (0, 1))]
            if config.video_stem_layers == 1
            else [((3, 3), (2, 1), (1, 1))] * 3
        )
        layers: list[nn.Module] = []
        rows = config.rect_height_px
        for i, (kernel, stride, padding) in enumerate(convs):
            layers += [
                nn.Conv2d(
                    self.n_inputs if i == 0 else p,
                    p,
                    kernel,
                    stride=stride,
                    padding=padding,
                    bias=False,
                ),
                nn.BatchNorm2d(p),
                nn.ReLU(),
            ]
            rows = (rows + 2 * padding[0] - kernel[0]) // stride[0] + 1
        self.rows = rows
        self.stem = nn.Sequential(*layers)
        self.register_buffer(
            "pooling", key_pooling_matrix(config.rect_width_px), persistent=False
        )  # (W, 88)
        self.key_block = nn.Sequential(
            nn.Conv2d(p, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        )
        self.key_proj = nn.Linear(c * self.rows, d)
        self.key_embedding = nn.Parameter(torch.randn(N_KEYS, d) * 0.02)
        self.temporal = nn.Sequential(_TemporalBlock(d, 5), _TemporalBlock(d, 5))
        self.drop = nn.Dropout(config.dropout)
        self.out_norm = nn.LayerNorm(d)

    def frame_tokens(self, video: Tensor) -> Tensor:
        """Key tokens at the video's own frames (before resampling).

        Args:
            video: shape (batch, n_video_frames, H, W), uint8 or float, grayscale 0…255,
                rectified (``H, W = rect_height_px, rect_width_px``).
        Returns:
            shape (batch, n_video_frames, 88, d_model).
        """
        batch, n_video = video.shape[:2]
        x = video.float()  # (B, T_v, H, W)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True)
        x = (x - mean) / (var.sqrt() + 2.0)  # per-frame standardisation (+2 grey levels: flat)
        diff = torch.diff(x, dim=1, prepend=x[:, :1])  # (B, T_v, H, W), 0 for the first frame
        channels = [x, diff]
        if self.n_inputs == 3:
            channels.append(x - x.median(dim=1, keepdim=True).values)  # minus the background
        x = torch.stack(channels, dim=2).flatten(0, 1)  # (B*T_v, n_inputs, H, W)
        x = self.stem(x)  # (B*T_v, p, rows, W)
        x = torch.matmul(x, self.pooling.to(x.dtype))  # (B*T_v, p, rows, 88)
        x = self.key_block(x)  # (B*T_v, c, rows, 88)
        x = x.flatten(1, 2).transpose(1, 2)  # (B*T_v, 88, c*rows)
        tokens = self.key_proj(x) + self.key_embedding  # (B*T_v, 88, d)
        d = tokens.shape[-1]
        tokens = tokens.view(batch, n_video, N_KEYS, d).permute(0, 2, 3, 1)  # (B, 88, d, T_v)
        tokens = self.temporal(tokens.reshape(batch * N_KEYS, d, n_video))  # (B*88, d, T_v)
        tokens = tokens.view(batch, N_KEYS, d, n_video).permute(0, 3, 1, 2)  # (B, T_v, 88, d)
        return self.out_norm(self.drop(tokens))

    def forward(self, video: Tensor, video_times_s: Tensor, n_frames: int) -> Tensor:
        """Video key tokens at the model's frame times.

        Args:
            video: shape (batch, n_video_frames, H, W), uint8 or float, grayscale 0…255.
            video_times_s: shape (batch, n_video_frames), float, each frame's time in seconds
                from the window start (audio sample 0 is time 0), non-decreasing.
            n_frames: number of model frames T (`avfusion.model.n_frames`).
        Returns:
            shape (batch, n_frames, 88, d_model); model frame i is at
            ``i * hop_length / sample_rate_hz`` s.
        """
        tokens = self.frame_tokens(video)
        period_s = self.config.hop_length / self.config.sample_rate_hz
        times = video_times_s.to(tokens.device)
        return resample_to_frames(tokens, times, n_frames, period_s)
