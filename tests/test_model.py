"""Tests of avfusion.model: shapes per mode, time and key alignment, modality drop-out, a short
training run, checkpoints. All on the ``tiny`` preset and CPU, seconds in total."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avfusion.keyboard import keyboard_geometry
from avfusion.model import (
    AudioEncoder,
    AVTranscriber,
    LocalCrossAttention,
    ModelConfig,
    frame_times_s,
    key_pooling_matrix,
    load_checkpoint,
    n_frames,
    preset,
    resample_to_frames,
    save_checkpoint,
)

SR = 16_000
HEADS = ("onset", "frame", "offset", "velocity", "pedal")


def tiny(**changes: object) -> ModelConfig:
    """The tiny preset without randomness in the forward pass unless asked."""
    base = {"dropout": 0.0, "p_drop_audio": 0.0, "p_drop_video": 0.0}
    base.update(changes)
    return preset("tiny", **base)


def make_batch(
    cfg: ModelConfig, batch: int = 2, seconds: float = 1.0, fps: float = 30.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random audio (B, n), uint8 video (B, T_v, H, W) and its timestamps (B, T_v)."""
    g = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(batch, int(seconds * SR), generator=g)
    n_video = round(seconds * fps)
    shape = (batch, n_video, cfg.rect_height_px, cfg.rect_width_px)
    video = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    times = (torch.arange(n_video, dtype=torch.float32) / fps).expand(batch, n_video)
    return audio, video, times.contiguous()


def check_outputs(out: dict[str, torch.Tensor], batch: int, n_out: int) -> None:
    assert set(out) - {"key_cqt"} == set(HEADS)
    for name in ("onset", "frame", "offset", "velocity", "key_cqt"):
        if name not in out:  # key_cqt: only with audio (test_output_shapes)
            continue
        assert out[name].shape == (batch, n_out, 88), name
    assert out["pedal"].shape == (batch, n_out)
    for name, value in out.items():
        assert torch.isfinite(value).all(), name


# ---- config ------------------------------------------------------------------------------


def test_config_json_round_trip_and_unknown_keys() -> None:
    for name in ("tiny", "cpu-small", "gpu-base"):
        cfg = preset(name, mode="video", fusion="concat")
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"known keys.*d_model"):
        ModelConfig.from_dict({"d_modle": 32})
    with pytest.raises(ValueError, match="sum to at most 1"):
        ModelConfig(p_drop_audio=0.7, p_drop_video=0.5)
    with pytest.raises(ValueError, match="mode"):
        ModelConfig(mode="both")
    with pytest.raises(ValueError, match="known presets"):
        preset("huge")
    cfg = ModelConfig()
    assert cfg.frame_rate_hz == pytest.approx(31.25)
    assert cfg.n_bins == 264


def test_n_frames_convention() -> None:
    cfg = tiny()
    assert n_frames(80_000, cfg) == 157  # 5 s at 16 kHz, hop 512
    assert n_frames(0, cfg) == 1
    assert frame_times_s(3, cfg).tolist() == pytest.approx([0.0, 0.032, 0.064])
    encoder = AudioEncoder(cfg).eval()
    for n in (100, 511, 512, 16_000, 16_001):
        spec = encoder.log_cqt(torch.zeros(1, n))
        assert spec.shape == (1, cfg.n_bins, n_frames(n, cfg)), n


# ---- shapes per mode ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fusion"),
    [("fusion", "xattn"), ("audio", "xattn"), ("video", "xattn"), ("fusion", "concat")],
)
def test_output_shapes(mode: str, fusion: str) -> None:
    cfg = tiny(mode=mode, fusion=fusion)
    model = AVTranscriber(cfg).eval()
    audio, video, times = make_batch(cfg)
    n_out = n_frames(audio.shape[1], cfg)
    with torch.no_grad():
        if mode == "video":
            out = model(None, video, times, n_frames=n_out)
        elif mode == "audio":
            out = model(audio)
        else:
            out = model(audio, video, times)
    check_outputs(out, 2, n_out)
    assert ("key_cqt" in out) == (mode != "video")  # what the rescorer reads of the sound
    if mode != "video":  # the largest of each key's CQT bins
        spec = model.audio_encoder.log_cqt(audio)
        bps = cfg.bins_per_semitone
        key = 40
        expected = spec[:, key * bps : (key + 1) * bps].amax(dim=1)  # (B, T)
        torch.testing.assert_close(out["key_cqt"][:, :, key], expected)


