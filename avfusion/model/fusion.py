"""Fusion of audio and video key tokens, the temporal layer and the output heads.

`AVTranscriber` is the whole model: audio → `AudioEncoder`, video → `VideoEncoder`, per-key
queries cross-attend to the video tokens of nearby frames and keys (`LocalCrossAttention`) with
a gated residual, a bidirectional GRU runs over time per key, and linear heads give onset,
frame, offset and velocity per key plus a sustain-pedal logit per frame (Onsets and Frames,
Hawthorne et al. 2018). The model returns logits only; losses live in the training code.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from avfusion.config import N_KEYS
from avfusion.model.config import ModelConfig
from avfusion.model.config import n_frames as frames_for_samples
from avfusion.model.encoders import AudioEncoder, VelocityStack, VideoEncoder


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float32 for fp16/bf16/fp32 inputs, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


KEY_BLOCK: int = 16
"""Queries per key block in the local attention's blocked matrix products."""


class _Window:
    """Geometry of the local window and of the key blocking used to compute it.

    Keys are split into ``n_blocks`` blocks of ``block`` queries (88 → 96 with zero queries at
    the end); block j's queries see ``span = block + 2·kw`` consecutive padded keys starting at
    padded index ``j·block``, so one small matrix product per block gives every score the block
    needs, and the band ``full[i, i + j]`` (``j = 0 … 2·kw``) holds the scores of query i.
    """

    def __init__(self, n_frames: int, time_window: int, key_window: int) -> None:
        self.n_frames, self.tw, self.kw = n_frames, time_window, key_window
        self.nt, self.nk = 2 * time_window + 1, 2 * key_window + 1
        self.block = KEY_BLOCK
        self.n_blocks = -(-N_KEYS // self.block)
        self.n_queries = self.n_blocks * self.block  # 96
        self.span = self.block + 2 * key_window

    def blocks(self, padded: Tensor, i_dt: int) -> Tensor:
        """Key blocks of the padded tensor at time offset index ``i_dt``.

        ``padded``: (B, T + 2tw, h, n_queries + 2kw, dh) → view (B, T, h, n_blocks, dh, span).
        """
        shifted = padded[:, i_dt : i_dt + self.n_frames]
        return shifted.unfold(3, self.span, self.block)

    def band(self, full: Tensor) -> Tensor:
        """View of the band of a contiguous (B, T, h, n_blocks, block, span) tensor:
        (B, T, h, n_blocks, block, nk), element [..., i, j] = full[..., i, i + j]."""
        assert full.is_contiguous()
        size = (*full.shape[:-1], self.nk)
        stride = (*full.stride()[:-2], full.stride(-2) + 1, 1)
        return full.as_strided(size, stride, full.storage_offset())

    def fold_add(self, grad_padded: Tensor, i_dt: int, grad_blocks: Tensor) -> None:
        """Add ``grad_blocks`` (B, T, h, n_blocks, span, dh) into ``grad_padded`` in place (the
        adjoint of `blocks`; blocks overlap by 2·kw keys)."""
        rows = grad_padded[:, i_dt : i_dt + self.n_frames]
        for j in range(self.n_blocks):
            start = j * self.block
            rows[:, :, :, start : start + self.span].add_(grad_blocks[:, :, :, j])


class _LocalScores(torch.autograd.Function):
    """Raw local-window scores ``q · k`` by blocked matrix products.

    ``q``: (B, T, h, n_queries, dh); ``k_pad``: (B, T + 2tw, h, n_queries + 2kw, dh), zero
    padded. Returns float32 (B, T, h, n_queries, nt, nk) with
    ``[b, t, h, k, i, j] = q[b, t, h, k] · k_pad[b, t + i, h, k + j]``. The backward recomputes
    the blocks (nothing but the inputs is saved).
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, k_pad: Tensor, window: _Window) -> Tensor:
        batch, n_frames, n_heads, n_queries, d_head = q.shape
        w = window
        q_blocks = q.view(batch, n_frames, n_heads, w.n_blocks, w.block, d_head)
        scores = q.new_empty(
            (batch, n_frames, n_heads, n_queries, w.nt, w.nk), dtype=_acc_dtype(q.dtype)
        )
        for i_dt in range(w.nt):
            full = torch.matmul(q_blocks, w.blocks(k_pad, i_dt).to(q.dtype))  # (.., block, span)
            band = w.band(full).reshape(batch, n_frames, n_heads, n_queries, w.nk)
            scores[:, :, :, :, i_dt] = band
        ctx.save_for_backward(q, k_pad)
        ctx.window = window
        return scores

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        q, k_pad = ctx.saved_tensors
        w: _Window = ctx.window
        batch, n_frames, n_heads, _, d_head = q.shape
        q_blocks = q.view(batch, n_frames, n_heads, w.n_blocks, w.block, d_head)
        acc = _acc_dtype(q.dtype)
        grad_q = torch.zeros_like(q_blocks, dtype=acc) if ctx.needs_input_grad[0] else None
        grad_k = torch.zeros_like(k_pad, dtype=acc) if ctx.needs_input_grad[1] else None
        full_shape = (batch, n_frames, n_heads, w.n_blocks, w.block, w.span)
        g_full = q.new_zeros(full_shape)  # off-band stays 0; the band is rewritten per offset
        for i_dt in range(w.nt):
            w.band(g_full).copy_(grad[:, :, :, :, i_dt].reshape(*full_shape[:-1], w.nk))
            k_blocks = w.blocks(k_pad, i_dt).to(q.dtype)  # (B, T, h, nb, dh, span)
            if grad_q is not None:
                grad_q += torch.matmul(g_full, k_blocks.transpose(-1, -2))
            if grad_k is not None:
                g_k = torch.matmul(g_full.transpose(-1, -2), q_blocks)  # (.., span, dh)
                w.fold_add(grad_k, i_dt, g_k)
        return (
            None if grad_q is None else grad_q.view(q.shape).to(q.dtype),
            None if grad_k is None else grad_k.to(k_pad.dtype),
            None,
        )


class _LocalWeightedSum(torch.autograd.Function):
    """Probability-weighted sum of the local window's values, by blocked matrix products.

    ``probs``: (B, T, h, n_queries, nt, nk); ``v_pad``: (B, T + 2tw, h, n_queries + 2kw, dh).
    Returns (B, T, h, n_queries, dh) in ``v_pad``'s dtype:
    ``out[b, t, h, k] = Σ_ij probs[b, t, h, k, i, j] · v_pad[b, t + i, h, k + j]``.
    """

    @staticmethod
    def forward(ctx: Any, probs: Tensor, v_pad: Tensor, window: _Window) -> Tensor:
        batch, n_frames, n_heads, n_queries = probs.shape[:4]
        w = window
        d_head = v_pad.shape[-1]
        full_shape = (batch, n_frames, n_heads, w.n_blocks, w.block, w.span)
        acc = _acc_dtype(v_pad.dtype)
        out = v_pad.new_zeros((batch, n_frames, n_heads, w.n_blocks, w.block, d_head), dtype=acc)
        p_full = v_pad.new_zeros(full_shape)  # off-band stays 0; the band is rewritten per offset
        for i_dt in range(w.nt):
            w.band(p_full).copy_(probs[:, :, :, :, i_dt].reshape(*full_shape[:-1], w.nk))
            v_blocks = w.blocks(v_pad, i_dt)  # (B, T, h, nb, dh, span)
            out += torch.matmul(p_full, v_blocks.transpose(-1, -2))
        ctx.save_for_backward(probs, v_pad)
        ctx.window = window
        return out.view(batch, n_frames, n_heads, n_queries, d_head).to(v_pad.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        probs, v_pad = ctx.saved_tensors
        w: _Window = ctx.window
        batch, n_frames, n_heads, n_queries = probs.shape[:4]
        d_head = v_pad.shape[-1]
        full_shape = (batch, n_frames, n_heads, w.n_blocks, w.block, w.span)
        g_blocks = grad.reshape(batch, n_frames, n_heads, w.n_blocks, w.block, d_head)
        g_blocks = g_blocks.to(v_pad.dtype)
        grad_p = torch.empty_like(probs) if ctx.needs_input_grad[0] else None
        acc = _acc_dtype(v_pad.dtype)
        grad_v = torch.zeros_like(v_pad, dtype=acc) if ctx.needs_input_grad[1] else None
        p_full = v_pad.new_zeros(full_shape) if grad_v is not None else None
        for i_dt in range(w.nt):
            v_blocks = w.blocks(v_pad, i_dt)  # (B, T, h, nb, dh, span)
            if grad_p is not None:
                g_full = torch.matmul(g_blocks, v_blocks).contiguous()  # (.., block, span)
                band = w.band(g_full).reshape(batch, n_frames, n_heads, n_queries, w.nk)
                grad_p[:, :, :, :, i_dt] = band
            if grad_v is not None and p_full is not None:
                w.band(p_full).copy_(probs[:, :, :, :, i_dt].reshape(*full_shape[:-1], w.nk))
                g_v = torch.matmul(p_full.transpose(-1, -2), g_blocks)  # (.., span, dh)
                w.fold_add(grad_v, i_dt, g_v)
        return grad_p, None if grad_v is None else grad_v.to(v_pad.dtype), None


class LocalCrossAttention(nn.Module):
    """Multi-head cross-attention from each key token to a local (time × key) window.

    Query (t, k) attends to the memory tokens at ``(t + dt, k + dk)`` for ``|dt| <= time_window``
    and ``|dk| <= key_window``: ``W = (2·time_window + 1)(2·key_window + 1)`` tokens (65 with
    the defaults). Positions off the window's edges (before frame 0, past the last frame, off the
    keyboard) are masked out. A learned key-offset embedding ``E[o]`` (one ``d_model`` vector per
    window offset o) is added to the keys, so scores are ``q·(K[t+dt, k+dk] + E[o]) / sqrt(d_h)``.

    Implementation: keys and values are projected once per token and zero-padded by the window
    in time and key. For each of the ``2·time_window + 1`` time offsets, the queries are split
    into blocks of 16 keys and each block is multiplied with the ``16 + 2·key_window`` padded
    keys it can see (an ``unfold`` view, one batched matrix product); the band of that product
    is the block's scores. The weighted sum of values is the transpose. Hand-written backward
    passes recompute the blocks, so nothing beyond the inputs and the probabilities is stored
    and the (B, T, 88, W, d) neighbourhood is never materialised.

    Cost per forward (B batch, T frames, d = d_model): ``2·B·T·96·(2tw+1)·(16+2kw)·d``
    multiply-adds in matrix products (≈ 2.3× the ``2·B·T·88·W·d`` of the band alone:
    1.1 G for B = 4, T = 157, d = 64) plus 4 projections (``4·B·T·88·d²``, 0.9 G). Memory: scores
    and probabilities, ``B·T·n_heads·96·W`` float32 each (15 M values, 63 MB, for that example)
    and per time offset one transient (B, T, n_heads, 96, 16+2kw) block product.
    """

    def __init__(
        self, d_model: int, n_heads: int, time_window: int, key_window: int, dropout: float
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.time_window, self.key_window = time_window, key_window
        self.n_offsets = (2 * time_window + 1) * (2 * key_window + 1)
        self.q_norm = nn.LayerNorm(d_model)
        self.kv_norm = nn.LayerNorm(d_model)
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        # One vector per window offset, ordered (dt, dk) with dk fastest.
        self.offset_embedding = nn.Parameter(torch.randn(self.n_offsets, d_model) * 0.02)
        self.out_drop = nn.Dropout(dropout)

    def _valid(self, n_frames: int, device: torch.device) -> Tensor:
        """Bool (1, T, 1, 88, W): window position inside the tensor (not padding)."""
        tw, kw = self.time_window, self.key_window
        dts = torch.arange(-tw, tw + 1, device=device).repeat_interleave(2 * kw + 1)  # (W,)
        dks = torch.arange(-kw, kw + 1, device=device).repeat(2 * tw + 1)  # (W,)
        t = torch.arange(n_frames, device=device)[:, None] + dts  # (T, W)
        k = torch.arange(N_KEYS, device=device)[:, None] + dks  # (88, W)
        valid_t = (t >= 0) & (t < n_frames)
        valid_k = (k >= 0) & (k < N_KEYS)
        return (valid_t[:, None, :] & valid_k[None, :, :])[None, :, None]

    def forward(self, query: Tensor, memory: Tensor) -> Tensor:
        """Attend from ``query`` to ``memory`` in the local window.

        Args:
            query: shape (batch, T, 88, d_model), the per-key queries.
            memory: shape (batch, T, 88, d_model), the tokens attended to (video key tokens at
                the model frame times).
        Returns:
            shape (batch, T, 88, d_model), the attention output (after the output projection).
        """
        batch, n_frames, n_keys, d_model = query.shape
        h, dh = self.n_heads, self.d_head
        w = _Window(n_frames, self.time_window, self.key_window)
        extra = w.n_queries - n_keys  # zero queries / keys that fill the last block
        q = self.q_proj(self.q_norm(query)) * dh**-0.5
        q = q.view(batch, n_frames, n_keys, h, dh).transpose(2, 3)  # (B, T, h, 88, dh)
        mem = self.kv_norm(memory)
        k = self.k_proj(mem).view(batch, n_frames, n_keys, h, dh).transpose(2, 3)
        v = self.v_proj(mem).view(batch, n_frames, n_keys, h, dh).transpose(2, 3)
        pad = (0, 0, w.kw, w.kw + extra, 0, 0, w.tw, w.tw)
        k_pad = F.pad(k, pad)  # (B, T + 2tw, h, 96 + 2kw, dh)
        v_pad = F.pad(v, pad)
        q_blocks = F.pad(q, (0, 0, 0, extra))  # (B, T, h, 96, dh)
        scores = _LocalScores.apply(q_blocks, k_pad, w)  # (B, T, h, 96, nt, nk) float32
        scores = scores.flatten(-2)  # (B, T, h, 96, W)
        emb = self.offset_embedding.view(self.n_offsets, h, dh).permute(1, 2, 0)  # (h, dh, W)
        scores += torch.matmul(q_blocks, emb.to(q_blocks.dtype))  # + q·E[o]
        scores = scores[:, :, :, :n_keys]  # (B, T, h, 88, W)
        scores.masked_fill_(~self._valid(n_frames, query.device), float("-inf"))
        probs = torch.softmax(scores, dim=-1)  # (B, T, h, 88, W) float32
        probs = F.pad(probs, (0, 0, 0, extra)).unflatten(-1, (w.nt, w.nk))
        out = _LocalWeightedSum.apply(probs.to(v.dtype), v_pad, w)  # (B, T, h, 96, dh)
        out = out[:, :, :, :n_keys].transpose(2, 3).reshape(batch, n_frames, n_keys, d_model)
        return self.out_drop(self.out_proj(out))


class _FeedForward(nn.Module):
    """Pre-norm residual MLP on each token: x + W2·gelu(W1·LN(x))."""

    def __init__(self, d_model: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, mult * d_model),
            nn.GELU(),
            nn.Linear(mult * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: shape (..., d_model) → same shape."""
        return x + self.net(x)


