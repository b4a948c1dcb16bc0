"""MIDI in and out with pretty_midi: notes with velocities and the sustain pedal (CC64)."""

from __future__ import annotations

from pathlib import Path

import pretty_midi

from avfusion.config import SUSTAIN_CC
from avfusion.fileio import atomic_path
from avfusion.notes import Note, Notes, PedalEvent

MIDI_RESOLUTION: int = 960
"""Ticks per quarter note of the files we write."""
MIDI_TEMPO_BPM: float = 120.0
"""Tempo of the files we write; with :data:`MIDI_RESOLUTION` one tick is 1/1920 s."""
TICK_S: float = 60.0 / (MIDI_TEMPO_BPM * MIDI_RESOLUTION)
"""Duration of one tick of the files we write (seconds)."""


def quantize_s(time_s: float) -> float:
    """Round a time to the tick grid of the MIDI files we write, so that what is rendered
    from a note list and what its MIDI file says agree exactly."""
    return round(time_s / TICK_S) * TICK_S


def read_midi(path: str | Path, *, include_drums: bool = False) -> Notes:
    """Read the notes (all non-drum instruments merged) and CC64 events of a MIDI file.

    Args:
        path: a Standard MIDI File.
        include_drums: also take notes from drum tracks (General MIDI channel 10).
    Returns:
        :class:`Notes` with times in seconds; notes of zero length are dropped.
    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file cannot be parsed as MIDI (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MIDI file")
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido/pretty_midi raise many types on bad bytes
        raise ValueError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from exc
    notes: list[Note] = []
    pedal: list[PedalEvent] = []
    for inst in pm.instruments:
        if inst.is_drum and not include_drums:
            continue
        for n in inst.notes:
            if n.end > n.start:
                notes.append(
                    Note(float(n.start), float(n.end), int(n.pitch), max(1, int(n.velocity)))
                )
        pedal += [
            PedalEvent(float(cc.time), int(cc.value))
            for cc in inst.control_changes
            if cc.number == SUSTAIN_CC
        ]
    return Notes.from_iterables(notes, pedal)


def write_midi(
    notes: Notes, path: str | Path, *, end_s: float | None = None, program: int = 0
) -> Path:
    """Write notes and CC64 as a one-track piano MIDI file, atomically.

    Args:
        notes: the notes and pedal events (seconds).
        path: output ``.mid`` path; written to a temporary file, then renamed.
        end_s: if given, a text event "end" is placed at this time so that the file's length
            (pretty_midi ``get_end_time``) equals the performance's duration.
        program: General MIDI program of the track (0 = Acoustic Grand Piano).
    Returns:
        The path written.
    """
    pm = pretty_midi.PrettyMIDI(resolution=MIDI_RESOLUTION, initial_tempo=MIDI_TEMPO_BPM)
    inst = pretty_midi.Instrument(program=program, name="Piano")
    inst.notes = [
        pretty_midi.Note(velocity=n.velocity, pitch=n.pitch, start=n.onset_s, end=n.offset_s)
        for n in notes.notes
    ]
    inst.control_changes = [
        pretty_midi.ControlChange(number=SUSTAIN_CC, value=p.value, time=p.time_s)
        for p in notes.pedal
    ]
    pm.instruments.append(inst)
    if end_s is not None:
        pm.text_events.append(pretty_midi.Text("end", float(end_s)))
    path = Path(path)
    with atomic_path(path) as tmp:
        pm.write(str(tmp))
    return path
