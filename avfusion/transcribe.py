"""The main job: transcribe a piano video (or an audio file) to MIDI.

    from avfusion import transcribe
    result = transcribe("performance.mp4")          # mode "auto": fusion if a keyboard is seen
    result.to_midi("performance.mid")               # notes with velocities and CC64
    print(result.info.mode, result.info.keyboard_confidence, result.info.offset_s)

Pipeline for one input:

1. **Probe** the file with PyAV (:mod:`avfusion.streams`, which also decodes the streams):
   which streams, frame size, frame rate, duration. Missing, empty, unreadable files, still
   images and files without the streams a mode needs are refused here with a
   :class:`TranscriptionError` that names the file.
2. **Mode**: ``auto`` is ``fusion`` when the input has audio and a keyboard is found, ``audio``
   when no keyboard is found (with a warning) or the input is an audio file, ``video`` when the
   video has no audio track (with a warning). A video whose audio track is silent throughout
   (peak below :data:`SILENCE_PEAK`, −80 dBFS: a muted recording) goes, in ``auto`` mode with
   the bundled models, to the video-only model (with a warning), which reads the keys better
   than the fusion model does without sound (validation note F1 0.584 against 0.551;
   `eval/suites/no-audio-validation.yaml`). The sound is scanned for that before any model
   runs (:func:`audio_is_silent`: decoding only, and it stops at the first audible chunk, so a
   normal recording costs one chunk of 4 s). With ``--checkpoint`` and ``auto``, the
   checkpoint's own mode is the goal. A fusion model can also run one modality alone.
3. **Keyboard**: corners given by hand (validated: inside the frame, convex, clockwise from the
   back-left) or found by `avfusion.detect` on the first seconds and followed by its tracker.
4. **Audio-video offset** (fusion): estimated by `avfusion.sync` on the first ``sync_s``
   seconds, from the model's own onset posteriors of the sound alone against the keys' motion
   (`avfusion.sync.estimate_offset_from_onsets_s`; ±1 s; inputs shorter than
   :data:`MIN_SYNC_S` and estimates below the estimator's ``MIN_CONFIDENCE`` keep 0 s, with a
   note), or given by hand; video times are corrected with ``t + offset_s``.
5. **Windowed inference, streamed** (:func:`avfusion.inference.iter_posteriors`, the same
   windowing that training's validation and the benchmark use): audio decoded in chunks and
   video frames decoded one at a time and rectified on the fly (``cv2.warpPerspective`` to
   the model's ``rect_width_px`` × ``rect_height_px``); only the samples and frames of the
   current batch of windows are held.
6. **Decoding, incremental** (:class:`avfusion.decoding.StreamingDecoder`): the stitched
   posteriors are decoded to notes as they arrive, with results identical to
   :func:`avfusion.decoding.decode_notes` on the whole performance, so memory does not grow
   with the video's length (only the notes do).
7. **Outputs** (:func:`write_outputs`): MIDI, optional piano-roll PNG and notes CSV, each
   written to a temporary file and renamed only when all of them are complete.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.resources
import logging
import math
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avfusion.config import MIDI_MIN, N_KEYS, SAMPLE_RATE_HZ
from avfusion.decoding import DecodeConfig, StreamingDecoder
from avfusion.fileio import atomic_path
from avfusion.notes import Notes
from avfusion.streams import (
    ESTIMATED_DURATION_FORMATS,
    MediaInfo,
    TranscriptionError,
    iter_audio,
    iter_video,
    probe_media,
    rectify_stream,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("auto", "fusion", "audio", "video")
"""What `transcribe` accepts as ``mode``."""
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac")
"""Suffixes of audio-only inputs (others are probed; any file with a video stream is a video)."""
MAX_OFFSET_S: float = 1.0
"""The automatic audio-video offset is searched within ±MAX_OFFSET_S seconds."""
MIN_SYNC_S: float = 10.0
"""Shorter inputs are not searched for an offset (too few notes to correlate): 0 s is used."""
SILENCE_PEAK: float = 1e-4
"""Audio whose peak stays below this (−80 dBFS) is reported as silent; in ``auto`` mode with the
bundled models a silent video is transcribed by the video-only model."""
TRACK_HZ: float = 5.0
"""How often (frames per second of video) the keyboard tracker is given a frame."""
TRACK_RECHECK_S: float = 5.0
"""Seconds between the tracker's full re-checks of the keyboard (it also re-checks when the
key pattern's match drops); about 0.015 s of CPU per second of 640x360 video."""


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class TranscriptionInfo:
    """What `transcribe` did with one input (also logged).

    Attributes:
        input: the input file.
        audio: the file the audio came from (the input, ``audio_path``), or None (video mode).
        mode_requested: ``auto``, ``fusion``, ``audio`` or ``video``.
        mode: the mode that ran: ``fusion``, ``audio`` or ``video``.
        checkpoint: the checkpoint folder; ``checkpoint_mode`` the mode it was trained for;
            ``bundled``: whether it is one shipped with the package.
        keyboard_corners_px: the keyboard's corners, ((x, y) × 4) pixels clockwise from the
            back-left, at the start of the video (None when the video was not used).
        keyboard_source: ``manual``, ``detected`` or None.
        keyboard_confidence: the detector's confidence in [0, 1] (None unless detected).
        keyboard_max_shift_px: how far the tracker moved the corners during the video (pixels).
        offset_s: audio-video offset applied to video times (``t_audio = t_video + offset_s``).
        offset_source: ``manual``, ``estimated`` or ``none``.
        offset_confidence: the estimator's confidence (None unless estimated).
        duration_s: length of the transcribed performance (seconds, the audio's if used).
        n_windows: model windows run; ``window_s``: their length (seconds).
        device: where the model ran; ``wall_s``: seconds spent; ``real_time_factor``:
            ``wall_s / duration_s``.
        decode: the decoding thresholds (`DecodeConfig` fields).
        warnings: what the user should know (also logged as warnings).
    """

    input: str
    audio: str | None
    mode_requested: str
    mode: str
    checkpoint: str
    checkpoint_mode: str
    bundled: bool
    keyboard_corners_px: tuple[tuple[float, float], ...] | None
    keyboard_source: str | None
    keyboard_confidence: float | None
    keyboard_max_shift_px: float
    offset_s: float
    offset_source: str
    offset_confidence: float | None
    duration_s: float
    n_windows: int
    window_s: float
    device: str
    wall_s: float
    real_time_factor: float
    decode: dict[str, float]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Transcription(Notes):
    """The notes of one input (a :class:`avfusion.notes.Notes`: ``notes``, ``pedal``, and
    everything Notes does) and how they were found (``info``).

    Attributes:
        info: the mode, keyboard, offset and timing of the run (None only for instances made
            by Notes' own constructors, e.g. ``Transcription.from_iterables``).
    """

    info: TranscriptionInfo | None = None

    def to_midi(self, path: str | Path) -> Path:
        """Write the notes and CC64 as a MIDI file, atomically; its length is the input's.
        Returns the path. Raises OSError if the folder is missing or not writable."""
        from avfusion.midi import write_midi

        return write_midi(self, path, end_s=self.info.duration_s if self.info else None)

    def to_csv(self, path: str | Path) -> Path:
        """Write the notes as CSV (see :func:`write_notes_csv`), atomically."""
        return write_notes_csv(self, path)

    def save_roll(self, path: str | Path) -> Path:
        """Draw the notes as a piano-roll PNG (see :func:`save_piano_roll`), atomically."""
        return save_piano_roll(self, path, duration_s=self._duration_s(), title=self._title())

    def _duration_s(self) -> float | None:
        return self.info.duration_s if self.info else None

    def _title(self) -> str:
        if self.info is None:
            return f"{len(self)} notes"
        return f"{Path(self.info.input).name}: {len(self)} notes, {self.info.mode} mode"


