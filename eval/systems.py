"""Transcription systems behind one interface, for the robustness benchmark.

A benchmark runner hands every system the same :class:`Clip` (one performance under one
condition) and gets :class:`avfusion.notes.Notes` back::

    system = make_system("transkun")            # or "avfusion-fusion", "denoise+basic-pitch", …
    if system.needs <= clip.available():
        notes = system.transcribe(clip)

Systems (``make_system`` names):

- ``avfusion-fusion`` / ``avfusion-audio`` / ``avfusion-video`` / ``avfusion-concat``: our
  checkpoints bundled at ``avfusion/models/{fusion,audio,video,concat}/`` (:class:`AvfusionSystem`).
- ``transkun``: Transkun V2 (:class:`TranskunSystem`); Yan & Duan 2024.
- ``basic-pitch``: Basic Pitch, ONNX model (:class:`BasicPitchSystem`); Bittner et al. 2022.
- ``denoise+NAME`` (stationary gate) / ``denoise-nonstationary+NAME``: spectral gating
  (noisereduce) before any system that reads audio (:class:`DenoiseThen`); Sainburg et al.
- a dict ``{"name": …, "command": "tool {audio} -o {midi}", "needs": ["audio"]}``: any program
  that writes a MIDI file (:class:`CommandSystem`); or ``{"name": …, "checkpoint": DIR}``: an
  avfusion checkpoint outside the package (e.g. ``runs/x/model``).

The baselines are optional: their packages are imported only when a system is used, and a
missing one raises :class:`MissingBaselineError` with the exact pip command (see
``eval/requirements-eval.txt``). Nothing heavy is imported with this module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from avfusion.config import SAMPLE_RATE_HZ
from avfusion.notes import Note, Notes, PedalEvent

BUNDLED_MODELS_DIR: Path = Path(__file__).resolve().parent.parent / "avfusion" / "models"
"""Where the bundled avfusion checkpoints live: ``fusion/``, ``audio/``, ``video/``, ``concat/``
(each a folder written by :func:`avfusion.model.checkpoint.save_checkpoint`)."""

AVFUSION_MODELS: tuple[str, ...] = ("fusion", "audio", "video", "concat")
"""Bundled checkpoint folders, named ``avfusion-<folder>`` in :func:`make_system`."""

NEEDS: frozenset[str] = frozenset({"audio", "video"})
"""What a system may need from a :class:`Clip`."""

TRANSKUN_PIP = "transkun==2.0.1 moduleconf==0.1.4"
"""Transkun's inference imports beyond avfusion's own dependencies (torch, pretty_midi,
mir_eval, soxr); installed with ``--no-deps`` to skip its training-only requirements."""
BASIC_PITCH_PIP = "basic-pitch==0.4.0"
"""Installed with ``--no-deps``: its declared TensorFlow requirement is not needed for ONNX."""
BASIC_PITCH_RUNTIME_PIP = "'onnxruntime>=1.17,<2' 'resampy>=0.4,<0.4.3'"
"""What Basic Pitch's ONNX inference path imports beyond avfusion's dependencies."""
NOISEREDUCE_PIP = "'noisereduce>=3,<4'"


class MissingBaselineError(ImportError):
    """An optional baseline's package is not installed; the message has the pip command."""


class TranscriptionError(RuntimeError):
    """A system failed on a clip (a command's non-zero exit, a time-out, no MIDI written)."""


def _pip(args: str) -> str:
    return f"{shlex.quote(sys.executable)} -m pip install {args}"


