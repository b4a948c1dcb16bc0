"""`avfusion transcribe`: streamed windows and incremental decoding against their whole-array
references, a note across window boundaries, the command end to end in every mode, every kind
of bad input, and a batch with one bad input. Tiny random-weight checkpoints: the tests check
the mechanics (modes, files, errors), not accuracy."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from avfusion.cli import main
from avfusion.decoding import DecodeConfig, decode_notes
from avfusion.inference import iter_posteriors, predict_posteriors
from avfusion.midi import read_midi
from avfusion.model import AVTranscriber, preset, save_checkpoint
from avfusion.rescore import FEATURE_SETS, SPECTRAL_FEATURE_SET, Rescorer
from avfusion.transcribe import (
    StreamingDecoder,
    TranscriptionError,
    audio_is_silent,
    check_corners,
    default_checkpoint,
    parse_keyboard,
    transcribe,
)

SR = 16_000
HOP = 512
FR = SR / HOP


# ---------------------------------------------------------------------------------------------
# Fixtures: a rendered clip, media made from it, tiny checkpoints


def _tiny(mode: str) -> AVTranscriber:
    torch.manual_seed(0)
    cfg = preset("tiny", mode=mode, dropout=0.0, p_drop_audio=0.0, p_drop_video=0.0)
    return AVTranscriber(cfg).eval()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    # a note at every onset peak: random weights then give notes whatever the heads' init
    decode = DecodeConfig(onset_threshold=0.0).to_dict()
    return {
        m: save_checkpoint(_tiny(m), root / m, extra={"decode": decode})
        for m in ("fusion", "audio", "video")
    }


def _write_video(
    path: Path,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate_hz: int = SR,
) -> Path:
    """Encode uint8 (T, H, W, 3) frames (H.264) and optional mono audio (AAC) into ``path``."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast"}
        a_s = None if audio is None else c.add_stream("aac", rate=sample_rate_hz, layout="mono")
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a_s is not None and audio is not None:
            for k in range(0, len(audio), 1024):
                af = av.AudioFrame.from_ndarray(
                    audio[None, k : k + 1024].astype(np.float32), format="fltp", layout="mono"
                )
                af.sample_rate, af.pts = sample_rate_hz, k
                for p in a_s.encode(af):
                    c.mux(p)
            for p in a_s.encode():
                c.mux(p)
    return path


