"""Humanise a score as a pianist would play it: a tempo curve with rubato and phrase-end
ritardandi, onset jitter, chords not quite together (melody lead, occasional rolled chords),
dynamics shaped by phrase, legato/detached articulation, and sustain pedal changed by bar or by
harmony.

The models follow the performance-research findings that synthetic-data work usually borrows:
phrase-final lengthening and the phrase arch of tempo and loudness (Todd 1992; Repp 1992),
melody lead of ~10-30 ms in chords (Goebl 2001), and onset asynchronies of some 5-20 ms.
Randomness comes from an explicit ``numpy.random.Generator``; every drawn parameter is kept
in :class:`HumaniseParams` so a performance can be described and replayed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from avfusion.midi import quantize_s
from avfusion.notes import Note, Notes, PedalEvent
from avfusion.synth.scores import Score

PEDAL_STYLES = ("none", "bar", "harmony")


@dataclass(frozen=True)
class HumaniseParams:
    """Drawn once per performance (see :func:`draw_humanise_params`). Units in the names."""

    tempo_qpm: float  # mean tempo, quarter notes per minute
    tempo_drift: float  # relative amplitude of the slow tempo curve (0.05 = ±5 %)
    phrase_bars: int  # bars per phrase (for dynamics and ritardandi)
    phrase_ritardando: float  # relative lengthening of the last beat of a phrase
    onset_jitter_ms: float  # standard deviation of per-note onset jitter
    chord_spread_ms: float  # standard deviation of per-note asynchrony within a chord
    melody_lead_ms: float  # how much earlier the top note of a chord sounds
    roll_probability: float  # chance that a chord of 3+ notes is rolled
    roll_step_ms: float  # delay between successive notes of a rolled chord
    velocity_mean: float  # MIDI velocity around which phrases vary
    velocity_phrase_sd: float  # phrase-to-phrase change of level
    phrase_arch: float  # velocity added at the middle of a phrase
    melody_accent: float  # velocity added to the top note of a chord
    downbeat_accent: float  # velocity added on the first beat of a bar
    legato: float  # sounding fraction of the notated duration
    pedal_style: str  # none | bar | harmony
    pedal_lift_ms: float  # pedal released this long after the new harmony's onset
    pedal_gap_ms: float  # and pressed again this long after it is released
    lead_in_s: float  # silence before the first note


def draw_humanise_params(rng: np.random.Generator, score: Score) -> HumaniseParams:
    """Draw performance parameters, the tempo adapted to the score's note density so that the
    median time between chords lands in a playable 0.12-0.6 s."""
    onsets = np.unique([n.onset_q for n in score.notes])
    median_ioi_q = float(np.median(np.diff(onsets))) if len(onsets) > 1 else 1.0
    qpm = score.tempo_qpm or float(rng.uniform(60, 120))
    qpm *= float(rng.uniform(0.85, 1.15))
    ioi_s = median_ioi_q * 60 / qpm
    if not 0.12 <= ioi_s <= 0.6:
        qpm = median_ioi_q * 60 / float(np.clip(ioi_s, 0.12, 0.6))
    return HumaniseParams(
        tempo_qpm=round(qpm, 3),
        tempo_drift=float(rng.uniform(0.02, 0.10)),
        phrase_bars=int(rng.choice([2, 4, 4, 8])),
        phrase_ritardando=float(rng.uniform(0.05, 0.35)),
        onset_jitter_ms=float(rng.uniform(5, 20)),
        chord_spread_ms=float(rng.uniform(3, 12)),
        melody_lead_ms=float(rng.uniform(0, 25)),
        roll_probability=float(rng.uniform(0, 0.12)),
        roll_step_ms=float(rng.uniform(15, 40)),
        velocity_mean=float(rng.uniform(50, 85)),
        velocity_phrase_sd=float(rng.uniform(4, 14)),
        phrase_arch=float(rng.uniform(0, 15)),
        melody_accent=float(rng.uniform(3, 12)),
        downbeat_accent=float(rng.uniform(0, 8)),
        legato=float(rng.uniform(0.7, 0.98)),
        pedal_style=str(rng.choice(PEDAL_STYLES, p=[0.2, 0.4, 0.4])),
        pedal_lift_ms=float(rng.uniform(0, 40)),
        pedal_gap_ms=float(rng.uniform(60, 180)),
        lead_in_s=float(rng.uniform(0.3, 1.0)),
    )


def _tempo_map(
    score: Score, p: HumaniseParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Score time (quarters) → performance time (s), sampled on a 1/48-quarter grid.

    Seconds per quarter = 60 / tempo × (1 + slow drift + phrase-end ritardando).
    """
    end_q = score.end_q + 8.0
    dq = 1 / 48
    q = np.arange(0.0, end_q + dq, dq)
    drift = np.zeros_like(q)
    for _ in range(3):  # a sum of slow sinusoids (periods 6-40 quarters)
        period = rng.uniform(6, 40)
        drift += np.sin(2 * np.pi * q / period + rng.uniform(0, 2 * np.pi))
    drift *= p.tempo_drift / 3 * 1.7
    rit = np.zeros_like(q)
    bars = np.asarray(score.bar_starts_q)
    phrase_ends = bars[p.phrase_bars :: p.phrase_bars] if len(bars) > p.phrase_bars else bars[-1:]
    for pe in phrase_ends:  # lengthen the last ~1.5 quarters before each phrase end
        x = (q - (pe - 1.5)) / 1.5
        rit += np.where((x > 0) & (x < 1), np.sin(np.pi * x / 2) ** 2, 0.0) * p.phrase_ritardando
    spq = 60.0 / p.tempo_qpm * (1 + drift + rit)
    t = np.concatenate([[0.0], np.cumsum(spq[:-1] * dq)])
    return q, t


