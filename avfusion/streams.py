"""Reading the inputs of a transcription: probing a file, audio decoded in chunks, video frames
decoded one at a time and rectified to the model's keyboard image (PyAV, OpenCV).

Every problem with a file is a :class:`TranscriptionError` whose message names the file; a
stream that ends well before its declared duration is reported as truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ESTIMATED_DURATION_FORMATS: tuple[str, ...] = ("mp3", "aac")
"""Formats whose declared duration FFmpeg estimates from the bit rate (not checked)."""
GAP_TOLERANCE_S: float = 0.005
"""An audio frame whose timestamp is further than this from where the samples decoded so far
end (seconds) marks a gap (filled with silence) or an overlap (cut), so the audio stays on its
stream's clock."""
TRUNCATION_TOLERANCE_S: float = 1.0
"""A stream that decodes more than this (plus 1 %) short of its declared duration is truncated."""


class TranscriptionError(ValueError):
    """A problem with an input, an option or an output of `transcribe`; the message names the
    file (or option) and says how to fix it."""


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, from its container (nothing decoded).

    Attributes:
        path: the file.
        format_name: FFmpeg's name of the container format (e.g. ``mov,mp4,m4a,3gp,3g2,mj2``).
        has_video, has_audio: whether it has a video / audio stream.
        width_px, height_px: frame size (0 without video).
        fps: average video frame rate (frames/s; else FFmpeg's guess; 0 when unknown or
            without video).
        duration_s: the container's duration, else its video's, else its audio's (seconds; 0
            when unknown).
        video_duration_s, audio_duration_s: the streams' declared durations (None if unknown).
    """

    path: Path
    format_name: str
    has_video: bool
    has_audio: bool
    width_px: int
    height_px: int
    fps: float
    duration_s: float
    video_duration_s: float | None
    audio_duration_s: float | None


def _stream_duration_s(stream: Any) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def probe_media(path: str | Path) -> MediaInfo:
    """Open a file with PyAV and describe its streams.

    Raises:
        TranscriptionError: naming the file, if it is missing, a folder, empty, not a readable
            audio or video file, a still image, or has neither audio nor video.
    """
    import av

    path = Path(path)
    if path.is_dir():
        raise TranscriptionError(f"{path}: is a folder, not a video or audio file")
    if not path.is_file():
        raise TranscriptionError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise TranscriptionError(f"{path}: the file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise TranscriptionError(
            f"{path}: not a readable video or audio file ({_short_error(exc)})"
        ) from exc
    with container:
        fmt = container.format.name or ""
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        if v is not None and (fmt == "image2" or fmt.endswith("_pipe")):
            raise TranscriptionError(
                f"{path}: is a still image ({v.codec_context.name}), not a video; give a video "
                "of the keyboard (mp4, mkv, mov, webm) or an audio file"
            )
        if v is None and a is None:
            raise TranscriptionError(f"{path}: has neither a video nor an audio stream")
        rate = (v.average_rate or v.guessed_rate) if v is not None else None
        fps = float(rate) if rate else 0.0
        duration = float(container.duration) / 1e6 if container.duration else 0.0
        if not duration:  # some containers declare only their streams' durations
            duration = (_stream_duration_s(v) if v is not None else None) or (
                (_stream_duration_s(a) if a is not None else None) or 0.0
            )
        return MediaInfo(
            path=path,
            format_name=fmt,
            has_video=v is not None,
            has_audio=a is not None,
            width_px=int(v.codec_context.width) if v is not None else 0,
            height_px=int(v.codec_context.height) if v is not None else 0,
            fps=fps,
            duration_s=duration,
            video_duration_s=_stream_duration_s(v) if v is not None else None,
            audio_duration_s=_stream_duration_s(a) if a is not None else None,
        )


def _short_error(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "…"


def _check_complete(path: Path, kind: str, declared_s: float | None, decoded_s: float) -> None:
    """Refuse a stream that ends well before its declared duration (a truncated file)."""
    if declared_s is None or declared_s <= 0:
        return
    if decoded_s < declared_s - TRUNCATION_TOLERANCE_S - 0.01 * declared_s:
        raise TranscriptionError(
            f"{path}: the {kind} stream ends at {decoded_s:.1f} s but the file declares "
            f"{declared_s:.1f} s; the file is truncated or corrupt"
        )


# ---------------------------------------------------------------------------------------------
# Streams: audio chunks and rectified frames


def iter_audio(
    path: str | Path,
    sample_rate_hz: int,
    *,
    declared_s: float | None = None,
    chunk_samples: int = 1 << 16,
) -> Generator[np.ndarray, None, None]:
    """Decode the first audio stream of any file FFmpeg reads, as mono float32 chunks.

    Channels are mixed down and the rate converted by FFmpeg's resampler (libswresample).
    Samples are placed by the frames' timestamps: a gap in the stream (lost packets) becomes
    silence and an overlap is cut (:data:`GAP_TOLERANCE_S`), so sample i is at
    ``i / sample_rate_hz`` s after the first frame, as the video's frames are.

    Args:
        path: an audio file (wav, flac, mp3, ogg …) or a video with an audio track.
        sample_rate_hz: output rate (Hz), e.g. the model's 16 kHz.
        declared_s: the stream's declared duration; if decoding ends more than
            :data:`TRUNCATION_TOLERANCE_S` (+1 %) before it, the file is truncated.
        chunk_samples: approximate samples per yielded chunk.
    Yields:
        float32 (n,) chunks at ``sample_rate_hz``, in order, contiguous.
    Raises:
        TranscriptionError: naming the file: unreadable, no audio stream, corrupt or truncated,
            NaN or infinite samples, or an empty stream.
    """
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise TranscriptionError(
            f"{path}: not a readable audio file ({_short_error(exc)})"
        ) from exc
    n_out = 0
    with container:
        if not container.streams.audio:
            raise TranscriptionError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)
        parts: list[np.ndarray] = []
        held = 0
        first_s: float | None = None  # the first frame's time: sample 0
        tolerance = round(GAP_TOLERANCE_S * sample_rate_hz)
        trim = 0  # samples still to drop from the resampled output (an overlap)

        def place(frame: Any) -> None:
            """Keep the samples on the stream's clock: a frame that starts after the samples
            so far (a gap: lost packets, a cut) gets silence before it; one that starts before
            them (an overlap) loses its first samples. FFmpeg's ``aresample=async=1`` does the
            same; plain concatenation would let the audio drift from the video."""
            nonlocal first_s, held, trim, resampler
            if frame.pts is None or frame.time_base is None:
                return
            t = float(frame.pts * frame.time_base)
            if first_s is None:
                first_s = t
                return
            gap = round((t - first_s) * sample_rate_hz) - (n_out + held)
            if gap > tolerance:
                # the resampler still holds the last samples before the hole: flush them
                # first (a flushed resampler takes no more input, so start a new one)
                take(resampler.resample(None))
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)
                gap = round((t - first_s) * sample_rate_hz) - (n_out + held)
                if gap > 0:
                    parts.append(np.zeros(gap, np.float32))
                    held += gap
            elif gap < -tolerance:
                trim = -gap

        def take(frames: list[Any]) -> None:
            nonlocal held, trim
            for f in frames:
                x = f.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                if trim:
                    k = min(trim, x.size)
                    x, trim = x[k:], trim - k
                if not np.isfinite(x).all():
                    t = (n_out + held) / sample_rate_hz
                    raise TranscriptionError(
                        f"{path}: the audio contains NaN or infinite samples (near {t:.2f} s)"
                    )
                parts.append(x)
                held += x.size

        try:
            for frame in container.decode(stream):
                place(frame)
                take(resampler.resample(frame))
                if held >= chunk_samples:
                    out = np.concatenate(parts)
                    parts.clear()
                    held = 0
                    n_out += out.size
                    yield out
            take(resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise TranscriptionError(
                f"{path}: the audio stream is corrupt or truncated ({_short_error(exc)})"
            ) from exc
        if parts:
            out = np.concatenate(parts)
            n_out += out.size
            yield out
    if n_out == 0:
        raise TranscriptionError(f"{path}: the audio stream is empty")
    _check_complete(path, "audio", declared_s, n_out / sample_rate_hz)


def iter_video(
    path: str | Path, *, declared_s: float | None = None, gray: bool = True
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode the first video stream frame by frame (:func:`avfusion.video.iter_frames`),
    refusing truncated files.

    Yields:
        (time_s, frame): presentation time (seconds) and uint8 (H, W) luma (or (H, W, 3) RGB).
    Raises:
        TranscriptionError: naming the file: unreadable, corrupt, truncated, or no frames.
    """
    from avfusion.video import iter_frames

    path = Path(path)
    last_t, n, dt = 0.0, 0, 0.0
    try:
        for t, img in iter_frames(path, gray=gray):
            if n:
                dt = t - last_t
            last_t, n = t, n + 1
            yield t, img
    except ValueError as exc:
        if isinstance(exc, TranscriptionError):
            raise
        raise TranscriptionError(str(exc)) from exc
    if n == 0:
        raise TranscriptionError(f"{path}: the video stream has no frames")
    _check_complete(path, "video", declared_s, last_t + max(dt, 0.0))