def _remux(src: Path, dst: Path, *, audio: bool) -> Path:
    """Copy the video stream (and the audio stream if ``audio``) into another container."""
    with av.open(str(src)) as c, av.open(str(dst), "w") as o:
        streams = [c.streams.video[0], *(c.streams.audio[:1] if audio else [])]
        outs = {s.index: o.add_stream_from_template(s) for s in streams}
        for p in c.demux(*streams):
            if p.dts is None:
                continue
            p.stream = outs[p.stream.index]
            o.mux(p)
    return dst


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A rendered 3.3 s performance (640x360, 30 fps, AAC) and files derived from it."""
    from avfusion.midi import write_midi
    from avfusion.synth.performance import synthesize_from_midi
    from tests.conftest import make_notes

    root = tmp_path_factory.mktemp("media")
    write_midi(make_notes(), root / "phrase.mid")
    synthesize_from_midi(root / "phrase.mid", root / "perf")
    clip = root / "perf" / "video.mp4"
    audio, _ = sf.read(root / "perf" / "audio.flac", dtype="float32")
    m = {"clip": clip, "meta": root / "perf" / "meta.json", "flac": root / "perf" / "audio.flac"}
    # stereo 44.1 kHz WAV: resampled and mixed down on reading
    t = np.arange(int(2.0 * 44100)) / 44100
    st = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1)
    sf.write(root / "stereo44k.wav", st.astype(np.float32), 44100)
    m["stereo"] = root / "stereo44k.wav"
    for fmt in ("ogg", "mp3"):
        sf.write(root / f"audio.{fmt}", audio, SR, format=fmt.upper())
        m[fmt] = root / f"audio.{fmt}"
    for ext in ("mkv", "mov"):
        m[ext] = _remux(clip, root / f"video.{ext}", audio=True)
    m["noaudio"] = _remux(clip, root / "noaudio.mp4", audio=False)
    data = clip.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    m["truncated"] = root / "truncated.mp4"
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    m["random"] = root / "random.mp4"
    (root / "empty.mp4").write_bytes(b"")
    m["empty"] = root / "empty.mp4"
    (root / "notes.mp4").write_text("not a video, just text\n" * 50)
    m["text"] = root / "notes.mp4"
    for name, bad in (("nan", np.nan), ("inf", np.inf)):
        x = audio[:SR].copy()
        x[SR // 2] = bad
        sf.write(root / f"{name}.wav", x, SR, subtype="FLOAT")
        m[name] = root / f"{name}.wav"
    sf.write(root / "silence.wav", np.zeros(2 * SR, np.float32), SR)
    m["silence"] = root / "silence.wav"
    noise = np.random.default_rng(1).integers(0, 256, (40, 120, 160, 3), dtype=np.uint8)
    m["nokeys"] = _write_video(root / "nokeys.mp4", noise, 20, audio[: 2 * SR])
    m["still"] = root / "still.png"
    import matplotlib.image

    matplotlib.image.imsave(m["still"], noise[0])
    (root / "folder.mp4").mkdir()
    m["folder"] = root / "folder.mp4"
    return m


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["transcribe", *args, "--no-progress"])
    return code, capsys.readouterr().err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# Streaming equals the whole-array references


def _posteriors_like(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Posteriors with notes in them: smoothed noise, sharp onset bumps, plateaus."""
    onset = rng.random((n, 88)) ** 6
    onset[rng.random((n, 88)) < 0.01] = 0.95
    frame = np.clip(
        np.cumsum(rng.normal(0, 0.15, (n, 88)), axis=0) % 1.0 + 0.2 * (onset > 0.5), 0, 1
    )
    return {
        "onset": onset,
        "frame": frame,
        "velocity": rng.random((n, 88)),
        "pedal": (np.sin(np.arange(n) / 7.0) > 0.3) * 0.9,
        "key_cqt": 3 * rng.random((n, 88)),
    }


def _random_rescorer(seed: int, feature_set: str = "peaks-v1") -> Rescorer:
    rng = np.random.default_rng(seed)
    n = FEATURE_SETS[feature_set]
    w1 = rng.normal(size=(n, 4))
    return Rescorer(mean=(0.0,) * n, scale=(1.0,) * n,
                    w1=tuple(map(tuple, w1.tolist())), b1=(0.0,) * 4,
                    w2=tuple(rng.normal(size=4).tolist()), b2=0.0, feature_set=feature_set)  # fmt: skip


@pytest.mark.parametrize(
    "config",
    [
        DecodeConfig(),
        DecodeConfig(0.3, 0.6, 0.5, 200.0),
        DecodeConfig(0.8, 0.2, 0.1, 0.0),
        # adaptive onset threshold: 700 frames in blocks of 94 (last one short: 42 frames),
        # then in blocks of 250 (the last one, 200 frames, gets its own threshold)
        *(
            DecodeConfig(
                0.5,
                0.5,
                onset_calibration_x=(0.0, knee, 1.0),
                onset_calibration_y=(0.0, q, 1.0),
                adaptive_block_s=block_s,
            )
            for knee, q, block_s in ((0.5, 0.2, 3.0), (0.9, 0.05, 8.0))
        ),
        # rescored candidates (random weights: each block keeps an arbitrary subset of peaks)
        DecodeConfig(0.5, 0.5, rescorer=_random_rescorer(0), adaptive_block_s=3.0),
        # ... that also read the log-CQT per key (key_cqt)
        DecodeConfig(
            0.5, 0.5, rescorer=_random_rescorer(1, SPECTRAL_FEATURE_SET), adaptive_block_s=3.0
        ),
    ],
)
def test_streaming_decoder_equals_decode_notes(config):
    rng = np.random.default_rng(3)
    post = _posteriors_like(rng, 700)
    keys = ("onset", "frame", "velocity", "pedal", "key_cqt")
    ref = decode_notes(post["onset"], post["frame"], post["velocity"], FR, config, post["pedal"],
                       post["key_cqt"])  # fmt: skip
    assert len(ref) > 100 and ref.pedal
    for sizes in ([700], [1] * 700, list(rng.integers(1, 60, 40))):
        dec = StreamingDecoder(FR, config)
        i = 0
        for n in sizes:
            if i >= 700:
                break
            dec.push(*(post[k][i : i + n] for k in keys))
            i += n
        if i < 700:
            dec.push(*(post[k][i:] for k in keys))
        assert dec.finish() == ref


