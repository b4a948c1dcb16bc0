"""Video in: a PyAV frame stream with timestamps, decoded one frame at a time so that memory
does not grow with the video's length."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


def iter_frames(path: str | Path, *, gray: bool = False) -> Iterator[tuple[float, np.ndarray]]:
    """Decode the first video stream of a file, frame by frame.

    Args:
        path: any container FFmpeg reads (mp4, mkv, mov, webm …).
        gray: yield (H, W) uint8 luma instead of (H, W, 3) uint8 RGB.
    Yields:
        (time_s, frame): presentation time in seconds (from the stream's time base) and pixels.
    Raises:
        FileNotFoundError: no such file. ValueError: not a readable video, or no video stream
            (the message names the file).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else "")
        )
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: not a readable video file ({exc})") from exc
    with container:
        if not container.streams.video:
            raise ValueError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        fmt = "gray" if gray else "rgb24"
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                yield t, frame.to_ndarray(format=fmt)
        except av.error.FFmpegError as exc:
            raise ValueError(f"{path}: video stream is corrupt or truncated ({exc})") from exc
