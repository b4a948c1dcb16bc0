"""Named, seeded audio degradations: parse ``"reverb@rt60=0.8+babble@5db"``, draw the random
parts from an explicit ``numpy.random.Generator``, apply deterministically, and keep a record
from which the same degraded clip can be made again.

Each condition is split, as audiomentations splits its transforms, into *draw* (randomness →
a JSON record: noise seed, noise file and offset, impulse response, drop-out segments …) and
*apply* (record → audio, deterministic). Where audiomentations has the transform it does the
work (ApplyImpulseResponse, Mp3Compression, ClippingDistortion, LowPass/HighPass filters);
what it lacks is written here: additive noise at an exact SNR measured over the whole clip,
coloured noise and mains hum, telephone µ-law companding, and drop-outs.

Audio is float32 mono in [-1, 1]. A condition never changes the length, dtype or sample rate.
When additive noise would push the mix beyond [-1, 1] the whole mix is scaled down to a peak of
0.99 (the SNR is unchanged; the gain is recorded as ``normalise_gain``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from avfusion.config import SAMPLE_RATE_HZ

Record = dict[str, Any]


@dataclass(frozen=True)
class ConditionKind:
    """One kind of degradation and its single parameter.

    Attributes:
        name: e.g. ``pink``.
        param: the parameter's name with its unit (``snr_db``, ``rt60_s``, ``bitrate_kbps``,
            ``fraction``, ``cutoff_hz``, ``percent``), or None for a condition without one.
        lo, hi: the accepted range of the parameter (inclusive).
        syntax: how it is written, e.g. ``pink@<snr>db``.
        bank: the noise-bank folder it draws from (``babble``, ``music``, ``rir``) or None.
        description: one line for ``avfusion noise --list``.
    """

    name: str
    param: str | None
    lo: float
    hi: float
    syntax: str
    bank: str | None
    description: str


_ADDITIVE = ("white", "pink", "brown", "babble", "music", "hum")
KINDS: dict[str, ConditionKind] = {
    k.name: k
    for k in [
        ConditionKind("clean", None, 0, 0, "clean", None, "the audio as it is"),
        ConditionKind("silence", None, 0, 0, "silence", None, "no audio at all (all zeros)"),
        ConditionKind(
            "white", "snr_db", -60, 60, "white@<snr>db", None, "white noise at an exact SNR"
        ),
        ConditionKind(
            "pink", "snr_db", -60, 60, "pink@<snr>db", None, "pink (1/f) noise at an exact SNR"
        ),
        ConditionKind(
            "brown", "snr_db", -60, 60, "brown@<snr>db", None, "brown (1/f²) noise at an exact SNR"
        ),
        ConditionKind(
            "babble",
            "snr_db",
            -60,
            60,
            "babble@<snr>db",
            "babble",
            "several voices talking (espeak-ng)",
        ),
        ConditionKind(
            "music",
            "snr_db",
            -60,
            60,
            "music@<snr>db",
            "music",
            "other instruments playing another piece",
        ),
        ConditionKind(
            "hum", "snr_db", -60, 60, "hum@<snr>db", None, "mains hum, 50 or 60 Hz with harmonics"
        ),
        ConditionKind(
            "reverb",
            "rt60_s",
            0.1,
            3.0,
            "reverb@rt60=<seconds>",
            "rir",
            "a room's impulse response",
        ),
        ConditionKind(
            "mp3", "bitrate_kbps", 8, 320, "mp3@<bitrate>kbps", None, "MP3 encode and decode"
        ),
        ConditionKind(
            "clip",
            "fraction",
            0.01,
            0.9,
            "clip@<fraction>",
            None,
            "hard clipping of this share of samples",
        ),
        ConditionKind("telephone", None, 0, 0, "telephone", None, "300-3400 Hz band, 8 kHz µ-law"),
        ConditionKind(
            "lowpass", "cutoff_hz", 100, 7900, "lowpass@<cutoff>hz", None, "low-pass filter"
        ),
        ConditionKind(
            "dropout",
            "percent",
            1,
            95,
            "dropout@<percent>%",
            None,
            "silent gaps of 0.5-2 s, this share",
        ),
    ]
}
"""Every condition avfusion knows, by name."""

_STEP = re.compile(
    r"^(?P<name>[a-z0-9]+)(?:@(?:(?P<key>[a-z0-9]+)=)?(?P<value>[-+]?\d+(?:\.\d+)?)(?P<unit>db|kbps|hz|%|s)?)?$"
)
_UNITS = {
    "snr_db": "db",
    "bitrate_kbps": "kbps",
    "cutoff_hz": "hz",
    "percent": "%",
    "rt60_s": "",
    "fraction": "",
}


@dataclass(frozen=True)
class Condition:
    """One parsed step: a kind and its parameter value (None for clean, silence, telephone)."""

    name: str
    value: float | None = None

    def __str__(self) -> str:
        if self.value is None:
            return self.name
        v = f"{self.value:g}"
        kind = KINDS[self.name]
        if kind.param == "rt60_s":
            return f"{self.name}@rt60={v}"
        return f"{self.name}@{v}{_UNITS[kind.param or '']}"


def accepted() -> str:
    """The accepted syntax, one condition per line, for error messages and ``--list``."""
    lines = []
    for k in KINDS.values():
        rng = f"  {k.param} in [{k.lo:g}, {k.hi:g}]" if k.param else ""
        lines.append(f"  {k.syntax:<24}{k.description}{rng}")
    return "\n".join(lines) + "\n  compose with '+', e.g. reverb@rt60=0.8+babble@5db"


def parse_condition(text: str) -> tuple[Condition, ...]:
    """Parse a condition string such as ``pink@-5db`` or ``reverb@rt60=0.8+babble@5db``.

    Returns:
        The steps, applied left to right.
    Raises:
        ValueError: unknown name, missing/extra parameter, wrong unit or out-of-range value;
            the message lists what is accepted.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty condition; accepted:\n{accepted()}")
    steps = []
    for part in text.strip().lower().split("+"):
        m = _STEP.match(part.strip())
        if not m or m["name"] not in KINDS:
            raise ValueError(f"unknown condition {part!r} in {text!r}; accepted:\n{accepted()}")
        kind = KINDS[m["name"]]
        if kind.param is None:
            if m["value"] is not None:
                raise ValueError(
                    f"{kind.name!r} takes no parameter (got {part!r}); accepted:\n{accepted()}"
                )
            steps.append(Condition(kind.name))
            continue
        if m["value"] is None:
            raise ValueError(
                f"{kind.name!r} needs a parameter, written {kind.syntax}; accepted:\n{accepted()}"
            )
        unit = m["unit"] or ""
        key = m["key"]
        want_unit = _UNITS[kind.param]
        if kind.param == "rt60_s":
            if key != "rt60" or unit not in ("", "s"):
                raise ValueError(f"write reverb as reverb@rt60=<seconds> (got {part!r})")
        elif key is not None or unit != want_unit:
            raise ValueError(
                f"{part!r}: write {kind.syntax} (unit {want_unit or 'none'}); accepted:\n{accepted()}"
            )
        value = float(m["value"])
        if not kind.lo <= value <= kind.hi:
            raise ValueError(
                f"{part!r}: {kind.param} {value:g} is outside [{kind.lo:g}, {kind.hi:g}]; accepted:\n{accepted()}"
            )
        steps.append(Condition(kind.name, value))
    return tuple(steps)