def test_streaming_decoder_empty_and_one_frame():
    assert len(StreamingDecoder(FR).finish()) == 0
    dec = StreamingDecoder(FR)
    dec.push(np.full((1, 88), 0.9), np.ones((1, 88)), None, np.ones(1))
    ref = decode_notes(np.full((1, 88), 0.9), np.ones((1, 88)), None, FR, pedal=np.ones(1))
    assert dec.finish() == ref and len(ref) == 88


def _stream(x: np.ndarray, rng: np.random.Generator, log: list[int] | None = None):
    i = 0
    while i < len(x):
        n = int(rng.integers(100, 9000))
        if log is not None:
            log.append(i + n)
        yield x[i : i + n]
        i += n


def _stitch(chunks) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    expected = 0
    for first, post in chunks:
        assert first == expected
        expected += len(post["onset"])
        for k, v in post.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


@pytest.mark.parametrize("seconds", [1.3, 5.0, 5.12, 13.7])
def test_streamed_chunks_and_batches_give_the_in_memory_result(seconds):
    """Audio in random chunks, frames one by one, other batch sizes: the in-memory result."""
    rng = np.random.default_rng(0)
    model = _tiny("fusion")
    cfg = model.config
    n = int(seconds * SR)
    audio = (0.1 * rng.standard_normal(n)).astype(np.float32)
    times = np.arange(int(seconds * 25) + 3) / 25.0 - 0.05  # 25 fps, starting before the audio
    frames = rng.integers(0, 256, (len(times), cfg.rect_height_px, cfg.rect_width_px), np.uint8)
    ref = predict_posteriors(model, audio, frames, times, window_s=2.0, batch_size=3)
    got = _stitch(
        iter_posteriors(
            model,
            _stream(audio, rng),
            zip(times.tolist(), frames, strict=True),
            video_fps=25.0,
            window_s=2.0,
            batch_size=2,
        )
    )
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k].shape == ref[k].shape
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5, err_msg=k)


def test_iter_posteriors_video_only_and_audio_only():
    rng = np.random.default_rng(1)
    video, audio_model = _tiny("video"), _tiny("audio")
    cfg = video.config
    times = np.arange(200) / 30.0  # 6.67 s at 30 fps
    frames = rng.integers(0, 256, (200, cfg.rect_height_px, cfg.rect_width_px), np.uint8)
    n = round((times[-1] + 1 / 30) * SR)
    ref = predict_posteriors(video, None, frames, times, n_samples=n, window_s=2.0)
    fps = 1.0 / float(np.median(np.diff(times)))  # as predict_posteriors measures it
    pulled: list[int] = []

    def stream():
        for i, item in enumerate(zip(times, frames, strict=True)):
            pulled.append(i + 1)
            yield item

    chunks = []
    for chunk in iter_posteriors(video, None, stream(), video_fps=fps, window_s=2.0, batch_size=1):
        chunks.append(chunk)
        if len(chunks) == 1:  # frames are read as the windows need them, not all at once
            assert pulled[-1] < 100
    got = _stitch(chunks)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5, err_msg=k)
    audio = (0.1 * rng.standard_normal(7 * SR)).astype(np.float32)
    ref = predict_posteriors(audio_model, audio, None, None, window_s=2.0)
    got = _stitch(iter_posteriors(audio_model, _stream(audio, rng), None, window_s=2.0))
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5, err_msg=k)