def _require(module: str, what: str, install: str) -> None:
    """Raise :class:`MissingBaselineError` naming ``install`` if ``module`` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise MissingBaselineError(
            f"{what} needs the Python package {module!r}, which is not installed; "
            f"install it with: {install} (or: make eval-deps)"
        )


# --------------------------------------------------------------------------------------------
# The clip and the protocol


@dataclass(frozen=True, eq=False)
class Clip:
    """One performance under one condition, as every system sees it.

    Attributes:
        audio: float32, shape (n_samples,), mono at 16 kHz (:data:`avfusion.config.SAMPLE_RATE_HZ`),
            nominally in [-1, 1], already degraded; None when the condition removes the sound
            (or the runner gives no audio).
        video_path: the performance's video file (any container PyAV/FFmpeg reads), already
            degraded if the condition is a video one; None when there is no video.
        frames: uint8, shape (T, H, W), grayscale rectified keyboard frames
            (:func:`avfusion.data.rectified_frames`: x spans the keyboard's 0…1222 mm linearly);
            None when not computed.
        times_s: float, shape (T,), time of each frame in seconds on the audio's clock
            (audio sample 0 is 0 s), non-decreasing; given with ``frames``.
        keyboard_corners_px: float, shape (4, 2), the keyboard's corners in the video's pixel
            coordinates (x, y), clockwise from top-left; None when unknown.
        work_dir: a scratch folder for files a system writes (created if missing); systems
            write into a fresh sub-folder of it, so clips may share one.
        duration_s: length of the performance in seconds; needed only when ``audio`` is None
            (otherwise ``len(audio) / 16000``).
        clip_id: a name for the clip (piece and condition), used in file names and errors.
    Raises:
        ValueError: on wrong shapes or dtypes, frames without times, or non-finite audio.
    """

    audio: np.ndarray | None = None
    video_path: Path | None = None
    frames: np.ndarray | None = None
    times_s: np.ndarray | None = None
    keyboard_corners_px: np.ndarray | None = None
    work_dir: Path = Path(tempfile.gettempdir())
    duration_s: float | None = None
    clip_id: str = "clip"

    def __post_init__(self) -> None:
        a = self.audio
        if a is not None:
            if a.ndim != 1 or a.dtype != np.float32:
                raise ValueError(
                    f"clip {self.clip_id}: audio must be float32 of shape (n_samples,) at "
                    f"{SAMPLE_RATE_HZ} Hz mono, got {a.dtype} {a.shape}"
                )
            if not np.isfinite(a).all():
                raise ValueError(f"clip {self.clip_id}: audio has NaN or infinite samples")
        if (self.frames is None) != (self.times_s is None):
            raise ValueError(f"clip {self.clip_id}: give frames and times_s together")
        if self.frames is not None and self.times_s is not None:
            f, t = self.frames, self.times_s
            if f.ndim != 3 or f.dtype != np.uint8:
                raise ValueError(
                    f"clip {self.clip_id}: frames must be uint8 of shape (T, H, W), "
                    f"got {f.dtype} {f.shape}"
                )
            if t.shape != (len(f),):
                raise ValueError(
                    f"clip {self.clip_id}: times_s must have shape ({len(f)},), got {t.shape}"
                )
        k = self.keyboard_corners_px
        if k is not None and np.shape(k) != (4, 2):
            raise ValueError(
                f"clip {self.clip_id}: keyboard_corners_px must have shape (4, 2), "
                f"got {np.shape(k)}"
            )
        if self.video_path is not None:
            object.__setattr__(self, "video_path", Path(self.video_path))
        object.__setattr__(self, "work_dir", Path(self.work_dir))

    @property
    def n_samples(self) -> int:
        """Length in samples at 16 kHz: of ``audio``, else ``duration_s``, else the frames'.

        Raises:
            ValueError: if none of the three is given.
        """
        if self.audio is not None:
            return len(self.audio)
        if self.duration_s is not None:
            return round(self.duration_s * SAMPLE_RATE_HZ)
        if self.times_s is not None and len(self.times_s) > 0:
            dt = float(np.median(np.diff(self.times_s))) if len(self.times_s) > 1 else 0.0
            return round((float(self.times_s[-1]) + dt) * SAMPLE_RATE_HZ)
        raise ValueError(f"clip {self.clip_id}: no audio, duration_s or frames to give its length")

    def available(self) -> frozenset[str]:
        """What this clip offers: ``"audio"`` if it has audio, ``"video"`` if it has rectified
        frames or a video file."""
        out = {"audio"} if self.audio is not None else set()
        if self.frames is not None or self.video_path is not None:
            out.add("video")
        return frozenset(out)

    @contextlib.contextmanager
    def scratch(self, prefix: str, *, keep_on_error: bool = False) -> Iterator[Path]:
        """A fresh folder under ``work_dir`` for one system's files, removed afterwards (kept
        when the block raises and ``keep_on_error`` is set, for a look at what failed)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{prefix}-{self.clip_id}")
        folder = Path(tempfile.mkdtemp(prefix=safe + "-", dir=self.work_dir))
        try:
            yield folder
        except BaseException:
            if not keep_on_error:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        shutil.rmtree(folder, ignore_errors=True)


@runtime_checkable
class System(Protocol):
    """A transcription system as the benchmark calls it.

    Attributes:
        name: the name reports use (e.g. ``"transkun"``, ``"denoise+avfusion-audio"``).
        needs: what it reads from a :class:`Clip`: ``{"audio"}``, ``{"video"}`` or both
            (see :meth:`Clip.available`).
    """

    name: str
    needs: frozenset[str]

    def transcribe(self, clip: Clip) -> Notes:
        """Notes (seconds on the clip's clock) of one clip.

        Raises:
            ValueError: the clip lacks what the system needs.
            TranscriptionError: the system failed on this clip.
        """
        ...


