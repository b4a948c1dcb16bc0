"""The one note type of avfusion, its collection, piano rolls and the conversion to mir_eval.

Times are seconds, pitches MIDI numbers (21..108 for the piano), velocities MIDI 1..127.
mir_eval wants note intervals in seconds and pitches in Hz: :meth:`Notes.to_mir_eval` is the
only place that conversion is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN, N_KEYS, SUSTAIN_ON_THRESHOLD


@dataclass(frozen=True, slots=True, order=True)
class Note:
    """One played note: key down at ``onset_s``, key up at ``offset_s`` (seconds).

    ``offset_s`` is the key release; the sustain pedal may prolong the sound beyond it.
    """

    onset_s: float
    offset_s: float
    pitch: int
    velocity: int = 64

    def __post_init__(self) -> None:
        if not self.offset_s > self.onset_s:
            raise ValueError(f"note {self.pitch} at {self.onset_s:.3f} s: offset must follow onset")
        if not 0 <= self.pitch <= 127 or not 1 <= self.velocity <= 127:
            raise ValueError(
                f"note pitch {self.pitch} / velocity {self.velocity} out of MIDI range"
            )


@dataclass(frozen=True, slots=True, order=True)
class PedalEvent:
    """A sustain-pedal (CC64) value change at ``time_s`` seconds; value 0..127."""

    time_s: float
    value: int


@dataclass(frozen=True)
class Notes:
    """A performance's notes (sorted by onset, then pitch) and its sustain-pedal events."""

    notes: tuple[Note, ...] = ()
    pedal: tuple[PedalEvent, ...] = field(default=())

    @classmethod
    def from_iterables(cls, notes: Iterable[Note], pedal: Iterable[PedalEvent] = ()) -> Notes:
        """Build a sorted collection."""
        return cls(tuple(sorted(notes)), tuple(sorted(pedal)))

    def __len__(self) -> int:
        return len(self.notes)

    def __iter__(self) -> Iterator[Note]:
        return iter(self.notes)

    @property
    def end_s(self) -> float:
        """Time of the last note offset or pedal event (0 when empty), seconds."""
        ends = [n.offset_s for n in self.notes] + [p.time_s for p in self.pedal]
        return max(ends, default=0.0)

    def to_mir_eval(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arrays in mir_eval's conventions (mir_eval.transcription).

        Returns:
            intervals: float64 (n_notes, 2), onset and offset in seconds.
            pitches_hz: float64 (n_notes,), fundamental frequency in Hz (A4 = 440 Hz).
            velocities: float64 (n_notes,), MIDI velocity.
        """
        intervals = np.array([(n.onset_s, n.offset_s) for n in self.notes], dtype=np.float64)
        intervals = intervals.reshape(-1, 2)
        midi = np.array([n.pitch for n in self.notes], dtype=np.float64)
        pitches_hz = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
        velocities = np.array([n.velocity for n in self.notes], dtype=np.float64)
        return intervals, pitches_hz, velocities

    def pedal_down_intervals(self) -> list[tuple[float, float]]:
        """Intervals (seconds) during which CC64 is at or above 64; an unreleased pedal ends at
        :attr:`end_s`."""
        out: list[tuple[float, float]] = []
        down_at: float | None = None
        for ev in self.pedal:
            if ev.value >= SUSTAIN_ON_THRESHOLD and down_at is None:
                down_at = ev.time_s
            elif ev.value < SUSTAIN_ON_THRESHOLD and down_at is not None:
                out.append((down_at, ev.time_s))
                down_at = None
        if down_at is not None:
            out.append((down_at, max(self.end_s, down_at)))
        return out

    def key_roll(self, frame_rate_hz: float, n_frames: int | None = None) -> np.ndarray:
        """Piano roll of key-down state (not pedal-extended) on a frame grid.

        Frame ``i`` covers time ``i / frame_rate_hz``; a note occupies frames whose time lies in
        ``[onset_s, offset_s)``, and at least its onset frame.

        Returns:
            bool array, shape (n_frames, 88), key index = MIDI − 21; notes outside the piano's
            range are dropped.
        """
        if n_frames is None:
            n_frames = int(np.ceil(self.end_s * frame_rate_hz)) + 1
        roll = np.zeros((n_frames, N_KEYS), dtype=bool)
        for n in self.notes:
            if not MIDI_MIN <= n.pitch <= MIDI_MAX:
                continue
            start = int(np.ceil(n.onset_s * frame_rate_hz - 1e-9))
            stop = max(start + 1, int(np.ceil(n.offset_s * frame_rate_hz - 1e-9)))
            roll[max(start, 0) : min(stop, n_frames), n.pitch - MIDI_MIN] = True
        return roll

    def to_midi(self, path: str | Path) -> Path:
        """Write a MIDI file (pretty_midi) with these notes and CC64; see :func:`avfusion.midi.write_midi`."""
        from avfusion.midi import write_midi  # notes sits below midi in the import order

        return write_midi(self, path)


def matched_pairs(reference: Notes, estimate: Notes) -> list[tuple[int, int]]:
    """(reference index, estimate index) of the note pairs that the ``note/…`` metrics of
    `avfusion.metrics` count as correct: mir_eval's one-to-one matching of onsets (within
    50 ms) and pitches (within 50 cents), offsets ignored
    (``mir_eval.transcription.match_notes``). Indices are into ``reference.notes`` and
    ``estimate.notes``."""
    import mir_eval

    if not len(reference) or not len(estimate):
        return []
    ref_i, ref_p, _ = reference.to_mir_eval()
    est_i, est_p, _ = estimate.to_mir_eval()
    pairs = mir_eval.transcription.match_notes(ref_i, ref_p, est_i, est_p, offset_ratio=None)
    return [(int(i), int(j)) for i, j in pairs]


def matched_onsets(reference: Notes, estimate: Notes) -> set[int]:
    """Indices (into ``estimate.notes``) of the estimated notes that the ``note/…`` metrics
    count as correct (`matched_pairs`)."""
    return {j for _, j in matched_pairs(reference, estimate)}