class _LongNoteModel(torch.nn.Module):
    """A stand-in model whose posteriors encode the audio: onset where a sample is 1 (an
    impulse), frame where |audio| > 0.3 (a plateau), per key; records how much audio the
    stream had given when each batch ran."""

    def __init__(self, log: list[int]):
        super().__init__()
        self.config = preset("tiny", mode="audio")
        self.log = log
        self.calls: list[int] = []

    def forward(self, audio, video=None, video_times_s=None, n_frames=None):
        self.calls.append(self.log[-1])
        b = audio.shape[0]
        pad = torch.nn.functional.pad(audio, (HOP // 2, n_frames * HOP - audio.shape[1] + HOP))
        blocks = pad[:, : n_frames * HOP].reshape(b, n_frames, HOP)  # frame i ~ sample i*HOP
        onset = torch.where(blocks.amax(-1) > 0.9, 10.0, -10.0)[..., None].expand(b, n_frames, 88)
        frame = torch.where(blocks.abs().mean(-1) > 0.3, 10.0, -10.0)[..., None].expand(
            b, n_frames, 88
        )
        z = torch.full((b, n_frames, 88), -10.0)
        return {"onset": onset, "frame": frame, "offset": z, "velocity": z, "pedal": z[..., 0]}


@pytest.mark.parametrize(("onset_s", "offset_s"), [(2.3, 9.1), (0.5, 4.0), (4.9, 5.2)])
def test_a_note_across_window_boundaries_comes_out_once(onset_s, offset_s):
    """A long note spanning several 2 s windows (boundaries every 1 s) is one note, with its
    onset and offset where the audio puts them; and the audio is read as a stream."""
    rng = np.random.default_rng(2)
    audio = np.zeros(int(30 * SR), np.float32)  # 30 s
    audio[int(onset_s * SR) : int(offset_s * SR)] = 0.5
    audio[int(onset_s * SR)] = 1.0
    log: list[int] = [0]
    model = _LongNoteModel(log)
    dec = StreamingDecoder(FR)
    for _, post in iter_posteriors(
        model, _stream(audio, rng, log), None, window_s=2.0, batch_size=2
    ):
        dec.push(post["onset"], post["frame"], post["velocity"], post["pedal"])
    notes = [n for n in dec.finish() if n.pitch == 60]
    assert len(notes) == 1
    assert notes[0].onset_s == pytest.approx(onset_s, abs=1.5 / FR)
    assert notes[0].offset_s == pytest.approx(offset_s, abs=1.5 / FR)
    # streamed: batch k (windows 2k, 2k+1, 1 s apart, 2 s long) ran having read no more than
    # its windows' audio and one chunk (< 0.6 s) beyond
    assert len(model.calls) >= 14
    assert all(c <= (2 * k + 4) * SR for k, c in enumerate(model.calls))


# ---------------------------------------------------------------------------------------------
# Keyboard corners and bundled checkpoints


def test_keyboard_corners_are_parsed_and_checked():
    c = parse_keyboard("10,20, 300,20, 300,80, 10,80")
    assert c.shape == (4, 2) and c[2, 0] == 300
    check_corners(c, 320, 180, "v.mp4")
    with pytest.raises(TranscriptionError, match="8 finite numbers"):
        parse_keyboard("1,2,3")
    with pytest.raises(TranscriptionError, match="not numbers"):
        parse_keyboard("a,b,c,d,e,f,g,h")
    with pytest.raises(TranscriptionError, match=r"v\.mp4.*outside the 200×180 frame"):
        check_corners(c, 200, 180, "v.mp4")
    with pytest.raises(TranscriptionError, match="counter-clockwise"):
        check_corners(c[::-1], 320, 180, "v.mp4")
    with pytest.raises(TranscriptionError, match="convex"):
        check_corners(c[[0, 2, 1, 3]], 320, 180, "v.mp4")


def test_bundled_checkpoint_lookup(tmp_path, monkeypatch, ckpts):
    import importlib.resources

    monkeypatch.setattr(importlib.resources, "files", lambda _pkg: tmp_path)
    with pytest.raises(TranscriptionError, match=r"bundled audio model is missing.*--checkpoint"):
        default_checkpoint("audio")
    shutil.copytree(ckpts["audio"], tmp_path / "models" / "audio")
    assert default_checkpoint("audio") == tmp_path / "models" / "audio"


# ---------------------------------------------------------------------------------------------
# The command end to end


@pytest.mark.parametrize("mode", ["auto", "fusion", "audio", "video"])
def test_transcribe_command_in_each_mode(tmp_path, capsys, media, ckpts, mode):
    ck = ckpts["fusion" if mode == "auto" else mode]
    out, png, table = tmp_path / "out.mid", tmp_path / "roll.png", tmp_path / "notes.csv"
    args = [str(media["clip"]), "-o", str(out), "--checkpoint", str(ck), "--mode", mode]
    code, err = _run([*args, "--roll", str(png), "--notes", str(table)], capsys)
    assert code == 0, err
    used = "fusion" if mode == "auto" else mode
    assert f"{used} mode" in err
    if used != "audio":
        assert "keyboard detected" in err
    notes = read_midi(out)
    rows = list(csv.DictReader(table.open()))
    assert len(notes) > 0 and len(rows) == len(notes)
    assert list(rows[0]) == ["onset_s", "offset_s", "pitch", "velocity"]
    assert [int(r["pitch"]) for r in rows] == [n.pitch for n in notes]
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[:2] == (500, 1200)
    assert _leftovers(tmp_path) == ["notes.csv", "out.mid", "roll.png"]


def test_transcribe_api_reports_keyboard_offset_and_mode(media, ckpts):
    meta = json.loads(media["meta"].read_text())
    corners = np.asarray(meta["keyboard_corners_px"])
    r = transcribe(
        media["clip"], checkpoint=ckpts["fusion"], keyboard=corners, offset_s=0.04, device="cpu"
    )
    assert r.info.mode == "fusion" and r.info.keyboard_source == "manual"
    assert r.info.offset_s == 0.04 and r.info.offset_source == "manual"
    assert r.info.duration_s == pytest.approx(meta["duration_s"], abs=0.05)
    assert r.info.decode["onset_threshold"] == 0.0  # from the checkpoint's extra
    auto = transcribe(media["clip"], checkpoint=ckpts["fusion"])
    assert auto.info.keyboard_source == "detected" and auto.info.keyboard_confidence > 0.5
    assert np.abs(np.asarray(auto.info.keyboard_corners_px) - corners).max() < 5.0
    assert auto.info.offset_source in ("estimated", "none") and abs(auto.info.offset_s) <= 1.0


def test_a_fixed_onset_threshold_overrides_the_checkpoints(tmp_path, capsys, media, ckpts):
    out = tmp_path / "out.mid"
    args = [str(media["clip"]), "-o", str(out), "--checkpoint", str(ckpts["audio"]), "--mode", "audio"]  # fmt: skip
    code, err = _run(args, capsys)  # the checkpoint's threshold is 0: a note at every peak
    assert code == 0, err
    n_default = len(read_midi(out))
    code, err = _run([*args, "--onset-threshold", "0.999"], capsys)
    assert code == 0, err
    assert len(read_midi(out)) < n_default
    r = transcribe(media["clip"], checkpoint=ckpts["audio"], mode="audio", onset_threshold=0.7)
    assert r.info.decode["onset_threshold"] == 0.7 and r.info.decode["onset_calibration_x"] == []
    code, err = _run([*args, "--onset-threshold", "1.5"], capsys)
    assert code != 0 and "onset_threshold=1.5" in err


def test_estimated_offset_is_applied_to_the_video_times(monkeypatch, media, ckpts):
    """The offset from avfusion.sync (here a stand-in) shifts the frames onto the audio clock."""
    import avfusion.inference
    import avfusion.sync

    module = sys.modules["avfusion.transcribe"]
    monkeypatch.setattr(module, "MIN_SYNC_S", 0.0)
    seen: dict[str, object] = {}

    def fake_estimate(onset, frame_rate_hz, frames, times_s, max_offset_s=1.0):
        seen.update(n_frames=len(frames), rect=frames.shape[1:], max_offset_s=max_offset_s,
                    onset=onset.shape, frame_rate_hz=frame_rate_hz)  # fmt: skip
        return avfusion.sync.OffsetEstimate(0.3, 0.9)

    first_times: list[float] = []
    real = avfusion.inference.iter_posteriors

    def spy(model, audio_chunks, video_frames, **kw):
        if video_frames is None:  # the offset estimate's pass over the sound alone
            return real(model, audio_chunks, None, **kw)

        def frames():
            for t, f in video_frames:
                first_times.append(t)
                yield t, f

        return real(model, audio_chunks, frames(), **kw)

    monkeypatch.setattr(avfusion.sync, "estimate_offset_from_onsets_s", fake_estimate)
    monkeypatch.setattr(avfusion.inference, "iter_posteriors", spy)
    r = transcribe(media["clip"], checkpoint=ckpts["fusion"], mode="fusion")
    assert r.info.offset_s == 0.3 and r.info.offset_source == "estimated"
    assert seen["rect"] == (16, 176) and seen["max_offset_s"] == 1.0 and seen["n_frames"] > 90
    # the model's own onsets of the sound alone, on its frame grid, over the head it read
    assert seen["frame_rate_hz"] == pytest.approx(FR) and seen["onset"][1] == 88
    assert seen["onset"][0] == pytest.approx(seen["n_frames"] / 30 * FR, rel=0.1)
    assert first_times[0] == pytest.approx(0.3, abs=1e-9)  # frame 0 at t_video = 0


def test_audio_file_any_rate_and_channels_runs_audio_mode(tmp_path, capsys, media, ckpts):
    out = tmp_path / "a.mid"
    code, err = _run(
        [str(media["stereo"]), "-o", str(out), "--checkpoint", str(ckpts["fusion"])], capsys
    )
    assert code == 0, err
    assert "audio mode" in err
    r = transcribe(media["stereo"], checkpoint=ckpts["audio"])
    assert r.info.mode == "audio" and r.info.duration_s == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(("name", "mode"), [("mkv", "fusion"), ("mov", "fusion"), ("ogg", "audio"),
                                            ("mp3", "audio")])  # fmt: skip
def test_containers_and_audio_formats(media, ckpts, name, mode):
    meta = json.loads(media["meta"].read_text())
    r = transcribe(media[name], checkpoint=ckpts["fusion"], keyboard=meta["keyboard_corners_px"],
                   offset_s=0.0)  # fmt: skip
    assert r.info.mode == mode
    assert r.info.duration_s == pytest.approx(meta["duration_s"], abs=0.1)


def test_a_muted_video_in_auto_mode_goes_to_the_video_only_model(
    tmp_path, monkeypatch, media, ckpts
):
    import avfusion.inference

    meta = json.loads(media["meta"].read_text())
    corners = meta["keyboard_corners_px"]
    muted = tmp_path / "muted.wav"
    sf.write(muted, np.zeros(int(meta["duration_s"] * SR), np.float32), SR)
    assert audio_is_silent(muted) and not audio_is_silent(media["flac"])
    passes: list[str] = []  # the mode of each model run over the whole input
    run_model = avfusion.inference.iter_posteriors

    def counted(model, *args, **kwargs):
        passes.append(model.config.mode)
        return run_model(model, *args, **kwargs)

    monkeypatch.setattr(avfusion.inference, "iter_posteriors", counted)
    auto = transcribe(media["clip"], muted, keyboard=corners, device="cpu")  # bundled models
    assert passes == ["video"], "the silence is found before any model runs"
    monkeypatch.undo()
    assert auto.info is not None and auto.info.mode_requested == "auto"
    assert auto.info.mode == "video" and auto.info.bundled and auto.info.audio is None
    assert any("silent" in w and "video-only model" in w for w in auto.info.warnings)
    video = transcribe(media["clip"], keyboard=corners, mode="video", device="cpu")
    assert auto.notes == video.notes
    assert auto.info.duration_s == pytest.approx(meta["duration_s"], abs=0.1)
    # an asked mode, or a checkpoint of one's own, is kept: only the warning says so
    for r in (
        transcribe(media["clip"], muted, keyboard=corners, mode="fusion", device="cpu"),
        transcribe(media["clip"], muted, keyboard=corners, checkpoint=ckpts["fusion"]),
    ):
        assert r.info is not None and r.info.mode == "fusion"
        assert any("silent" in w for w in r.info.warnings)
        assert not any("video-only model" in w for w in r.info.warnings)


def test_separate_audio_file(media, ckpts):
    meta = json.loads(media["meta"].read_text())
    r = transcribe(media["noaudio"], media["flac"], checkpoint=ckpts["fusion"],
                   keyboard=meta["keyboard_corners_px"], offset_s=0.0)  # fmt: skip
    assert r.info.mode == "fusion" and r.info.audio == str(media["flac"])
    with pytest.raises(TranscriptionError, match=r"audio\.flac: has no video stream"):
        transcribe(media["flac"], media["flac"], checkpoint=ckpts["fusion"])


@pytest.mark.parametrize(
    ("name", "extra", "expect"),
    [
        ("noaudio", ["--mode", "auto"], "no audio track; transcribing in video mode"),
        ("noaudio", ["--mode", "video"], "video mode"),
        ("nokeys", ["--mode", "auto"], "no keyboard found"),
        ("silence", [], "silent"),
    ],
)
def test_inputs_that_work_with_a_warning(tmp_path, capsys, media, ckpts, name, extra, expect):
    out = tmp_path / "o.mid"
    code, err = _run(
        [str(media[name]), "-o", str(out), "--checkpoint", str(ckpts["fusion"]), *extra], capsys
    )
    assert code == 0, err
    assert expect in err and out.is_file()


BAD = [
    ("missing", [], "no such file"),
    ("folder", [], "is a folder"),
    ("text", [], "not a readable video or audio file"),
    ("random", [], "not a readable video or audio file"),
    ("truncated", [], "truncated"),
    ("empty", [], "empty"),
    ("still", [], "still image"),
    ("noaudio", ["--mode", "audio"], "has no audio track"),
    ("flac", ["--mode", "fusion"], "has no video stream"),
    ("nan", [], "NaN or infinite"),
    ("inf", [], "NaN or infinite"),
    ("nokeys", ["--mode", "fusion"], "no keyboard found"),
    ("clip", ["--keyboard", "0,0,5000,0,5000,90,0,90"], "outside the 640×360 frame"),
    ("clip", ["--keyboard", "1,2,3"], "expected 8"),
]


@pytest.mark.parametrize(("name", "extra", "expect"), BAD, ids=[f"{b[0]}-{b[2][:12]}" for b in BAD])
def test_bad_inputs_fail_cleanly(tmp_path, capsys, media, ckpts, name, extra, expect):
    src = media.get(name, tmp_path / "does-not-exist.mp4")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [str(src), "-o", str(out_dir / "o.mid"), "--checkpoint", str(ckpts["fusion"])]
    code, err = _run([*args, "--roll", str(out_dir / "r.png"), *extra], capsys)
    assert code != 0
    assert expect in err
    if name != "clip":
        assert str(src) in err
    assert _leftovers(out_dir) == []


def test_bad_outputs_and_checkpoints(tmp_path, capsys, media, ckpts):
    clip = str(media["clip"])
    code, err = _run(
        [clip, "-o", str(tmp_path / "nope" / "o.mid"), "--checkpoint", str(ckpts["audio"])], capsys
    )
    assert code != 0 and "nope" in err and "does not exist" in err
    (tmp_path / "file").write_text("x")
    code, err = _run([clip, "-o", str(tmp_path / "file" / "o.mid")], capsys)
    assert code != 0 and "does not exist" in err
    corrupt = shutil.copytree(ckpts["audio"], tmp_path / "corrupt")
    w = corrupt / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10] + b"0123456789")
    code, err = _run([clip, "-o", str(tmp_path / "o.mid"), "--checkpoint", str(corrupt)], capsys)
    assert code != 0 and "sha256" in err and "model.safetensors" in err
    other = shutil.copytree(ckpts["audio"], tmp_path / "other")
    doc = json.loads((other / "config.json").read_text())
    doc["model_config"]["d_model"] = 32
    (other / "config.json").write_text(json.dumps(doc))
    code, err = _run([clip, "-o", str(tmp_path / "o.mid"), "--checkpoint", str(other)], capsys)
    assert code != 0 and "does not match" in err
    code, err = _run(
        [
            clip,
            "-o",
            str(tmp_path / "o.mid"),
            "--checkpoint",
            str(ckpts["audio"]),
            "--mode",
            "video",
        ],
        capsys,
    )
    assert code != 0 and "checkpoint for audio mode" in err
    assert not (tmp_path / "o.mid").exists()