def test_three_layer_video_stem_keeps_keys_apart() -> None:
    # any height: ceil(H / 8) rows; a change on one key's columns moves that key's tokens and
    # its neighbours', keys an octave away only through the per-frame standardisation
    cfg = tiny(mode="video", video_stem_layers=3, rect_height_px=36)
    model = AVTranscriber(cfg).eval()
    assert model.video_encoder.rows == 5
    _, video, _ = make_batch(cfg, batch=1)
    with torch.no_grad():
        base = model.video_encoder.frame_tokens(video)
        x0, x1 = (
            int(c) for c in np.flatnonzero(key_pooling_matrix(cfg.rect_width_px)[:, 40])[[0, -1]]
        )
        changed = video.clone()
        changed[:, :, :, x0 : x1 + 1] = 255 - changed[:, :, :, x0 : x1 + 1]
        moved = (model.video_encoder.frame_tokens(changed) - base).abs().amax(dim=(0, 1, 3))
    assert moved.shape == (88,) and moved[40] > 0
    assert max(float(moved[40 + 12]), float(moved[40 - 12])) < 0.05 * float(moved[40])
    with pytest.raises(ValueError, match="video_stem_layers"):
        ModelConfig(video_stem_layers=2)


def test_video_reference_channel_sees_a_held_change_and_starts_silent() -> None:
    """``video_reference``: a key held darker for the whole window is invisible to the frame
    difference but not to the frame-minus-median channel; a 2-channel model extended by
    `avfusion.train._with_video_reference` gives exactly its outputs until the new weights move."""
    from avfusion.train import _with_video_reference

    cfg = tiny(mode="video")
    _, video, times = make_batch(cfg, batch=1)
    video = video // 2 + 64  # room to darken
    x0, x1 = (int(c) for c in np.flatnonzero(key_pooling_matrix(cfg.rect_width_px)[:, 40])[[0, -1]])
    held = video.clone()
    held[:, 10:, :, x0 : x1 + 1] -= 20  # key 40 down from frame 10 to the end (2/3 of the window)
    torch.manual_seed(0)
    two = AVTranscriber(cfg).eval()
    three = _with_video_reference(two, "test").eval()
    assert three.config.video_reference and three.video_encoder.stem[0].weight.shape[1] == 3
    with torch.no_grad():
        n_out = n_frames(SR, cfg)
        assert torch.equal(two(video=held, video_times_s=times, n_frames=n_out)["frame"],
                           three(video=held, video_times_s=times, n_frames=n_out)["frame"])  # fmt: skip
        w = three.video_encoder.stem[0].weight
        w[:, 2], w[:, :2] = w[:, 0].clone(), 0  # only the reference channel left
        moved = three.video_encoder.frame_tokens(held) - three.video_encoder.frame_tokens(video)
        moved = moved.abs().amax(dim=(0, 3))  # (T_v, 88)
    # frames 20.. : no frame-to-frame change any more, yet key 40 still stands out
    assert float(moved[20:, 40].min()) > 0
    assert float(moved[20:, 40 + 12].max()) < 0.2 * float(moved[20:, 40].min())
    with pytest.raises(ValueError, match="audio-only"):
        _with_video_reference(AVTranscriber(tiny(mode="audio")), "test")


