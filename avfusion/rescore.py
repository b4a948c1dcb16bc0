"""Note-candidate rescoring: which onset peaks are notes, judged from the posteriors around them.

The network scores each key on its own (its audio tokens see a few harmonics of the key, no
more), so on clean piano most of a small model's false positives are overtones of notes it has
found: a peak an octave or a twelfth above a played note. Whether a peak is such an overtone is
visible in the posteriors around it — how strong the keys 12, 19, 24, … semitones below fire at
the same time, how long the key's frame posterior lasts, how busy the block is. A small
classifier over these features, trained on the posteriors of the *training* split, gives each
onset peak the probability that it is a true onset; the adaptive decoder then keeps the top-n
peaks of each block by the plug-in rule for the F-measure (`avfusion.decoding`), as it does
with the isotonic calibration of the peak's posterior alone.

The posteriors cannot tell an overtone from a note played an octave above a played note: both
are a peak over a strong sub-harmonic. The sound can: a played octave adds energy of its own,
so the key's log-CQT rises at the onset as much as the note's below, an overtone's by what
the lower string's partial gives. A rescorer fitted on `SPECTRAL_FEATURE_SET` also reads the
model's log-CQT per key around each candidate (`spectral_features`; the posteriors'
``key_cqt``).

This is the supervised note-tracking stage of Valero-Mas, Benetos & Iñesta (2018, "A supervised
classification approach for note tracking in polyphonic piano transcription", J. New Music
Research): note candidates from a frame-level model, described by their own and their
neighbours' activations, classified as true or false. The classifier is a one-hidden-layer
network fitted by scikit-learn's ``MLPClassifier`` or in torch (`fit_rescorer`); its weights
are stored as plain numbers (or base64 float32) with the model's decoder thresholds
(``extra["decode"]["rescorer"]``), so no pickle is ever loaded. With `patch_features` it also
reads the raw posteriors and log-CQT around each candidate, not only summaries of them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from avfusion.config import MIDI_MIN, N_KEYS
from avfusion.notes import Note, Notes, matched_onsets

FEATURE_SET = "peaks-v1"
"""Name of the posterior features `candidate_features` computes; stored with a rescorer,
checked at load."""

SPECTRAL_FEATURE_SET = "peaks-cqt-v1"
"""Name of the posterior features plus the spectral ones (`spectral_features`)."""

HISTORY_FEATURE_SET = "peaks-hist-v1"
"""Name of the posterior features plus the key's own history (`history_features`)."""

SPECTRAL_HISTORY_FEATURE_SET = "peaks-cqt-hist-v1"
"""Name of the posterior, spectral and history features, in that order."""

CONTEXT_KEYS: tuple[int, ...] = (
    -36, -31, -28, -24, -19, -17, -12, -7, -5, -2, -1, 1, 2, 5, 7, 12, 19, 24, 28, 31,
)  # fmt: skip
"""Key offsets (semitones) whose onset posterior (max over ±2 frames) describes a candidate:
sub-harmonics (−12 octave, −19 twelfth, −24, −28, −31, −36), neighbours, harmonics."""

SUB_HARMONIC_KEYS: tuple[int, ...] = (-36, -31, -28, -24, -19, -12)
"""Offsets of the keys whose overtones fall on the candidate's key (harmonics 2–8)."""

FRAME_LAGS: tuple[int, ...] = (0, 2, 5, 10)
"""Frames after the candidate at which its key's frame posterior is read."""

N_FEATURES = 2 + len(FRAME_LAGS) + len(CONTEXT_KEYS) + 3 + 2 + 5
"""Length of a candidate's feature vector of posteriors (`FEATURE_SET`)."""

RISE_KEYS: tuple[int, ...] = (0, -12, -19, -24, -28, -31, -36, 12, 19, 24, -1, 1)
"""Key offsets whose log-CQT rise at the candidate's onset is a spectral feature."""

LEVEL_KEYS: tuple[int, ...] = (-12, -19, -24, -28, -31, -36, 12, 19, -1, 1)
"""Key offsets whose log-CQT level the candidate's key is compared with, a frame after it."""

N_SPECTRAL = len(RISE_KEYS) + len(LEVEL_KEYS) + 3
"""Number of spectral features (`spectral_features`)."""

HISTORY_LAGS: tuple[int, ...] = (1, 3)
"""Frames before the candidate at which its key's frame posterior is read (already sounding?)."""