def test_batch_with_one_bad_input(tmp_path, capsys, media, ckpts):
    """The good inputs are written, the bad one is named, the exit code is non-zero."""
    out, table = tmp_path / "midis", tmp_path / "csv"
    inputs = [str(media[k]) for k in ("clip", "random", "stereo")]
    args = [*inputs, "-o", str(out), "--checkpoint", str(ckpts["audio"]), "--notes", str(table)]
    code, err = _run(args, capsys)
    assert code == 1, err
    assert str(media["random"]) in err and "1 of 3 inputs failed" in err
    assert _leftovers(out) == ["stereo44k.mid", "video.mid"]
    assert _leftovers(table) == ["stereo44k.csv", "video.csv"]


def test_console_script_exit_code(tmp_path, media):
    """``python -m avfusion.cli``: a bad input gives exit code 1 and its name on stderr."""
    cmd = [sys.executable, "-m", "avfusion.cli", "transcribe", str(media["random"]), "-o",
           str(tmp_path / "o.mid"), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"{media['random']}: not a readable video or audio file" in proc.stderr
    assert _leftovers(tmp_path) == []


def _write_pcm_with_a_hole(path, x, sr, n):
    """``x`` as float PCM in frames of ``n`` samples, every frame from the 17th on stamped 1 s
    later than its place in ``x`` (a 1 s hole in the stream's timestamps)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_f32le", rate=sr, layout="mono")
        for i in range(0, len(x), n):
            pts = i if i < 16 * n else i + sr
            frame = av.AudioFrame.from_ndarray(x[None, i : i + n], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, pts, Fraction(1, sr)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_audio_with_a_hole_in_its_timestamps_stays_on_its_clock(tmp_path):
    """Packets lost from the middle of a stream leave silence, not a shift of what follows."""
    from avfusion.streams import iter_audio

    path, sr, n = tmp_path / "hole.mka", 16_000, 1024
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * sr) / sr)).astype(np.float32)
    _write_pcm_with_a_hole(path, tone, sr, n)
    audio = np.concatenate(list(iter_audio(path, sr)))
    assert len(audio) == len(tone) + sr  # 3 s of sound + 1 s of hole
    cut = 16 * n  # the first frame stamped late (1.024 s of sound before it)
    assert not audio[cut : cut + sr].any()  # the hole is silent
    # the sound after the hole is where its timestamps put it, to the sample
    np.testing.assert_allclose(audio[cut + sr : cut + sr + 4000], tone[cut : cut + 4000], atol=1e-6)


def test_resampled_audio_with_a_hole_keeps_its_last_samples_before_the_hole(tmp_path):
    """At a hole, what the resampler still holds of the sound before it comes before the
    silence, not after it (48 kHz tone, then a 1 s hole, then digital silence; read at 16 kHz)."""
    from avfusion.streams import iter_audio

    path, sr, out_sr, n = tmp_path / "hole48.mka", 48_000, 16_000, 3072
    x = np.zeros(3 * sr, np.float32)
    x[: 16 * n] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16 * n) / sr)  # sound up to the hole
    _write_pcm_with_a_hole(path, x, sr, n)
    audio = np.concatenate(list(iter_audio(path, out_sr)))
    cut = 16 * n * out_sr // sr  # where the hole starts at 16 kHz
    assert abs(len(audio) - (len(x) + sr) * out_sr // sr) <= 2
    assert np.abs(audio[cut - 32 : cut - 4]).max() > 0.1  # the tone runs up to the hole
    assert np.abs(audio[cut + 8 :]).max() < 1e-3  # then nothing: the hole and the silence