def _need_audio(system: str, clip: Clip) -> np.ndarray:
    if clip.audio is None:
        raise ValueError(f"{system}: clip {clip.clip_id} has no audio, and this system needs it")
    return clip.audio


def _write_wav(path: Path, audio: np.ndarray, sample_rate_hz: int, subtype: str) -> Path:
    import soundfile as sf

    sf.write(str(path), audio, sample_rate_hz, format="WAV", subtype=subtype)
    return path


def _note(onset_s: float, offset_s: float, pitch: int, velocity: float) -> Note | None:
    """A Note from a baseline's event, onset clipped at 0 s and velocity to 1…127; None for an
    event of zero or negative length (after clipping) or a pitch outside MIDI."""
    onset_s = max(0.0, float(onset_s))
    if not float(offset_s) > onset_s or not 0 <= int(pitch) <= 127:
        return None
    return Note(onset_s, float(offset_s), int(pitch), int(np.clip(round(float(velocity)), 1, 127)))


# --------------------------------------------------------------------------------------------
# avfusion


class AvfusionSystem:
    """One of our checkpoints: windowed posteriors, then Onsets-and-Frames decoding.

    Mirrors ``eval/measure_models.py``: :func:`avfusion.inference.predict_posteriors` with the
    training window (``extra["train_config"]["data"]["window_s"]``, else 5 s), then
    :func:`avfusion.decoding.decode_notes` with the thresholds tuned on validation
    (``DecodeConfig(**extra["decode"])``, else the defaults).

    Args:
        checkpoint_dir: a folder written by :func:`avfusion.model.checkpoint.save_checkpoint`.
        mode: which inputs to feed: None (the checkpoint's own mode), ``"audio"`` or
            ``"video"`` (only that modality, e.g. a fusion checkpoint with the video withheld),
            or ``"fusion"`` (both; the checkpoint must have both encoders).
        name: the report name (default ``avfusion-<mode>``).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, …
    Raises:
        FileNotFoundError: ``checkpoint_dir`` has no ``config.json`` (names the path).
        ValueError: an unknown ``mode``, or one that needs an encoder the checkpoint lacks.

    The video branch reads ``clip.frames``/``clip.times_s`` (resized to the checkpoint's
    rectified size with OpenCV's area filter when they differ; the x-axis stays linear in
    millimetres), not ``clip.video_path``.
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        mode: str | None = None,
        *,
        name: str | None = None,
        device: str = "auto",
    ) -> None:
        from avfusion.model.checkpoint import CONFIG_FILE, load_checkpoint

        self.checkpoint_dir = Path(checkpoint_dir)
        if not (self.checkpoint_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{self.checkpoint_dir}: no avfusion checkpoint here (no {CONFIG_FILE}); "
                "train and export one (avfusion train) or give another folder"
            )
        self.model, self.extra = load_checkpoint(self.checkpoint_dir, device=device)
        own = self.model.config.mode
        mode = mode or own
        if mode not in ("fusion", "audio", "video"):
            raise ValueError(f"mode {mode!r}: expected 'fusion', 'audio', 'video' or None")
        if own != "fusion" and mode != own:
            raise ValueError(
                f"{self.checkpoint_dir}: an {own}-only checkpoint cannot run in mode {mode!r}"
            )
        self.mode = mode
        self.needs: frozenset[str] = frozenset({"audio", "video"} if mode == "fusion" else {mode})
        self.name = name or f"avfusion-{mode}"
        from avfusion.decoding import DecodeConfig
        from avfusion.inference import window_s_from_extra
        from avfusion.model.checkpoint import CONFIG_FILE

        where = str(self.checkpoint_dir / CONFIG_FILE)
        self.window_s = window_s_from_extra(self.extra, where)
        self.decode_config = DecodeConfig.from_extra(self.extra, where)

    @property
    def rect_size_px(self) -> tuple[int, int]:
        """(width, height) of the rectified frames the checkpoint reads (pixels)."""
        cfg = self.model.config
        return int(cfg.rect_width_px), int(cfg.rect_height_px)

    def _frames(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        if clip.frames is None or clip.times_s is None:
            raise ValueError(
                f"{self.name}: clip {clip.clip_id} has no rectified frames (frames, times_s); "
                "this system reads the keyboard video"
            )
        cfg = self.model.config
        size = (int(cfg.rect_height_px), int(cfg.rect_width_px))
        frames = clip.frames
        if frames.shape[1:] != size:
            import cv2

            frames = np.stack(
                [cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames]
            )
        return frames, np.asarray(clip.times_s, dtype=np.float64)

    def transcribe(self, clip: Clip) -> Notes:
        """Notes of ``clip`` (see :class:`System`).

        Raises:
            ValueError: the clip lacks audio (audio/fusion modes) or frames (video/fusion).
        """
        from avfusion.decoding import decode_notes
        from avfusion.inference import predict_posteriors

        audio = _need_audio(self.name, clip) if self.mode != "video" else None
        frames = times = None
        if self.mode != "audio":
            frames, times = self._frames(clip)
        device = next(self.model.parameters()).device
        post = predict_posteriors(
            self.model,
            audio,
            frames,
            times,
            n_samples=clip.n_samples,
            window_s=self.window_s,
            device=device,
        )
        return decode_notes(
            post["onset"],
            post["frame"],
            post["velocity"],
            self.model.config.frame_rate_hz,
            self.decode_config,
            post["pedal"],
            post.get("key_cqt"),
        )


# --------------------------------------------------------------------------------------------
# Transkun V2


class TranskunSystem:
    """Transkun V2, audio only: a non-hierarchical transformer scoring note intervals with a
    semi-Markov CRF (Yan & Duan 2024, "Scoring intervals using non-hierarchical transformer for
    automatic piano transcription", ISMIR; package ``transkun`` 2.0.1, MIT).

    Uses the weights and config shipped inside the package (``transkun/pretrained/2.0.pt``,
    ``2.0.conf``), loaded with ``torch.load(weights_only=True)`` (no unpickling of code) and
    ``strict=True``. Audio is resampled 16 kHz → 44.1 kHz with soxr (as Transkun's own CLI
    does) and transcribed with the package's default segments (16 s, hop 8 s). Its sustain
    pedal (CC64) intervals become :class:`PedalEvent` pairs; sostenuto/soft are dropped.

    Args:
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, …
    Raises:
        MissingBaselineError: ``transkun`` or ``moduleconf`` is not installed (with the command).

    Speed: about real time on 2 CPU cores (20 s of audio in ≈ 20 s).
    """

    name = "transkun"
    needs: frozenset[str] = frozenset({"audio"})

    def __init__(self, device: str = "auto") -> None:
        for module in ("transkun", "moduleconf"):
            _require(module, "Transkun", _pip(f"--no-deps {TRANSKUN_PIP}"))
        self.device = device
        self._model: Any = None
        self._load()

    def _load(self) -> Any:
        if self._model is None:
            import moduleconf
            import torch

            spec = importlib.util.find_spec("transkun")
            assert spec is not None and spec.origin is not None  # checked in __init__
            root = Path(spec.origin).parent / "pretrained"
            conf = moduleconf.parseFromFile(str(root / "2.0.conf"))["Model"]
            model = conf.module.TransKun(conf=conf.config)
            ckpt = torch.load(root / "2.0.pt", map_location="cpu", weights_only=True)
            state = ckpt["best_state_dict"] if "best_state_dict" in ckpt else ckpt["state_dict"]
            model.load_state_dict(state, strict=True)
            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = model.to(device).eval()
        return self._model

    def transcribe(self, clip: Clip) -> Notes:
        """Notes of ``clip`` (see :class:`System`); needs ``clip.audio``."""
        import soxr
        import torch

        audio = _need_audio(self.name, clip)
        model = self._load()
        fs = int(model.fs)  # 44100
        x = soxr.resample(audio, SAMPLE_RATE_HZ, fs).astype(np.float32)  # (n_samples_44k,)
        device = next(model.parameters()).device
        with torch.inference_mode(), warnings.catch_warnings():
            # its layers call torch.utils.checkpoint, which warns when there is no gradient
            warnings.filterwarnings("ignore", message=".*use_reentrant.*")
            warnings.filterwarnings("ignore", message=".*requires_grad=True.*")
            # transcribe() takes (n_samples, n_channels)
            events = model.transcribe(torch.from_numpy(x[:, None]).to(device))
        notes: list[Note] = []
        pedal: list[PedalEvent] = []
        for e in events:
            if e.pitch > 0:
                n = _note(e.start, e.end, e.pitch, e.velocity)
                if n is not None:
                    notes.append(n)
            elif e.pitch == -64 and e.end > e.start:  # control changes come as pitch = -cc
                pedal += [PedalEvent(max(0.0, float(e.start)), 127), PedalEvent(float(e.end), 0)]
        return Notes.from_iterables(notes, pedal)


# --------------------------------------------------------------------------------------------
# Basic Pitch


@contextlib.contextmanager
def _quiet_import_warnings() -> Iterator[None]:
    """Silence the root-logger warnings basic_pitch emits at import for its absent backends."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logging.disable(previous)


class BasicPitchSystem:
    """Basic Pitch, audio only: a small multipitch network with note, onset and contour
    outputs (Bittner et al. 2022, "A lightweight instrument-agnostic model for polyphonic note
    transcription and multipitch estimation", ICASSP; package ``basic-pitch`` 0.4.0, Apache-2.0).

    Runs the packaged ONNX model (``basic_pitch/saved_models/icassp_2022/nmp.onnx``) through
    :func:`basic_pitch.inference.predict` with its default thresholds (onset 0.5, frame 0.3,
    minimum note 127.7 ms, melodia trick). The clip is resampled 16 kHz → 22.05 kHz with soxr
    and written as a float WAV (so Basic Pitch's own loader does not resample again). Note
    amplitude becomes velocity as Basic Pitch's MIDI writer does: ``round(127 * amplitude)``.
    No pedal.

    Raises:
        MissingBaselineError: ``basic_pitch`` or ``onnxruntime``/``resampy`` missing.
    """

    name = "basic-pitch"
    needs: frozenset[str] = frozenset({"audio"})

    def __init__(self) -> None:
        _require("basic_pitch", "Basic Pitch", _pip(f"--no-deps {BASIC_PITCH_PIP}"))
        for module in ("onnxruntime", "resampy"):
            _require(module, "Basic Pitch's ONNX path", _pip(BASIC_PITCH_RUNTIME_PIP))
        self._model: Any = None
        self._load()

    def _load(self) -> Any:
        if self._model is None:
            with _quiet_import_warnings():
                from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
                from basic_pitch.inference import Model

            self._model = Model(build_icassp_2022_model_path(FilenameSuffix.onnx))
        return self._model

    def transcribe(self, clip: Clip) -> Notes:
        """Notes of ``clip`` (see :class:`System`); needs ``clip.audio``."""
        import soxr

        audio = _need_audio(self.name, clip)
        model = self._load()
        with _quiet_import_warnings():
            from basic_pitch.constants import AUDIO_SAMPLE_RATE
            from basic_pitch.inference import predict

        x = soxr.resample(audio, SAMPLE_RATE_HZ, AUDIO_SAMPLE_RATE).astype(np.float32)
        with clip.scratch(self.name) as tmp:
            wav = _write_wav(tmp / "audio.wav", x, AUDIO_SAMPLE_RATE, "FLOAT")
            with contextlib.redirect_stdout(io.StringIO()):  # predict() prints progress
                _, _, events = predict(wav, model)
        notes = [_note(s, e, p, 127 * amp) for s, e, p, amp, _bends in events]
        return Notes.from_iterables(n for n in notes if n is not None)


# --------------------------------------------------------------------------------------------
# Denoising front end


class DenoiseThen:
    """Spectral gating (noisereduce; Sainburg, Thielk & Gentner 2020, "Finding, visualizing,
    and quantifying latent structure across diverse animal vocal repertoires", PLoS Comput.
    Biol.; Sainburg & Zorea 2024) on ``clip.audio``, then ``system`` on the cleaned clip.

    Stationary gating by default: one noise floor per frequency, mean + 1.5 standard
    deviations of the whole clip's spectrogram; bins below it are attenuated. The
    non-stationary variant takes the floor from the spectrogram smoothed over 2 s, which
    follows changing noise but also lets more of it through. Measured with Basic Pitch on two
    test pieces (first 15 s; note F1 without → non-stationary → stationary): clean 0.74 → 0.72
    → 0.67 and 0.94 → 0.96 → 0.93; pink 0 dB 0.51 → 0.56 → 0.59 and 0.76 → 0.80 → 0.84;
    white 0 dB 0.46 → 0.53 → 0.61 and 0.75 → 0.86 → 0.85; babble 0 dB 0.42 → 0.43 → 0.49 and
    0.61 → 0.83 → 0.83; pink −10 dB 0.07 → 0.23 → 0.39 and 0.22 → 0.24 → 0.37: the stationary
    gate helps most where the benchmark looks (low SNR) at a small cost on clean audio. Other
    arguments are noisereduce's defaults (``prop_decrease=1.0``, ``n_fft=1024`` at 16 kHz).

    Args:
        system: a system that needs audio.
        stationary: False for noisereduce's non-stationary gate.
        name: default ``denoise+<system.name>`` (``denoise-nonstationary+…`` when not
            stationary).
    Raises:
        ValueError: ``system`` does not read audio.
        MissingBaselineError: noisereduce is not installed.
    """

    def __init__(self, system: System, *, stationary: bool = True, name: str | None = None):
        if "audio" not in system.needs:
            raise ValueError(f"denoise+{system.name}: {system.name} does not read audio")
        _require("noisereduce", "The denoising front end", _pip(NOISEREDUCE_PIP))
        self.system = system
        self.stationary = stationary
        self.needs: frozenset[str] = frozenset(system.needs)
        prefix = "denoise" if stationary else "denoise-nonstationary"
        self.name = name or f"{prefix}+{system.name}"

    def denoise(self, audio: np.ndarray) -> np.ndarray:
        """Gate ``audio`` (float32 (n_samples,), 16 kHz); returns float32 (n_samples,)."""
        import noisereduce

        y = noisereduce.reduce_noise(y=audio, sr=SAMPLE_RATE_HZ, stationary=self.stationary)
        return np.asarray(y, dtype=np.float32)[: len(audio)]

    def transcribe(self, clip: Clip) -> Notes:
        """Notes of ``clip`` after denoising its audio (see :class:`System`)."""
        from dataclasses import replace

        audio = _need_audio(self.name, clip)
        return self.system.transcribe(replace(clip, audio=self.denoise(audio)))


# --------------------------------------------------------------------------------------------
# Any program that writes MIDI


class CommandSystem:
    """Any transcriber run as a shell command that writes a MIDI file.

    The template may use ``{audio}`` (a 16 kHz mono 16-bit PCM WAV written from
    ``clip.audio``, peaks clipped at ±1), ``{video}`` (``clip.video_path``) and must use
    ``{midi}`` (where to write the result); each is replaced by a shell-quoted absolute path,
    and the command runs with ``/bin/sh`` in a fresh scratch folder under ``clip.work_dir``
    (its working directory, removed on success and kept on failure). Literal braces are
    written ``{{`` and ``}}``. All notes of the MIDI file (non-drum tracks) and its CC64 are
    returned. A time-out kills the command's whole process group.

    Args:
        name: the report name.
        template: e.g. ``"my-transcriber {audio} -o {midi}"``.
        needs: ``{"audio"}``, ``{"video"}`` or both; default: from the placeholders used.
        timeout_s: wall-clock limit per clip, seconds.
    Raises:
        ValueError: no ``{midi}``, an unknown placeholder, or ``needs`` that does not cover
            the placeholders.
    """

    PLACEHOLDERS: tuple[str, ...] = ("audio", "video", "midi")

    def __init__(
        self,
        name: str,
        template: str,
        needs: set[str] | frozenset[str] | list[str] | None = None,
        *,
        timeout_s: float = 3600.0,
    ) -> None:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            raise ValueError(f"system {name!r}: bad command template {template!r}: {exc}") from exc
        unknown = fields - set(self.PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"system {name!r}: unknown placeholder(s) {sorted(unknown)} in {template!r}; "
                "use {audio}, {video}, {midi} (write literal braces as {{ and }})"
            )
        if "midi" not in fields:
            raise ValueError(f"system {name!r}: the command template must contain {{midi}}")
        used = fields & NEEDS
        needs_set = frozenset(needs) if needs is not None else frozenset(used)
        if not needs_set or not needs_set <= NEEDS or not used <= needs_set:
            raise ValueError(
                f"system {name!r}: needs {sorted(needs_set)} must be a non-empty subset of "
                f"['audio', 'video'] covering the template's placeholders {sorted(used)}"
            )
        self.name = name
        self.template = template
        self.needs = needs_set
        self.timeout_s = float(timeout_s)
        self._fields = fields

    def command(self, audio: Path | None, video: Path | None, midi: Path) -> str:
        """The shell command line for these paths (each shell-quoted)."""
        paths = {"audio": audio, "video": video, "midi": midi}
        return self.template.format(
            **{k: shlex.quote(str(Path(p).resolve())) for k, p in paths.items() if p is not None}
        )

    def transcribe(self, clip: Clip) -> Notes:
        """Run the command on ``clip`` and read its MIDI (see :class:`System`).

        Raises:
            ValueError: the clip lacks the audio or video file the template uses.
            TranscriptionError: time-out, non-zero exit (with the stderr tail), no MIDI
                written, or an unreadable MIDI file; the message names the command.
        """
        from avfusion.midi import read_midi

        if "video" in self._fields and clip.video_path is None:
            raise ValueError(f"{self.name}: clip {clip.clip_id} has no video file")
        audio = _need_audio(self.name, clip) if "audio" in self._fields else None
        with clip.scratch(self.name, keep_on_error=True) as tmp:
            audio_path = None
            if audio is not None:
                audio_path = _write_wav(
                    tmp / "audio.wav", np.clip(audio, -1.0, 1.0), SAMPLE_RATE_HZ, "PCM_16"
                )
            midi_path = tmp / "out.mid"
            cmd = self.command(audio_path, clip.video_path, midi_path)
            where = f"{self.name} on clip {clip.clip_id} (files kept in {tmp}): command {cmd!r}"
            t0 = time.perf_counter()
            # a session of its own, so that a time-out ends the command's children too
            with subprocess.Popen(
                cmd,
                shell=True,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            ) as proc:
                try:
                    stdout, stderr = proc.communicate(timeout=self.timeout_s)
                except subprocess.TimeoutExpired as exc:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
                    raise TranscriptionError(
                        f"{where} timed out after {self.timeout_s:g} s"
                    ) from exc
            if proc.returncode != 0:
                tail = (stderr or stdout or "").strip()[-2000:]
                raise TranscriptionError(
                    f"{where} exited with code {proc.returncode} after "
                    f"{time.perf_counter() - t0:.1f} s; stderr tail:\n{tail}"
                )
            if not midi_path.is_file() or midi_path.stat().st_size == 0:
                raise TranscriptionError(
                    f"{where} exited 0 but wrote no MIDI file at {midi_path} "
                    "(does the template pass {midi} as the output path?)"
                )
            try:
                return read_midi(midi_path)
            except ValueError as exc:
                raise TranscriptionError(f"{where} wrote an unreadable MIDI file: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Registry


def known_systems() -> list[str]:
    """The names :func:`make_system` accepts as strings (``denoise+`` or
    ``denoise-nonstationary+`` may precede any of them whose system reads audio)."""
    return [f"avfusion-{m}" for m in AVFUSION_MODELS] + ["transkun", "basic-pitch"]


def make_system(
    spec: str | dict[str, Any], *, device: str = "auto", models_dir: str | Path | None = None
) -> System:
    """Build a system from a suite file's entry.

    Args:
        spec: a name (``"avfusion-fusion"``, ``"avfusion-audio"``, ``"avfusion-video"``,
            ``"avfusion-concat"``, ``"transkun"``, ``"basic-pitch"``, ``"denoise+<name>"``,
            ``"denoise-nonstationary+<name>"``)
            or a dict: ``{"name", "command", "needs"?, "timeout_s"?}`` for a
            :class:`CommandSystem`, ``{"name"?, "checkpoint", "mode"?}`` for an
            :class:`AvfusionSystem` on any checkpoint folder; ``"denoise": true`` in either
            dict puts :class:`DenoiseThen` in front.
        device: for the neural systems (``"auto"``: CUDA if available).
        models_dir: where the bundled avfusion checkpoints are (default
            :data:`BUNDLED_MODELS_DIR`).
    Raises:
        ValueError: an unknown name (lists the known ones) or a malformed dict.
        FileNotFoundError: a bundled or given checkpoint folder is missing (names the path).
        MissingBaselineError: an optional baseline's package is not installed.
    """
    if isinstance(spec, dict):
        return _from_dict(spec, device=device)
    if not isinstance(spec, str):
        raise ValueError(f"system spec {spec!r}: expected a name or a dict")
    for prefix, stationary in (("denoise+", True), ("denoise-nonstationary+", False)):
        if spec.startswith(prefix):
            inner = make_system(spec[len(prefix) :], device=device, models_dir=models_dir)
            return DenoiseThen(inner, stationary=stationary)
    if spec == "transkun":
        return TranskunSystem(device=device)
    if spec == "basic-pitch":
        return BasicPitchSystem()
    if spec.startswith("avfusion-") and spec[len("avfusion-") :] in AVFUSION_MODELS:
        kind = spec[len("avfusion-") :]
        folder = Path(models_dir) if models_dir is not None else BUNDLED_MODELS_DIR
        path = folder / kind
        if not path.is_dir():
            raise FileNotFoundError(
                f"{spec}: the bundled checkpoint {path} does not exist; train and export it "
                f"there, or name another folder with {{'checkpoint': DIR}}"
            )
        return AvfusionSystem(path, name=spec, device=device)
    raise ValueError(
        f"unknown system {spec!r}; known: {', '.join(known_systems())}, 'denoise+' or "
        "'denoise-nonstationary+' before one of these that reads audio, or a dict {'name': …, 'command': '… {audio} … {midi}', "
        "'needs': ['audio']} / {'name': …, 'checkpoint': DIR}"
    )


def _from_dict(spec: dict[str, Any], *, device: str) -> System:
    spec = dict(spec)
    denoise = bool(spec.pop("denoise", False))
    system: System
    if "command" in spec:
        allowed = {"name", "command", "needs", "timeout_s"}
        if "name" not in spec or set(spec) - allowed:
            raise ValueError(
                f"command system {spec!r}: needs 'name' and 'command'; may have 'needs' and "
                f"'timeout_s'; unexpected: {sorted(set(spec) - allowed)}"
            )
        system = CommandSystem(
            spec["name"], spec["command"], spec.get("needs"), timeout_s=spec.get("timeout_s", 3600)
        )
    elif "checkpoint" in spec:
        allowed = {"name", "checkpoint", "mode"}
        if set(spec) - allowed:
            raise ValueError(
                f"checkpoint system {spec!r}: unexpected keys {sorted(set(spec) - allowed)}; "
                f"allowed: {sorted(allowed)}"
            )
        system = AvfusionSystem(
            spec["checkpoint"], spec.get("mode"), name=spec.get("name"), device=device
        )
    else:
        raise ValueError(
            f"system spec {spec!r}: a dict needs 'command' (a shell template) or 'checkpoint' "
            "(an avfusion checkpoint folder)"
        )
    return DenoiseThen(system) if denoise else system


# --------------------------------------------------------------------------------------------
# Trying systems on one performance


def performance_clip(folder: Path, seconds: float | None, video: bool, work_dir: Path) -> Clip:
    """The clean first ``seconds`` of a corpus performance folder (audio.flac, video.mp4,
    meta.json) as a :class:`Clip`; rectified frames only when ``video``."""
    import json

    from avfusion.audio import load_audio
    from avfusion.data import DataConfig, Performance, rectified_frames

    audio = load_audio(folder / "audio.flac")
    if seconds is not None:
        audio = audio[: round(seconds * SAMPLE_RATE_HZ)]
    meta = json.loads((folder / "meta.json").read_text())
    corners = np.asarray(meta["keyboard_corners_px"], dtype=np.float64)
    frames = times = None
    if video:
        perf = Performance(folder.name, folder.parent.name, folder, float(meta["duration_s"]),
                           float(meta["fps"]), corners)  # fmt: skip
        dc = DataConfig()
        frames, times = rectified_frames(perf, dc.rect_width_px, dc.rect_height_px)
        keep = times < len(audio) / SAMPLE_RATE_HZ + 0.5
        frames, times = np.asarray(frames[keep]), times[keep]
    return Clip(audio=audio, video_path=folder / "video.mp4", frames=frames, times_s=times,
                keyboard_corners_px=corners, work_dir=work_dir, clip_id=folder.name)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run systems on one clean performance; print load and transcription wall time and
    note P/R/F1 (onset within 50 ms) against its notes.mid, one JSON line per system.

        python -m eval.systems transkun basic-pitch \\
            --performance data/corpus/test/00000-etude --seconds 20
    """
    import argparse
    import json

    from avfusion.metrics import transcription_metrics
    from avfusion.midi import read_midi

    ap = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument(
        "systems",
        nargs="+",
        help=f"names ({', '.join(known_systems())}, denoise+NAME) or JSON dicts",
    )
    ap.add_argument("--performance", type=Path, required=True, help="a corpus performance folder")
    ap.add_argument("--seconds", type=float, default=None, help="first S seconds (default: all)")
    ap.add_argument("--device", default="auto", help="for the neural systems (default: auto)")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "avfusion-systems")  # fmt: skip
    args = ap.parse_args(argv)

    built = []
    for spec in args.systems:
        t0 = time.perf_counter()
        entry = json.loads(spec) if spec.lstrip().startswith("{") else spec
        built.append((make_system(entry, device=args.device), time.perf_counter() - t0))
    video = any("video" in s.needs for s, _ in built)
    clip = performance_clip(args.performance, args.seconds, video, args.work_dir)
    end_s = clip.n_samples / SAMPLE_RATE_HZ
    ref = read_midi(args.performance / "notes.mid")
    ref = Notes.from_iterables(n for n in ref if n.onset_s < end_s - 0.05)
    for system, load_s in built:
        t0 = time.perf_counter()
        est = system.transcribe(clip)
        wall_s = time.perf_counter() - t0
        est = Notes.from_iterables((n for n in est if n.onset_s < end_s - 0.05), est.pedal)
        m = transcription_metrics(ref, est)
        print(json.dumps({
            "system": system.name, "performance": args.performance.name, "audio_s": round(end_s, 2),
            "load_s": round(load_s, 2), "transcribe_s": round(wall_s, 2),
            "real_time_factor": round(wall_s / end_s, 3), "n_reference": len(ref), "n_estimate": len(est),
            **{k: round(v, 4) for k, v in m.items() if k.startswith(("note/", "note_offset/"))},
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