class FusionLayer(nn.Module):
    """Gated cross-attention to the video tokens, then an FFN.

    ``x ← x + tanh(gate) ⊙ LocalCrossAttention(x, video)``; ``x ← x + FFN(x)``. ``gate`` is a
    learned per-channel vector initialised to ``gate_init`` (small), so training starts from
    the audio path and opens the gate where video helps (Flamingo-style gating, Alayrac et al.
    2022). Without video (audio mode, missing or dropped video) the attention term is 0.
    """

    def __init__(self, config: ModelConfig, with_video: bool) -> None:
        super().__init__()
        d = config.d_model
        self.xattn: LocalCrossAttention | None = None
        if with_video:
            self.xattn = LocalCrossAttention(
                d, config.n_heads, config.time_window, config.key_window, config.dropout
            )
            self.gate = nn.Parameter(torch.full((d,), float(config.gate_init)))
        self.ffn = _FeedForward(d, config.ffn_mult, config.dropout)

    def forward(self, x: Tensor, video: Tensor | None, keep_video: Tensor | None) -> Tensor:
        """
        Args:
            x: shape (batch, T, 88, d_model), the per-key queries.
            video: shape (batch, T, 88, d_model) video key tokens, or None.
            keep_video: shape (batch,), 1.0 / 0.0 per sample (modality drop-out), or None.
        Returns:
            shape (batch, T, 88, d_model).
        """
        if self.xattn is not None and video is not None:
            attn = self.xattn(x, video)
            if keep_video is not None:
                attn = attn * keep_video.to(attn.dtype)[:, None, None, None]
            x = x + torch.tanh(self.gate) * attn
        return self.ffn(x)