HISTORY_HORIZON = 32
"""Frames (1.02 s at 31.25 frames/s) within which the previous and next candidate on the same
key are looked for (`history_features`)."""

N_HISTORY = len(HISTORY_LAGS) + 5
"""Number of history features (`history_features`)."""

PATCH_KEYS: tuple[int, ...] = tuple(range(-36, 37))
"""Key offsets (three octaves either side) of a candidate's patch (`patch_features`)."""

PATCH_LOG_CQT_FRAMES: tuple[int, ...] = (-3, -2, -1, 0, 1, 2, 3)
"""Frames around the candidate at which the patch reads the log-CQT of the `PATCH_KEYS`."""

PATCH_OWN_FRAMES: tuple[int, ...] = tuple(range(-8, 9))
"""Frames around the candidate at which the patch reads its own key's onset and frame
posteriors."""

N_PATCH_POSTERIORS = 2 * len(PATCH_OWN_FRAMES) + len(PATCH_KEYS)
"""Number of posterior values in a patch (`patch_features`)."""

N_PATCH_LOG_CQT = len(PATCH_LOG_CQT_FRAMES) * len(PATCH_KEYS)
"""Number of log-CQT values in a patch that reads the sound (`patch_features`)."""

PATCH_FEATURE_SET = "peaks-hist-patch-v1"
"""Posterior and history features, then the posterior patch (`patch_features`)."""

SPECTRAL_PATCH_FEATURE_SET = "peaks-cqt-hist-patch-v1"
"""Posterior, spectral and history features, then the patch of posteriors and log-CQT."""

FEATURE_SET_PARTS: dict[str, tuple[bool, bool, bool]] = {
    FEATURE_SET: (False, False, False),
    SPECTRAL_FEATURE_SET: (True, False, False),
    HISTORY_FEATURE_SET: (False, True, False),
    SPECTRAL_HISTORY_FEATURE_SET: (True, True, False),
    PATCH_FEATURE_SET: (False, True, True),
    SPECTRAL_PATCH_FEATURE_SET: (True, True, True),
}
"""Whether each feature set holds the spectral, the history and the patch features, in that
order (a patch comes with the history features)."""


def _feature_count(spectral: bool, history: bool, patch: bool) -> int:
    return (N_FEATURES + spectral * N_SPECTRAL + history * N_HISTORY
            + patch * (N_PATCH_POSTERIORS + spectral * N_PATCH_LOG_CQT))  # fmt: skip


FEATURE_SETS: dict[str, int] = {n: _feature_count(*p) for n, p in FEATURE_SET_PARTS.items()}
"""The feature sets a rescorer may be fitted on, and their lengths."""


def feature_set_name(spectral: bool, history: bool, patch: bool = False) -> str:
    """The `FEATURE_SETS` name of posterior features plus, optionally, the spectral
    (`spectral_features`), history (`history_features`) and patch (`patch_features`) ones.

    Raises:
        ValueError: a patch without the history features (no such feature set).
    """
    for name, parts in FEATURE_SET_PARTS.items():
        if parts == (spectral, history, patch):
            return name
    raise ValueError("rescorer features: a patch needs the history features too")


def _shift_keys(a: np.ndarray, d: int) -> np.ndarray:
    """``out[:, k] = a[:, k + d]`` (0 off the keyboard). a: (n_frames, 88)."""
    out = np.zeros_like(a)
    if d > 0:
        out[:, :-d] = a[:, d:]
    elif d < 0:
        out[:, -d:] = a[:, :d]
    else:
        out[:] = a
    return out