# ---------------------------------------------------------------------------------------------
# Keyboard corners


def parse_keyboard(keyboard: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """Keyboard corners from ``"X1,Y1,X2,Y2,X3,Y3,X4,Y4"`` (pixels), 8 numbers or a (4, 2) array.

    Returns:
        float64 (4, 2), (x, y) pixels: back-left, back-right, front-right, front-left.
    Raises:
        TranscriptionError: not 8 finite numbers.
    """
    if isinstance(keyboard, str):
        parts = [p for p in keyboard.replace(";", ",").replace(" ", ",").split(",") if p]
        try:
            values = [float(p) for p in parts]
        except ValueError as exc:
            raise TranscriptionError(
                f"--keyboard {keyboard!r}: not numbers; give 8 numbers X1,Y1,X2,Y2,X3,Y3,X4,Y4 "
                "(pixels, clockwise from the back-left corner)"
            ) from exc
    else:
        values = list(np.asarray(keyboard, dtype=np.float64).reshape(-1))
    if len(values) != 8 or not all(math.isfinite(v) for v in values):
        raise TranscriptionError(
            f"--keyboard {keyboard!r}: expected 8 finite numbers X1,Y1,X2,Y2,X3,Y3,X4,Y4 (pixels, "
            f"clockwise from the back-left corner), got {len(values)}"
        )
    return np.asarray(values, np.float64).reshape(4, 2)


def check_corners(corners_px: np.ndarray, width_px: int, height_px: int, path: str | Path) -> None:
    """Check hand-given keyboard corners against a video's frame.

    Args:
        corners_px: float (4, 2), (x, y) pixels, clockwise from the back-left.
        width_px, height_px: the frame size.
        path: the video (for messages).
    Raises:
        TranscriptionError: naming the file: a corner outside the frame, or the four corners do
            not make a convex quadrilateral in clockwise order (as seen in the frame).
    """
    c = np.asarray(corners_px, np.float64).reshape(4, 2)
    names = ("back-left", "back-right", "front-right", "front-left")
    for (x, y), name in zip(c, names, strict=True):
        if not (0 <= x <= width_px and 0 <= y <= height_px):
            raise TranscriptionError(
                f"{path}: --keyboard {name} corner ({x:g}, {y:g}) lies outside the "
                f"{width_px}×{height_px} frame"
            )
    edges = np.roll(c, -1, axis=0) - c
    cross = (
        edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
        - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    )
    area = 0.5 * float(np.sum(c[:, 0] * np.roll(c[:, 1], -1) - np.roll(c[:, 0], -1) * c[:, 1]))
    if np.all(cross < 0):
        raise TranscriptionError(
            f"{path}: --keyboard corners go counter-clockwise; give them clockwise from the "
            "back-left: back-left, back-right, front-right, front-left"
        )
    if not np.all(cross > 0) or area < 100.0:
        raise TranscriptionError(
            f"{path}: --keyboard corners do not make a convex quadrilateral (crossed, repeated "
            "or collinear points); give back-left, back-right, front-right, front-left"
        )


# ---------------------------------------------------------------------------------------------
# Checkpoints


def default_checkpoint(mode: str) -> Path:
    """The bundled checkpoint folder of a mode, ``avfusion/models/<mode>/``.

    Raises:
        TranscriptionError: if that folder has no ``config.json`` (the package was installed
            without its models): pass a checkpoint folder instead.
    """
    if mode not in ("fusion", "audio", "video"):
        raise TranscriptionError(f"mode {mode!r}: no bundled model; modes are fusion, audio, video")
    folder = Path(str(importlib.resources.files("avfusion"))) / "models" / mode
    if not (folder / "config.json").is_file():
        raise TranscriptionError(
            f"{folder}: the bundled {mode} model is missing (no config.json); pass a checkpoint "
            "folder with --checkpoint (model.safetensors + config.json, e.g. "
            f"runs/NAME-{mode}/model from `avfusion train`)"
        )
    return folder


def _resolve_device(device: str | torch.device) -> str:
    import torch

    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TranscriptionError(f"--device {name}: no CUDA device is available; use cpu")
        return name
    raise TranscriptionError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")


_MODEL_CACHE: dict[tuple[str, str, float], tuple[Any, dict[str, Any]]] = {}


def _load_model(folder: Path, device: str) -> tuple[Any, dict[str, Any]]:
    """Load (and cache per folder, device and modification time) a checkpoint."""
    from avfusion.model import load_checkpoint

    config = folder / "config.json" if folder.is_dir() else folder
    key = (str(folder.resolve()), device, config.stat().st_mtime if config.is_file() else 0.0)
    if key not in _MODEL_CACHE:
        if not folder.exists():
            raise TranscriptionError(f"{folder}: no such checkpoint folder")
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = load_checkpoint(folder, device=device)
    return _MODEL_CACHE[key]


# ---------------------------------------------------------------------------------------------
# Keyboard detection and offset estimation (avfusion.detect, avfusion.sync)


def _head_frames(
    path: Path, seconds: float, max_frames: int, fps: float
) -> tuple[list[np.ndarray], list[float]]:
    """Up to ``max_frames`` gray frames spread evenly over the first ``seconds`` of a video
    (only those are kept while decoding)."""
    every = max(1, math.ceil((fps or 30.0) * seconds / max_frames))
    frames: list[np.ndarray] = []
    times: list[float] = []
    for i, (t, img) in enumerate(iter_video(path, declared_s=None, gray=True)):
        if (t > seconds and frames) or len(frames) >= max_frames:
            break
        if i % every == 0:
            frames.append(img)
            times.append(t)
    return frames, times


def _detect_keyboard(path: Path, seconds: float, fps: float) -> tuple[Any, Any]:
    """Run `avfusion.detect` on the first seconds; returns (detection or None, the module)."""
    from avfusion import detect

    frames, _ = _head_frames(path, seconds, 16, fps)
    return detect.detect_keyboard_in_frames(frames), detect


def _estimate_offset(
    audio: np.ndarray,
    frames: np.ndarray,
    times_s: np.ndarray,
    onsets: Callable[[np.ndarray], tuple[np.ndarray, float]],
) -> tuple[float, float, float | None]:
    """(offset_s, confidence, the estimator's minimum confidence or None), with the model's
    onset posteriors of ``audio`` (``onsets``: audio → (n_frames, 88) and the frame rate) as
    the audio envelope (`avfusion.sync.estimate_offset_from_onsets_s`)."""
    from avfusion import sync

    onset, frame_rate_hz = onsets(audio)
    est = sync.estimate_offset_from_onsets_s(
        onset, frame_rate_hz, frames, times_s, max_offset_s=MAX_OFFSET_S
    )
    minimum = getattr(sync, "MIN_CONFIDENCE", None)
    return float(est.offset_s), float(est.confidence), minimum


# ---------------------------------------------------------------------------------------------
# Transcription


def _warn(warnings: list[str], text: str) -> None:
    warnings.append(text)
    log.warning(text)


def transcribe(
    video_path: str | Path,
    audio_path: str | Path | None = None,
    *,
    mode: str = "auto",
    keyboard: str | Sequence[float] | np.ndarray | None = None,
    offset_s: float | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    window_s: float | None = None,
    decode: DecodeConfig | None = None,
    onset_threshold: float | None = None,
    detect_s: float = 5.0,
    sync_s: float = 45.0,
    track_keyboard: bool = True,
    progress: bool = False,
) -> Transcription:
    """Transcribe a piano video (keyboard in view, with its sound) or an audio file to notes.

    Args:
        video_path: a video (mp4, mkv, mov, webm …; any frame size and rate) or an audio file
            (wav, flac, mp3, ogg …: audio mode). Audio of any rate and channel count is mixed to
            mono and resampled to the model's 16 kHz.
        audio_path: take the audio from this file instead of the video's own track.
        mode: ``auto`` (fusion when there is audio and a keyboard, else what the input allows;
            with ``checkpoint``, that checkpoint's mode; without, a video whose audio is silent
            throughout is transcribed with the bundled video-only model), ``fusion``,
            ``audio`` or ``video``.
        keyboard: the keyboard's corners in the video, pixels, clockwise from the back-left
            (back-left, back-right, front-right, front-left): ``"X1,Y1,…,X4,Y4"``, 8 numbers or
            a (4, 2) array. Default: detected automatically (`avfusion.detect`).
        offset_s: audio-video offset ``t_audio − t_video`` in seconds (video times are
            corrected by adding it). Default: estimated within ±1 s (`avfusion.sync`) in fusion
            mode, 0 otherwise.
        checkpoint: a checkpoint folder (model.safetensors + config.json). Default: the model
            bundled for the mode, ``avfusion/models/<mode>/``.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: windows per forward pass (default 2 on CPU: larger batches are no faster
            there and each 5 s fusion window holds about 100 MB of activations; 32 on CUDA).
        window_s: window length in seconds (default: the checkpoint's training window, else 5).
        decode: decoding thresholds (default: those stored with the checkpoint).
        onset_threshold: a fixed onset threshold (probability in [0, 1]) instead of the
            decoder's own, fixed or adaptive per block (`avfusion.decoding`); the other
            thresholds stay.
        detect_s: seconds at the start of the video searched for the keyboard.
        sync_s: seconds at the start used to estimate the offset.
        track_keyboard: follow a detected keyboard through the video (camera motion).
        progress: show a tqdm progress bar (seconds of input) on stderr.
    Returns:
        :class:`Transcription`, a :class:`avfusion.notes.Notes` (seconds, MIDI pitch and
        velocity, CC64 events) with ``info`` (:class:`TranscriptionInfo`: mode used, corners,
        offset, timing, warnings).
    Raises:
        TranscriptionError: naming the file and the problem: missing, empty, folder, not a
            video or audio file, still image, truncated or corrupt, NaN or infinite audio, no
            audio for audio mode, no video for fusion/video mode, no keyboard found for
            fusion/video mode (give ``keyboard``), bad ``keyboard`` corners, bad mode/device,
            missing bundled model.
        ValueError: an unreadable or mismatching checkpoint (from `load_checkpoint`).
    """
    t_start = time.perf_counter()
    path = Path(video_path)
    if mode not in MODES:
        raise TranscriptionError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    if offset_s is not None and not math.isfinite(float(offset_s)):
        raise TranscriptionError(f"--offset-s {offset_s}: must be a finite number of seconds")
    media = probe_media(path)
    audio_media = media
    if audio_path is not None:
        audio_media = probe_media(audio_path)
        if not audio_media.has_audio:
            raise TranscriptionError(f"{audio_path}: has no audio stream (given as --audio)")
        if not media.has_video:
            raise TranscriptionError(
                f"{path}: has no video stream; --audio is for a video without (or with other) "
                "sound; transcribe an audio file by giving it as the input"
            )
    has_audio = audio_media.has_audio
    dev = _resolve_device(device)
    warnings: list[str] = []

    # the checkpoint, when given, and the mode it implies; then what the input allows
    ckpt_model: Any = None
    ckpt_extra: dict[str, Any] = {}
    if checkpoint is not None:
        ckpt_model, ckpt_extra = _load_model(Path(checkpoint), dev)
    goal = mode if mode != "auto" else (ckpt_model.config.mode if ckpt_model else "fusion")
    goal = _mode_for_streams(path, goal, mode, media.has_video, has_audio, warnings)

    kb: _Keyboard | None = None
    if goal in ("fusion", "video"):
        kb = _find_keyboard(path, media, keyboard, detect_s, track_keyboard)
        if kb.corners is None:
            if mode == "auto" and has_audio:
                _warn(warnings, f"{path}: {kb.problem}; transcribing from the audio only (give "
                      "the corners with --keyboard X1,Y1,…,X4,Y4 to use the video)")  # fmt: skip
                goal, kb = "audio", None
            else:
                raise TranscriptionError(
                    f"{path}: {kb.problem}; give its corners with --keyboard "
                    "X1,Y1,X2,Y2,X3,Y3,X4,Y4 (pixels, clockwise from the back-left)"
                    + ("" if has_audio else ", or add sound with --audio")
                )
    elif keyboard is not None:
        _warn(warnings, f"{path}: --keyboard is ignored in {goal} mode")
    audio_source = Path(audio_path) if audio_path is not None else path
    if mode == "auto" and goal == "fusion" and ckpt_model is None and audio_is_silent(audio_source):
        _warn(warnings, f"{audio_source}: the audio is silent (peak below {SILENCE_PEAK:.0e}); "
              "transcribing in video mode with the video-only model")  # fmt: skip
        goal = "video"
    needs_audio, needs_video = goal in ("fusion", "audio"), goal in ("fusion", "video")

    # the model
    if ckpt_model is not None:
        model, extra, folder, bundled = ckpt_model, ckpt_extra, Path(str(checkpoint)), False
        if model.config.mode not in (goal, "fusion"):
            raise TranscriptionError(
                f"{folder}: is a checkpoint for {model.config.mode} mode; it cannot run "
                f"{goal} mode ({path}); use --mode {model.config.mode} or another checkpoint"
            )
    else:
        folder, bundled = default_checkpoint(goal), True
        model, extra = _load_model(folder, dev)
    cfg = model.config
    sr, hop = int(cfg.sample_rate_hz), int(cfg.hop_length)
    from avfusion.inference import window_s_from_extra

    where = str(folder / "config.json" if folder.is_dir() else folder)
    try:
        decode = decode or DecodeConfig.from_extra(extra, where)
        if onset_threshold is not None:
            if not 0.0 <= onset_threshold <= 1.0:
                raise ValueError(f"onset_threshold={onset_threshold}: must lie in [0, 1]")
            decode = dataclasses.replace(decode, onset_threshold=float(onset_threshold),
                             onset_calibration_x=(), onset_calibration_y=())  # fmt: skip
        window_s = float(window_s or window_s_from_extra(extra, where))
    except ValueError as exc:
        raise TranscriptionError(str(exc)) from exc
    batch_size = int(batch_size or (32 if dev.startswith("cuda") else 2))
    if batch_size < 1:
        raise TranscriptionError(f"batch_size={batch_size}: must be >= 1")

    # the streams: audio chunks; rectified frames on the audio's clock
    audio_it: Iterator[np.ndarray] | None = None
    if needs_audio:
        declared = audio_media.audio_duration_s
        if audio_media.format_name in ESTIMATED_DURATION_FORMATS:
            declared = None  # FFmpeg guesses these from the bit rate: no truncation check
        audio_it = iter_audio(audio_source, sr, declared_s=declared)
    fps = media.fps or 30.0
    video_it: Iterator[tuple[float, np.ndarray]] | None = None
    if kb is not None and kb.corners is not None:
        # the video's own audio track may start later than its first frame
        a0 = _audio_start_s(path) if needs_audio and audio_path is None else 0.0
        video_it = rectify_stream(
            iter_video(path, declared_s=media.video_duration_s),
            kb.corners,
            int(cfg.rect_width_px),
            int(cfg.rect_height_px),
            time_shift_s=-a0,
            tracker=kb.tracker,
            track_every=max(1, round(fps / TRACK_HZ)),
            on_corners=kb.moved,
        )

    # the audio-video offset
    offset = _Offset(0.0, "none", None)
    if offset_s is not None:
        if needs_video:
            offset = _Offset(float(offset_s), "manual", None)
        else:
            _warn(warnings, f"{path}: --offset-s is ignored in {goal} mode")
    elif audio_it is not None and video_it is not None:

        def head_onsets(audio: np.ndarray) -> tuple[np.ndarray, float]:
            from avfusion.inference import predict_posteriors

            post = predict_posteriors(
                model, audio, None, None, window_s=window_s, batch_size=batch_size, device=dev
            )  # the model on the sound alone: onsets of piano notes, not of other sounds
            return post["onset"], float(cfg.frame_rate_hz)

        offset, audio_it, video_it = _sync(
            path, audio_it, video_it, sync_s, sr, warnings, head_onsets
        )
    if video_it is not None and offset.offset_s != 0.0:
        video_it = ((t + offset.offset_s, f) for t, f in video_it)
    if needs_audio and needs_video:
        v_len = media.video_duration_s or media.duration_s
        a_len = audio_media.audio_duration_s or audio_media.duration_s
        if v_len and a_len and abs(v_len - a_len) > 2.0:
            _warn(warnings, f"{path}: the video lasts {v_len:.1f} s and the audio {a_len:.1f} s; "
                  "notes are transcribed over the audio's length")  # fmt: skip

    # windows → posteriors → notes, streamed
    expected_s = (
        (audio_media.audio_duration_s or audio_media.duration_s)
        if needs_audio
        else (media.video_duration_s or media.duration_s)
    )
    level = _AudioLevel()
    if audio_it is not None:
        audio_it = level.watch(audio_it)
    decoder = StreamingDecoder(cfg.frame_rate_hz, decode)
    n_windows, frames_done = 0, 0

    def count_window() -> None:
        nonlocal n_windows
        n_windows += 1

    from avfusion.inference import iter_posteriors

    bar = _progress_bar(progress, expected_s, path.name)
    try:
        for first, post in iter_posteriors(model, audio_it, video_it, video_fps=fps,
                                           window_s=window_s, batch_size=batch_size, device=dev,
                                           on_window=count_window):  # fmt: skip
            assert first == frames_done, "posteriors out of order"
            decoder.push(
                post["onset"], post["frame"], post["velocity"], post["pedal"], post.get("key_cqt")
            )
            frames_done += len(post["onset"])
            if bar is not None:
                step_s = len(post["onset"]) / cfg.frame_rate_hz
                bar.update(min(step_s, max(bar.total - bar.n, 0.0)) if bar.total else step_s)
    finally:
        if bar is not None:
            bar.close()
    notes = decoder.finish()
    duration_s = level.n_samples / sr if needs_audio else max(frames_done - 1, 0) * hop / sr
    if needs_audio and level.peak < SILENCE_PEAK:
        _warn(warnings, f"{audio_source}: the audio is silent (peak {level.peak:.1e})")
    if not len(notes):
        _warn(warnings, f"{path}: no notes found")

    wall = time.perf_counter() - t_start
    info = TranscriptionInfo(
        input=str(path),
        audio=str(audio_source) if needs_audio else None,
        mode_requested=mode,
        mode=goal,
        checkpoint=str(folder),
        checkpoint_mode=str(cfg.mode),
        bundled=bundled,
        keyboard_corners_px=(
            tuple((float(x), float(y)) for x, y in kb.start_corners)
            if kb is not None and kb.start_corners is not None
            else None
        ),
        keyboard_source=kb.source if kb is not None else None,
        keyboard_confidence=kb.confidence if kb is not None else None,
        keyboard_max_shift_px=kb.max_shift_px if kb is not None else 0.0,
        offset_s=offset.offset_s,
        offset_source=offset.source,
        offset_confidence=offset.confidence,
        duration_s=float(duration_s),
        n_windows=n_windows,
        window_s=window_s,
        device=dev,
        wall_s=round(wall, 3),
        real_time_factor=round(wall / duration_s, 4) if duration_s > 0 else 0.0,
        decode=decode.to_dict(),
        warnings=tuple(warnings),
    )
    log.info("%s", describe(info, len(notes)))
    return Transcription(notes.notes, notes.pedal, info)


def _mode_for_streams(
    path: Path, goal: str, mode: str, has_video: bool, has_audio: bool, warnings: list[str]
) -> str:
    """The mode the input's streams allow: ``auto`` falls back (an audio file → audio, a silent
    video → video, with a warning); an asked mode whose stream is missing is an error."""
    if goal in ("fusion", "video") and not has_video:
        if mode == "auto" and has_audio:
            return "audio"
        raise TranscriptionError(
            f"{path}: has no video stream; {goal} mode needs a video with the keyboard in view "
            "(use --mode audio for an audio file)"
        )
    if goal in ("fusion", "audio") and not has_audio:
        if mode == "auto" and goal == "fusion":
            _warn(warnings, f"{path}: the video has no audio track; transcribing in video mode")
            return "video"
        raise TranscriptionError(
            f"{path}: has no audio track; {goal} mode needs audio (give --audio FILE, or use "
            "--mode video)"
        )
    return goal


@dataclass
class _Keyboard:
    """Where the keyboard is: ``corners`` (None when not found, with ``problem`` saying why)."""

    corners: np.ndarray | None
    source: str | None = None
    confidence: float | None = None
    tracker: Any = None
    problem: str = ""
    max_shift_px: float = 0.0

    def __post_init__(self) -> None:
        self.start_corners = None if self.corners is None else self.corners.copy()

    def moved(self, corners: np.ndarray) -> None:
        """Tracker callback: remember how far the corners moved from the start."""
        assert self.start_corners is not None
        shift = float(np.abs(corners - self.start_corners).max())
        self.max_shift_px = max(self.max_shift_px, shift)


def _find_keyboard(
    path: Path,
    media: MediaInfo,
    keyboard: str | Sequence[float] | np.ndarray | None,
    detect_s: float,
    track: bool,
) -> _Keyboard:
    """Corners given by hand (checked against the frame), else detected on the first
    ``detect_s`` seconds (and followed by a tracker)."""
    if keyboard is not None:
        corners = parse_keyboard(keyboard)
        check_corners(corners, media.width_px, media.height_px, path)
        return _Keyboard(corners, "manual")
    det, detect_mod = _detect_keyboard(path, detect_s, media.fps)
    min_conf = float(getattr(detect_mod, "MIN_CONFIDENCE", 0.0))
    if det is None or float(det.confidence) < min_conf:
        found = (
            "no keyboard found"
            if det is None
            else f"keyboard found with low confidence {float(det.confidence):.2f} "
            f"(< {min_conf:.2f})"
        )
        return _Keyboard(None, problem=f"{found} in the first {detect_s:g} s of the video")
    tracker = detect_mod.KeyboardTracker(recheck_interval_s=TRACK_RECHECK_S) if track else None
    corners = np.asarray(det.corners_px, np.float64).reshape(4, 2)
    return _Keyboard(corners, "detected", float(det.confidence), tracker)


@dataclass(frozen=True)
class _Offset:
    offset_s: float
    source: str  # manual, estimated, none
    confidence: float | None


def _sync(
    path: Path,
    audio_it: Iterator[np.ndarray],
    video_it: Iterator[tuple[float, np.ndarray]],
    seconds: float,
    sample_rate_hz: int,
    warnings: list[str],
    onsets: Callable[[np.ndarray], tuple[np.ndarray, float]],
) -> tuple[_Offset, Iterator[np.ndarray], Iterator[tuple[float, np.ndarray]]]:
    """Estimate the offset on the first ``seconds`` of both streams from the model's onset
    posteriors (``onsets``, see `_estimate_offset`); returns it and the two streams, whole
    again (the head is replayed, then released)."""
    head_a, head_v = _read_head(audio_it, video_it, seconds, sample_rate_hz)
    offset, why = _Offset(0.0, "none", None), ""
    head_s = sum(len(a) for a in head_a) / sample_rate_hz
    if head_s < MIN_SYNC_S:
        log.info("%s: %.1f s is too short to estimate the audio-video offset; 0 s", path, head_s)
        return offset, _chain_deque(deque(head_a), audio_it), _chain_deque(deque(head_v), video_it)
    try:
        est, conf, minimum = _estimate_offset(
            np.concatenate(head_a) if head_a else np.zeros(0, np.float32),
            np.stack([f for _, f in head_v]) if head_v else np.zeros((0, 1, 1), np.uint8),
            np.asarray([t for t, _ in head_v], np.float64),
            onsets,
        )
        offset = _Offset(0.0, "none", conf)
        if minimum is not None and conf < float(minimum):
            why = f"confidence {conf:.2f} < {float(minimum):.2f}"
        else:
            offset = _Offset(est, "estimated", conf)
    except ValueError as exc:  # too few frames, repeated timestamps, no audio
        why = str(exc)
    if why:
        _warn(warnings, f"{path}: could not estimate the audio-video offset reliably ({why}); "
              "assuming 0 s (set it with --offset-s)")  # fmt: skip
    return offset, _chain_deque(deque(head_a), audio_it), _chain_deque(deque(head_v), video_it)


def audio_is_silent(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> bool:
    """Whether a file's sound stays below :data:`SILENCE_PEAK` (−80 dBFS) throughout.

    Decodes the first audio stream (`avfusion.streams.iter_audio`, mono at ``sample_rate_hz``)
    and stops at the first chunk (65 536 samples, about 4 s at 16 kHz) whose peak reaches the
    level, so an audible recording is answered after one chunk and only a silent one is read to
    its end.

    Raises:
        TranscriptionError: naming the file, as `iter_audio` does (unreadable, no audio stream,
            corrupt, NaN or infinite samples, empty).
    """
    with contextlib.closing(iter_audio(path, sample_rate_hz)) as chunks:
        for chunk in chunks:
            if chunk.size and float(np.abs(chunk).max()) >= SILENCE_PEAK:
                return False
    return True


class _AudioLevel:
    """Counts the samples and the peak of an audio stream as it passes."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.n_samples = 0

    def watch(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for c in chunks:
            if c.size:
                self.peak = max(self.peak, float(np.abs(c).max()))
                self.n_samples += c.size
            yield c


def describe(info: TranscriptionInfo, n_notes: int | None = None) -> str:
    """One line on what a transcription did: mode, keyboard, offset, speed."""
    parts = [f"{info.input}: {info.mode} mode"]
    if info.mode != info.mode_requested:
        parts[0] += f" (asked {info.mode_requested})"
    if info.keyboard_corners_px is not None:
        c = ",".join(f"{v:.0f}" for xy in info.keyboard_corners_px for v in xy)
        kb = f"keyboard {info.keyboard_source} [{c}]"
        if info.keyboard_confidence is not None:
            kb += f" confidence {info.keyboard_confidence:.2f}"
        if info.keyboard_max_shift_px > 0:
            kb += f", tracked (moved up to {info.keyboard_max_shift_px:.1f} px)"
        parts.append(kb)
        off = f"offset {info.offset_s:+.3f} s ({info.offset_source}"
        if info.offset_confidence is not None:
            off += f", confidence {info.offset_confidence:.2f}"
        parts.append(off + ")")
    if n_notes is not None:
        parts.append(f"{n_notes} notes")
    parts.append(
        f"{info.duration_s:.1f} s in {info.wall_s:.1f} s on {info.device} "
        f"(real-time factor {info.real_time_factor:.3f})"
    )
    return "; ".join(parts)


def _audio_start_s(path: Path) -> float:
    """Start time of the first audio stream relative to the first video frame's clock (s)."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return 0.0
        a = c.streams.audio[0]
        if a.start_time is None or a.time_base is None:
            return 0.0
        return float(a.start_time * a.time_base)


def _read_head(
    audio_it: Iterator[np.ndarray],
    video_it: Iterator[tuple[float, np.ndarray]],
    seconds: float,
    sample_rate_hz: int,
) -> tuple[list[np.ndarray], list[tuple[float, np.ndarray]]]:
    """The first ``seconds`` of both streams (the iterators go on after them)."""
    head_a: list[np.ndarray] = []
    n = 0
    for chunk in audio_it:
        head_a.append(chunk)
        n += chunk.size
        if n >= seconds * sample_rate_hz:
            break
    head_v: list[tuple[float, np.ndarray]] = []
    for t, f in video_it:
        head_v.append((t, f))
        if t >= seconds:
            break
    return head_a, head_v


def _chain_deque(head: deque[Any], rest: Iterator[Any]) -> Iterator[Any]:
    """Items of ``head`` (released as they are taken), then of ``rest``."""
    while head:
        yield head.popleft()
    yield from rest


def _progress_bar(enabled: bool, total_s: float, name: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=round(total_s, 1) if total_s else None,
        unit="s",
        desc=name[:30],
        leave=False,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    )


# ---------------------------------------------------------------------------------------------
# Outputs


def write_notes_csv(notes: Notes, path: str | Path) -> Path:
    """Write one row per note, ``onset_s,offset_s,pitch,velocity`` (seconds to the
    microsecond, MIDI pitch, MIDI velocity), with that header, atomically.

    Raises:
        OSError: the folder is missing or not writable.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        _write_csv_rows(notes, f)
    return path


def _write_csv_rows(notes: Notes, f: Any) -> None:
    w = csv.writer(f)
    w.writerow(["onset_s", "offset_s", "pitch", "velocity"])
    for n in notes.notes:
        w.writerow([f"{n.onset_s:.6f}", f"{n.offset_s:.6f}", n.pitch, n.velocity])


def save_piano_roll(
    notes: Notes, path: str | Path, *, duration_s: float | None = None, title: str = ""
) -> Path:
    """Draw notes as a piano roll (time × pitch, colour = velocity, grey band = sustain pedal
    down) and save it as a PNG with matplotlib's Agg backend, atomically.

    Raises:
        OSError: the folder is missing or not writable.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        _draw_roll(notes, tmp, duration_s, title)
    return path


def _draw_roll(notes: Notes, out: Path, duration_s: float | None, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    end = max(duration_s or 0.0, notes.end_s, 1.0)
    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if notes.notes:
        import matplotlib
        from matplotlib.collections import PolyCollection

        on = np.array([n.onset_s for n in notes.notes])  # (n,)
        off = np.array([n.offset_s for n in notes.notes])
        y = np.array([n.pitch for n in notes.notes], np.float64)
        vel = np.array([n.velocity for n in notes.notes]) / 127.0
        verts = np.stack(  # (n, 4, 2) rectangles, one collection: fast for many notes
            [np.c_[on, y - 0.4], np.c_[off, y - 0.4], np.c_[off, y + 0.4], np.c_[on, y + 0.4]],
            axis=1,
        )
        colours = matplotlib.colormaps["viridis"](vel)
        ax.add_collection(PolyCollection(list(verts), facecolors=colours, linewidths=0))
    for lo, hi in notes.pedal_down_intervals():
        ax.axvspan(lo, hi, ymin=0.0, ymax=0.02, color="0.5", linewidth=0)
    ax.set_xlim(0, end)
    ax.set_ylim(MIDI_MIN - 2, MIDI_MIN + N_KEYS)
    cs = list(range(24, 109, 12))
    ax.set_yticks(cs, [f"C{p // 12 - 1}" for p in cs])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    ax.set_title(title or f"{len(notes)} notes")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(out), format="png")


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Make sure a file can be created at ``path`` (its folder exists and takes a new file).

    Raises:
        TranscriptionError: naming the path: the folder is missing, is a file, or is not
            writable; or ``path`` is an existing folder.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise TranscriptionError(f"{path}: the {what} path is a folder; give a file name")
    if not folder.is_dir():
        raise TranscriptionError(f"{path}: cannot write the {what}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".avfusion-probe.", dir=folder)
    except OSError as exc:
        raise TranscriptionError(
            f"{path}: cannot write the {what} in {folder} ({exc.strerror or exc})"
        ) from exc
    os.close(fd)
    os.unlink(probe)
    return path


def write_outputs(
    result: Transcription,
    midi_path: str | Path,
    *,
    roll_path: str | Path | None = None,
    csv_path: str | Path | None = None,
) -> list[Path]:
    """Write the MIDI file and, if asked, the piano-roll PNG and the notes CSV, all or none:
    each goes to a temporary file first, and they are renamed only when all are written.

    Returns:
        The paths written.
    Raises:
        OSError: a folder is missing or not writable (no output is left behind).
    """
    from avfusion.midi import write_midi

    targets = [Path(midi_path)] + [Path(p) for p in (roll_path, csv_path) if p is not None]
    with contextlib.ExitStack() as stack:
        tmp_midi = stack.enter_context(atomic_path(midi_path))
        write_midi(result, tmp_midi, end_s=result._duration_s())
        if roll_path is not None:
            tmp_roll = stack.enter_context(atomic_path(roll_path))
            _draw_roll(result, tmp_roll, result._duration_s(), result._title())
        if csv_path is not None:
            tmp_csv = stack.enter_context(atomic_path(csv_path))
            with open(tmp_csv, "w", newline="") as f:
                _write_csv_rows(result, f)
    return targets


# ---------------------------------------------------------------------------------------------
# Several inputs


@dataclass(frozen=True)
class FileResult:
    """The outcome for one input of :func:`transcribe_files`: ``outputs`` written and the
    ``transcription``, or the ``error`` message."""

    input: Path
    outputs: tuple[Path, ...] = ()
    transcription: Transcription | None = None
    error: str | None = None


def transcribe_files(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    audio_path: str | Path | None = None,
    roll_path: str | Path | None = None,
    csv_path: str | Path | None = None,
    progress: bool = False,
    **options: Any,
) -> list[FileResult]:
    """Transcribe inputs to MIDI files (what ``avfusion transcribe`` runs).

    One input: ``out`` is the MIDI file, or, if it is an existing folder, the folder that gets
    ``<stem>.mid``; ``roll_path`` and ``csv_path`` are files. Several inputs: ``out`` is a
    folder (made if its parent exists) that gets ``<stem>.mid`` per input, and ``roll_path`` /
    ``csv_path`` are folders for ``<stem>.png`` / ``<stem>.csv``. A failing input is reported
    (logged, and in its :class:`FileResult`), leaves no output file, and the others still run.

    Args:
        inputs: videos or audio files.
        out: the MIDI file or the output folder.
        audio_path: separate audio for a single video input.
        roll_path, csv_path: piano-roll PNG and notes CSV (files or folders as above).
        progress: progress bars on stderr.
        options: passed to :func:`transcribe` (mode, keyboard, offset_s, checkpoint, device …).
    Returns:
        One :class:`FileResult` per input, in order.
    Raises:
        TranscriptionError: problems that concern every input, found before any is read: no
            inputs, ``audio_path`` with several inputs, two inputs with the same stem, bad
            ``keyboard`` text, unwritable outputs or missing folders.
        ValueError: an unreadable or mismatching checkpoint given in ``options``.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise TranscriptionError("no input files given")
    out = Path(out)
    several = len(paths) > 1
    if audio_path is not None and several:
        raise TranscriptionError("--audio goes with a single input video, not several")
    if several:
        stems = [p.stem for p in paths]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise TranscriptionError(
                f"several inputs are named {dup[0]!r}; their outputs would collide in {out}; "
                "transcribe them into separate folders"
            )
    if options.get("keyboard") is not None:  # fail once, before any input, on bad options
        parse_keyboard(options["keyboard"])
    if options.get("checkpoint") is not None:
        _load_model(Path(options["checkpoint"]), _resolve_device(options.get("device", "auto")))
    if several:
        for folder, what in ((out, "output"), (roll_path, "--roll"), (csv_path, "--notes")):
            if folder is not None:
                _make_output_folder(Path(folder), what)
    else:
        if out.is_dir():
            out = out / f"{paths[0].stem}.mid"
        for f, what in ((out, "MIDI output"), (roll_path, "--roll PNG"), (csv_path, "--notes CSV")):
            if f is not None:
                check_writable(f, what)

    def targets(p: Path) -> tuple[Path, Path | None, Path | None]:
        if not several:
            return out, _opt_path(roll_path), _opt_path(csv_path)
        return (
            out / f"{p.stem}.mid",
            Path(roll_path) / f"{p.stem}.png" if roll_path else None,
            Path(csv_path) / f"{p.stem}.csv" if csv_path else None,
        )

    results: list[FileResult] = []
    outer = None
    if progress and len(paths) > 1:
        from tqdm import tqdm

        outer = tqdm(total=len(paths), unit="file", desc="transcribe")
    try:
        for p in paths:
            midi, roll, notes_csv = targets(p)
            try:
                result = transcribe(p, audio_path, progress=progress, **options)
                written = write_outputs(result, midi, roll_path=roll, csv_path=notes_csv)
                results.append(FileResult(p, tuple(written), result))
            except (ValueError, OSError) as exc:
                msg = str(exc) if str(p) in str(exc) else f"{p}: {exc}"
                log.error("%s", msg)
                results.append(FileResult(p, error=msg))
            if outer is not None:
                outer.update(1)
    finally:
        if outer is not None:
            outer.close()
    return results


def _opt_path(p: str | Path | None) -> Path | None:
    return None if p is None else Path(p)


def _make_output_folder(folder: Path, what: str) -> None:
    """Make sure ``folder`` is a writable folder (made if its parent exists)."""
    if folder.exists() and not folder.is_dir():
        raise TranscriptionError(f"{folder}: {what} must be a folder with several inputs")
    if not folder.is_dir():
        if not folder.parent.is_dir():
            raise TranscriptionError(
                f"{folder}: cannot make the {what} folder: {folder.parent} does not exist"
            )
        try:
            folder.mkdir()
        except OSError as exc:
            raise TranscriptionError(
                f"{folder}: cannot make the {what} folder ({exc.strerror})"
            ) from exc
    check_writable(folder / ".probe", what)
