"""Posteriors to notes (Onsets and Frames decoding, Hawthorne et al. 2018) and to CC64.

A note starts on a frame where the onset probability is a local peak above
``onset_threshold``; it lasts while the frame probability stays above ``frame_threshold``
(at least ``min_note_ms``) and ends early at the next onset of the same key; its velocity is
the velocity head's value at the onset frame. The sustain pedal is down while its probability
is above ``pedal_threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from avfusion.config import MIDI_MIN, N_KEYS, check_known_keys
from avfusion.notes import Note, Notes, PedalEvent


@dataclass(frozen=True)
class DecodeConfig:
    """Thresholds of the decoder (tuned on the validation split, stored with a checkpoint)."""

    onset_threshold: float = 0.5
    frame_threshold: float = 0.5
    pedal_threshold: float = 0.5
    min_note_ms: float = 30.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_extra(cls, extra: dict[str, Any], where: str) -> DecodeConfig:
        """The thresholds stored with a checkpoint (``extra["decode"]``, written by
        ``avfusion train``), or the defaults when it has none.

        Args:
            extra: the checkpoint's ``extra`` metadata (:func:`avfusion.model.load_checkpoint`).
            where: the checkpoint's config file, for messages.
        Raises:
            ValueError: ``decode`` is not a mapping of known fields to numbers (names
                ``where`` and the bad entry).
        """
        d = extra.get("decode")
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"{where}: extra.decode must be a mapping, got {d!r}")
        check_known_keys(cls, d, f"{where}: extra.decode")
        try:
            return cls(**{k: float(v) for k, v in d.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: bad extra.decode {d!r} ({exc})") from exc


def decode_notes(
    onset: np.ndarray,
    frame: np.ndarray,
    velocity: np.ndarray | None,
    frame_rate_hz: float,
    config: DecodeConfig = DecodeConfig(),
    pedal: np.ndarray | None = None,
) -> Notes:
    """Turn per-key posteriors into notes.

    Args:
        onset, frame: float (n_frames, 88), probabilities in [0, 1].
        velocity: float (n_frames, 88), velocity / 127 (clipped to [0, 1]); None → 64.
        frame_rate_hz: model frames per second (frame i is at time i / frame_rate_hz).
        config: thresholds.
        pedal: float (n_frames,), sustain-pedal probability, or None for no CC64.
    Returns:
        :class:`Notes` with times in seconds.
    """
    n_frames, n_keys = onset.shape
    above = onset >= config.onset_threshold
    prev = np.vstack([np.zeros((1, n_keys)), onset[:-1]])
    nxt = np.vstack([onset[1:], np.zeros((1, n_keys))])
    peaks = above & (onset >= prev) & (onset > nxt)  # first frame of a plateau wins
    min_frames = max(1, int(np.ceil(config.min_note_ms / 1000 * frame_rate_hz)))
    notes: list[Note] = []
    for k in range(n_keys):
        starts = np.flatnonzero(peaks[:, k])
        for j, i in enumerate(starts):
            stop_at = starts[j + 1] if j + 1 < len(starts) else n_frames
            end = i + 1
            while end < stop_at and frame[end, k] >= config.frame_threshold:
                end += 1
            end = min(max(end, i + min_frames), stop_at if stop_at > i else n_frames)
            end = max(end, i + 1)
            v = 64 if velocity is None else int(np.clip(round(float(velocity[i, k]) * 127), 1, 127))
            notes.append(
                Note(float(i / frame_rate_hz), float(end / frame_rate_hz), k + MIDI_MIN, v)
            )
    events: list[PedalEvent] = []
    if pedal is not None:
        down = pedal >= config.pedal_threshold
        changes = np.flatnonzero(np.diff(np.concatenate([[False], down]).astype(np.int8)))
        events = [PedalEvent(float(i / frame_rate_hz), 127 if down[i] else 0) for i in changes]
    return Notes.from_iterables(notes, events)


class StreamingDecoder:
    """Onsets-and-Frames decoding of posteriors that arrive in consecutive runs of frames.

    Gives exactly the notes and pedal events of :func:`avfusion.decoding.decode_notes` on the
    whole performance (the tests check it), holding only one frame of look-ahead and the notes
    still sounding. Per key: a note starts at an onset peak (a frame at or above
    ``onset_threshold`` that is ≥ the previous frame and > the next), lasts while the frame
    posterior stays at or above ``frame_threshold`` (at least ``min_note_ms``) and ends at the
    next onset of the key at the latest.

    Usage::

        dec = StreamingDecoder(frame_rate_hz, DecodeConfig())
        for first_frame, post in iter_posteriors(...):
            dec.push(post["onset"], post["frame"], post["velocity"], post["pedal"])
        notes = dec.finish()
    """

    def __init__(self, frame_rate_hz: float, config: DecodeConfig | None = None) -> None:
        config = config or DecodeConfig()
        self.frame_rate_hz = float(frame_rate_hz)
        self.config = config
        self.min_frames = max(1, int(np.ceil(config.min_note_ms / 1000 * frame_rate_hz)))
        self.n_frames = 0  # frames pushed
        self._t = 0  # the next frame to decide on (frames before it are decided)
        self._prev_onset = np.zeros(N_KEYS)  # onset posterior of frame _t - 1
        self._held: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None  # frame _t
        self._open = np.zeros(N_KEYS, bool)
        self._n_open = 0
        self._running = np.zeros(N_KEYS, bool)
        self._start = np.zeros(N_KEYS, np.int64)
        self._run_end = np.zeros(N_KEYS, np.int64)
        self._velocity = np.full(N_KEYS, 64, np.int64)
        self._pedal_down = False
        self.notes: list[Note] = []
        self.pedal: list[PedalEvent] = []

    def push(
        self,
        onset: np.ndarray,
        frame: np.ndarray,
        velocity: np.ndarray | None = None,
        pedal: np.ndarray | None = None,
    ) -> None:
        """Add the next ``n`` frames: onset, frame float (n, 88) probabilities; velocity float
        (n, 88) as velocity / 127 or None (64); pedal float (n,) probabilities or None."""
        onset = np.asarray(onset)
        frame = np.asarray(frame)
        n = onset.shape[0]
        if n == 0:
            return
        vel = None if velocity is None else np.asarray(velocity)
        if pedal is not None:
            down = np.asarray(pedal)[:n] >= self.config.pedal_threshold
            states = np.concatenate([[self._pedal_down], down])
            for i in np.flatnonzero(states[1:] != states[:-1]):
                t_s = float((self.n_frames + int(i)) / self.frame_rate_hz)
                self.pedal.append(PedalEvent(t_s, 127 if down[i] else 0))
            self._pedal_down = bool(states[-1])
        # the frames decidable now: the held one and all new ones but the last (whose next
        # frame is not known yet); their peaks, vectorised
        if self._held is not None:
            h_on, h_fr, h_vel = self._held
            on = np.concatenate([h_on[None], onset[:-1]])
            fr = np.concatenate([h_fr[None], frame[:-1]])
            vl = None if vel is None or h_vel is None else np.concatenate([h_vel[None], vel[:-1]])
            nxt = onset
        else:
            on, fr, nxt = onset[:-1], frame[:-1], onset[1:]
            vl = None if vel is None else vel[:-1]
        if len(on):
            prev = np.concatenate([self._prev_onset[None], on[:-1]])
            peaks = (on >= self.config.onset_threshold) & (on >= prev) & (on > nxt)
            above = fr >= self.config.frame_threshold
            any_peak: np.ndarray = np.any(peaks, axis=1)
            for r in range(len(on)):
                if any_peak[r] or self._n_open:
                    self._decide(peaks[r], above[r], None if vl is None else vl[r])
                self._t += 1
            self._prev_onset = on[-1]
        self._held = (onset[-1], frame[-1], None if vel is None else vel[-1])
        self.n_frames += n

    def _emit(self, keys: np.ndarray, ends: np.ndarray) -> None:
        fr = self.frame_rate_hz
        for k, end in zip(keys.tolist(), ends.tolist(), strict=True):
            i = int(self._start[k])
            self.notes.append(Note(i / fr, end / fr, k + MIDI_MIN, int(self._velocity[k])))
        self._open[keys] = False
        self._running[keys] = False
        self._n_open -= len(keys)

    def _decide(self, peak: np.ndarray, above: np.ndarray, velocity: np.ndarray | None) -> None:
        """Decide frame ``self._t`` from its onset peaks and frame posteriors above threshold."""
        t = self._t
        # a new onset ends the key's open note (decode_notes' stop_at)
        closing = np.flatnonzero(peak & self._open)
        if closing.size:
            cand = np.maximum(self._run_end[closing], self._start[closing] + self.min_frames)
            self._emit(closing, np.minimum(cand, t))
        # notes still held extend while the frame posterior stays above its threshold
        held = self._open & self._running & (self._start < t)
        self._run_end[held & above] = t + 1
        self._running[held & ~above] = False
        # open a note at each peak
        starting = np.flatnonzero(peak)
        if starting.size:
            self._open[starting] = True
            self._n_open += len(starting)
            self._running[starting] = True
            self._start[starting] = t
            self._run_end[starting] = t + 1
            if velocity is None:
                self._velocity[starting] = 64
            else:
                for k in starting.tolist():
                    v = round(float(velocity[k]) * 127)  # as decode_notes: round, clip 1..127
                    self._velocity[k] = 1 if v < 1 else 127 if v > 127 else v
        # a note that stopped sounding is final once no onset can cut it short any more
        if self._n_open:
            cand = np.maximum(self._run_end, self._start + self.min_frames)
            done = np.flatnonzero(self._open & ~self._running & (t >= cand - 1))
            if done.size:
                self._emit(done, cand[done])

    def finish(self) -> Notes:
        """Decide the last frame, end the notes still open at the end, and return all notes.

        Returns:
            :class:`Notes` (seconds), the same as ``decode_notes`` on all frames pushed.
        """
        if self._held is not None:
            on, fr, vel = self._held
            peak = (on >= self.config.onset_threshold) & (on >= self._prev_onset) & (on > 0)
            self._decide(peak, fr >= self.config.frame_threshold, vel)
            self._t += 1
            self._held = None
        n = self.n_frames
        keys = np.flatnonzero(self._open)
        if keys.size:
            cand = np.maximum(self._run_end[keys], self._start[keys] + self.min_frames)
            self._emit(keys, np.minimum(cand, n))
        return Notes.from_iterables(self.notes, self.pedal)