def spectral_features(spec: np.ndarray, t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """What the sound says about note candidates at frames ``t``, keys ``k``.

    An overtone of a played note rises with that note, in proportion to it; a note played an
    octave above adds energy of its own at the key. From the log-CQT per key (``spec``,
    ``log1p(gain · |CQT|)``, so differences are level ratios): the rise at the onset (the
    largest value of frames t…t+2 minus the mean of frames t−4…t−1) of the keys at
    `RISE_KEYS`; the key's level a frame later minus that of the keys at `LEVEL_KEYS`, minus
    the loudest key's and minus the key's median over the block; the key's rise minus the
    rise an octave below.

    Args:
        spec: float (n_frames, 88), the block's log-CQT per key (the model's ``key_cqt``).
        t, k: int (n,), candidate frames and keys.
    Returns:
        float32 (n, `N_SPECTRAL`).
    """
    spec = np.asarray(spec, dtype=np.float64)
    n = spec.shape[0]
    i = np.arange(n)
    after = np.max([spec[np.minimum(i + d, n - 1)] for d in range(3)], axis=0)
    before = np.mean([spec[np.maximum(i - d, 0)] for d in range(1, 5)], axis=0)
    rise = after - before  # (n_frames, 88)
    rows = np.arange(len(t))
    level = spec[np.minimum(t + 1, n - 1)]  # (n, 88): each candidate's frame
    own = level[rows, k]
    rises = {d: _shift_keys(rise, d)[t, k] for d in RISE_KEYS}
    cols = list(rises.values())
    cols += [own - _shift_keys(level, d)[rows, k] for d in LEVEL_KEYS]
    cols += [own - level.max(axis=1), own - np.median(spec, axis=0)[k], rises[0] - rises[-12]]
    return np.stack(cols, axis=1).astype(np.float32)


def history_features(
    onset: np.ndarray, frame: np.ndarray, t: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """What the candidate's own key did just before and after it.

    A note struck again while it still sounds (a fast repeat) and the ripple of one decaying
    note can give the same onset peak; they differ in how the key got there — a re-strike
    follows a clear dip of the onset posterior and a peak of its own a few frames earlier,
    a ripple sits on a long-held frame posterior right after a stronger peak. Per candidate
    at frame t, key k: the key's frame posterior at t − `HISTORY_LAGS`; its onset posterior at
    t minus the lowest of frames t−3…t−1; the distance (frames / `HISTORY_HORIZON`, 1 when
    none) to the previous and the next candidate on the same key within `HISTORY_HORIZON`
    frames, and their onset posteriors (0 when none).

    Args:
        onset, frame: float (n_frames, 88) probabilities of one block.
        t, k: int (n,) candidate frames and keys in (frame, key) order (`candidate_features`).
    Returns:
        float32 (n, `N_HISTORY`).
    """
    onset = np.asarray(onset, dtype=np.float64)
    frame = np.asarray(frame, dtype=np.float64)
    p = onset[t, k]
    cols = [frame[np.maximum(t - lag, 0), k] for lag in HISTORY_LAGS]
    dip = np.min([onset[np.maximum(t - d, 0), k] for d in (1, 2, 3)], axis=0)
    cols.append(p - dip)
    gap_prev, gap_next = np.ones(len(t)), np.ones(len(t))
    p_prev, p_next = np.zeros(len(t)), np.zeros(len(t))
    order = np.lexsort((t, k))  # by key, then frame: consecutive candidates of one key
    gaps = np.diff(t[order])
    near = (np.diff(k[order]) == 0) & (gaps <= HISTORY_HORIZON)
    after, before = order[1:][near], order[:-1][near]  # the later / earlier of each close pair
    gap_prev[after] = gap_next[before] = gaps[near] / HISTORY_HORIZON
    p_prev[after], p_next[before] = p[before], p[after]
    cols += [gap_prev, p_prev, gap_next, p_next]
    return np.stack(cols, axis=1).astype(np.float32)


def patch_features(
    onset: np.ndarray,
    frame: np.ndarray,
    spec: np.ndarray | None,
    t: np.ndarray,
    k: np.ndarray,
    spectral: bool = True,
) -> np.ndarray:
    """The raw neighbourhood of each candidate, for a rescorer to learn its own cues from.

    The hand-made features above summarise the posteriors and the sound at a few chosen key
    offsets; a patch gives the rescorer the values themselves: its own key's onset and frame
    posteriors at `PATCH_OWN_FRAMES` (how the key got there: a re-strike or a ripple), the
    onset posterior (max over frames t−1…t+1) of every key within `PATCH_KEYS` (three octaves
    either side: chords, overtones, neighbours), and, with ``spectral``, the log-CQT of those
    keys at `PATCH_LOG_CQT_FRAMES` minus the candidate key's level a frame after its onset (so
    level ratios to the note itself). Keys off the keyboard read 0. This is the patch input of
    the second-stage note classifiers of Valero-Mas, Benetos & Iñesta (2018), here beside
    the summary features rather than instead of them.

    Args:
        onset, frame: float (n_frames, 88) probabilities of one block.
        spec: float (n_frames, 88), the block's log-CQT per key (``key_cqt``), or None (no
            audio: silence, all zeros).
        t, k: int (n,), candidate frames and keys.
        spectral: append the log-CQT values.
    Returns:
        float32 (n, `N_PATCH_POSTERIORS` [+ `N_PATCH_LOG_CQT` with ``spectral``]).
    """
    onset = np.asarray(onset, dtype=np.float64)
    frame = np.asarray(frame, dtype=np.float64)
    n = onset.shape[0]
    own_t = np.clip(t[:, None] + np.asarray(PATCH_OWN_FRAMES)[None], 0, n - 1)  # (m, 17)
    keys = k[:, None] + np.asarray(PATCH_KEYS)[None]  # (m, 73)
    on_board = (keys >= 0) & (keys < N_KEYS)
    keys = np.clip(keys, 0, N_KEYS - 1)
    near = np.max([onset[np.clip(t + d, 0, n - 1)[:, None], keys] for d in (-1, 0, 1)], axis=0)
    cols = [onset[own_t, k[:, None]], frame[own_t, k[:, None]], near * on_board]
    if spectral:
        spec = np.zeros_like(onset) if spec is None else np.asarray(spec, dtype=np.float64)
        cqt_t = np.clip(
            t[:, None, None] + np.asarray(PATCH_LOG_CQT_FRAMES)[None, :, None], 0, n - 1
        )
        own = spec[np.minimum(t + 1, n - 1), k][:, None, None]
        cols.append(
            ((spec[cqt_t, keys[:, None, :]] - own) * on_board[:, None, :]).reshape(len(t), -1)
        )
    return np.hstack(cols).astype(np.float32)


def candidate_features(
    onset: np.ndarray,
    frame: np.ndarray,
    spec: np.ndarray | None = None,
    spectral: bool = False,
    history: bool = False,
    patch: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Describe every note candidate of one block of posteriors.

    The candidates are the onset peaks that the adaptive decoder considers
    (`avfusion.decoding.onset_peaks` at or above `avfusion.decoding.PEAK_FLOOR`). Per
    candidate at frame t, key k: its onset posterior and logit; its key's frame posterior
    at t + `FRAME_LAGS`; the onset posterior (max over frames t−2…t+2) of the keys at
    `CONTEXT_KEYS`; the frame posterior 2 frames later of the keys 24, 19 and 12 below; its
    onset posterior minus the strongest sub-harmonic's, and that sub-harmonic's; the block's
    share and rate of peaks ≥ 0.5 and 90th percentile of peak posteriors (how clear the block
    is: noise lowers them); the number of keys with a peak within ±2 frames; k / 88.

    With ``spectral``, the `spectral_features` of ``spec`` follow (`SPECTRAL_FEATURE_SET`);
    without audio (``spec`` None: a fusion model run on the video alone) they are those of
    silence. With ``history``, the `history_features` follow (the key's own recent past:
    fast repeats); with ``patch`` (and ``history``), the `patch_features` (with the log-CQT
    when ``spectral``).

    Args:
        onset, frame: float (n_frames, 88) probabilities of one block.
        spec: float (n_frames, 88), the block's log-CQT per key (``key_cqt``), or None.
        spectral: append the spectral features.
        history: append the history features.
        patch: append the patch features (needs ``history``).
    Returns:
        (t, k, X): frames int (n,), keys int (n,) in (frame, key) order, features float32
        (n, ``FEATURE_SETS[feature_set_name(spectral, history, patch)]``).
    Raises:
        ValueError: ``spec`` is not shaped like ``onset``; a patch without history.
    """
    from scipy.ndimage import maximum_filter1d

    from avfusion.decoding import PEAK_FLOOR, onset_peaks  # decoding imports this module

    onset = np.asarray(onset, dtype=np.float64)
    frame = np.asarray(frame, dtype=np.float64)
    n_frames = onset.shape[0]
    peaks = onset_peaks(onset) & (onset >= PEAK_FLOOR)
    t, k = np.nonzero(peaks)
    width = FEATURE_SETS[feature_set_name(spectral, history, patch)]
    if spectral:
        spec = np.zeros_like(onset) if spec is None else np.asarray(spec, dtype=np.float64)
        if spec.shape != onset.shape:
            raise ValueError(f"key_cqt of shape {spec.shape}: expected {onset.shape}")
    if not len(t):
        return t, k, np.zeros((0, width), np.float32)
    p = onset[t, k]
    near = maximum_filter1d(onset, 5, axis=0)  # ±2 frames
    cols = [p, np.log((p + 1e-6) / (1 - p + 1e-6))]
    cols += [frame[np.minimum(t + lag, n_frames - 1), k] for lag in FRAME_LAGS]
    context = {d: _shift_keys(near, d)[t, k] for d in CONTEXT_KEYS}
    cols += list(context.values())
    later = np.minimum(t + 2, n_frames - 1)
    cols += [_shift_keys(frame, d)[later, k] for d in (-24, -19, -12)]
    sub = np.max([context[d] for d in SUB_HARMONIC_KEYS], axis=0)
    cols += [p - sub, sub]
    values = onset[peaks]
    busy = maximum_filter1d(peaks.sum(axis=1).astype(np.float64), 5)
    cols += [
        np.full(len(t), np.mean(values >= 0.5)),
        np.full(len(t), np.sum(values >= 0.5) / n_frames * 100),
        np.full(len(t), np.quantile(values, 0.9)),
        busy[t],
        k / N_KEYS,
    ]
    x = np.stack(cols, axis=1).astype(np.float32)
    if spectral:
        assert spec is not None
        x = np.hstack([x, spectral_features(spec, t, k)])
    if history:
        x = np.hstack([x, history_features(onset, frame, t, k)])
    if patch:
        x = np.hstack([x, patch_features(onset, frame, spec, t, k, spectral)])
    return t, k, x


@dataclass(frozen=True)
class Rescorer:
    """A fitted candidate classifier: standardisation, one hidden ReLU layer, a sigmoid.

    Attributes:
        mean, scale: per-feature standardisation (length n_features: `FEATURE_SETS`).
        w1: hidden weights, shape (n_features, hidden) as rows; b1: (hidden,).
        w2: output weights (hidden,); b2: output bias.
        feature_set: the features it was fitted on, one of `FEATURE_SETS` (`FEATURE_SET`:
            posteriors; `SPECTRAL_FEATURE_SET`: and sound; `HISTORY_FEATURE_SET`: and the
            key's own history; `SPECTRAL_HISTORY_FEATURE_SET`: all three;
            `PATCH_FEATURE_SET`, `SPECTRAL_PATCH_FEATURE_SET`: those with history, then the
            candidate's neighbourhood, `patch_features`).
    Raises:
        ValueError: an unknown feature set, or weights of the wrong shapes.
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    w1: tuple[tuple[float, ...], ...]
    b1: tuple[float, ...]
    w2: tuple[float, ...]
    b2: float
    feature_set: str = FEATURE_SET

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(
                f"rescorer fitted on features {self.feature_set!r}; this version computes "
                f"{' or '.join(map(repr, FEATURE_SETS))} (re-export the model)"
            )
        hidden = len(self.b1)
        n_features = FEATURE_SETS[self.feature_set]
        shapes_ok = (
            len(self.mean) == len(self.scale) == len(self.w1) == n_features
            and all(len(row) == hidden for row in self.w1)
            and len(self.w2) == hidden
            and hidden > 0
        )
        if not shapes_ok:
            raise ValueError(
                f"rescorer: weights do not fit {n_features} features (mean {len(self.mean)}, "
                f"scale {len(self.scale)}, w1 {len(self.w1)} rows, b1 {len(self.b1)}, "
                f"w2 {len(self.w2)})"
            )

    @property
    def spectral(self) -> bool:
        """Whether it reads the sound too (`spectral_features`), not only the posteriors."""
        return FEATURE_SET_PARTS[self.feature_set][0]

    @property
    def history(self) -> bool:
        """Whether it reads the key's own history too (`history_features`)."""
        return FEATURE_SET_PARTS[self.feature_set][1]

    @property
    def patch(self) -> bool:
        """Whether it reads the candidate's raw neighbourhood too (`patch_features`)."""
        return FEATURE_SET_PARTS[self.feature_set][2]

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (np.asarray(self.mean), np.asarray(self.scale), np.asarray(self.w1),
                np.asarray(self.b1), np.asarray(self.w2))  # fmt: skip

    def predict(self, features: np.ndarray) -> np.ndarray:
        """P(true onset) per candidate. features: float (n, n_features) → float (n,)."""
        mean, scale, w1, b1, w2 = self._arrays
        h = np.maximum(((features - mean) / scale) @ w1 + b1, 0.0)
        return 1.0 / (1.0 + np.exp(-(h @ w2 + self.b2)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (feature set, standardisation, weights), the inverse of
        `from_dict`; stored under ``extra.decode.rescorer`` of a checkpoint. Hidden weights
        that are float32 values (a rescorer fitted with ``fit="torch"``) are stored as
        little-endian float32 in base64 (``w1_float32``, with ``w1_shape``): a patch rescorer
        has ~10⁵ of them; others as nested lists of numbers."""
        d: dict[str, Any] = {"feature_set": self.feature_set, "mean": list(self.mean),
                             "scale": list(self.scale), "b1": list(self.b1),
                             "w2": list(self.w2), "b2": self.b2}  # fmt: skip
        w1 = np.asarray(self.w1, dtype=np.float64)
        w1_32 = w1.astype("<f4")
        if np.array_equal(w1_32.astype(np.float64), w1):
            d["w1_float32"] = base64.b64encode(w1_32.tobytes()).decode("ascii")
            d["w1_shape"] = list(w1.shape)
        else:
            d["w1"] = [list(r) for r in self.w1]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rescorer:
        """Inverse of `to_dict`. Raises ValueError: missing or malformed fields."""
        try:
            if "w1_float32" in d:
                rows, cols = (int(v) for v in d["w1_shape"])
                raw = np.frombuffer(base64.b64decode(d["w1_float32"], validate=True), "<f4")
                w1 = tuple(map(tuple, raw.reshape(rows, cols).astype(np.float64).tolist()))
            else:
                w1 = tuple(tuple(float(v) for v in row) for row in d["w1"])
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ValueError(f"rescorer: malformed hidden weights ({exc!r})") from exc
        try:
            return cls(
                mean=tuple(float(v) for v in d["mean"]),
                scale=tuple(float(v) for v in d["scale"]),
                w1=w1,
                b1=tuple(float(v) for v in d["b1"]),
                w2=tuple(float(v) for v in d["w2"]),
                b2=float(d["b2"]),
                feature_set=str(d.get("feature_set", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"rescorer: malformed weights ({exc!r})") from exc


def label_candidates(
    t: np.ndarray, k: np.ndarray, reference: Notes, frame_rate_hz: float
) -> np.ndarray:
    """1.0 for the candidates that the note metrics count as correct (mir_eval's one-to-one
    matching: onset within 50 ms, same pitch; `avfusion.notes.matched_onsets`), else 0.0.
    t, k: int (n,) in (frame, key) order → float (n,)."""
    candidates = Notes.from_iterables(  # sorted by (onset, pitch): the (frame, key) order
        Note(i / frame_rate_hz, (i + 1) / frame_rate_hz, key + MIDI_MIN)
        for i, key in zip(t.tolist(), k.tolist(), strict=True)
    )
    y = np.zeros(len(t))
    y[sorted(matched_onsets(reference, candidates))] = 1.0
    return y


def labelled_candidates(
    items: Sequence[tuple[Any, ...]],
    frame_rate_hz: float,
    spectral: bool = False,
    history: bool = False,
    patch: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate of the clips ``items`` (as `fit_rescorer` takes them), described
    (`candidate_features`) and labelled (`label_candidates`).

    Returns:
        (X, y): float32 (n, n_features) and float (n,) in {0, 1}, clips in order.
    Raises:
        ValueError: a patch without history.
    """
    width = FEATURE_SETS[feature_set_name(spectral, history, patch)]
    xs, ys = [np.zeros((0, width), np.float32)], [np.zeros(0)]
    for onset, frame, ref, *spec in items:
        t, k, x = candidate_features(
            onset, frame, spec[0] if spec else None, spectral, history, patch
        )
        xs.append(x)
        ys.append(label_candidates(t, k, ref, frame_rate_hz))
    return np.concatenate(xs), np.concatenate(ys)


RESCORER_FITS: tuple[str, ...] = ("sklearn", "torch")
"""How `fit_rescorer` trains the classifier: scikit-learn's ``MLPClassifier`` or `_fit_torch`."""


def fit_rescorer(
    items: Sequence[tuple[Any, ...]],
    frame_rate_hz: float,
    hidden: int = 32,
    seed: int = 0,
    spectral: bool = False,
    history: bool = False,
    patch: bool = False,
    fit: str = "sklearn",
) -> Rescorer:
    """Fit a `Rescorer` on posteriors of the training split (never validation or test).

    Args:
        items: (onset, frame float (n_frames, 88), reference notes[, key_cqt (n_frames, 88)
            or None]) per clip; each clip is one block (the decoder computes features per
            block of ``adaptive_block_s`` seconds).
        frame_rate_hz: model frames per second.
        hidden: hidden units.
        seed: the classifier's random state.
        spectral: fit on the posteriors and the sound (`SPECTRAL_FEATURE_SET`; a clip without
            ``key_cqt`` counts as silent), else on the posteriors alone (`FEATURE_SET`).
        history: also fit on the key's own history (`history_features`).
        patch: also fit on the candidate's raw neighbourhood (`patch_features`; needs
            ``history``).
        fit: ``"sklearn"``: scikit-learn's ``MLPClassifier`` (Adam, early stopping on a 10 %
            hold-out of the candidates); ``"torch"``: `_fit_torch` (AdamW, dropout, early
            stopping on a 10 % hold-out), better on many candidates and wide features.
    Returns:
        The fitted rescorer.
    Raises:
        ValueError: no candidates, or only one class among them; an unknown ``fit``; a patch
            without history.
    """
    if fit not in RESCORER_FITS:
        raise ValueError(f"fit_rescorer: fit={fit!r}, expected one of {RESCORER_FITS}")
    feature_set = feature_set_name(spectral, history, patch)
    x_all, y_all = labelled_candidates(items, frame_rate_hz, spectral, history, patch)
    if len(np.unique(y_all)) < 2:
        raise ValueError(
            f"fit_rescorer: need true and false candidates, got {len(y_all)} candidates "
            f"with {int(y_all.sum())} true"
        )
    mean = x_all.mean(axis=0).astype(np.float64)
    scale = x_all.std(axis=0).astype(np.float64)
    scale[scale < 1e-6] = 1.0
    x_std = (x_all - mean) / scale
    if fit == "torch":
        w1, b1, w2, b2 = _fit_torch(x_std, y_all, hidden, seed)
    else:
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier((hidden,), max_iter=300, early_stopping=True, random_state=seed)
        clf.fit(x_std, y_all)
        w1, w2 = (w.astype(np.float64) for w in clf.coefs_)
        b1, b2 = (b.astype(np.float64) for b in clf.intercepts_)
    return Rescorer(
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        w1=tuple(tuple(r) for r in w1.tolist()),
        b1=tuple(b1.tolist()),
        w2=tuple(w2[:, 0].tolist()),
        b2=float(b2[0]),
        feature_set=feature_set,
    )


def _fit_torch(
    x: np.ndarray,
    y: np.ndarray,
    hidden: int,
    seed: int,
    max_epochs: int = 60,
    patience: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One hidden ReLU layer with dropout 0.2 before the output, binary cross entropy, AdamW
    (lr 1e-3, weight decay 1e-4) in mini-batches of 512 (of a twentieth of the candidates,
    at least 32, when there are fewer than ~10⁴: enough steps per epoch); stops when the loss on a seeded 10 %
    hold-out of the candidates has not fallen for ``patience`` epochs and keeps the best
    epoch's weights. Deterministic for a seed on one thread count.

    Args:
        x: float (n, n_features), standardised features; y: float (n,) labels in {0, 1}.
    Returns:
        w1 (n_features, hidden), b1 (hidden,), w2 (hidden, 1), b2 (1,): float32 values as
        float64 arrays (`Rescorer` stores them as float32, `Rescorer.to_dict`).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.float32))[:, None]
    order = torch.randperm(len(xt), generator=gen)
    n_hold = max(1, len(xt) // 10)
    hold, train = order[:n_hold], order[n_hold:]
    batch_size = int(np.clip(len(train) // 20, 32, 512))
    with torch.random.fork_rng(devices=[]):  # seeded init and dropout; the caller's RNG kept
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2),
            torch.nn.Linear(hidden, 1),
        )  # fmt: skip
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        best, best_state, stale = float("inf"), None, 0
        for _ in range(max_epochs):
            net.train()
            for b in torch.split(train[torch.randperm(len(train), generator=gen)], batch_size):
                opt.zero_grad()
                loss_fn(net(xt[b]), yt[b]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                held = float(loss_fn(net(xt[hold]), yt[hold]))
            if held < best - 1e-4:
                best, stale = held, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= patience:
                    break
    assert best_state is not None
    f64 = lambda v: v.numpy().astype(np.float64)  # noqa: E731
    return (f64(best_state["0.weight"].T), f64(best_state["0.bias"]),
            f64(best_state["3.weight"].T), f64(best_state["3.bias"]))  # fmt: skip
