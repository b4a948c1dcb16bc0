"""Audio degradation: named, seeded conditions (:mod:`.conditions`), the offline noise bank
(:mod:`.bank`) and the training sampler (:mod:`.sampler`)."""

from avfusion.noise.bank import NoiseBank, build_noise_bank
from avfusion.noise.conditions import KINDS, Condition, Degraded, degrade, parse_condition, replay
from avfusion.noise.sampler import DegradationSampler, SamplerConfig

__all__ = [
    "KINDS",
    "Condition",
    "DegradationSampler",
    "Degraded",
    "NoiseBank",
    "SamplerConfig",
    "build_noise_bank",
    "degrade",
    "parse_condition",
    "replay",
]
