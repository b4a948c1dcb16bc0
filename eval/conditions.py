"""The conditions of a benchmark suite: audio conditions of :mod:`avfusion.noise` and video
conditions (``video:lowlight@0.3``, ``video:blur@3px``, ``video:drop@20%``, ...), alone or
joined with ``+``, and the grids (noise × SNR) that expand to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avfusion.noise.video import (  # noqa: F401  (re-exported: the suite's video conditions)
    LOWLIGHT_NOISE_SD,
    OCCLUSION_TIME_SHARE,
    VIDEO_KINDS,
    VideoKind,
    degrade_video,
    parse_video_step,
    split_condition,
    video_accepted,
)

GRID_KEYS = frozenset({"noise", "snr_db"})
"""Keys of a grid entry in a suite's ``conditions``."""


def noise_half(split: str) -> str:
    """The noise bank's half that degrades a split: ``test`` for the test split only, ``train``
    for any other, so that a choice made on validation never hears the test noise."""
    return "test" if split == "test" else "train"


class SuiteError(ValueError):
    """A suite file (or a command-line override) is malformed; the message names the file and
    the entry."""


# --------------------------------------------------------------------------------------------
# Conditions of a suite


@dataclass(frozen=True, order=True)
class BenchCondition:
    """One benchmark condition, split into what it does to each modality.

    Attributes:
        audio: canonical avfusion.noise text (e.g. ``"pink@-10db"``), or None (audio untouched).
        video: canonical ``video:…`` text, or None (frames untouched).
    """

    audio: str | None = None
    video: str | None = None

    @property
    def text(self) -> str:
        """The condition's name in folders, CSV and reports (``clean`` when nothing is done)."""
        return "+".join(p for p in (self.audio, self.video) if p) or "clean"

    def seen_by(self, needs: frozenset[str]) -> BenchCondition:
        """What a system that reads ``needs`` sees of this condition."""
        return BenchCondition(
            self.audio if "audio" in needs else None, self.video if "video" in needs else None
        )


def parse_bench_condition(text: str) -> BenchCondition:
    """Parse a condition: avfusion.noise steps and ``video:…`` steps joined by ``+``.

    Raises:
        ValueError: any step unknown or malformed (the message lists what is accepted).
    """
    return BenchCondition(*split_condition(text))


def expand_conditions(entries: Any, where: str) -> list[BenchCondition]:
    """The conditions of a suite's ``conditions`` list, grids expanded, in order.

    Args:
        entries: a list of condition strings and grids ``{noise: [...], snr_db: [...]}``
            (expanded noise-major: ``white@20db, white@10db, …, pink@20db, …``).
        where: the suite file, for messages.
    Raises:
        SuiteError: not a list, an unknown condition, a malformed grid, or a duplicate.
    """
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{where}: 'conditions' must be a non-empty list")
    out: list[BenchCondition] = []
    for i, entry in enumerate(entries):
        texts: list[str]
        if isinstance(entry, dict):
            if set(entry) != GRID_KEYS:
                raise SuiteError(
                    f"{where}: conditions[{i}] {entry!r}: a grid has exactly the keys "
                    f"'noise' (names) and 'snr_db' (numbers)"
                )
            noises = entry["noise"] if isinstance(entry["noise"], list) else [entry["noise"]]
            snrs = entry["snr_db"] if isinstance(entry["snr_db"], list) else [entry["snr_db"]]
            if (
                not noises
                or not snrs
                or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in snrs)
            ):
                raise SuiteError(
                    f"{where}: conditions[{i}] {entry!r}: 'noise' and 'snr_db' must be "
                    "non-empty lists (of names and of numbers in dB)"
                )
            texts = [f"{n}@{float(s):g}db" for n in noises for s in snrs]
        elif isinstance(entry, str):
            texts = [entry]
        else:
            raise SuiteError(f"{where}: conditions[{i}] {entry!r}: expected a string or a grid")
        for t in texts:
            try:
                cond = parse_bench_condition(t)
            except ValueError as exc:
                raise SuiteError(f"{where}: conditions[{i}]: bad condition {t!r}: {exc}") from exc
            if cond in out:
                raise SuiteError(f"{where}: conditions[{i}]: {cond.text!r} is listed twice")
            out.append(cond)
    return out
