"""Audio in and out: read any file soundfile or PyAV can decode as 16 kHz mono float32, and
write audio files atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from avfusion.config import SAMPLE_RATE_HZ
from avfusion.fileio import atomic_path


def load_audio(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Read an audio file (or a video's audio track) as mono float32 at ``sample_rate_hz``.

    soundfile reads WAV/FLAC/OGG/MP3; anything else (mp4, mkv, m4a, webm …) goes through PyAV.
    Channels are averaged; the rate is converted with a polyphase filter (scipy).

    Returns:
        float32 (n_samples,).
    Raises:
        FileNotFoundError: no such file. ValueError: not decodable audio, no audio stream,
        or NaN/infinite samples (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else "")
        )
    try:
        x, sr = sf.read(path, dtype="float32", always_2d=True)
        x = x.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        x, sr = _load_with_pyav(path, sample_rate_hz)
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: audio contains NaN or infinite samples")
    if sr != sample_rate_hz:
        g = np.gcd(int(sr), int(sample_rate_hz))
        x = resample_poly(x, sample_rate_hz // g, int(sr) // g).astype(np.float32)
    return x.astype(np.float32)


def _load_with_pyav(path: Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with PyAV, resampled by FFmpeg to mono float32."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path}: has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)
            chunks = []
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().ravel() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().ravel() for f in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: not a readable audio or video file ({exc})") from exc
    if not chunks:
        raise ValueError(f"{path}: the audio stream is empty")
    return np.concatenate(chunks).astype(np.float32), sample_rate_hz


def write_audio(path: str | Path, audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    """Write mono audio (format from the suffix: .wav, .flac, .ogg …) atomically.

    Raises:
        ValueError: the suffix is not a format soundfile writes. OSError: unwritable path.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise ValueError(f"{path}: cannot write audio as {path.suffix!r}; use .wav or .flac")
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate_hz, format=fmt)
    return path
