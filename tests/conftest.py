"""Shared fixtures: small MIDI files and performances that the tests make themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from avfusion.midi import write_midi
from avfusion.notes import Note, Notes, PedalEvent


def make_notes(duration_s: float = 2.5, offset_pitch: int = 0) -> Notes:
    """A short two-hand phrase: a C-major chord, a melody and a bass note, with pedal."""
    notes = [
        Note(0.30, 1.10, 48 + offset_pitch, 70),
        Note(0.30, 1.10, 60 + offset_pitch, 80),
        Note(0.31, 1.05, 64 + offset_pitch, 75),
        Note(0.32, 1.00, 67 + offset_pitch, 90),
        Note(1.20, 1.50, 72 + offset_pitch, 85),
        Note(1.50, 1.80, 74 + offset_pitch, 60),
        Note(1.80, min(2.20, duration_s - 0.1), 76 + offset_pitch, 100),
        Note(1.20, min(2.30, duration_s - 0.1), 36 + offset_pitch, 55),
    ]
    pedal = [PedalEvent(0.35, 127), PedalEvent(1.25, 0), PedalEvent(1.35, 127), PedalEvent(2.3, 0)]
    return Notes.from_iterables(notes, pedal)


@pytest.fixture
def midi_file(tmp_path: Path) -> Path:
    path = tmp_path / "phrase.mid"
    write_midi(make_notes(), path)
    return path


@pytest.fixture
def midi_dir(tmp_path: Path) -> Path:
    """Three small MIDI files (different transpositions) in one folder."""
    folder = tmp_path / "midis"
    folder.mkdir()
    for k, shift in enumerate((0, 5, -7)):
        write_midi(make_notes(offset_pitch=shift), folder / f"piece{k}.mid")
    return folder
