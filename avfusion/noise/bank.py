"""The noise bank, built offline with no download: coloured noise, mains hum, babble from
espeak-ng voices, music from corpus pieces played by non-piano General MIDI instruments, and
room impulse responses (pyroomacoustics, image-source + ray-tracing hybrid).

The bank has a ``train`` and a ``test`` half that share no source: the test half's voices,
texts, music pieces and rooms are never used in training, so that a benchmark does not reward
memorised noise. Music for the train half comes from train-split compositions of the corpus
(avfusion.synth.scores.piece_split), for the test half from validation-split compositions, so
that a test performance is never mixed with its own piece.

```
<root>/manifest.json                    entries: path, kind, half, duration_s, sha256, source
<root>/<kind>/<half>/<name>.flac        16 kHz mono
```
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from avfusion.config import SAMPLE_RATE_HZ, SOUNDFONTS
from avfusion.fileio import atomic_path, sha256_file
from avfusion.noise.conditions import coloured_noise, mains_hum

HALVES = ("train", "test")
BANK_KINDS = ("coloured", "hum", "babble", "music", "rir")

# espeak-ng voices (language + voice variant) and texts, disjoint between the halves.
VOICES = {
    "train": [
        f"{lang}+{var}"
        for lang in ("en-gb", "de", "es", "it", "pl", "sv", "pt", "nl")
        for var in ("m1", "m3", "f1", "f3")
    ],
    "test": [
        f"{lang}+{var}"
        for lang in ("en-us", "fr-fr", "ru", "cs", "fi", "da")
        for var in ("m2", "m4", "f2", "f4")
    ],
}
TEXTS = {
    "train": [
        "The train was late again this morning, so we waited on the cold platform and talked about the weather.",
        "Please remember to bring the blue folder to the meeting, the one with the budget for next year.",
        "She planted tomatoes, beans and a row of sunflowers along the fence behind the old garage.",
        "If you turn left after the bakery you will see the library on the corner, opposite the bank.",
        "The children built a tall tower of wooden blocks and laughed when it finally fell over.",
        "We should have booked the tickets earlier, because now only the seats at the very back are left.",
        "He repaired the bicycle with a borrowed wrench and rode it all the way to the river.",
        "The soup needs more salt, a little pepper, and perhaps a handful of fresh parsley at the end.",
    ],
    "test": [
        "Our neighbours are painting their kitchen yellow, and the smell has reached every room of the house.",
        "The museum opens at ten on weekdays and stays open until eight on Thursday evenings.",
        "I lost my umbrella on the bus and had to run home through the rain without it.",
        "The committee will announce its decision after lunch, once everyone has read the report.",
        "A small dog barked at the postman every single day, but never at anyone else in the street.",
        "They drove along the coast for hours, stopping only for coffee and to watch the waves.",
        "The new software update changed all the menus, and nobody can find the print button now.",
        "My grandmother kept every letter she ever received in a wooden box under her bed.",
    ],
}
INTERFERING_PROGRAMS = {  # General MIDI programs: strings, guitars, organs, brass, winds, choir
    "violin": 40, "cello": 42, "strings": 48, "nylon_guitar": 24, "steel_guitar": 25,
    "church_organ": 19, "rock_organ": 18, "trumpet": 56, "brass": 61, "french_horn": 60,
    "flute": 73, "clarinet": 71, "choir": 52,
}  # fmt: skip
MUSIC_SOUNDFONTS = {"train": ("fluidr3", "timgm6mb"), "test": ("musescore",)}


@dataclass(frozen=True)
class BankSize:
    """How much of each kind per half (files, seconds each)."""

    n_babble: int = 10
    n_music: int = 10
    n_rir: int = 16
    clip_s: float = 30.0
    music_soundfonts: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(MUSIC_SOUNDFONTS)
    )


BANK_SIZES = {
    "full": BankSize(),
    "tiny": BankSize(
        n_babble=1,
        n_music=1,
        n_rir=3,
        clip_s=5.0,
        music_soundfonts={"train": ("timgm6mb",), "test": ("timgm6mb",)},
    ),
}
"""``full`` for training and benchmarks; ``tiny`` for tests (seconds to build)."""


@dataclass(frozen=True)
class BankEntry:
    """One file of the bank. ``path`` is relative to the bank's root; ``source`` says what it
    was made from (voices and texts, piece and instruments, room geometry, seed)."""

    path: str
    kind: str
    half: str
    duration_s: float
    sha256: str
    source: dict[str, Any]
    rt60_s: float | None = None


class NoiseBank:
    """A built noise bank, read from its manifest.

    Raises:
        FileNotFoundError: no manifest.json under ``root`` (says how to build one).
        ValueError: the manifest is unreadable.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{manifest}: no noise bank here; build one with `avfusion noisebank --out {self.root}`"
            )
        try:
            data = json.loads(manifest.read_text())
            self.entries = [BankEntry(**e) for e in data["entries"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{manifest}: unreadable noise-bank manifest ({exc})") from exc

    def of(self, kind: str, half: str) -> list[BankEntry]:
        """Entries of one kind in one half, in manifest order."""
        return [e for e in self.entries if e.kind == kind and e.half == half]

    def choose(self, kind: str, half: str, rng: np.random.Generator) -> BankEntry:
        """A random entry. Raises ValueError if the half has none of that kind."""
        pool = self.of(kind, half)
        if not pool:
            raise ValueError(f"{self.root}: the noise bank has no {kind!r} in its {half} half")
        return pool[int(rng.integers(len(pool)))]

    def nearest_rir(self, half: str, rt60_s: float, rng: np.random.Generator) -> BankEntry:
        """The impulse response whose measured RT60 is nearest ``rt60_s`` (ties: random)."""
        pool = self.of("rir", half)
        if not pool:
            raise ValueError(
                f"{self.root}: the noise bank has no room impulse responses in its {half} half"
            )
        dist = np.array([abs((e.rt60_s or 0.0) - rt60_s) for e in pool])
        best = np.flatnonzero(dist <= dist.min() + 1e-9)
        return pool[int(best[int(rng.integers(len(best)))])]

    def path(self, rel: str) -> Path:
        """Absolute path of an entry. Raises FileNotFoundError if it is missing."""
        p = self.root / rel
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing from the noise bank (rebuild it)")
        return p

    def read_looped(
        self, rel: str, offset_s: float, n_samples: int, sample_rate_hz: int = SAMPLE_RATE_HZ
    ) -> np.ndarray:
        """``n_samples`` of an entry from ``offset_s`` on, looped if the file is shorter."""
        x = _read_mono(str(self.path(rel)), sample_rate_hz)
        start = round(offset_s * sample_rate_hz) % max(len(x), 1)
        reps = int(np.ceil((start + n_samples) / len(x)))
        return np.tile(x, reps)[start : start + n_samples]


@lru_cache(maxsize=64)
def _read_mono(path: str, sample_rate_hz: int) -> np.ndarray:
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != sample_rate_hz:
        x = resample_poly(x, sample_rate_hz, sr)
    x.setflags(write=False)
    return x


# ---------------------------------------------------------------------------------------------
# Building


def _normalise(x: np.ndarray, rms_dbfs: float = -20.0) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2)))
    y = x * (10 ** (rms_dbfs / 20) / max(rms, 1e-12))
    peak = float(np.abs(y).max())
    return (y * (0.99 / peak) if peak > 0.99 else y).astype(np.float32)


