"""Posteriors for a whole performance from overlapping windows, stitched once.

Windows of about ``window_s`` seconds (a whole, even number of hops) start every half window;
of each window only the middle half of its frames is kept (the first window also keeps its
start, the last its end), so every model frame comes from a window in which it had context on
both sides (the enframe/deframe scheme of Kong et al.'s high-resolution piano transcription).
Windows are run in batches. :func:`iter_posteriors` streams (audio chunks and video frames from
iterators, posteriors out as they are stitched); :func:`predict_posteriors` is the same on a
performance held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

HEADS: tuple[str, ...] = ("onset", "frame", "offset", "velocity", "pedal")
"""The model's predictions (`avfusion.model.AVTranscriber.forward`)."""

PROBABILITY_HEADS: tuple[str, ...] = ("onset", "frame", "offset", "pedal")
"""The heads whose logits become probabilities (sigmoid); velocity is a regression."""

OUTPUTS: tuple[str, ...] = (*HEADS, "key_cqt")
"""What the posteriors hold: the heads, and with audio the log-CQT per key (``key_cqt``,
(n_frames, 88), for the note-candidate rescorer: `avfusion.rescore`)."""


def window_starts(n_samples: int, window_samples: int, hop_length: int) -> list[int]:
    """Start samples of the half-overlapping windows that cover ``n_samples``, each on the
    model's frame grid (a multiple of ``hop_length``); the last may run past the end (the
    audio is zero-padded there)."""
    step = window_samples // 2
    if n_samples <= window_samples:
        return [0]
    starts = list(range(0, n_samples - window_samples + 1, step))
    if starts[-1] + window_samples < n_samples:
        starts.append(-(-(n_samples - window_samples) // hop_length) * hop_length)
    return starts


DEFAULT_WINDOW_S: float = 5.0
"""Window length for checkpoints that do not record the one they were trained with (seconds)."""


def window_s_from_extra(extra: dict[str, Any], where: str) -> float:
    """The training window length stored with a checkpoint (``extra["train_config"]["data"]
    ["window_s"]``, seconds): inference uses the windows the model was trained on.

    Returns:
        seconds; :data:`DEFAULT_WINDOW_S` when the checkpoint records none.
    Raises:
        ValueError: a recorded window that is not a positive number (names ``where``).
    """
    data = (extra.get("train_config") or {}).get("data") or {}
    if "window_s" not in data:
        return DEFAULT_WINDOW_S
    try:
        window_s = float(data["window_s"])
    except (TypeError, ValueError):
        window_s = float("nan")
    if not window_s > 0:
        raise ValueError(
            f"{where}: extra.train_config.data.window_s must be a positive number of seconds, "
            f"got {data['window_s']!r}"
        )
    return window_s


def predict_posteriors(
    model: torch.nn.Module,
    audio: np.ndarray | None,
    frames: np.ndarray | None,
    times_s: np.ndarray | None,
    *,
    n_samples: int | None = None,
    window_s: float = 5.0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Run a model over a whole performance held in memory (:func:`iter_posteriors`, stitched
    into whole arrays).

    Args:
        model: an :class:`avfusion.model.AVTranscriber` (eval mode is set here).
        audio: float32 (n_samples,), 16 kHz mono, or None (video mode).
        frames: uint8 (n_video, H, W) rectified keyboard frames, or None (audio mode).
        times_s: float (n_video,), frame times in seconds on the audio's clock; the frame rate
            is their median spacing (30 frames/s for a single frame).
        n_samples: length of the performance in samples when ``audio`` is None.
        window_s: window length (seconds); 50 % overlap.
        batch_size: windows per forward pass.
        device: where the model is.
    Returns:
        Probabilities (sigmoid) for ``onset``, ``frame``, ``offset``, ``pedal`` and the raw
        ``velocity`` regression, each (n_frames, 88) (pedal: (n_frames,)), with
        n_frames = n_samples // hop_length + 1; with audio also ``key_cqt`` (n_frames, 88),
        the log-CQT per key (`OUTPUTS`).
    Raises:
        ValueError: no audio and no ``n_samples``.
    """
    if audio is None and not n_samples:
        raise ValueError("nothing to transcribe: no audio samples and no n_samples")
    video = None
    fps = None
    if frames is not None and times_s is not None:
        video = zip((float(t) for t in times_s), frames, strict=True)
        if len(times_s) > 1:
            fps = 1.0 / float(np.median(np.diff(times_s)))
    parts = list(
        iter_posteriors(
            model,
            None if audio is None else [audio],
            video,
            video_fps=fps,
            n_samples=None if audio is not None else n_samples,
            window_s=window_s,
            batch_size=batch_size,
            device=device,
        )
    )
    return {k: np.concatenate([post[k] for _, post in parts]) for k in parts[0][1]}


class _SampleBuffer:
    """Audio samples from a chunk iterator, held from ``start`` (absolute sample) to ``end``."""

    def __init__(self, chunks: Iterable[np.ndarray]) -> None:
        self._it = iter(chunks)
        self._parts: list[np.ndarray] = []
        self.start = 0
        self.end = 0
        self.done = False

    def fill_to(self, n: int) -> None:
        while self.end < n and not self.done:
            try:
                chunk = np.asarray(next(self._it), dtype=np.float32).reshape(-1)
            except StopIteration:
                self.done = True
                break
            if chunk.size:
                self._parts.append(chunk)
                self.end += chunk.size

    def _joined(self) -> np.ndarray:
        if len(self._parts) != 1:
            self._parts = [np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)]
        return self._parts[0]

    def get(self, s: int, e: int) -> np.ndarray:
        """Samples [s, e), zero-padded past the end of the stream."""
        self.fill_to(e)
        assert s >= self.start, "samples already dropped"
        seg = self._joined()[s - self.start : e - self.start]
        out = np.zeros(e - s, np.float32)
        out[: seg.size] = seg
        return out

    def drop_before(self, s: int) -> None:
        if s <= self.start:
            return
        data = self._joined()
        k = min(s - self.start, data.size)
        self._parts = [data[k:].copy()]
        self.start += k


class _FrameBuffer:
    """Rectified frames and their times (on the audio clock) from a frame iterator."""

    def __init__(self, frames: Iterable[tuple[float, np.ndarray]]) -> None:
        self._it = iter(frames)
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.done = False

    def pull(self) -> bool:
        try:
            t, img = next(self._it)
        except StopIteration:
            self.done = True
            return False
        self.frames.append(img)
        self.times.append(float(t))
        return True

    def fill_until(self, t: float) -> None:
        """Pull frames until one at or after ``t`` is held, or the stream ends."""
        while not self.done and (not self.times or self.times[-1] < t):
            self.pull()

    def select(self, t0: float, fps: float, n_video: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n_video`` frames of a window starting at ``t0`` s (as `predict_posteriors`):
        from the first frame at or after ``t0 - 1/fps``, the last frame repeated past the end.
        Returns uint8 (n_video, H, W) and float32 (n_video,) times relative to ``t0``."""
        self.fill_until(t0 - 1.0 / fps)
        lo = int(np.searchsorted(np.asarray(self.times, np.float64), t0 - 1.0 / fps))
        while not self.done and len(self.times) < lo + n_video:
            self.pull()
        if not self.times:
            raise ValueError("the video stream has no frames")
        idx = np.arange(lo, lo + n_video).clip(0, len(self.times) - 1)
        frames = np.stack([self.frames[i] for i in idx])
        times = (np.asarray(self.times, np.float64)[idx] - t0).astype(np.float32)
        return frames, times

    def drop_before(self, t: float) -> None:
        """Forget frames before time ``t``, always keeping the last one."""
        k = int(np.searchsorted(np.asarray(self.times, np.float64), t))
        k = min(k, len(self.times) - 1)
        if k > 0:
            del self.frames[:k], self.times[:k]


def iter_posteriors(
    model: torch.nn.Module,
    audio_chunks: Iterable[np.ndarray] | None,
    video_frames: Iterable[tuple[float, np.ndarray]] | None,
    *,
    video_fps: float | None = None,
    n_samples: int | None = None,
    window_s: float = 5.0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    on_window: Callable[[], None] | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Posteriors of a whole performance from streamed inputs, stitched once, in order.

    Windows of a whole, even number of hops start every half window; the middle half of each
    is kept, the first window from its start, the last to its end; where the end-aligned last
    window overlaps the previous one, the last wins. A window's video is the ``ceil(window_s ·
    fps) + 2`` frames from the first at or after its start − 1/fps (the last frame repeated
    past the end). Only the samples and frames of the current batch of windows are held, so a
    long video streams through in bounded memory.

    Args:
        model: an :class:`avfusion.model.AVTranscriber` (eval mode is set here).
        audio_chunks: float32 mono chunks at ``model.config.sample_rate_hz``, in order, or None
            (video mode).
        video_frames: (time_s, uint8 (rect_height_px, rect_width_px)) rectified frames with
            non-decreasing times on the audio's clock, or None (audio mode).
        video_fps: the video's frame rate (frames/s; sets the frames per window); default 30.
        n_samples: the performance's length in samples when there is no audio; default: from
            the video, ``round((t_last + 1/fps) · sample_rate_hz)``.
        window_s: window length (seconds); 50 % overlap.
        batch_size: windows per forward pass.
        device: where the model is.
        on_window: called after each window is run (progress).
    Yields:
        (first_frame, posteriors): consecutive, non-overlapping runs of model frames covering
        frames 0 … ``n_samples // hop_length`` (frame i at ``i · hop_length / sample_rate_hz``
        s); posteriors: ``onset``, ``frame``, ``offset``, ``pedal`` probabilities (sigmoid) and
        the raw ``velocity``, float32 (n, 88) ((n,) for pedal); with audio also ``key_cqt``
        (n, 88), the log-CQT per key.
    Raises:
        ValueError: neither audio nor video, or a stream with nothing in it.
    """
    cfg: Any = model.config
    hop, sr = int(cfg.hop_length), int(cfg.sample_rate_hz)
    if audio_chunks is None and video_frames is None:
        raise ValueError("iter_posteriors: give audio_chunks, video_frames or both")
    m = max(2, round(window_s * sr / (2 * hop)))  # frames per half window
    win, step, n_frames_win = 2 * m * hop, m * hop, 2 * m + 1
    fps = float(video_fps) if video_fps else 30.0
    n_video = int(np.ceil(window_s * fps)) + 2
    abuf = _SampleBuffer(audio_chunks) if audio_chunks is not None else None
    vbuf = _FrameBuffer(video_frames) if video_frames is not None else None
    model.eval()

    def known_length(need: int) -> tuple[int, bool]:
        """Read on until the performance is known to be longer than ``need`` samples, or ends;
        return (samples known so far, whether that is all)."""
        if abuf is not None:
            abuf.fill_to(need + 1)
            return abuf.end, abuf.done
        if n_samples is not None:
            return int(n_samples), True
        assert vbuf is not None

        def length() -> int:
            return round((vbuf.times[-1] + 1.0 / fps) * sr) if vbuf.times else 0

        while not vbuf.done and length() <= need:
            vbuf.pull()
        return length(), vbuf.done

    batch: list[tuple[int, bool, bool, Any, Any, Any]] = []  # start, first, last, a, v, t
    total: int | None = None
    pending: tuple[int, dict[str, np.ndarray]] | None = None

    def run_batch() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        nonlocal pending
        a_batch = v_batch = t_batch = None
        with torch.inference_mode():  # only around the model: the caller runs between yields
            if abuf is not None:
                a_batch = torch.from_numpy(np.stack([b[3] for b in batch])).to(device)  # (B, win)
            if vbuf is not None:
                v_batch = torch.from_numpy(np.stack([b[4] for b in batch])).to(
                    device
                )  # (B, Tv, H, W)
                t_batch = torch.from_numpy(np.stack([b[5] for b in batch])).to(device)  # (B, Tv)
            logits = model(a_batch, v_batch, t_batch, n_frames=n_frames_win)  # (B, T, 88) / (B, T)
            probs = {
                k: (torch.sigmoid(v.float()) if k in PROBABILITY_HEADS else v.float()).cpu().numpy()
                for k, v in logits.items()
                if k in OUTPUTS
            }
        for j, (s, first, last, *_rest) in enumerate(batch):
            f0 = s // hop
            keep_lo = 0 if first else m // 2
            keep_hi = n_frames_win if last else m // 2 + m
            lo = f0 + keep_lo
            hi = f0 + keep_hi
            if last:
                assert total is not None
                hi = min(hi, total // hop + 1)
            chunk = {k: v[j, keep_lo : keep_lo + (hi - lo)] for k, v in probs.items()}
            if pending is not None:
                p_lo, p_chunk = pending
                cut = lo - p_lo  # the later window wins where they overlap
                yield p_lo, {k: v[:cut] for k, v in p_chunk.items()}
            pending = (lo, chunk)
            if on_window is not None:
                on_window()
        batch.clear()

    last_done, j, finished = -1, 0, False
    while not finished:
        s = j * step
        length, done = known_length(s + win)
        if not done:  # the performance goes on past this window: a regular window, not the last
            ready = [(s, s == 0, False)]
            j += 1
        else:
            total = length
            if total <= 0:
                raise ValueError("nothing to transcribe: the input has no samples or frames")
            starts = window_starts(total, win, hop)
            ready = [(x, x == starts[0], x == starts[-1]) for x in starts if x > last_done]
            finished = True
        for x, first, last in ready:
            audio = abuf.get(x, x + win) if abuf is not None else None
            frames = times = None
            if vbuf is not None:
                frames, times = vbuf.select(x / sr, fps, n_video)
            batch.append((x, first, last, audio, frames, times))
            last_done = x
            if abuf is not None:
                abuf.drop_before(x + hop)  # the next window starts at least a hop later
            if vbuf is not None:
                vbuf.drop_before((x + hop) / sr - 1.0 / fps - 1e-6)
            if len(batch) >= batch_size:
                yield from run_batch()
    if batch:
        yield from run_batch()
    if pending is not None:
        yield pending