def test_wider_video_starts_identical_and_its_new_channels_learn() -> None:
    """`avfusion.train._with_wider_video` (function-preserving widening of the video CNN):
    the widened model gives exactly the old outputs, every old weight is kept, and one backward
    pass reaches the new channels; it refuses what it cannot widen."""
    from avfusion.train import _with_wider_video

    cfg = tiny(video_reference=True)
    audio, video, times = make_batch(cfg)
    torch.manual_seed(0)
    narrow = AVTranscriber(cfg)
    with torch.no_grad():  # batch-norm statistics that are not the defaults
        for module in narrow.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    narrow.eval()
    wide = _with_wider_video(narrow, 2 * cfg.video_channels, "test").eval()
    enc = wide.video_encoder
    c, p = cfg.video_channels, cfg.video_channels // 2
    assert wide.config.video_channels == 2 * c and enc.stem[0].weight.shape[0] == 2 * p
    assert enc.key_proj.weight.shape[1] == 2 * narrow.video_encoder.key_proj.weight.shape[1]
    n_out = n_frames(audio.shape[1], cfg)
    with torch.no_grad():
        before = narrow(audio, video, times, n_frames=n_out)
        after = wide(audio, video, times, n_frames=n_out)
    for name in HEADS:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-6)
    assert torch.equal(enc.stem[0].weight[:p], narrow.video_encoder.stem[0].weight)
    assert float(enc.stem[0].weight[p:].detach().abs().sum()) > 0  # the new filters are not blank
    wide.train()
    wide(audio, video, times, n_frames=n_out)["frame"].sum().backward()
    rows = enc.rows
    grad = enc.key_proj.weight.grad.view(cfg.d_model, 2 * c, rows)
    assert float(grad[:, c:].abs().sum()) > 0  # the new key-stage channels are read in
    assert float(enc.key_block[0].weight.grad[:c, p:].abs().sum()) > 0  # and the new stem's
    with pytest.raises(ValueError, match="not above"):
        _with_wider_video(narrow, c, "test")
    with pytest.raises(ValueError, match="audio-only"):
        _with_wider_video(AVTranscriber(tiny(mode="audio")), 2 * c, "test")