def _speak(voice: str, text: str, speed_wpm: int, pitch: int) -> np.ndarray:
    """espeak-ng speech, 16 kHz mono float64."""
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        cmd = [
            "espeak-ng",
            "-v",
            voice,
            "-s",
            str(speed_wpm),
            "-p",
            str(pitch),
            "-w",
            str(wav),
            text,
        ]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                "espeak-ng not found: run `make setup` (Debian package espeak-ng)"
            ) from exc
        x, sr = sf.read(wav, dtype="float64")
    return resample_poly(x, SAMPLE_RATE_HZ, sr) if sr != SAMPLE_RATE_HZ else x


def make_babble(half: str, rng: np.random.Generator, duration_s: float) -> tuple[np.ndarray, dict]:
    """4-6 voices of one half, each reading texts of that half, overlapping, at levels ±6 dB."""
    n = int(duration_s * SAMPLE_RATE_HZ)
    k = int(rng.integers(4, 7))
    voices = [str(v) for v in rng.choice(VOICES[half], size=k, replace=False)]
    mix = np.zeros(n)
    texts_used = []
    for voice in voices:
        track = np.zeros(0)
        while len(track) < n:
            t = int(rng.integers(len(TEXTS[half])))
            texts_used.append(t)
            speech = _speak(
                voice, TEXTS[half][t], int(rng.integers(130, 200)), int(rng.integers(25, 75))
            )
            gap = np.zeros(int(rng.uniform(0.1, 0.8) * SAMPLE_RATE_HZ))
            track = np.concatenate([track, speech, gap])
        start = int(rng.integers(0, len(track) - n + 1))
        seg = track[start : start + n]
        mix += seg / max(float(np.sqrt(np.mean(seg**2))), 1e-9) * 10 ** (rng.uniform(-6, 6) / 20)
    return _normalise(mix), {"voices": voices, "texts": sorted({f"{half}:{t}" for t in texts_used})}