def rectify_stream(
    frames: Iterable[tuple[float, np.ndarray]],
    corners_px: np.ndarray,
    width_px: int,
    height_px: int,
    *,
    time_shift_s: float = 0.0,
    tracker: Any | None = None,
    track_every: int = 1,
    on_corners: Callable[[np.ndarray], None] | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Rectify a frame stream to the model's keyboard image, one frame at a time.

    Args:
        frames: (time_s, uint8 (H, W) luma) pairs.
        corners_px: float (4, 2), keyboard corners clockwise from the back-left (pixels).
        width_px, height_px: the rectified size (the model's ``rect_width_px``, ``rect_height_px``).
        time_shift_s: added to every time (e.g. minus the audio stream's start time).
        tracker: an object with ``update(frame, time_s) -> detection`` (`avfusion.detect`'s
            ``KeyboardTracker``), given every ``track_every``-th frame; when its corners move by
            more than half a pixel the homography is recomputed.
        on_corners: called with the corners whenever they change.
    Yields:
        (time_s + time_shift_s, uint8 (height_px, width_px)) rectified frames.
    """
    import cv2

    from avfusion.keyboard import rectify_homography

    corners = np.asarray(corners_px, np.float64).reshape(4, 2)
    h = rectify_homography(corners, width_px, height_px)
    for i, (t, img) in enumerate(frames):
        if tracker is not None and i % track_every == 0:
            det = tracker.update(img, t)
            new = None if det is None else np.asarray(det.corners_px, np.float64).reshape(4, 2)
            if new is not None and np.isfinite(new).all() and np.abs(new - corners).max() > 0.5:
                corners = new
                h = rectify_homography(corners, width_px, height_px)
                if on_corners is not None:
                    on_corners(corners)
        rect = cv2.warpPerspective(img, h, (width_px, height_px), flags=cv2.INTER_LINEAR)
        yield t + time_shift_s, rect