def condition_string(steps: tuple[Condition, ...]) -> str:
    """The canonical text of parsed steps (``parse_condition(condition_string(s)) == s``)."""
    return "+".join(str(s) for s in steps)


# ---------------------------------------------------------------------------------------------
# Signal generators (seeded)


def coloured_noise(colour: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (power ∝ 1/f) or brown (∝ 1/f²) Gaussian noise, shaped in the frequency
    domain; zero mean, unit RMS. Returns float64 (n_samples,)."""
    white = rng.standard_normal(n_samples)
    if colour == "white":
        x = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec *= f ** (-0.5 if colour == "pink" else -1.0)
        spec[0] = 0.0
        x = np.fft.irfft(spec, n_samples)
    x = x - x.mean()
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def mains_hum(
    n_samples: int, mains_hz: float, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ
) -> np.ndarray:
    """Mains hum: the mains frequency and its harmonics up to ~1 kHz (odd ones stronger, as
    from a transformer or ground loop), random phases, slight slow amplitude wobble; unit RMS."""
    t = np.arange(n_samples) / sample_rate_hz
    x = np.zeros(n_samples)
    for k in range(1, int(1000 // mains_hz) + 1):
        amp = (1.0 if k % 2 else 0.4) / k**0.8
        x += amp * np.sin(2 * np.pi * mains_hz * k * t + rng.uniform(0, 2 * np.pi))
    x *= 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, float]:
    """Add ``noise`` scaled so that 10·log10(Σ signal² / Σ (g·noise)²) = ``snr_db`` exactly,
    over the whole clip.

    Returns:
        (mix as float64, noise gain g).
    Raises:
        ValueError: the signal is silent (SNR undefined) or the noise is silent.
    """
    p_sig = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_sig <= 0:
        raise ValueError(
            "the audio is silent: an SNR cannot be set (use 'silence' or add noise to real audio)"
        )
    if p_noise <= 0:
        raise ValueError("the noise is silent: an SNR cannot be set")
    gain = float(np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10))))
    return signal.astype(np.float64) + gain * noise.astype(np.float64), gain


def achieved_snr_db(clean: np.ndarray, degraded: np.ndarray, normalise_gain: float = 1.0) -> float:
    """The SNR of a degraded clip against its clean version (undoing the recorded
    normalisation gain), dB over the whole clip."""
    d = degraded.astype(np.float64) / normalise_gain
    c = clean.astype(np.float64)
    return float(10 * np.log10(np.sum(c**2) / np.sum((d - c) ** 2)))


# ---------------------------------------------------------------------------------------------
# Draw (random → record) and apply (record → audio), per kind


@dataclass(frozen=True)
class _Ctx:
    n_samples: int
    sample_rate_hz: int
    bank: Any  # avfusion.noise.bank.NoiseBank | None
    half: str


def _bank_or_error(ctx: _Ctx, kind: str) -> Any:
    if ctx.bank is None:
        raise ValueError(
            f"condition {kind!r} needs the noise bank; build it with `avfusion noisebank --out data/noise` "
            "and pass its folder (--bank)"
        )
    return ctx.bank


def _draw(cond: Condition, rng: np.random.Generator, ctx: _Ctx) -> Record:
    rec: Record = {"condition": str(cond)}
    name, v = cond.name, cond.value
    if name in ("white", "pink", "brown"):
        rec.update(snr_db=v, noise_seed=int(rng.integers(2**32)))
    elif name == "hum":
        rec.update(
            snr_db=v, mains_hz=float(rng.choice([50.0, 60.0])), noise_seed=int(rng.integers(2**32))
        )
    elif name in ("babble", "music"):
        entry = _bank_or_error(ctx, name).choose(name, ctx.half, rng)
        rec.update(
            snr_db=v,
            file=entry.path,
            offset_s=float(rng.uniform(0, max(entry.duration_s - 1.0, 0.0))),
        )
    elif name == "reverb":
        entry = _bank_or_error(ctx, name).nearest_rir(ctx.half, float(v or 0), rng)
        rec.update(rt60_s=v, file=entry.path, rt60_measured_s=entry.rt60_s)
    elif name == "mp3":
        rec.update(bitrate_kbps=int(v or 0))
    elif name == "clip":
        rec.update(fraction=v)
    elif name == "lowpass":
        rec.update(cutoff_hz=v)
    elif name == "dropout":
        rec.update(
            percent=v,
            segments_s=_draw_dropouts(float(v or 0), ctx.n_samples / ctx.sample_rate_hz, rng),
        )
    return rec


def _draw_dropouts(
    percent: float, duration_s: float, rng: np.random.Generator
) -> list[list[float]]:
    """Non-overlapping silent gaps of 0.5-2 s (shorter in a short clip) covering ``percent``
    of the clip (to within one gap's rounding)."""
    target = duration_s * percent / 100
    max_len = min(2.0, max(0.05, target))
    segs: list[list[float]] = []
    covered = 0.0
    for _ in range(1000):
        if covered >= target - 1e-9:
            break
        length = min(float(rng.uniform(min(0.5, max_len), max_len)), target - covered)
        start = float(rng.uniform(0, duration_s - length))
        if any(start < b and start + length > a for a, b in segs):
            continue
        segs.append([round(start, 6), round(start + length, 6)])
        covered += length
    return sorted(segs)


def _apply(x: np.ndarray, rec: Record, ctx: _Ctx) -> np.ndarray:
    import audiomentations as am  # heavy import, not at module import time

    name = rec["condition"].split("@")[0]
    sr = ctx.sample_rate_hz
    n = len(x)
    if name == "clean":
        return x
    if name == "silence":
        return np.zeros_like(x)
    if name in _ADDITIVE:
        if name in ("white", "pink", "brown"):
            noise = coloured_noise(name, n, np.random.default_rng(rec["noise_seed"]))
        elif name == "hum":
            noise = mains_hum(n, rec["mains_hz"], np.random.default_rng(rec["noise_seed"]), sr)
        else:
            noise = _bank_or_error(ctx, name).read_looped(rec["file"], rec["offset_s"], n, sr)
        mix, gain = mix_at_snr(x, noise, rec["snr_db"])
        rec["noise_gain"] = gain
        return mix
    if name == "reverb":
        ir = _bank_or_error(ctx, name).path(rec["file"])
        t = am.ApplyImpulseResponse(ir_path=str(ir), p=1.0, leave_length_unchanged=True)
        return t(samples=x.astype(np.float32), sample_rate=sr).astype(np.float64)
    if name == "mp3":
        b = rec["bitrate_kbps"]
        t = am.Mp3Compression(min_bitrate=b, max_bitrate=b, p=1.0)
        y = t(samples=x.astype(np.float32), sample_rate=sr).astype(np.float64)
        return np.pad(y[:n], (0, max(0, n - len(y))))
    if name == "clip":
        pct = round(rec["fraction"] * 100)
        t = am.ClippingDistortion(min_percentile_threshold=pct, max_percentile_threshold=pct, p=1.0)
        return t(samples=x.astype(np.float32), sample_rate=sr).astype(np.float64)
    if name == "lowpass":
        f = rec["cutoff_hz"]
        t = am.LowPassFilter(
            min_cutoff_freq=f, max_cutoff_freq=f, min_rolloff=24, max_rolloff=24, p=1.0
        )
        return t(samples=x.astype(np.float32), sample_rate=sr).astype(np.float64)
    if name == "telephone":
        return _telephone(x, sr)
    if name == "dropout":
        y = x.copy()
        for a, b in rec["segments_s"]:
            y[round(a * sr) : round(b * sr)] = 0.0
        return y
    raise AssertionError(f"no apply for {name}")


def _telephone(x: np.ndarray, sr: int) -> np.ndarray:
    """A narrow-band telephone line: 300-3400 Hz (audiomentations high- and low-pass), 8 kHz
    sampling, 8-bit µ-law (G.711) companding, back to ``sr``."""
    import audiomentations as am

    band = am.Compose(
        [
            am.HighPassFilter(
                min_cutoff_freq=300, max_cutoff_freq=300, min_rolloff=24, max_rolloff=24, p=1.0
            ),
            am.LowPassFilter(
                min_cutoff_freq=3400, max_cutoff_freq=3400, min_rolloff=24, max_rolloff=24, p=1.0
            ),
        ]
    )
    y = band(samples=x.astype(np.float32), sample_rate=sr).astype(np.float64)
    narrow = resample_poly(y, 8000, sr) if sr != 8000 else y
    peak = max(float(np.abs(narrow).max()), 1e-12)
    u = narrow / peak
    mu = 255.0
    comp = np.sign(u) * np.log1p(mu * np.abs(u)) / np.log1p(mu)
    comp = np.round(comp * 127) / 127
    u = np.sign(comp) * ((1 + mu) ** np.abs(comp) - 1) / mu
    back = resample_poly(u * peak, sr, 8000) if sr != 8000 else u * peak
    return np.pad(back[: len(x)], (0, max(0, len(x) - len(back))))


@dataclass(frozen=True)
class Degraded:
    """A degraded clip and the record that reproduces it (see :func:`replay`)."""

    audio: np.ndarray
    record: list[Record]


def degrade(
    audio: np.ndarray,
    condition: str | tuple[Condition, ...],
    rng: np.random.Generator,
    *,
    bank: Any = None,
    half: str = "test",
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> Degraded:
    """Apply a condition (one step or a '+' composition) to a clip.

    Args:
        audio: float32 (n_samples,), mono, in [-1, 1].
        condition: text such as ``"music@0db"`` or parsed steps.
        rng: the only source of randomness; every draw is kept in the record.
        bank: a :class:`avfusion.noise.bank.NoiseBank` for babble, music and reverb.
        half: which half of the bank to draw from: ``train`` for training, ``test`` for the
            benchmark (its voices, texts, pieces and rooms are never used in training).
        sample_rate_hz: of ``audio``.
    Returns:
        :class:`Degraded`: float32 audio of the same shape in [-1, 1], and the record.
    Raises:
        ValueError: bad condition text, non-mono or non-finite audio, a bank-based condition
            without a bank, or an SNR asked of silent audio.
    """
    steps = parse_condition(condition) if isinstance(condition, str) else condition
    ctx = _check(audio, bank, half, sample_rate_hz)
    records = [_draw(step, rng, ctx) for step in steps]
    return replay(audio, records, bank=bank, half=half, sample_rate_hz=sample_rate_hz)


def replay(
    audio: np.ndarray,
    records: list[Record],
    *,
    bank: Any = None,
    half: str = "test",
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> Degraded:
    """Apply recorded draws again: the same clip and records give the same output, bit for bit.

    Raises:
        ValueError: as :func:`degrade`.
    """
    ctx = _check(audio, bank, half, sample_rate_hz)
    x = audio.astype(np.float64)
    out_records = []
    for rec in records:
        rec = dict(rec)
        x = _apply(x, rec, ctx)
        peak = float(np.abs(x).max()) if len(x) else 0.0
        if peak > 0.99:
            rec["normalise_gain"] = 0.99 / peak
            x = x * rec["normalise_gain"]
        out_records.append(rec)
    y = np.clip(np.nan_to_num(x), -1.0, 1.0).astype(np.float32)
    return Degraded(y, out_records)


def _check(audio: np.ndarray, bank: Any, half: str, sample_rate_hz: int) -> _Ctx:
    if not isinstance(audio, np.ndarray) or audio.ndim != 1:
        raise ValueError(
            f"audio must be a mono 1-D array, got shape {getattr(audio, 'shape', None)}"
        )
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    if half not in ("train", "test"):
        raise ValueError(f"half must be 'train' or 'test', got {half!r}")
    return _Ctx(len(audio), sample_rate_hz, bank, half)