def test_resized_video_reads_taller_frames_as_the_old_model_read_the_short_ones() -> None:
    """`avfusion.train._with_resized_video` (larger rectified frames): with the height doubled,
    a frame whose rows are each repeated twice gives exactly the old model's outputs on the
    original frame; a wider frame runs and trains; it refuses what it cannot resize."""
    from avfusion.train import _with_resized_video

    cfg = tiny(video_reference=True)
    audio, video, times = make_batch(cfg)
    torch.manual_seed(0)
    small = AVTranscriber(cfg).eval()
    w, h = cfg.rect_width_px, cfg.rect_height_px
    tall = _with_resized_video(small, w, 2 * h, "test").eval()
    assert tall.config.rect_height_px == 2 * h
    assert tall.config.video_stem_stride == 2 * cfg.video_stem_stride
    assert tall.video_encoder.rows == small.video_encoder.rows
    n_out = n_frames(audio.shape[1], cfg)
    with torch.no_grad():
        before = small(audio, video, times, n_frames=n_out)
        after = tall(audio, video.repeat_interleave(2, dim=2), times, n_frames=n_out)
    for name in HEADS:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-5)
    big = _with_resized_video(small, w + w // 2, 2 * h, "test").train()
    wide_video = torch.randint(0, 256, (video.shape[0], video.shape[1], 2 * h, w + w // 2),
                               dtype=torch.uint8)  # fmt: skip
    big(audio, wide_video, times, n_frames=n_out)["frame"].sum().backward()
    assert float(big.video_encoder.stem[0].weight.grad.abs().sum()) > 0
    assert big.video_encoder.pooling.shape == (w + w // 2, 88)
    with pytest.raises(ValueError, match="whole multiple"):
        _with_resized_video(small, w, h + h // 2, "test")
    with pytest.raises(ValueError, match="whole multiple"):
        _with_resized_video(small, w - 8, 2 * h, "test")
    with pytest.raises(ValueError, match="audio-only"):
        _with_resized_video(AVTranscriber(tiny(mode="audio")), w, 2 * h, "test")
    with pytest.raises(ValueError, match="video_stem_stride"):
        tiny(video_stem_stride=h + 1)


def test_gru_temporal_and_missing_inputs() -> None:
    cfg = tiny(temporal="gru")
    model = AVTranscriber(cfg).eval()
    audio, video, times = make_batch(cfg)
    with torch.no_grad():
        check_outputs(model(audio, video, times), 2, n_frames(audio.shape[1], cfg))
        # a fusion model also runs on one modality (the other counts as dropped)
        check_outputs(model(audio), 2, n_frames(audio.shape[1], cfg))
        check_outputs(model(None, video, times, n_frames=20), 2, 20)
    with pytest.raises(ValueError, match="n_frames"):
        model(None, video, times)
    with pytest.raises(ValueError, match="video_times_s"):
        model(audio, video)
    with pytest.raises(ValueError, match="rect_height_px"):
        model(audio, video[:, :, :8], times)
    with pytest.raises(ValueError, match="disagrees"):
        model(audio, video, times, n_frames=5)


def test_state_dict_has_no_cqt_kernels() -> None:
    keys = AVTranscriber(tiny()).state_dict().keys()
    assert not [k for k in keys if "cqt" in k or "pooling" in k]


# ---- alignment: pitch, keys, time ----------------------------------------------------------


@pytest.mark.parametrize(("midi", "freq_hz"), [(69, 440.0), (21, 27.5), (108, 4186.01)])
def test_cqt_bins_are_aligned_to_keys(midi: int, freq_hz: float) -> None:
    cfg = tiny()
    encoder = AudioEncoder(cfg).eval()
    t = torch.arange(3 * SR) / SR
    spec = encoder.log_cqt(torch.sin(2 * math.pi * freq_hz * t)[None])[0]  # (F, T)
    energy = spec[:, 40:-40].mean(dim=1)  # away from the edges (long low-frequency kernels)
    key = midi - 21
    bps = cfg.bins_per_semitone
    assert int(energy.argmax()) == key * bps + bps // 2
    per_key = energy.view(88, bps).sum(dim=1)
    assert int(per_key.argmax()) == key


def test_key_pooling_matrix_follows_key_spans() -> None:
    width = 416
    pool = key_pooling_matrix(width)
    assert pool.shape == (width, 88)
    assert torch.allclose(pool.sum(dim=0), torch.ones(88), atol=1e-5)
    geo = keyboard_geometry()
    for key in (0, 39, 40, 87):  # A0, C4, C#4 (black), C8
        image = torch.zeros(width)
        lo = int(np.ceil(geo.left_mm[key] * width / 1222))
        hi = int(np.floor(geo.right_mm[key] * width / 1222))
        image[lo:hi] = 1.0
        pooled = image @ pool
        assert int(pooled.argmax()) == key


def test_resample_to_frames_interpolates_by_timestamps() -> None:
    tokens = torch.tensor([[0.0, 10.0, 20.0]])[..., None]  # (1, 3 video frames, 1)
    times = torch.tensor([[0.1, 0.2, 0.4]])
    out = resample_to_frames(tokens, times, n_frames=6, frame_period_s=0.1)[0, :, 0]
    # model frames at 0, .1, .2, .3, .4, .5 s: clamped, exact, exact, halfway, exact, clamped
    assert out.tolist() == pytest.approx([0.0, 0.0, 10.0, 15.0, 20.0, 20.0])


def test_video_is_resampled_by_timestamps() -> None:
    cfg = tiny(mode="video")
    torch.manual_seed(0)
    model = AVTranscriber(cfg).eval()
    n_out = n_frames(SR, cfg)
    with torch.no_grad():
        _, video25, times25 = make_batch(cfg, fps=25.0)
        _, video30, times30 = make_batch(cfg, fps=30.0)
        out25 = model(None, video25, times25, n_frames=n_out)
        out30 = model(None, video30, times30, n_frames=n_out)
        check_outputs(out25, 2, n_out)
        check_outputs(out30, 2, n_out)
        shifted = model(None, video30, times30 + 0.2, n_frames=n_out)
        assert not torch.allclose(shifted["frame"], out30["frame"])
        # the encoder's tokens: model frames before the first video frame (0.2 s) take it
        assert model.video_encoder is not None
        per_frame = model.video_encoder.frame_tokens(video30)  # (B, T_v, 88, d)
        tokens = model.video_encoder(video30, times30 + 0.2, n_out)  # (B, T, 88, d)
    early = int(0.2 * cfg.frame_rate_hz) + 1  # frames 0 … 6 lie at or before 0.2 s
    assert torch.allclose(tokens[:, :early], per_frame[:, :1].expand(-1, early, -1, -1))
    # model frame 25 (0.8 s) is 0.6 s into the video: exactly video frame 18
    assert torch.allclose(tokens[:, 25], per_frame[:, 18], atol=1e-5)


def test_local_attention_matches_naive_reference() -> None:
    torch.manual_seed(0)
    d, heads, tw, kw = 8, 2, 1, 2
    attn = LocalCrossAttention(d, heads, tw, kw, dropout=0.0).eval()
    query, memory = torch.randn(2, 4, 88, d), torch.randn(2, 4, 88, d)
    fast = attn(query, memory)

    dh = d // heads
    q = attn.q_proj(attn.q_norm(query)).view(2, 4, 88, heads, dh) * dh**-0.5
    mem = attn.kv_norm(memory)
    k = attn.k_proj(mem).view(2, 4, 88, heads, dh)
    v = attn.v_proj(mem).view(2, 4, 88, heads, dh)
    emb = attn.offset_embedding.view(-1, heads, dh)
    ref = torch.zeros(2, 4, 88, heads, dh)
    for t in range(4):
        for key in range(88):
            scores, values = [], []
            for o, (dt, dk) in enumerate(
                (dt, dk) for dt in range(-tw, tw + 1) for dk in range(-kw, kw + 1)
            ):
                if 0 <= t + dt < 4 and 0 <= key + dk < 88:
                    scores.append((q[:, t, key] * (k[:, t + dt, key + dk] + emb[o])).sum(-1))
                    values.append(v[:, t + dt, key + dk])
            p = torch.softmax(torch.stack(scores, dim=-1), dim=-1)  # (B, h, n)
            ref[:, t, key] = (p[..., None] * torch.stack(values, dim=-2)).sum(dim=-2)
    ref_out = attn.out_proj(ref.reshape(2, 4, 88, d))
    assert torch.allclose(fast, ref_out, atol=1e-5)

    # the hand-written backward passes agree with autograd through the reference
    weights = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(
        (fast * weights).sum(), [attn.k_proj.weight, attn.q_proj.weight]
    )
    grads_ref = torch.autograd.grad(
        (ref_out * weights).sum(), [attn.k_proj.weight, attn.q_proj.weight]
    )
    for g_fast, g_ref in zip(grads_fast, grads_ref, strict=True):
        assert torch.allclose(g_fast, g_ref, atol=1e-4)


# ---- training behaviour ---------------------------------------------------------------------


def test_gradients_reach_both_branches() -> None:
    cfg = tiny()
    model = AVTranscriber(cfg).train()
    audio, video, times = make_batch(cfg)
    out = model(audio, video, times)
    sum(value.square().mean() for value in out.values()).backward()
    assert model.audio_encoder is not None and model.video_encoder is not None
    audio_grad = model.audio_encoder.conv_fine[0].weight.grad
    video_grad = model.video_encoder.stem[0].weight.grad
    assert audio_grad is not None and audio_grad.abs().sum() > 0
    assert video_grad is not None and video_grad.abs().sum() > 0


def test_modality_dropout_removes_audio_in_training_only() -> None:
    cfg = tiny(p_drop_audio=1.0, p_drop_video=0.0)
    model = AVTranscriber(cfg)
    audio, video, times = make_batch(cfg)
    other_audio = 0.1 * torch.randn_like(audio)
    model.train()
    with torch.no_grad():
        a = model(audio, video, times)
        b = model(other_audio, video, times)
    for name in HEADS:
        assert torch.allclose(a[name], b[name]), name
    model.eval()
    with torch.no_grad():
        a = model(audio, video, times)
        b = model(other_audio, video, times)
    assert not torch.allclose(a["frame"], b["frame"])


def test_a_given_modality_keep_drops_the_audio_of_the_chosen_samples_only() -> None:
    """``modality_keep`` replaces the drawn drop-out: sample 0 loses its audio (its outputs do
    not depend on it), sample 1 keeps it; a wrong shape is refused."""
    cfg = tiny(p_drop_audio=0.0, p_drop_video=0.0)
    model = AVTranscriber(cfg).train()
    audio, video, times = make_batch(cfg)
    other_audio = 0.1 * torch.randn_like(audio)
    keep = (torch.tensor([0.0, 1.0]), torch.ones(2))
    with torch.no_grad():
        a = model(audio, video, times, modality_keep=keep)
        b = model(other_audio, video, times, modality_keep=keep)
    for name in HEADS:
        assert torch.allclose(a[name][0], b[name][0]), name
    assert not torch.allclose(a["onset"][1], b["onset"][1])
    with pytest.raises(ValueError, match="modality_keep"):
        model(audio, video, times, modality_keep=(torch.ones(3), torch.ones(3)))


def test_modality_dropout_never_drops_both() -> None:
    model = AVTranscriber(tiny(p_drop_audio=0.5, p_drop_video=0.5))
    torch.manual_seed(1)
    keep_audio, keep_video = model.draw_modality_keep(4000, torch.device("cpu"))
    assert ((keep_audio + keep_video) >= 1).all()
    assert float(1 - keep_audio.mean()) == pytest.approx(0.5, abs=0.04)
    assert float(1 - keep_video.mean()) == pytest.approx(0.5, abs=0.04)


def test_a_few_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    cfg = tiny()
    model = AVTranscriber(cfg).train()
    audio, video, times = make_batch(cfg, batch=2, seconds=0.5, fps=30.0)
    n_out = n_frames(audio.shape[1], cfg)
    g = torch.Generator().manual_seed(3)
    targets = {
        name: (torch.rand(2, n_out, 88, generator=g) < 0.1).float()
        for name in ("onset", "frame", "offset")
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        out = model(audio, video, times)
        loss = sum(
            F.binary_cross_entropy_with_logits(out[name], target)
            for name, target in targets.items()
        )
        assert isinstance(loss, torch.Tensor)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # below the best constant prediction (each head's base rate): the model fits the batch,
    # not only the prior that the heads' biases start at
    best_constant = sum(
        F.binary_cross_entropy(torch.full_like(t, float(t.mean())), t).item()
        for t in targets.values()
    )
    assert losses[-1] < 0.9 * best_constant < losses[0], (losses, best_constant)


def test_autocast_bfloat16_on_cpu() -> None:
    cfg = tiny()
    model = AVTranscriber(cfg).train()
    audio, video, times = make_batch(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(audio, video, times)
        loss = sum(value.float().square().mean() for value in out.values())
    loss.backward()
    check_outputs({k: v.float().detach() for k, v in out.items()}, 2, n_frames(SR, cfg))


# ---- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    cfg = tiny()
    model = AVTranscriber(cfg)
    audio, video, times = make_batch(cfg)
    model.train()
    model(audio, video, times)  # move the batch-norm running statistics off their init
    model.eval()
    folder = save_checkpoint(model, tmp_path / "ckpt", extra={"onset_threshold": 0.4})
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    loaded, extra = load_checkpoint(folder / "model.safetensors")
    assert extra == {"onset_threshold": 0.4}
    assert not loaded.training and loaded.config == cfg
    with torch.no_grad():
        a, b = model(audio, video, times), loaded(audio, video, times)
    for name in HEADS:
        assert torch.equal(a[name], b[name]), name


def test_checkpoint_refuses_bad_files(tmp_path: Path) -> None:
    folder = save_checkpoint(AVTranscriber(tiny()), tmp_path / "ckpt")
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    doc = json.loads(config_path.read_text())

    # a config whose shapes do not match the weights
    wrong = json.loads(json.dumps(doc))
    wrong["model_config"]["d_model"] = 32
    config_path.write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="does not match the weights") as info:
        load_checkpoint(folder)
    assert "shape mismatch" in str(info.value)
    config_path.write_text(json.dumps(doc))

    # corrupted weights: bytes flipped in the middle
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(255 - x for x in data[middle : middle + 8])
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256") as info:
        load_checkpoint(folder)
    assert str(weights) in str(info.value)

    # not safetensors at all, but with a matching sha256
    weights.write_bytes(b"not a safetensors file")
    doc["weights_sha256"] = hashlib.sha256(b"not a safetensors file").hexdigest()
    config_path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="safetensors") as info:
        load_checkpoint(folder)
    assert str(weights) in str(info.value)

    weights.unlink()
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(folder)
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")


def test_checkpoint_extra_gives_window_and_thresholds_or_a_clear_error() -> None:
    from avfusion.decoding import DecodeConfig
    from avfusion.inference import DEFAULT_WINDOW_S, window_s_from_extra

    extra = {"train_config": {"data": {"window_s": 3}}, "decode": {"onset_threshold": 0.3}}
    assert window_s_from_extra(extra, "m/config.json") == 3.0
    assert DecodeConfig.from_extra(extra, "m/config.json") == DecodeConfig(onset_threshold=0.3)
    assert window_s_from_extra({}, "m/config.json") == DEFAULT_WINDOW_S
    assert DecodeConfig.from_extra({}, "m/config.json") == DecodeConfig()
    with pytest.raises(ValueError, match=r"m/config.json.*window_s"):
        window_s_from_extra({"train_config": {"data": {"window_s": "long"}}}, "m/config.json")
    with pytest.raises(ValueError, match=r"m/config.json.*extra.decode"):
        DecodeConfig.from_extra({"decode": {"onset_treshold": 0.3}}, "m/config.json")
    with pytest.raises(ValueError, match=r"m/config.json.*extra.decode"):
        DecodeConfig.from_extra({"decode": {"onset_threshold": "high"}}, "m/config.json")


# ---- velocity stack -------------------------------------------------------------------------


def test_velocity_stack_feeds_only_the_velocity_output() -> None:
    """With ``velocity_channels`` the modes with audio get a separate velocity stack over the
    log-CQT; changing its weights changes the velocities and nothing else. Video mode has none."""
    assert AVTranscriber(tiny(mode="video", velocity_channels=4)).velocity_stack is None
    for mode in ("fusion", "audio"):
        cfg = tiny(mode=mode, velocity_channels=4)
        model = AVTranscriber(cfg).eval()
        assert model.velocity_stack is not None
        audio, video, times = make_batch(cfg)
        inputs = (audio,) if mode == "audio" else (audio, video, times)
        n_out = n_frames(audio.shape[1], cfg)
        with torch.no_grad():
            before = model(*inputs)
            check_outputs(before, 2, n_out)
            for p in model.velocity_stack.parameters():
                p.add_(0.5)
            after = model(*inputs)
        assert not torch.allclose(before["velocity"], after["velocity"]), mode
        for name in ("onset", "frame", "offset", "pedal"):
            assert torch.equal(before[name], after[name]), (mode, name)
    # a fusion model run on video alone still gives velocities (from the shared features)
    cfg = tiny(velocity_channels=4)
    _, video, times = make_batch(cfg)
    with torch.no_grad():
        check_outputs(AVTranscriber(cfg).eval()(None, video, times, n_frames=20), 2, 20)
    with pytest.raises(ValueError, match="velocity_channels"):
        tiny(velocity_channels=-1)