def humanise(score: Score, params: HumaniseParams, rng: np.random.Generator) -> Notes:
    """Perform a score: timed notes with velocities and CC64 pedal events.

    Times are quantised to the tick grid of the MIDI files avfusion writes
    (:func:`avfusion.midi.quantize_s`), so audio rendered from the result and its MIDI file agree.

    Raises:
        ValueError: if the score has no notes.
    """
    if not score.notes:
        raise ValueError(f"{score.source}: nothing to perform (no notes)")
    p = params
    grid_q, grid_t = _tempo_map(score, p, rng)

    def to_s(q: np.ndarray | float) -> np.ndarray:
        return np.interp(q, grid_q, grid_t)

    notes = score.notes
    onset_q = np.array([n.onset_q for n in notes])
    end_q = onset_q + np.array([n.duration_q for n in notes])
    pitch = np.array([n.pitch for n in notes])
    onset_s = to_s(onset_q)
    sounding_s = (to_s(end_q) - onset_s) * p.legato * np.exp(rng.normal(0, 0.08, len(notes)))

    # Asynchrony: per-note jitter, melody lead, chord spread, rolled chords.
    shift_ms = np.clip(
        rng.normal(0, p.onset_jitter_ms, len(notes)),
        -2.5 * p.onset_jitter_ms,
        2.5 * p.onset_jitter_ms,
    )
    groups: dict[float, list[int]] = defaultdict(list)
    for i, q in enumerate(onset_q):
        groups[q].append(i)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        common = shift_ms[idx[0]]  # a chord is one gesture: jitter it as a whole ...
        spread = rng.normal(0, p.chord_spread_ms, len(idx))  # ... plus small asynchronies
        shift_ms[idx] = common + spread
        by_pitch = sorted(idx, key=lambda i: pitch[i])
        shift_ms[by_pitch[-1]] -= p.melody_lead_ms
        if len(idx) >= 3 and rng.random() < p.roll_probability:
            for k, i in enumerate(by_pitch):
                shift_ms[i] = common + k * p.roll_step_ms
    onset_s = onset_s + shift_ms / 1000.0

    # Dynamics: phrase level (random walk), phrase arch, melody and downbeat accents, noise.
    bars = np.asarray(score.bar_starts_q)
    bar_idx = np.clip(np.searchsorted(bars, onset_q, side="right") - 1, 0, len(bars) - 1)
    phrase_idx = bar_idx // p.phrase_bars
    n_phrases = int(phrase_idx.max()) + 1
    level = p.velocity_mean + np.cumsum(rng.normal(0, p.velocity_phrase_sd, n_phrases)) * 0.7
    level = np.clip(level, 30, 100)
    bar_len = np.diff(np.append(bars, bars[-1] + 4.0))
    phrase_start_q = bars[np.minimum(phrase_idx * p.phrase_bars, len(bars) - 1)]
    phrase_len_q = np.array(
        [bar_len[i * p.phrase_bars : (i + 1) * p.phrase_bars].sum() for i in phrase_idx]
    )
    pos = np.clip((onset_q - phrase_start_q) / np.maximum(phrase_len_q, 1e-6), 0, 1)
    velocity = level[phrase_idx] + p.phrase_arch * np.sin(np.pi * pos)
    top = np.zeros(len(notes), dtype=bool)
    for idx in groups.values():
        top[max(idx, key=lambda i: pitch[i])] = True
    velocity += np.where(top, p.melody_accent, 0.0)
    velocity += np.where(np.isclose(onset_q, bars[bar_idx]), p.downbeat_accent, 0.0)
    velocity += rng.normal(0, 4, len(notes))
    velocity = np.clip(np.round(velocity), 12, 122).astype(int)

    # Start after the lead-in; a key cannot be struck again before it is released.
    onset_s = onset_s - onset_s.min() + p.lead_in_s
    offset_s = onset_s + np.maximum(sounding_s, 0.04)
    order = np.lexsort((pitch, onset_s))
    last_onset: dict[int, float] = {}
    for i in order[::-1]:
        nxt = last_onset.get(int(pitch[i]))
        if nxt is not None:
            offset_s[i] = min(offset_s[i], nxt - 0.012)
        last_onset[int(pitch[i])] = onset_s[i]

    out: list[Note] = []
    for i in order:
        on, off = quantize_s(onset_s[i]), quantize_s(offset_s[i])
        if off - on < 0.02:  # a repeated note squeezed by its successor: keep 20 ms
            off = quantize_s(on + 0.02)
        out.append(Note(on, off, int(pitch[i]), int(velocity[i])))
    out = _drop_overlaps(out)
    pedal = _pedal(score, p, onset_q, pitch, onset_s, out, rng)
    return Notes.from_iterables(out, pedal)


