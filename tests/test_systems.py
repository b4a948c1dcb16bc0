"""The benchmark's system adapters (eval/systems.py): command template, registry, our
checkpoints, the denoising front end, and the two pip baselines on rendered piano."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from avfusion.config import SAMPLE_RATE_HZ, SOUNDFONTS
from avfusion.metrics import transcription_metrics
from avfusion.notes import Note, Notes, PedalEvent
from eval import systems
from eval.systems import (
    AvfusionSystem,
    Clip,
    CommandSystem,
    DenoiseThen,
    MissingBaselineError,
    System,
    TranscriptionError,
    make_system,
)
from tests.conftest import make_notes

KNOWN = Notes.from_iterables(
    [Note(0.5, 1.0, 60, 90), Note(0.75, 1.25, 64, 70), Note(1.5, 2.0, 67, 50)],
    [PedalEvent(0.4, 127), PedalEvent(1.9, 0)],
)

# A transcriber stand-in: checks the WAV it was given, then writes KNOWN as its "transcription".
FAKE_TRANSCRIBER = textwrap.dedent(
    """
    import sys
    import soundfile as sf
    from avfusion.midi import write_midi
    from avfusion.notes import Note, Notes, PedalEvent

    audio_path, midi_path, n_expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    x, sr = sf.read(audio_path)
    if sr != 16000 or x.ndim != 1 or len(x) != n_expected:
        sys.exit(f"bad input: {sr} Hz, shape {x.shape}, expected {n_expected} samples")
    notes = Notes.from_iterables(
        [Note(0.5, 1.0, 60, 90), Note(0.75, 1.25, 64, 70), Note(1.5, 2.0, 67, 50)],
        [PedalEvent(0.4, 127), PedalEvent(1.9, 0)],
    )
    write_midi(notes, midi_path)
    """
)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """A scratch folder whose name needs shell quoting."""
    return tmp_path / "work dir 'quoted' $HOME"


@pytest.fixture
def clip(work_dir: Path) -> Clip:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(2 * SAMPLE_RATE_HZ)).astype(np.float32)
    return Clip(audio=audio, work_dir=work_dir, clip_id="noise/2s")


def _py(script: Path) -> str:
    return f"{sys.executable} {script}"


# ------------------------------------------------------------------------------ command template


def test_command_system_returns_the_notes_its_command_writes(tmp_path, clip, work_dir):
    script = tmp_path / "fake transcriber.py"
    script.write_text(FAKE_TRANSCRIBER)
    template = f"'{sys.executable}' '{script}' {{audio}} {{midi}} {len(clip.audio)}"
    system = make_system({"name": "fake", "command": template, "needs": ["audio"]})
    assert isinstance(system, CommandSystem) and isinstance(system, System)
    assert system.name == "fake" and system.needs == {"audio"}
    notes = system.transcribe(clip)
    assert [(n.pitch, n.velocity) for n in notes] == [(60, 90), (64, 70), (67, 50)]
    for got, want in zip(notes, KNOWN, strict=True):
        assert got.onset_s == pytest.approx(want.onset_s, abs=1e-3)
        assert got.offset_s == pytest.approx(want.offset_s, abs=1e-3)
    assert [p.value for p in notes.pedal] == [127, 0]
    assert list(work_dir.iterdir()) == []  # the scratch folder is removed afterwards


def test_command_system_needs_are_read_from_the_placeholders():
    assert CommandSystem("a", "t {audio} {midi}").needs == {"audio"}
    assert CommandSystem("v", "t {video} {midi}").needs == {"video"}
    assert CommandSystem("av", "t {audio} {video} -o {midi}").needs == {"audio", "video"}
    assert (
        CommandSystem("x", "t {{literal}} {audio} {midi}").command(
            Path("/a b.wav"), None, Path("/o.mid")
        )
        == "t {literal} '/a b.wav' /o.mid"
    )
    with pytest.raises(ValueError, match=r"\{midi\}"):
        CommandSystem("bad", "t {audio} > out.mid")
    with pytest.raises(ValueError, match=r"unknown placeholder.*'wav'"):
        CommandSystem("bad", "t {wav} {midi}")
    with pytest.raises(ValueError, match="needs"):
        CommandSystem("bad", "t {audio} {video} {midi}", needs=["audio"])


def test_a_failing_command_names_itself_its_exit_code_and_stderr(tmp_path, clip):
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys\nprint('model weights not found', file=sys.stderr)\nsys.exit(3)\n"
    )
    system = CommandSystem("crashy", f"{_py(script)} {{audio}} {{midi}}")
    with pytest.raises(TranscriptionError) as err:
        system.transcribe(clip)
    msg = str(err.value)
    assert "crashy" in msg and "crash.py" in msg and "code 3" in msg
    assert "model weights not found" in msg and "noise/2s" in msg
    (kept,) = clip.work_dir.iterdir()  # the failed command's files stay for a look
    assert (kept / "audio.wav").is_file() and str(kept) in msg


def test_a_command_that_writes_no_midi_or_hangs_fails_clearly(clip):
    with pytest.raises(TranscriptionError, match="wrote no MIDI"):
        CommandSystem("lazy", "true {audio} {midi}").transcribe(clip)
    with pytest.raises(TranscriptionError, match=r"timed out after 0\.5 s"):
        CommandSystem("slow", "sleep 10; echo {midi}", needs=["audio"], timeout_s=0.5).transcribe(
            clip
        )
    with pytest.raises(TranscriptionError, match="unreadable MIDI"):
        CommandSystem("junk", "echo not-midi > {midi}", needs=["audio"]).transcribe(clip)


def test_a_clip_without_what_the_command_reads_is_refused(work_dir):
    video_only = Clip(video_path=Path("/nonexistent.mp4"), duration_s=1.0, work_dir=work_dir)
    with pytest.raises(ValueError, match="has no audio"):
        CommandSystem("a", "t {audio} {midi}").transcribe(video_only)
    with pytest.raises(ValueError, match="has no video"):
        CommandSystem("v", "t {video} {midi}").transcribe(Clip(audio=np.zeros(8, np.float32)))


# ------------------------------------------------------------------------------ clip and registry


def test_clip_checks_shapes_and_gives_its_length():
    with pytest.raises(ValueError, match="float32"):
        Clip(audio=np.zeros(10))  # float64
    with pytest.raises(ValueError, match="together"):
        Clip(frames=np.zeros((2, 4, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        Clip(keyboard_corners_px=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        Clip(audio=np.array([0.0, np.nan], np.float32))
    assert Clip(audio=np.zeros(123, np.float32)).n_samples == 123
    assert Clip(duration_s=2.0).n_samples == 2 * SAMPLE_RATE_HZ
    frames, times = np.zeros((50, 4, 8), np.uint8), np.arange(50) / 25.0
    video = Clip(frames=frames, times_s=times)
    assert video.n_samples == 2 * SAMPLE_RATE_HZ and video.available() == {"video"}
    with pytest.raises(ValueError, match="length"):
        _ = Clip().n_samples


def test_unknown_system_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown system 'transkun3'.*transkun.*basic-pitch"):
        make_system("transkun3")
    with pytest.raises(ValueError, match=r"'command'.*'checkpoint'"):
        make_system({"name": "x"})
    with pytest.raises(ValueError, match="unexpected"):
        make_system({"name": "x", "command": "t {audio} {midi}", "need": ["audio"]})
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "fusion")):
        make_system("avfusion-fusion", models_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no avfusion checkpoint"):
        make_system({"checkpoint": str(tmp_path)})


def test_a_missing_baseline_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec

    def hide(name, *args, **kwargs):
        hidden = {"transkun", "basic_pitch", "noisereduce"}
        return None if name in hidden else real(name, *args, **kwargs)

    monkeypatch.setattr(systems.importlib.util, "find_spec", hide)
    with pytest.raises(MissingBaselineError, match=r"pip install --no-deps transkun==2\.0\.1"):
        make_system("transkun")
    with pytest.raises(MissingBaselineError, match=r"pip install --no-deps basic-pitch==0\.4\.0"):
        make_system("basic-pitch")
    with pytest.raises(MissingBaselineError, match="pip install 'noisereduce"):
        DenoiseThen(CommandSystem("a", "t {audio} {midi}"))


# ------------------------------------------------------------------------------ our checkpoints


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    """Random tiny checkpoints as the bundle would hold them: audio/ and fusion/."""
    import torch

    from avfusion.model import AVTranscriber
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.model.config import preset

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    extra = {"decode": {"onset_threshold": 0.0, "frame_threshold": 0.0}}  # every key onsets
    extra["train_config"] = {"data": {"window_s": 1.0}}
    save_checkpoint(AVTranscriber(preset("tiny", mode="audio")), root / "audio", extra)
    save_checkpoint(AVTranscriber(preset("tiny", mode="fusion")), root / "fusion", extra)
    return root


def test_avfusion_checkpoint_transcribes_a_clip(tiny_models, clip):
    system = make_system("avfusion-audio", models_dir=tiny_models, device="cpu")
    assert isinstance(system, AvfusionSystem) and isinstance(system, System)
    assert system.name == "avfusion-audio" and system.needs == {"audio"}
    assert system.window_s == 1.0 and system.decode_config.onset_threshold == 0.0
    notes = system.transcribe(clip)
    assert isinstance(notes, Notes)
    # thresholds of 0 from the checkpoint's "decode": every key has a local onset peak
    assert {n.pitch for n in notes} == set(range(21, 109))
    assert max(n.offset_s for n in notes) <= len(clip.audio) / SAMPLE_RATE_HZ + 0.05


def test_a_fusion_checkpoint_runs_on_frames_of_any_size_or_on_one_modality(tiny_models, work_dir):
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(SAMPLE_RATE_HZ)).astype(np.float32)
    frames = rng.integers(0, 255, (26, 20, 300), dtype=np.uint8)  # not the tiny 16 × 176
    clip = Clip(audio=audio, frames=frames, times_s=np.arange(26) / 25.0, work_dir=work_dir)
    fusion = make_system("avfusion-fusion", models_dir=tiny_models, device="cpu")
    assert fusion.needs == {"audio", "video"}
    assert len(fusion.transcribe(clip)) > 0
    video = make_system(
        {"name": "fusion-video-only", "checkpoint": str(tiny_models / "fusion"), "mode": "video"}
    )
    assert video.name == "fusion-video-only" and video.needs == {"video"}
    silent = Clip(frames=frames, times_s=clip.times_s, duration_s=1.0, work_dir=work_dir)
    assert len(video.transcribe(silent)) > 0
    with pytest.raises(ValueError, match="no rectified frames"):
        fusion.transcribe(Clip(audio=audio, work_dir=work_dir))
    with pytest.raises(ValueError, match="audio-only checkpoint cannot run in mode 'video'"):
        AvfusionSystem(tiny_models / "audio", "video")


# ------------------------------------------------------------------------------ denoising


class _Recorder:
    """An audio system that returns no notes and keeps the audio it was given."""

    name = "recorder"
    needs = frozenset({"audio"})

    def __init__(self) -> None:
        self.audio: np.ndarray | None = None

    def transcribe(self, clip: Clip) -> Notes:
        self.audio = clip.audio
        return Notes()


@pytest.mark.parametrize(
    ("stationary", "name"), [(True, "denoise+recorder"), (False, "denoise-nonstationary+recorder")]
)
def test_denoise_then_gates_noise_before_the_wrapped_system(clip, stationary, name):
    pytest.importorskip("noisereduce")
    inner = _Recorder()
    system = DenoiseThen(inner, stationary=stationary)
    assert system.name == name and system.needs == {"audio"}
    assert system.transcribe(clip) == Notes()
    assert inner.audio is not None and inner.audio.dtype == np.float32
    assert inner.audio.shape == clip.audio.shape
    reduction_db = 10 * np.log10(np.mean(clip.audio**2) / np.mean(inner.audio**2))
    assert reduction_db > 6  # white noise alone is mostly gated away
    with pytest.raises(ValueError, match="does not read audio"):
        DenoiseThen(CommandSystem("v", "t {video} {midi}"))


def test_denoise_is_named_in_a_suite_entry():
    pytest.importorskip("noisereduce")
    system = make_system({"name": "tool", "command": "t {audio} {midi}", "denoise": True})
    assert isinstance(system, DenoiseThen) and system.name == "denoise+tool" and system.stationary
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        make_system("denoise-nonstationary+nope")


# ------------------------------------------------------------------------------ pip baselines


@pytest.fixture(scope="module")
def rendered_piano() -> tuple[Notes, np.ndarray]:
    """3 s of the test soundfont playing a two-hand phrase (8 notes)."""
    if not SOUNDFONTS["musescore"].is_file():
        pytest.skip("Debian soundfonts not installed")
    from avfusion.synth.render_audio import draw_audio_params, render_audio

    notes = make_notes(3.0)
    params = draw_audio_params(np.random.default_rng(0), "test", soundfont="musescore")
    return notes, render_audio(notes, 3.0, params)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread, imported by librosa.load
def test_basic_pitch_finds_most_rendered_notes(rendered_piano, tmp_path):
    pytest.importorskip("basic_pitch")
    pytest.importorskip("onnxruntime")
    reference, audio = rendered_piano
    system = make_system("basic-pitch")
    notes = system.transcribe(Clip(audio=audio, work_dir=tmp_path))
    m = transcription_metrics(reference, notes)
    assert m["note/f1"] > 0.6, m  # measured 0.78 (precision 0.70, recall 0.88)
    assert all(1 <= n.velocity <= 127 for n in notes)


@pytest.mark.slow
def test_transkun_transcribes_rendered_piano(rendered_piano, tmp_path):
    pytest.importorskip("transkun")
    pytest.importorskip("moduleconf")
    reference, audio = rendered_piano
    system = make_system("transkun", device="cpu")
    notes = system.transcribe(Clip(audio=audio, work_dir=tmp_path))
    m = transcription_metrics(reference, notes)
    assert m["note/f1"] > 0.9, m  # measured 1.0


def test_transkun_weights_load_without_unpickling_code():
    pytest.importorskip("transkun")
    pytest.importorskip("moduleconf")
    import torch

    model = systems.TranskunSystem(device="cpu")._load()  # torch.load(weights_only=True)
    assert model.fs == 44100 and not model.training
    assert next(model.parameters()).dtype == torch.float32
