"""Compositions as scores: the music21 corpus that ships with music21, read into note lists in
score time (quarter notes), cut into excerpts and transposed.

A :class:`Score` is notation, not performance: onsets and durations in quarter notes, no
velocities. :mod:`avfusion.synth.humanise` turns it into a timed performance.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN

# music21 corpus folders whose works are polyphonic art music that a pianist could play
# (chorales, keyboard works, quartets, madrigals, masses, songs, rags). Folk-tune books in ABC
# (monophonic), demos, exercises and Roman-numeral analyses are left out.
CORPUS_COMPOSERS: tuple[str, ...] = (
    "bach", "beach", "beethoven", "chopin", "ciconia", "corelli", "cpebach", "handel", "haydn",
    "johnson_j_r", "joplin", "josquin", "liliuokalani", "luca", "lusitano", "monteverdi",
    "mozart", "palestrina", "schoenberg", "schubert", "schumann_clara", "schumann_robert",
    "trecento", "verdi", "weber", "webern",
)  # fmt: skip
_SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc")
MUSIC21_LICENCE = (
    "music21 corpus (BSD-licensed toolkit; corpus works are public domain or "
    "redistributable encodings, see music21/corpus/license.txt)"
)


@dataclass(frozen=True, slots=True)
class ScoreNote:
    """A notated note: onset and duration in quarter notes, MIDI pitch, part (voice) index."""

    onset_q: float
    duration_q: float
    pitch: int
    part: int = 0


@dataclass(frozen=True)
class Score:
    """A composition (or a generated passage) in score time.

    Attributes:
        source: where it comes from, e.g. ``music21:bach/bwv269.mxl`` or ``generated:etude``.
        title, composer: metadata, possibly empty.
        notes: sorted by onset, then pitch.
        bar_starts_q: onsets of the bars (quarter notes), ascending, starting at or before the
            first note.
        tempo_qpm: the score's own tempo mark in quarter notes per minute, if it has one.
    """

    source: str
    title: str
    composer: str
    notes: tuple[ScoreNote, ...]
    bar_starts_q: tuple[float, ...]
    tempo_qpm: float | None = None

    @property
    def end_q(self) -> float:
        """Where the last note ends, in quarter notes from the start (0 with no notes)."""
        return max((n.onset_q + n.duration_q for n in self.notes), default=0.0)

    def pitch_range(self) -> tuple[int, int]:
        """Lowest and highest MIDI pitch. Raises ValueError if the score has no notes."""
        if not self.notes:
            raise ValueError(f"{self.source}: score has no notes")
        pitches = [n.pitch for n in self.notes]
        return min(pitches), max(pitches)

    def transposed(self, semitones: int) -> Score:
        """The score shifted by ``semitones``. Raises ValueError if a note leaves 21..108."""
        lo, hi = self.pitch_range()
        if lo + semitones < MIDI_MIN or hi + semitones > MIDI_MAX:
            raise ValueError(f"{self.source}: transposing by {semitones} leaves the piano's range")
        notes = tuple(replace(n, pitch=n.pitch + semitones) for n in self.notes)
        return replace(self, notes=notes)

    def excerpt(self, first_bar: int, n_bars: int) -> Score:
        """Bars ``first_bar .. first_bar + n_bars - 1``, moved to start at 0 quarter notes.

        Notes that start in the excerpt keep their full duration.
        """
        bars = self.bar_starts_q
        first_bar = int(np.clip(first_bar, 0, len(bars) - 1))
        start = bars[first_bar]
        stop = bars[first_bar + n_bars] if first_bar + n_bars < len(bars) else np.inf
        notes = tuple(
            replace(n, onset_q=n.onset_q - start) for n in self.notes if start <= n.onset_q < stop
        )
        kept_bars = tuple(b - start for b in bars if start <= b < stop)
        return replace(self, notes=notes, bar_starts_q=kept_bars or (0.0,))


def corpus_root() -> Path:
    """The folder of the music21 corpus installed with music21."""
    from music21 import corpus  # heavy import, kept out of module import time

    return Path(corpus.__file__).parent


@cache
def list_corpus_pieces() -> tuple[str, ...]:
    """Corpus-relative paths of the usable compositions (e.g. ``bach/bwv269.mxl``), sorted."""
    root = corpus_root()
    out = [
        p.relative_to(root).as_posix()
        for composer in CORPUS_COMPOSERS
        if (root / composer).is_dir()
        for p in (root / composer).rglob("*")
        if p.suffix in _SCORE_SUFFIXES and p.is_file()
    ]
    return tuple(sorted(out))


def piece_composer(rel_path: str) -> str:
    """The corpus folder (composer) of a corpus-relative path."""
    return rel_path.split("/", 1)[0]


def piece_split(rel_path: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """The split of a composition: a stable hash of its path, so that a piece is in one split
    whatever the seed or corpus size (train / validation / test by ``fractions``)."""
    u = (zlib.crc32(rel_path.encode()) & 0xFFFFFFFF) / 2**32
    if u < fractions[0]:
        return "train"
    return "validation" if u < fractions[0] + fractions[1] else "test"


def load_corpus_score(rel_path: str) -> Score:
    """Read a music21 corpus work into a :class:`Score` (ties merged, grace notes dropped).

    Raises:
        ValueError: if music21 cannot parse it or it has no pitched notes (names the piece).
    """
    from music21 import converter

    path = corpus_root() / rel_path
    try:
        parsed = converter.parse(path)
    except Exception as exc:
        raise ValueError(f"music21:{rel_path}: cannot parse ({type(exc).__name__}: {exc})") from exc
    score = score_from_music21(parsed, source=f"music21:{rel_path}")
    if not score.notes:
        raise ValueError(f"music21:{rel_path}: no pitched notes")
    return score


def score_from_music21(parsed: object, source: str) -> Score:
    """Convert a parsed music21 Score/Opus/Part into a :class:`Score`."""
    from music21 import stream

    if isinstance(parsed, stream.Opus):
        parsed = parsed.scores[0]  # an ABC book: its first tune
    assert isinstance(parsed, stream.Stream)
    parts = list(parsed.parts) if hasattr(parsed, "parts") and len(parsed.parts) else [parsed]
    notes: list[ScoreNote] = []
    for i, part in enumerate(parts):
        for el in part.stripTies(inPlace=False).flatten().notes:
            dur = float(el.quarterLength)
            if dur <= 0 or el.duration.isGrace:
                continue
            onset = (
                float(el.getOffsetInHierarchy(part))
                if el.activeSite is not None
                else float(el.offset)
            )
            for p in el.pitches:
                notes.append(ScoreNote(onset, dur, int(p.midi), i))
    notes = _merge_unisons(notes)
    measures = parts[0].getElementsByClass("Measure")
    bars = sorted({float(m.offset) for m in measures})
    if not bars or (notes and bars[0] > notes[0].onset_q):
        end = max((n.onset_q + n.duration_q for n in notes), default=0.0)
        bars = [float(b) for b in np.arange(0.0, end + 4.0, 4.0)]
    marks = parsed.flatten().getElementsByClass("MetronomeMark")
    tempo = None
    for m in marks:
        qpm = m.getQuarterBPM()
        if qpm:
            tempo = float(qpm)
            break
    md = getattr(parsed, "metadata", None)
    title = (md.title or "") if md is not None else ""
    composer = (md.composer or "") if md is not None else ""
    return Score(source, str(title), str(composer), tuple(notes), tuple(bars), tempo)


def _merge_unisons(notes: list[ScoreNote]) -> list[ScoreNote]:
    """One piano key cannot sound twice at once: of notes with the same onset and pitch (two
    voices in unison) keep the longest; sorted by onset, then pitch."""
    best: dict[tuple[float, int], ScoreNote] = {}
    for n in notes:
        key = (n.onset_q, n.pitch)
        if key not in best or n.duration_q > best[key].duration_q:
            best[key] = n
    return sorted(best.values(), key=lambda n: (n.onset_q, n.pitch))


def score_from_notes_q(
    notes: list[ScoreNote], source: str, bar_q: float = 4.0, title: str = ""
) -> Score:
    """A :class:`Score` from generated notes, with bars every ``bar_q`` quarter notes."""
    notes = _merge_unisons(notes)
    end = max((n.onset_q + n.duration_q for n in notes), default=0.0)
    bars = tuple(float(b) for b in np.arange(0.0, end + 1e-9, bar_q)) or (0.0,)
    return Score(source, title, "generated", tuple(notes), bars)
