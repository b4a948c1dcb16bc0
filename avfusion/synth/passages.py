"""Generated pianistic passages for the textures and registers that chorales lack: scales,
arpeggios, Alberti bass, octaves, block chords, trills, repeated notes, wide leaps and fast
runs, placed anywhere on the keyboard (runs reach A0 and C8).

Every generator takes an explicit ``numpy.random.Generator`` and returns notes in score time
(quarter notes) starting at a given onset; :func:`generate_etude` strings them together into a
:class:`~avfusion.synth.scores.Score`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN
from avfusion.synth.scores import Score, ScoreNote, score_from_notes_q

MAJOR = (0, 2, 4, 5, 7, 9, 11)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
RH, LH = 0, 1  # part indices: right hand, left hand


def _scale_pitches(tonic_pc: int, mode: tuple[int, ...], lo: int, hi: int) -> list[int]:
    """All pitches of a scale between lo and hi (inclusive), ascending."""
    return [p for p in range(lo, hi + 1) if (p - tonic_pc) % 12 in mode]


def _clip(p: int) -> int:
    return int(np.clip(p, MIDI_MIN, MIDI_MAX))


def _key(rng: np.random.Generator) -> tuple[int, tuple[int, ...]]:
    return int(rng.integers(12)), MAJOR if rng.random() < 0.6 else HARMONIC_MINOR


def _triad(tonic_pc: int, mode: tuple[int, ...], degree: int, root_pitch: int) -> list[int]:
    """Root-position triad on a scale degree, as pitches from the scale tone nearest root_pitch."""
    scale = _scale_pitches(tonic_pc, mode, MIDI_MIN - 12, MIDI_MAX + 12)
    idx = int(np.argmin([abs(p - root_pitch) for p in scale]))
    idx = idx - (idx % 7) + degree if idx % 7 <= degree else idx
    idx = min(idx, len(scale) - 5)
    return [scale[idx], scale[idx + 2], scale[idx + 4]]


def scale_run(
    rng: np.random.Generator, t0: float, centre: int, fast: bool = False
) -> list[ScoreNote]:
    """A diatonic scale over 1–4 octaves (16ths, or 32nds when ``fast``), up or down; fast runs
    may sweep to A0 or C8."""
    tonic, mode = _key(rng)
    octaves = int(rng.integers(1, 5))
    lo = _clip(centre - 6 * octaves)
    hi = _clip(lo + 12 * octaves)
    if fast and rng.random() < 0.5:  # sweep to an end of the keyboard
        lo, hi = (
            (MIDI_MIN, _clip(MIDI_MIN + 12 * octaves))
            if rng.random() < 0.5
            else (_clip(MIDI_MAX - 12 * octaves), MIDI_MAX)
        )
    pitches = _scale_pitches(tonic, mode, lo, hi)
    if fast and rng.random() < 0.3:
        pitches = list(range(lo, hi + 1))  # chromatic
    if rng.random() < 0.5:
        pitches = pitches[::-1]
    step = 0.125 if fast else 0.25
    return [ScoreNote(t0 + i * step, step, p, RH) for i, p in enumerate(pitches)]


def arpeggio(rng: np.random.Generator, t0: float, centre: int) -> list[ScoreNote]:
    """A broken chord (root, third, fifth) over 2–3 octaves in 16th-note triplets or 16ths."""
    tonic, mode = _key(rng)
    triad = _triad(tonic, mode, int(rng.choice([0, 3, 4, 5])), centre - 12)
    octaves = int(rng.integers(2, 4))
    pitches = [p + 12 * o for o in range(octaves) for p in triad] + [triad[0] + 12 * octaves]
    pitches = [p for p in pitches if MIDI_MIN <= p <= MIDI_MAX]
    if rng.random() < 0.5:
        pitches += pitches[-2::-1]
    step = float(rng.choice([1 / 3, 0.25]))
    return [ScoreNote(t0 + i * step, step, p, RH) for i, p in enumerate(pitches)]


def alberti(rng: np.random.Generator, t0: float, centre: int) -> list[ScoreNote]:
    """Alberti bass (low–high–middle–high) in the left hand under a stepwise right-hand melody,
    two bars."""
    tonic, mode = _key(rng)
    out: list[ScoreNote] = []
    melody = _scale_pitches(tonic, mode, _clip(centre), _clip(centre + 14))
    m = len(melody) // 2
    for bar in range(2):
        chord = _triad(tonic, mode, int(rng.choice([0, 3, 4])), centre - 14)
        for i, idx in enumerate([0, 2, 1, 2] * 2):
            out.append(ScoreNote(t0 + bar * 4 + i * 0.5, 0.5, _clip(chord[idx]), LH))
        for beat in range(4):
            m = int(np.clip(m + rng.integers(-2, 3), 0, len(melody) - 1))
            out.append(ScoreNote(t0 + bar * 4 + beat, 1.0, melody[m], RH))
    return out


def octaves(rng: np.random.Generator, t0: float, centre: int) -> list[ScoreNote]:
    """A melody in octaves (8ths), sometimes in both hands."""
    tonic, mode = _key(rng)
    scale = _scale_pitches(tonic, mode, _clip(centre - 7), _clip(centre + 7))
    both = rng.random() < 0.4
    i = len(scale) // 2
    out: list[ScoreNote] = []
    for k in range(int(rng.integers(8, 17))):
        i = int(np.clip(i + rng.integers(-2, 3), 0, len(scale) - 1))
        p = scale[i]
        pitches = [p, p + 12] + ([p - 12, p - 24] if both else [])
        out += [
            ScoreNote(t0 + k * 0.5, 0.5, q, RH if q >= p else LH)
            for q in pitches
            if MIDI_MIN <= q <= MIDI_MAX
        ]
    return out


def block_chords(rng: np.random.Generator, t0: float, centre: int) -> list[ScoreNote]:
    """Chords of 3–4 notes per hand, in quarters or halves."""
    tonic, mode = _key(rng)
    out: list[ScoreNote] = []
    dur = float(rng.choice([1.0, 2.0]))
    for k in range(int(8 // dur)):
        tri = _triad(tonic, mode, int(rng.choice([0, 1, 3, 4, 5])), centre)
        rh = [*tri, tri[0] + 12]
        lh = [tri[0] - 12, tri[0] - 24, tri[2] - 12]
        out += [ScoreNote(t0 + k * dur, dur, _clip(p), RH) for p in rh]
        out += [ScoreNote(t0 + k * dur, dur, _clip(p), LH) for p in lh]
    return out


def trill(rng: np.random.Generator, t0: float, centre: int) -> list[ScoreNote]:
    """A trill (a semitone or whole tone, 32nds) over 1–2 bars on a held bass note."""
    upper = int(rng.choice([1, 2]))
    n = int(rng.choice([32, 64]))
    p = _clip(centre)
    out = [ScoreNote(t0 + i * 0.125, 0.125, _clip(p + upper * (i % 2)), RH) for i in range(n)]
    out.append(ScoreNote(t0, n * 0.125, _clip(p - 12 - int(rng.integers(0, 12))), LH))
    return out


def repeated_notes(rng: np.random.Generator, t0: float, centre: int) -> list[ScoreNote]:
    """One key struck again and again in 16ths (1–2 bars), sometimes as a repeated dyad."""
    n = int(rng.choice([16, 32]))
    pitches = [_clip(centre)] + (
        [_clip(centre + int(rng.choice([3, 4, 7])))] if rng.random() < 0.4 else []
    )
    return [ScoreNote(t0 + i * 0.25, 0.2, p, RH) for i in range(n) for p in pitches]


def wide_leaps(rng: np.random.Generator, t0: float, centre: int) -> list[ScoreNote]:
    """Stride bass: a low bass note on beats 1 and 3, a chord two octaves higher on 2 and 4."""
    tonic, mode = _key(rng)
    out: list[ScoreNote] = []
    for bar in range(2):
        tri = _triad(tonic, mode, int(rng.choice([0, 3, 4])), centre)
        bass = _clip(tri[0] - 24 - 12 * int(rng.integers(0, 2)))
        for beat in range(4):
            t = t0 + bar * 4 + beat
            if beat % 2 == 0:
                out += [ScoreNote(t, 1.0, bass, LH), ScoreNote(t, 1.0, _clip(bass + 12), LH)]
            else:
                out += [ScoreNote(t, 1.0, _clip(p), LH) for p in tri]
        out.append(ScoreNote(t0 + bar * 4, 4.0, _clip(tri[2] + 12), RH))
    return out


PASSAGES: dict[str, Callable[[np.random.Generator, float, int], list[ScoreNote]]] = {
    "scale": scale_run,
    "fast_run": lambda rng, t0, c: scale_run(rng, t0, c, fast=True),
    "arpeggio": arpeggio,
    "alberti": alberti,
    "octaves": octaves,
    "block_chords": block_chords,
    "trill": trill,
    "repeated_notes": repeated_notes,
    "wide_leaps": wide_leaps,
}
"""The passage generators by name."""


def generate_etude(rng: np.random.Generator, target_q: float) -> tuple[Score, list[str]]:
    """A sequence of random passages in random registers, about ``target_q`` quarter notes long.

    Returns:
        The score (4/4 bars; part 0 = right hand, 1 = left hand) and the passage names used.
    """
    names = list(PASSAGES)
    notes: list[ScoreNote] = []
    used: list[str] = []
    t = 0.0
    while t < target_q:
        name = names[int(rng.integers(len(names)))]
        centre = int(rng.integers(MIDI_MIN + 6, MIDI_MAX - 6))
        part = [n for n in PASSAGES[name](rng, t, centre) if MIDI_MIN <= n.pitch <= MIDI_MAX]
        if not part:
            continue
        notes += part
        used.append(name)
        end = max(n.onset_q + n.duration_q for n in part)
        t = float(np.ceil((end + 1e-6) / 4.0) * 4.0)  # next passage on a bar line
    return score_from_notes_q(notes, source="generated:etude", title="generated etude"), used