def make_music(
    half: str, rng: np.random.Generator, duration_s: float, soundfonts: tuple[str, ...]
) -> tuple[np.ndarray, dict]:
    """A corpus piece played by 1-4 non-piano instruments (one per part), sometimes with a
    drum kit; train half from train-split pieces, test half from validation-split pieces."""
    from avfusion.synth.render_audio import RENDER_RATE_HZ, SynthEvent, fluidsynth_float
    from avfusion.synth.scores import list_corpus_pieces, load_corpus_score, piece_split

    want = "train" if half == "train" else "validation"
    pieces = [p for p in list_corpus_pieces() if piece_split(p) == want]
    for _ in range(20):
        piece = pieces[int(rng.integers(len(pieces)))]
        try:
            score = load_corpus_score(piece)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"no readable corpus piece for the {half} half of the music bank")
    qpm = float(rng.uniform(70, 140))
    parts = sorted({n.part for n in score.notes})
    names = list(INTERFERING_PROGRAMS)
    chosen = [names[int(rng.integers(len(names)))] for _ in parts]
    programs = {
        ch: (0, INTERFERING_PROGRAMS[chosen[ch % len(chosen)]]) for ch in range(min(len(parts), 8))
    }
    events: list[SynthEvent] = []
    for n in score.notes:
        ch = parts.index(n.part) % 8
        on = n.onset_q * 60 / qpm + rng.normal(0, 0.008)
        off = on + max(n.duration_q * 60 / qpm * 0.95, 0.05)
        if on >= duration_s:
            continue
        vel = int(np.clip(rng.normal(80, 12), 30, 120))
        events += [SynthEvent(max(on, 0.0), ch, n.pitch, vel), SynthEvent(off, ch, n.pitch, 0)]
    drums = bool(rng.random() < 0.4)
    if drums:
        programs[9] = (128, 0)
        beat = 60 / qpm
        for i in range(int(duration_s / beat * 2)):
            t = i * beat / 2
            hits = [42] + ([36] if i % 4 == 0 else []) + ([38] if i % 4 == 2 else [])
            events += [SynthEvent(t, 9, h, int(rng.integers(60, 110))) for h in hits]
            events += [SynthEvent(t + 0.1, 9, h, 0) for h in hits]
    sf_name = soundfonts[int(rng.integers(len(soundfonts)))]
    stereo = fluidsynth_float(
        events, int(duration_s * RENDER_RATE_HZ), SOUNDFONTS[sf_name], programs, (0.3, 0.3)
    )
    mono = resample_poly(
        stereo.mean(axis=1).astype(np.float64), 1, RENDER_RATE_HZ // SAMPLE_RATE_HZ
    )
    if not np.abs(mono).max() > 0:
        raise ValueError(f"music:{piece}: rendered silence")
    source = {
        "piece": piece,
        "instruments": chosen[: len(programs)],
        "drums": drums,
        "tempo_qpm": round(qpm, 2),
        "soundfont": sf_name,
    }
    return _normalise(mono), source


