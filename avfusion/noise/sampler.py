"""The training degradation sampler: heavy, random compositions of the named conditions,
weighted toward where audio-only transcription breaks (SNR below −5 dB, other instruments,
drop-outs, no audio at all), so that the model learns to lean on the video.

The strongest published audio-only model holds up to about −5 dB of stationary noise and breaks
below −10 dB, under pitched interference and under drop-outs (shared/ANCHORS.md); the default
weights put most of the mass there. The probabilities live in the training config
(``degradation:`` section, read by :meth:`SamplerConfig.from_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from avfusion.config import check_known_keys
from avfusion.noise.conditions import KINDS, Condition, Degraded, condition_string, degrade

_SNR_KINDS = ("white", "pink", "brown", "babble", "music", "hum")


@dataclass(frozen=True)
class SamplerConfig:
    """Probabilities of the training sampler.

    Attributes:
        p_clean: share of windows left clean.
        p_no_audio: share with no usable audio: half silence, half noise alone (the piano
            80 dB below it).
        max_steps: a degraded window gets 1..max_steps conditions (uniform).
        weights: relative weight of each condition kind when a step is drawn.
        snr_db: range of SNRs for additive noise (dB).
        p_low_snr: share of SNRs drawn from [snr_db[0], low_snr_db] rather than the whole range.
        low_snr_db: upper end of the low-SNR band.
        rt60_s, mp3_kbps, clip_fraction, lowpass_hz, dropout_percent: parameter ranges.
    """

    p_clean: float = 0.08
    p_no_audio: float = 0.10
    max_steps: int = 3
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "white": 1.0,
            "pink": 1.0,
            "brown": 0.5,
            "babble": 1.5,
            "music": 3.0,
            "hum": 0.3,
            "reverb": 1.0,
            "mp3": 0.6,
            "clip": 0.5,
            "telephone": 0.4,
            "lowpass": 0.4,
            "dropout": 2.5,
        }
    )
    snr_db: tuple[float, float] = (-20.0, 30.0)
    p_low_snr: float = 0.6
    low_snr_db: float = -5.0
    rt60_s: tuple[float, float] = (0.2, 2.5)
    mp3_kbps: tuple[int, ...] = (8, 16, 24, 32, 48, 64)
    clip_fraction: tuple[float, float] = (0.05, 0.5)
    lowpass_hz: tuple[float, float] = (500.0, 4000.0)
    dropout_percent: tuple[float, float] = (10.0, 60.0)

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(KINDS)
        if unknown:
            raise ValueError(
                f"degradation weights name unknown conditions {sorted(unknown)}; known: {sorted(KINDS)}"
            )
        if not 0 <= self.p_clean + self.p_no_audio <= 1:
            raise ValueError("degradation: p_clean + p_no_audio must lie in [0, 1]")
        if self.max_steps < 1 or not any(w > 0 for w in self.weights.values()):
            raise ValueError("degradation: max_steps must be >= 1 and some weight positive")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplerConfig:
        """From a config section (YAML/JSON); unknown keys are an error that lists the known."""
        d = dict(d or {})
        check_known_keys(cls, d, "degradation")
        for k in ("snr_db", "rt60_s", "mp3_kbps", "clip_fraction", "lowpass_hz", "dropout_percent"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-ready dict (the ``degradation:`` section of a config)."""
        return asdict(self)


class DegradationSampler:
    """Draws a condition for each training window and applies it from the bank's train half.

    Example::

        sampler = DegradationSampler(SamplerConfig(), bank=NoiseBank("data/noise"))
        out = sampler(audio, rng)  # out.audio, out.record (the drawn condition inside)
    """

    def __init__(self, config: SamplerConfig | None = None, bank: Any = None):
        self.config = config or SamplerConfig()
        self.bank = bank
        names = [k for k, w in self.config.weights.items() if w > 0]
        if bank is None:  # without a bank, only the conditions that need none
            names = [k for k in names if KINDS[k].bank is None]
        self._names = names
        w = np.array([self.config.weights[k] for k in names], dtype=np.float64)
        self._p = w / w.sum()

    def _snr(self, rng: np.random.Generator) -> float:
        lo, hi = self.config.snr_db
        if rng.random() < self.config.p_low_snr:
            hi = min(hi, self.config.low_snr_db)
        return round(float(rng.uniform(lo, hi)), 2)

    def _step(self, name: str, rng: np.random.Generator) -> Condition:
        c = self.config
        if name in _SNR_KINDS:
            return Condition(name, self._snr(rng))
        value: float | None = {
            "reverb": lambda: round(float(rng.uniform(*c.rt60_s)), 2),
            "mp3": lambda: float(rng.choice(c.mp3_kbps)),
            "clip": lambda: round(float(rng.uniform(*c.clip_fraction)), 3),
            "lowpass": lambda: round(float(rng.uniform(*c.lowpass_hz)), 1),
            "dropout": lambda: round(float(rng.uniform(*c.dropout_percent)), 1),
        }.get(name, lambda: None)()
        return Condition(name, value)

    def sample_condition(self, rng: np.random.Generator) -> str:
        """A condition string such as ``"reverb@rt60=0.9+music@-7.5db"``."""
        u = rng.random()
        if u < self.config.p_clean:
            return "clean"
        if u < self.config.p_clean + self.config.p_no_audio:
            return (
                "silence"
                if rng.random() < 0.5
                else f"{rng.choice(['white', 'pink', 'brown'])}@-60db"
            )
        n_steps = int(rng.integers(1, self.config.max_steps + 1))
        idx = rng.choice(
            len(self._names), size=min(n_steps, len(self._names)), replace=False, p=self._p
        )
        names = [self._names[int(i)] for i in idx]
        # Order as a signal chain: room, then additive sources, then the channel (codec, filters, clipping, drop-outs).
        order = ["reverb", *_SNR_KINDS, "lowpass", "telephone", "mp3", "clip", "dropout"]
        names.sort(key=order.index)
        return condition_string(tuple(self._step(n, rng) for n in names))

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> Degraded:
        """Degrade one window (float32 mono 16 kHz). Silent windows get only non-additive
        conditions' effect (an SNR cannot be set against silence: they are returned as drawn
        by 'silence' or pure noise)."""
        cond = self.sample_condition(rng)
        if not np.any(audio):  # a silent window: additive noise at an SNR is undefined
            cond = "silence"
        return degrade(audio, cond, rng, bank=self.bank, half="train")
