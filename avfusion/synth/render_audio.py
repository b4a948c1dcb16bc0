"""Render a performance to audio with FluidSynth and a sampled piano, then vary it as
recordings vary: EQ (audiomentations' shelf and peaking filters), stereo-to-mono mix, level.

Output is the clean reference signal of the data contract: 16 kHz mono float32 in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from avfusion.config import (
    PIANO_PROGRAMS,
    SAMPLE_RATE_HZ,
    SOUNDFONTS,
    SPLIT_SOUNDFONTS,
    SUSTAIN_CC,
    find_soundfont,
)
from avfusion.notes import Notes

RENDER_RATE_HZ: int = 48_000
"""FluidSynth renders at 48 kHz; the result is resampled (polyphase, ×1/3) to 16 kHz."""


@dataclass(frozen=True)
class AudioParams:
    """How one performance sounds; drawn by :func:`draw_audio_params`, stored in meta.json."""

    soundfont: str  # a key of avfusion.config.SOUNDFONTS, or a user's file path
    soundfont_path: str
    program: int  # General MIDI program (0 Acoustic Grand, 1 Bright Acoustic)
    reverb_room_size: float  # FluidSynth reverb, 0..1
    reverb_level: float  # 0..1
    low_shelf_hz: float
    low_shelf_gain_db: float
    high_shelf_hz: float
    high_shelf_gain_db: float
    peak_hz: float
    peak_gain_db: float
    peak_q: float
    left_weight: float  # mono = w·left + (1 − w)·right
    rms_dbfs: float  # loudness of the result (RMS over the clip, dB re full scale)


def draw_audio_params(
    rng: np.random.Generator, split: str, soundfont: str | Path | None = None
) -> AudioParams:
    """Draw a sound for a performance of ``split`` (the test split's soundfont is never drawn
    for train or validation). ``soundfont`` forces a soundfont: a name of
    :data:`avfusion.config.SOUNDFONTS` or a path to an .sf2/.sf3 file.

    Raises:
        ValueError: unknown split.
        FileNotFoundError: a soundfont that is neither a known name nor a file
            (`avfusion.config.find_soundfont`).
    """
    if split not in SPLIT_SOUNDFONTS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SOUNDFONTS)}")
    if soundfont is None:
        names = SPLIT_SOUNDFONTS[split]
        name = names[int(rng.integers(len(names)))]
        path = SOUNDFONTS[name]
    else:
        name, path = find_soundfont(soundfont)
    mix = float(rng.uniform(0.2, 0.8)) if rng.random() > 0.1 else float(rng.choice([0.0, 1.0]))
    return AudioParams(
        soundfont=name,
        soundfont_path=str(path),
        program=int(rng.choice(PIANO_PROGRAMS, p=[0.75, 0.25])),
        reverb_room_size=float(rng.uniform(0.05, 0.6)),
        reverb_level=float(rng.uniform(0.0, 0.6)),
        low_shelf_hz=float(rng.uniform(80, 300)),
        low_shelf_gain_db=float(rng.uniform(-6, 6)),
        high_shelf_hz=float(rng.uniform(2500, 6000)),
        high_shelf_gain_db=float(rng.uniform(-8, 4)),
        peak_hz=float(rng.uniform(300, 3000)),
        peak_gain_db=float(rng.uniform(-5, 5)),
        peak_q=float(rng.uniform(0.5, 2.0)),
        left_weight=mix,
        rms_dbfs=float(rng.uniform(-32, -16)),
    )


@dataclass(frozen=True)
class SynthEvent:
    """One FluidSynth event: a note on (velocity > 0) or off (velocity 0) or, with
    ``pitch = -1``, a CC64 value, on a MIDI channel at ``time_s`` seconds."""

    time_s: float
    channel: int
    pitch: int
    value: int


def notes_to_events(notes: Notes, channel: int = 0) -> list[SynthEvent]:
    """Note-on, note-off and CC64 events of a performance on one channel."""
    events = [SynthEvent(n.onset_s, channel, n.pitch, n.velocity) for n in notes.notes]
    events += [SynthEvent(n.offset_s, channel, n.pitch, 0) for n in notes.notes]
    events += [SynthEvent(p.time_s, channel, -1, p.value) for p in notes.pedal]
    return events


def fluidsynth_render(
    events: list[SynthEvent],
    n_samples: int,
    soundfont: str | Path,
    programs: dict[int, tuple[int, int]],
    *,
    gain: float = 0.6,
    reverb: tuple[float, float] = (0.2, 0.2),
    sample_rate_hz: int = RENDER_RATE_HZ,
) -> np.ndarray:
    """Play events through FluidSynth, offline, sample-accurately (to its 64-sample blocks).

    Args:
        events: what to play; at equal times note-offs come before pedal and note-ons.
        n_samples: length of the result; later events are dropped.
        soundfont: an .sf2/.sf3 file.
        programs: channel -> (bank, General MIDI program); channel 9 is drums with bank 128.
        gain: FluidSynth master gain.
        reverb: FluidSynth reverb (room size, level), each 0..1.
    Returns:
        int16 array, shape (n_samples, 2), stereo.
    Raises:
        FileNotFoundError / ValueError: the soundfont is missing or cannot be loaded.
    """
    import fluidsynth  # loads libfluidsynth; not at import time

    path = Path(soundfont)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: soundfont not found (run `make setup` for the Debian soundfonts)"
        )
    synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate_hz))
    try:
        sfid = synth.sfload(str(path))
        if sfid < 0:
            raise ValueError(f"{path}: FluidSynth cannot load this soundfont")
        for channel, (bank, program) in programs.items():
            synth.program_select(channel, sfid, bank, program)
        synth.set_reverb(roomsize=reverb[0], damping=0.4, width=0.8, level=reverb[1])
        order = sorted(
            events,
            key=lambda e: (
                round(e.time_s * sample_rate_hz),
                0 if e.value == 0 and e.pitch >= 0 else 1 if e.pitch < 0 else 2,
            ),
        )
        chunks: list[np.ndarray] = []
        done = 0
        for ev in order:
            sample = min(round(ev.time_s * sample_rate_hz), n_samples)
            if sample > done:
                chunks.append(synth.get_samples(sample - done))
                done = sample
            if ev.pitch < 0:
                synth.cc(ev.channel, SUSTAIN_CC, ev.value)
            elif ev.value > 0:
                synth.noteon(ev.channel, ev.pitch, ev.value)
            else:
                synth.noteoff(ev.channel, ev.pitch)
        if n_samples > done:
            chunks.append(synth.get_samples(n_samples - done))
    finally:
        synth.delete()
    return np.concatenate(chunks).reshape(-1, 2)


def fluidsynth_float(
    events: list[SynthEvent],
    n_samples: int,
    soundfont: str | Path,
    programs: dict[int, tuple[int, int]],
    reverb: tuple[float, float],
) -> np.ndarray:
    """:func:`fluidsynth_render` as float32 stereo (n_samples, 2) in [-1, 1), rendered again
    at half the gain whenever FluidSynth's int16 output clipped."""
    gain = 0.6
    while True:
        stereo = fluidsynth_render(events, n_samples, soundfont, programs, gain=gain, reverb=reverb)
        if np.abs(stereo.astype(np.int32)).max() < 32767 or gain < 0.05:
            return stereo.astype(np.float32) / 32768.0
        gain /= 2