def make_rir(
    half: str, rng: np.random.Generator, rt60_target_s: float
) -> tuple[np.ndarray, dict, float]:
    """A shoebox room's impulse response (pyroomacoustics: image sources up to order 3 plus ray
    tracing for the tail, air absorption), absorption set by Sabine's formula for the target
    RT60. Train rooms are 3-9 m long, test rooms 9-16 m (disjoint geometry).
    Returns (rir normalised to peak 1, room description, measured RT60 in s)."""
    import pyroomacoustics as pra

    lo, hi = (3.0, 9.0) if half == "train" else (9.0, 16.0)
    dims = [
        float(rng.uniform(lo, hi)),
        float(rng.uniform(lo * 0.7, hi * 0.8)),
        float(rng.uniform(2.5, 4.5)),
    ]
    e_abs, _ = pra.inverse_sabine(rt60_target_s, dims)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE_HZ, materials=pra.Material(float(min(e_abs, 0.99))), max_order=3,
                       ray_tracing=True, air_absorption=True)  # fmt: skip
    room.set_ray_tracing(receiver_radius=0.5, n_rays=3000, energy_thres=1e-5)
    src = [float(rng.uniform(0.5, d - 0.5)) for d in dims]
    mic = [float(rng.uniform(0.5, d - 0.5)) for d in dims]
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    measured = float(room.measure_rt60()[0][0])
    room_desc = {"dims_m": [round(d, 3) for d in dims], "source_m": [round(v, 3) for v in src],
                 "mic_m": [round(v, 3) for v in mic], "rt60_target_s": round(rt60_target_s, 3)}  # fmt: skip
    return (rir / max(float(np.abs(rir).max()), 1e-12)).astype(np.float32), room_desc, measured


def build_noise_bank(
    out: str | Path, *, seed: int = 0, size: str = "full", progress: bool = True
) -> Path:
    """Make the noise bank under ``out`` and write ``manifest.json`` (atomically, last).

    Files already present from an interrupted build with the same seed and size are kept.

    Args:
        out: bank folder (created).
        seed: same seed, same bank.
        size: ``full`` or ``tiny`` (:data:`BANK_SIZES`).
    Returns:
        The manifest path.
    Raises:
        ValueError: unknown size. FileNotFoundError: espeak-ng or a soundfont is missing.
    """
    from tqdm import tqdm

    if size not in BANK_SIZES:
        raise ValueError(f"unknown bank size {size!r}; expected one of {sorted(BANK_SIZES)}")
    cfg = BANK_SIZES[size]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, str, int]] = []
    for h in HALVES:
        jobs += [("coloured", h, i) for i in range(3)] + [("hum", h, i) for i in range(2)]
        jobs += [("babble", h, i) for i in range(cfg.n_babble)] + [
            ("music", h, i) for i in range(cfg.n_music)
        ]
        jobs += [("rir", h, i) for i in range(cfg.n_rir)]
    entries: list[BankEntry] = []
    t0 = time.perf_counter()
    for kind, half, i in tqdm(jobs, desc="noisebank", unit="file", disable=not progress):
        rng = np.random.default_rng([seed, BANK_KINDS.index(kind), HALVES.index(half), i])
        rel = f"{kind}/{half}/{kind}{i:03d}.flac"
        rt60: float | None = None
        source: dict[str, Any]
        if kind == "coloured":
            colour = ("white", "pink", "brown")[i]
            x = _normalise(coloured_noise(colour, int(cfg.clip_s * SAMPLE_RATE_HZ), rng))
            rel, source = f"{kind}/{half}/{colour}.flac", {"colour": colour}
        elif kind == "hum":
            mains = (50.0, 60.0)[i]
            x = _normalise(mains_hum(int(cfg.clip_s * SAMPLE_RATE_HZ), mains, rng))
            rel, source = f"{kind}/{half}/hum{int(mains)}hz.flac", {"mains_hz": mains}
        elif kind == "babble":
            x, source = make_babble(half, rng, cfg.clip_s)
        elif kind == "music":
            x, source = make_music(half, rng, cfg.clip_s, cfg.music_soundfonts[half])
        else:
            target = float(np.interp(i, [0, max(cfg.n_rir - 1, 1)], [0.2, 2.5]))
            x, source, rt60 = make_rir(half, rng, target)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            sf.write(tmp, x, SAMPLE_RATE_HZ, format="FLAC", subtype="PCM_24")
        entries.append(
            BankEntry(
                rel, kind, half, round(len(x) / SAMPLE_RATE_HZ, 4), sha256_file(path), source, rt60
            )
        )
    manifest = root / "manifest.json"
    record = {"seed": seed, "size": size, "build_s": round(time.perf_counter() - t0, 1),
              "entries": [asdict(e) for e in entries]}  # fmt: skip
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return manifest
