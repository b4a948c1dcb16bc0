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

This is the supervised note-tracking stage of Valero-Mas, Benetos & Iñesta (2018, "A supervised
classification approach for note tracking in polyphonic piano transcription", J. New Music
Research): note candidates from a frame-level model, described by their own and their
neighbours' activations, classified as true or false. The classifier is scikit-learn's
``MLPClassifier`` (one hidden layer); its weights are stored as plain numbers with the model's
decoder thresholds (``extra["decode"]["rescorer"]``), so no pickle is ever loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from avfusion.config import MIDI_MIN, N_KEYS
from avfusion.notes import Note, Notes, matched_onsets

FEATURE_SET = "peaks-v1"
"""Name of the features `candidate_features` computes; stored with a rescorer, checked at load."""

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
"""Length of a candidate's feature vector."""


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


def candidate_features(
    onset: np.ndarray, frame: np.ndarray
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

    Args:
        onset, frame: float (n_frames, 88) probabilities of one block.
    Returns:
        (t, k, X): frames int (n,), keys int (n,) in (frame, key) order, features float32
        (n, `N_FEATURES`).
    """
    from scipy.ndimage import maximum_filter1d

    from avfusion.decoding import PEAK_FLOOR, onset_peaks  # decoding imports this module

    onset = np.asarray(onset, dtype=np.float64)
    frame = np.asarray(frame, dtype=np.float64)
    n_frames = onset.shape[0]
    peaks = onset_peaks(onset) & (onset >= PEAK_FLOOR)
    t, k = np.nonzero(peaks)
    if not len(t):
        return t, k, np.zeros((0, N_FEATURES), np.float32)
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
    return t, k, np.stack(cols, axis=1).astype(np.float32)


@dataclass(frozen=True)
class Rescorer:
    """A fitted candidate classifier: standardisation, one hidden ReLU layer, a sigmoid.

    Attributes:
        mean, scale: per-feature standardisation (length `N_FEATURES`).
        w1: hidden weights, shape (`N_FEATURES`, hidden) as rows; b1: (hidden,).
        w2: output weights (hidden,); b2: output bias.
        feature_set: the features it was fitted on (`FEATURE_SET`).
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    w1: tuple[tuple[float, ...], ...]
    b1: tuple[float, ...]
    w2: tuple[float, ...]
    b2: float
    feature_set: str = FEATURE_SET

    def __post_init__(self) -> None:
        if self.feature_set != FEATURE_SET:
            raise ValueError(
                f"rescorer fitted on features {self.feature_set!r}; this version computes "
                f"{FEATURE_SET!r} (re-export the model)"
            )
        hidden = len(self.b1)
        shapes_ok = (
            len(self.mean) == len(self.scale) == len(self.w1) == N_FEATURES
            and all(len(row) == hidden for row in self.w1)
            and len(self.w2) == hidden
            and hidden > 0
        )
        if not shapes_ok:
            raise ValueError(
                f"rescorer: weights do not fit {N_FEATURES} features (mean {len(self.mean)}, "
                f"scale {len(self.scale)}, w1 {len(self.w1)} rows, b1 {len(self.b1)}, "
                f"w2 {len(self.w2)})"
            )

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (np.asarray(self.mean), np.asarray(self.scale), np.asarray(self.w1),
                np.asarray(self.b1), np.asarray(self.w2))  # fmt: skip

    def predict(self, features: np.ndarray) -> np.ndarray:
        """P(true onset) per candidate. features: float (n, `N_FEATURES`) → float (n,)."""
        mean, scale, w1, b1, w2 = self._arrays
        h = np.maximum(((features - mean) / scale) @ w1 + b1, 0.0)
        return 1.0 / (1.0 + np.exp(-(h @ w2 + self.b2)))

    def to_dict(self) -> dict[str, Any]:
        return {"feature_set": self.feature_set, "mean": list(self.mean),
                "scale": list(self.scale), "w1": [list(r) for r in self.w1],
                "b1": list(self.b1), "w2": list(self.w2), "b2": self.b2}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rescorer:
        """Inverse of `to_dict`. Raises ValueError: missing or malformed fields."""
        try:
            return cls(
                mean=tuple(float(v) for v in d["mean"]),
                scale=tuple(float(v) for v in d["scale"]),
                w1=tuple(tuple(float(v) for v in row) for row in d["w1"]),
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


def fit_rescorer(
    items: Sequence[tuple[np.ndarray, np.ndarray, Notes]],
    frame_rate_hz: float,
    hidden: int = 32,
    seed: int = 0,
) -> Rescorer:
    """Fit a `Rescorer` on posteriors of the training split (never validation or test).

    Args:
        items: (onset, frame float (n_frames, 88), reference notes) per clip; each clip is one
            block (the decoder computes features per block of ``adaptive_block_s`` seconds).
        frame_rate_hz: model frames per second.
        hidden: hidden units.
        seed: the classifier's random state.
    Returns:
        The fitted rescorer (scikit-learn ``MLPClassifier``, Adam, early stopping on a 10 %
        hold-out of the candidates).
    Raises:
        ValueError: no candidates, or only one class among them.
    """
    from sklearn.neural_network import MLPClassifier

    xs, ys = [], []
    for onset, frame, ref in items:
        t, k, x = candidate_features(onset, frame)
        xs.append(x)
        ys.append(label_candidates(t, k, ref, frame_rate_hz))
    x_all = np.concatenate(xs) if xs else np.zeros((0, N_FEATURES), np.float32)
    y_all = np.concatenate(ys) if ys else np.zeros(0)
    if len(np.unique(y_all)) < 2:
        raise ValueError(
            f"fit_rescorer: need true and false candidates, got {len(y_all)} candidates "
            f"with {int(y_all.sum())} true"
        )
    mean = x_all.mean(axis=0).astype(np.float64)
    scale = x_all.std(axis=0).astype(np.float64)
    scale[scale < 1e-6] = 1.0
    clf = MLPClassifier((hidden,), max_iter=300, early_stopping=True, random_state=seed)
    clf.fit((x_all - mean) / scale, y_all)
    w1, w2 = clf.coefs_
    b1, b2 = clf.intercepts_
    return Rescorer(
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        w1=tuple(tuple(r) for r in w1.astype(np.float64).tolist()),
        b1=tuple(b1.astype(np.float64).tolist()),
        w2=tuple(w2[:, 0].astype(np.float64).tolist()),
        b2=float(b2[0]),
    )