class _TemporalGRU(nn.Module):
    """Residual bidirectional GRU over time: x + BiGRU(x), hidden d/2 per direction."""

    def __init__(self, d_model: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(
            d_model,
            d_model // 2,
            num_layers=n_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if n_layers > 1 else 0.0,
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: shape (sequences, T, d_model) → same shape."""
        return x + self.gru(x)[0]


class _TemporalConv(nn.Module):
    """Residual dilated depthwise-separable 1D convs over time (a small TCN).

    Block i: ``x + pw(gelu(dw_i(x)))`` with a kernel-3 depthwise conv of dilation ``2**i`` and a
    pointwise (d → d) conv, so ``n`` blocks see ``±(2**n - 1)`` frames.
    """

    def __init__(self, d_model: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.dw = nn.ModuleList(
            nn.Conv1d(d_model, d_model, 3, padding=2**i, dilation=2**i, groups=d_model)
            for i in range(n_layers)
        )
        self.pw = nn.ModuleList(nn.Conv1d(d_model, d_model, 1) for _ in range(n_layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: shape (sequences, T, d_model) → same shape."""
        y = x.transpose(1, 2).contiguous()  # (N, d, T)
        for dw, pw in zip(self.dw, self.pw, strict=True):
            y = y + pw(F.gelu(dw(y)))
        return self.drop(y.transpose(1, 2))


class AVTranscriber(nn.Module):
    """Audio-visual piano transcriber: waveform and rectified keyboard video → key logits.

    ``mode`` picks the branches (``fusion`` builds both encoders, ``audio`` / ``video`` only
    one) and the same forward serves all three: the per-key query is a learned key embedding
    plus the audio key token (absent in video mode), and the fusion layers add the gated
    cross-attention to video tokens (absent in audio mode). ``fusion="concat"`` (ablation)
    replaces the attention by a linear map of the concatenated audio and video tokens at the
    same (frame, key).

    Heads (Onsets and Frames): onset, offset, frame (conditioned on the onset and offset
    probabilities) and velocity per key from the shared key features, and a sustain-pedal head
    from their pooled mean and maximum. With ``velocity_channels > 0`` (modes with audio) the
    velocity head also reads a separate `VelocityStack` over the log-CQT, zeroed where the audio
    is dropped or missing.

    Modality drop-out: in training and ``mode == "fusion"`` each sample independently loses its
    audio with probability ``p_drop_audio`` or its video with probability ``p_drop_video``
    (never both; see `draw_modality_keep`). A dropped modality's tokens are zeroed, exactly as
    if it were missing; in fusion mode a missing modality (``audio=None`` or ``video=None``) is
    treated the same way, so a fusion model also runs on audio alone or video alone.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.uses_audio = config.mode in ("fusion", "audio")
        self.uses_video = config.mode in ("fusion", "video")
        self.audio_encoder = AudioEncoder(config) if self.uses_audio else None
        self.video_encoder = VideoEncoder(config) if self.uses_video else None
        self.key_embedding = nn.Parameter(torch.randn(N_KEYS, d) * 0.02)
        xattn = config.fusion == "xattn"
        self.concat_proj: nn.Linear | None = None
        if not xattn:
            n_streams = int(self.uses_audio) + int(self.uses_video)
            self.concat_proj = nn.Linear(n_streams * d, d)
        self.fusion_layers = nn.ModuleList(
            FusionLayer(config, with_video=xattn and self.uses_video)
            for _ in range(config.n_fusion_layers)
        )
        self.temporal: nn.Module
        if config.temporal == "gru":
            self.temporal = _TemporalGRU(d, config.n_temporal_layers, config.dropout)
        else:
            self.temporal = _TemporalConv(d, config.n_temporal_layers, config.dropout)
        self.temporal_norm = nn.LayerNorm(d)
        self.onset_head = nn.Linear(d, 1)
        self.offset_head = nn.Linear(d, 1)
        self.frame_head = nn.Linear(d + 2, 1)  # + sigmoid(onset), sigmoid(offset), as in O&F
        self.velocity_stack: VelocityStack | None = None
        self.velocity_head: nn.Module
        if config.velocity_channels and self.uses_audio:
            self.velocity_stack = VelocityStack(config)
            self.velocity_head = nn.Sequential(
                nn.Linear(d + self.velocity_stack.n_features, d), nn.GELU(), nn.Linear(d, 1)
            )
        else:
            self.velocity_head = nn.Linear(d, 1)
        self.pedal_head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))
        # Start each head at its label's base rate (a piano roll is sparse: ~0.2 % of (frame,
        # key) cells hold an onset, ~3 % are down), not at 0.5, so that the first hundreds of
        # steps are not spent learning the prior (the prior-bias init of Lin et al. 2017, focal loss).
        for head, rate in (
            (self.onset_head, 0.002),
            (self.offset_head, 0.002),
            (self.frame_head, 0.03),
        ):
            nn.init.constant_(head.bias, math.log(rate / (1 - rate)))

    # ---- modality drop-out ----------------------------------------------------------------
    def draw_modality_keep(self, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Draw which samples keep their audio and their video (torch's global RNG).

        One uniform u per sample: audio is dropped if ``u < p_drop_audio``, video if
        ``p_drop_audio <= u < p_drop_audio + p_drop_video``; so the marginals are exactly
        ``p_drop_audio`` and ``p_drop_video`` and no sample loses both.

        Returns:
            keep_audio, keep_video: float32, shape (batch_size,), values 1.0 (keep) or 0.0.
        """
        p_a, p_v = self.config.p_drop_audio, self.config.p_drop_video
        u = torch.rand(batch_size, device=device)
        drop_audio = u < p_a
        drop_video = (u >= p_a) & (u < p_a + p_v)
        return (~drop_audio).float(), (~drop_video).float()

    # ---- forward --------------------------------------------------------------------------
    def _check_inputs(
        self,
        audio: Tensor | None,
        video: Tensor | None,
        video_times_s: Tensor | None,
        n_frames: int | None,
    ) -> tuple[int, int]:
        """Validate shapes; return (batch, T)."""
        cfg = self.config
        batch: int | None = None
        if audio is not None:
            if audio.dim() != 2:
                raise ValueError(
                    f"audio: expected shape (batch, n_samples), got {tuple(audio.shape)}"
                )
            batch = audio.shape[0]
            t_audio = frames_for_samples(audio.shape[1], cfg)
            if n_frames is not None and n_frames != t_audio:
                raise ValueError(
                    f"n_frames={n_frames} disagrees with the audio: {audio.shape[1]} samples give "
                    f"{t_audio} frames (n_samples // {cfg.hop_length} + 1); pass one or the other"
                )
            n_frames = t_audio
        if video is not None:
            expected = (cfg.rect_height_px, cfg.rect_width_px)
            if video.dim() != 4 or tuple(video.shape[2:]) != expected:
                raise ValueError(
                    f"video: expected shape (batch, n_video_frames, {expected[0]}, {expected[1]}) "
                    f"(rect_height_px, rect_width_px), got {tuple(video.shape)}"
                )
            if video.shape[1] < 1:
                raise ValueError("video: needs at least one frame")
            if video_times_s is None:
                raise ValueError("video_times_s is required with video (seconds, (batch, T_v))")
            if tuple(video_times_s.shape) != tuple(video.shape[:2]):
                raise ValueError(
                    f"video_times_s: expected shape {tuple(video.shape[:2])} (batch, "
                    f"n_video_frames), got {tuple(video_times_s.shape)}"
                )
            if batch is not None and video.shape[0] != batch:
                raise ValueError(
                    f"audio and video batch sizes differ: {batch} and {video.shape[0]}"
                )
            batch = video.shape[0]
        if cfg.mode == "audio" and audio is None:
            raise ValueError("mode='audio' needs audio")
        if cfg.mode == "video" and video is None:
            raise ValueError("mode='video' needs video and video_times_s")
        if batch is None:
            raise ValueError("mode='fusion' needs audio, video, or both")
        if n_frames is None:
            raise ValueError("n_frames (model frames) is required when audio is None")
        if n_frames < 1:
            raise ValueError(f"n_frames={n_frames}: must be >= 1")
        return batch, n_frames

    def forward(
        self,
        audio: Tensor | None = None,
        video: Tensor | None = None,
        video_times_s: Tensor | None = None,
        n_frames: int | None = None,
        modality_keep: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Transcribe one batch of windows.

        Args:
            audio: shape (batch, n_samples), float32 in [-1, 1], mono at
                ``config.sample_rate_hz`` (16 kHz). Ignored in video mode (only its length is
                used for T); required in audio mode.
            video: shape (batch, n_video_frames, rect_height_px, rect_width_px), uint8 or float,
                grayscale 0…255, rectified keyboard frames. Ignored in audio mode; required in
                video mode.
            video_times_s: shape (batch, n_video_frames), float, frame times in seconds from the
                window start (audio sample 0 is time 0), non-decreasing; any frame rate.
            n_frames: number of model frames T; required when ``audio`` is None, otherwise it
                must equal ``n_frames(n_samples)`` = ``n_samples // hop_length + 1``.
            modality_keep: in training with both modalities in fusion mode, the modality
                drop-out to apply, ``(keep_audio, keep_video)``, each float (batch,) of 0/1 (as
                `draw_modality_keep` returns; the caller drew it, e.g. to know which samples
                lost their audio); None: drawn here. Ignored outside training.
        Returns:
            Logits, model frame i centred at ``i * hop_length / sample_rate_hz`` s, key index
            MIDI − 21: ``onset``, ``frame``, ``offset``: shape (batch, T, 88) (apply a
            sigmoid for probabilities); ``velocity``: (batch, T, 88), a regression output
            trained against velocity / 127 (no sigmoid; read at onset frames only); ``pedal``: (batch, T), sustain-pedal
            logits; with audio also ``key_cqt``: (batch, T, 88), the log-CQT per key
            (`key_spectrum`; an input feature for the decoder, not a prediction).
        Raises:
            ValueError: on missing inputs or shapes that do not fit the config (or
                ``modality_keep``).
        """
        cfg = self.config
        batch, n_out = self._check_inputs(audio, video, video_times_s, n_frames)
        device = self.key_embedding.device
        use_audio = self.audio_encoder is not None and audio is not None
        use_video = self.video_encoder is not None and video is not None

        keep_audio: Tensor | None = None
        keep_video: Tensor | None = None
        if self.training and cfg.mode == "fusion" and use_audio and use_video:
            if modality_keep is None:
                keep_audio, keep_video = self.draw_modality_keep(batch, device)
            else:
                keep_audio, keep_video = (k.to(device).float() for k in modality_keep)
                if keep_audio.shape != (batch,) or keep_video.shape != (batch,):
                    raise ValueError(
                        f"modality_keep: expected two tensors of shape ({batch},), got "
                        f"{tuple(keep_audio.shape)} and {tuple(keep_video.shape)}"
                    )

        audio_tokens: Tensor | None = None
        spec: Tensor | None = None
        if use_audio:
            assert self.audio_encoder is not None and audio is not None
            spec = self.audio_encoder.log_cqt(audio)  # (B, n_bins, T)
            audio_tokens = self.audio_encoder(audio, spec=spec)  # (B, T, 88, d)
            if keep_audio is not None:
                audio_tokens = audio_tokens * keep_audio.to(audio_tokens.dtype)[:, None, None, None]
        video_tokens: Tensor | None = None
        if use_video:
            assert self.video_encoder is not None and video is not None
            assert video_times_s is not None
            video_tokens = self.video_encoder(video, video_times_s, n_out)  # (B, T, 88, d)

        d = cfg.d_model
        x = self.key_embedding.expand(batch, n_out, N_KEYS, d)  # (B, T, 88, d)
        if self.concat_proj is not None:  # ablation: concatenation instead of attention
            streams = []
            if self.uses_audio:
                streams.append(audio_tokens if audio_tokens is not None else x.new_zeros(x.shape))
            if self.uses_video:
                v = video_tokens if video_tokens is not None else x.new_zeros(x.shape)
                if keep_video is not None:
                    v = v * keep_video.to(v.dtype)[:, None, None, None]
                streams.append(v)
            x = x + self.concat_proj(torch.cat(streams, dim=-1))
            video_tokens = None  # consumed
        elif audio_tokens is not None:
            x = x + audio_tokens
        for layer in self.fusion_layers:
            x = layer(x, video_tokens, keep_video)  # (B, T, 88, d)

        # Temporal layer over time, shared over keys.
        seq = x.permute(0, 2, 1, 3).reshape(batch * N_KEYS, n_out, d)  # (B*88, T, d)
        seq = self.temporal(seq)  # (B*88, T, d)
        h = self.temporal_norm(seq.view(batch, N_KEYS, n_out, d).permute(0, 2, 1, 3))

        onset = self.onset_head(h).squeeze(-1)  # (B, T, 88)
        offset = self.offset_head(h).squeeze(-1)
        cond = torch.stack([torch.sigmoid(onset), torch.sigmoid(offset)], dim=-1).detach()
        frame = self.frame_head(torch.cat([h, cond.to(h.dtype)], dim=-1)).squeeze(-1)
        if self.velocity_stack is None:
            velocity = self.velocity_head(h).squeeze(-1)
        else:
            if spec is None:  # fusion model run on video alone: no level to read
                vel_features = h.new_zeros(*h.shape[:3], self.velocity_stack.n_features)
            else:
                vel_features = self.velocity_stack(spec).to(h.dtype)  # (B, T, 88, n)
                if keep_audio is not None:
                    vel_features = vel_features * keep_audio.to(h.dtype)[:, None, None, None]
            velocity = self.velocity_head(torch.cat([h, vel_features], dim=-1)).squeeze(-1)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=-1)  # (B, T, 2d)
        pedal = self.pedal_head(pooled).squeeze(-1)  # (B, T)
        out = {
            "onset": onset,
            "frame": frame,
            "offset": offset,
            "velocity": velocity,
            "pedal": pedal,
        }
        if spec is not None:  # what the note-candidate rescorer reads of the sound
            out["key_cqt"] = self.key_spectrum(spec)
        return out

    def key_spectrum(self, spec: Tensor) -> Tensor:
        """The log-CQT per key: the largest of each key's ``bins_per_semitone`` bins.

        spec: (batch, n_bins, T) (`AudioEncoder.log_cqt`) → float32 (batch, T, 88), units of
        ``log1p(cqt_log_gain · |CQT|)``. Not trained: read by `avfusion.rescore` (spectral
        features of note candidates).
        """
        b, _, t = spec.shape
        bps = self.config.bins_per_semitone
        return spec.float().view(b, N_KEYS, bps, t).amax(dim=2).transpose(1, 2)

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