def _drop_overlaps(notes: list[Note]) -> list[Note]:
    """Drop a note that starts before the previous note of the same key ends (possible only
    for repeated notes under heavy jitter)."""
    last_end: dict[int, float] = {}
    kept = []
    for n in sorted(notes):
        if n.onset_s >= last_end.get(n.pitch, -1.0):
            kept.append(n)
            last_end[n.pitch] = n.offset_s
    return kept


def _pedal(
    score: Score,
    p: HumaniseParams,
    onset_q: np.ndarray,
    pitch: np.ndarray,
    onset_s: np.ndarray,
    notes: list[Note],
    rng: np.random.Generator,
) -> list[PedalEvent]:
    """Legato pedalling: at each change point (bar line, or a change of harmony) the pedal is
    lifted just after the new notes sound and pressed again shortly after; it is released
    after the last note."""
    if p.pedal_style == "none" or not notes:
        return []
    first_on = min(n.onset_s for n in notes)
    last_off = max(n.offset_s for n in notes)
    # Performance time of each score onset (the earliest note played at it).
    onset_time: dict[float, float] = {}
    for q, t in zip(onset_q, onset_s, strict=True):
        onset_time[q] = min(onset_time.get(q, np.inf), float(t))
    qs = sorted(onset_time)
    changes: list[float] = []
    if p.pedal_style == "bar":
        bars = np.asarray(score.bar_starts_q)
        for b in bars[1:]:
            later = [q for q in qs if q >= b - 1e-9]
            if later:
                changes.append(onset_time[later[0]])
    else:  # harmony: a new bass pitch class, at least one beat after the previous change
        bass_pc = {q: int(pitch[onset_q == q].min()) % 12 for q in qs}
        prev_pc, prev_q = bass_pc[qs[0]], qs[0]
        for q in qs[1:]:
            if bass_pc[q] != prev_pc and q - prev_q >= 1.0:
                changes.append(onset_time[q])
                prev_pc, prev_q = bass_pc[q], q
    events = [PedalEvent(quantize_s(first_on + rng.uniform(0.02, 0.12)), 127)]
    for t in sorted(set(changes)):
        up = t + p.pedal_lift_ms / 1000 + rng.uniform(0, 0.02)
        down = up + p.pedal_gap_ms / 1000
        if up <= events[-1].time_s or down >= last_off:
            continue
        events += [PedalEvent(quantize_s(up), 0), PedalEvent(quantize_s(down), 127)]
    events.append(
        PedalEvent(quantize_s(max(last_off + rng.uniform(0.05, 0.4), events[-1].time_s + 0.05)), 0)
    )
    return events