def render_audio(notes: Notes, duration_s: float, params: AudioParams) -> np.ndarray:
    """Render a performance to the clean reference signal.

    Args:
        notes: notes and pedal events, seconds.
        duration_s: length of the result; events after it are cut.
        params: the sound (soundfont, EQ, mix, level).
    Returns:
        float32 array, shape (round(duration_s * 16000),), mono, 16 kHz, peak below 1.
    Raises:
        FileNotFoundError / ValueError: the soundfont is missing or unreadable.
    """
    import audiomentations as am

    n_render = round(duration_s * RENDER_RATE_HZ)
    reverb = (params.reverb_room_size, params.reverb_level)
    x = fluidsynth_float(
        notes_to_events(notes), n_render, params.soundfont_path, {0: (0, params.program)}, reverb
    )
    mono = params.left_weight * x[:, 0] + (1 - params.left_weight) * x[:, 1]
    eq = am.Compose(
        [
            am.LowShelfFilter(
                min_center_freq=params.low_shelf_hz, max_center_freq=params.low_shelf_hz,
                min_gain_db=params.low_shelf_gain_db, max_gain_db=params.low_shelf_gain_db,
                min_q=0.7, max_q=0.7, p=1.0,
            ),
            am.HighShelfFilter(
                min_center_freq=params.high_shelf_hz, max_center_freq=params.high_shelf_hz,
                min_gain_db=params.high_shelf_gain_db, max_gain_db=params.high_shelf_gain_db,
                min_q=0.7, max_q=0.7, p=1.0,
            ),
            am.PeakingFilter(
                min_center_freq=params.peak_hz, max_center_freq=params.peak_hz,
                min_gain_db=params.peak_gain_db, max_gain_db=params.peak_gain_db,
                min_q=params.peak_q, max_q=params.peak_q, p=1.0,
            ),
        ]
    )  # fmt: skip
    mono = eq(samples=mono.astype(np.float32), sample_rate=RENDER_RATE_HZ)
    audio = resample_poly(mono, 1, RENDER_RATE_HZ // SAMPLE_RATE_HZ).astype(np.float32)
    n_out = round(duration_s * SAMPLE_RATE_HZ)
    audio = np.pad(audio[:n_out], (0, max(0, n_out - len(audio))))
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms > 0:
        audio *= 10 ** (params.rms_dbfs / 20) / rms
        peak = float(np.abs(audio).max())
        if peak > 0.98:
            audio *= 0.98 / peak
    return audio.astype(np.float32)
