"""Posteriors to notes (Onsets and Frames decoding, Hawthorne et al. 2018) and to CC64.

A note starts on a frame where the onset probability is a local peak above
``onset_threshold``; it lasts while the frame probability stays above ``frame_threshold``
(at least ``min_note_ms``) and ends early at the next onset of the same key; its velocity is
the velocity head's value at the onset frame. The sustain pedal is down while its probability
is above ``pedal_threshold``.

Adaptive onset threshold (optional, `DecodeConfig.onset_calibration_x` / ``_y``): one fixed
threshold tuned over all validation conditions is wrong for each (the audio-only model's gave
precision 0.59 on clean test audio, most false positives overtones of played notes, and recall
0.35 under pink noise at −10 dB). Instead, each block of
``adaptive_block_s`` seconds gets the threshold that maximises its *expected* note F1: onset
peaks are mapped to the probability that they are a true onset (an isotonic calibration fitted
on the validation split, `fit_onset_calibration`), and the threshold keeping the top-n peaks is
the n that maximises ``2·Σ_top-n q / (n + Σ_all q)`` — the plug-in rule for F-measure
(Lewis 1995; Nan et al. 2012, "Optimizing F-measures: a tale of two approaches"; Lipton et al.
2014). Blocks with too little expected music keep ``onset_threshold``. In such a block the
frame threshold is ``min(frame_threshold, the block's onset threshold)``: where the sound is
noisy the posteriors are low everywhere, and a frame threshold tuned over the whole validation
split would cut every note there to its minimum length.

Rescored candidates (optional, `DecodeConfig.rescorer`): instead of the calibration of a peak's
own posterior, a small classifier over the posteriors around the peak (its sub-harmonics, its
frame posterior, the block's clarity; `avfusion.rescore`, fitted on the training split) gives
each peak its probability of being a true onset; the plug-in rule keeps the top-n peaks of the
block by that probability, whatever their posterior. The block's onset threshold (for the
frame-threshold cap, and for a short last block) is the lowest posterior among the kept peaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from avfusion.config import MIDI_MIN, N_KEYS, check_known_keys
from avfusion.notes import Note, Notes, PedalEvent
from avfusion.rescore import Rescorer, candidate_features, label_candidates


@dataclass(frozen=True)
class DecodeConfig:
    """Thresholds of the decoder (tuned on the validation split, stored with a checkpoint).

    Attributes:
        onset_threshold: onset probability a peak needs to start a note (the fixed threshold;
            with a calibration, the fallback for blocks with too few onset peaks).
        frame_threshold: frame probability that keeps a note sounding (with a calibration,
            capped at each block's onset threshold: `frame_thresholds`).
        pedal_threshold: sustain-pedal probability for CC64 down.
        min_note_ms: shortest note (ms).
        onset_calibration_x, onset_calibration_y: knots (increasing x, non-decreasing y in
            [0, 1]) of the map from an onset peak's posterior to the probability that it is a
            true onset (`fit_onset_calibration`); empty = fixed ``onset_threshold``
            everywhere. With knots, each block gets its own threshold (`onset_thresholds`).
        adaptive_block_s: length of the blocks (seconds) that get one adaptive threshold each.
        rescorer: a candidate classifier (`avfusion.rescore.Rescorer`); set, it replaces the
            calibration: each block keeps the onset peaks with the highest rescored
            probability (`block_onsets`). None: no rescoring.
        frame_cap_quantile: with a rescorer, the block's onset threshold (which caps its frame
            threshold) is this quantile of the onset posteriors of the peaks it keeps; 0: the
            lowest of them. A rescorer that keeps a few peaks of low posterior (a quiet note
            an octave above a loud one) would otherwise lower the frame threshold of the
            whole block and draw its notes out.
    """

    onset_threshold: float = 0.5
    frame_threshold: float = 0.5
    pedal_threshold: float = 0.5
    min_note_ms: float = 30.0
    onset_calibration_x: tuple[float, ...] = ()
    onset_calibration_y: tuple[float, ...] = ()
    adaptive_block_s: float = 30.0
    rescorer: Rescorer | None = None
    frame_cap_quantile: float = 0.0

    def __post_init__(self) -> None:
        x, y = self.onset_calibration_x, self.onset_calibration_y
        if len(x) != len(y) or len(x) == 1:
            raise ValueError(
                f"DecodeConfig: onset calibration needs as many x as y knots, at least 2 "
                f"(got {len(x)} and {len(y)})"
            )
        if len(x) and (np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0)):
            raise ValueError("DecodeConfig: onset calibration knots must be increasing")
        if len(y) and not 0.0 <= min(y) <= max(y) <= 1.0:
            raise ValueError("DecodeConfig: onset calibration y knots must lie in [0, 1]")
        if not self.adaptive_block_s > 0:
            raise ValueError(f"DecodeConfig: adaptive_block_s={self.adaptive_block_s} must be > 0")
        if not 0.0 <= self.frame_cap_quantile <= 1.0:
            raise ValueError(
                f"DecodeConfig: frame_cap_quantile={self.frame_cap_quantile} must lie in [0, 1]"
            )

    @property
    def adaptive(self) -> bool:
        """True when blocks get their own onset threshold (a calibration or a rescorer)."""
        return len(self.onset_calibration_x) > 0 or self.rescorer is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples become lists, the rescorer its own dict),
        as stored under ``extra.decode`` of a checkpoint's ``config.json``."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["rescorer"] = None if self.rescorer is None else self.rescorer.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_extra(cls, extra: dict[str, Any], where: str) -> DecodeConfig:
        """The thresholds stored with a checkpoint (``extra["decode"]``, written by
        ``avfusion train``), or the defaults when it has none.

        Args:
            extra: the checkpoint's ``extra`` metadata (:func:`avfusion.model.load_checkpoint`).
            where: the checkpoint's config file, for messages.
        Raises:
            ValueError: ``decode`` is not a mapping of known fields to numbers (lists of
                numbers for the calibration knots), or the knots are bad (names ``where`` and
                the bad entry).
        """
        d = extra.get("decode")
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"{where}: extra.decode must be a mapping, got {d!r}")
        check_known_keys(cls, d, f"{where}: extra.decode")
        try:
            values: dict[str, Any] = {
                k: tuple(float(x) for x in v) if k.startswith("onset_calibration") else float(v)
                for k, v in d.items()
                if k != "rescorer"
            }
            if d.get("rescorer") is not None:
                values["rescorer"] = Rescorer.from_dict(d["rescorer"])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: bad extra.decode {d!r} ({exc})") from exc


MIN_EXPECTED_ONSETS = 3.0
"""A block whose peaks add up to fewer expected true onsets keeps the fixed threshold."""

PEAK_FLOOR = 0.02
"""Onset posteriors below this are never candidates of the adaptive threshold."""


def onset_peaks(onset: np.ndarray) -> np.ndarray:
    """Local maxima of the onset posterior along time, per key: a frame ≥ the previous one and
    > the next (the first frame of a plateau wins), with 0 before the first frame and after the
    last. onset: float (n_frames, 88) → bool (n_frames, 88)."""
    n_keys = onset.shape[1]
    prev = np.vstack([np.zeros((1, n_keys)), onset[:-1]])
    nxt = np.vstack([onset[1:], np.zeros((1, n_keys))])
    return (onset >= prev) & (onset > nxt)


def plugin_onset_threshold(onset: np.ndarray, config: DecodeConfig) -> float:
    """The onset threshold that maximises the expected note F1 of one block of posteriors.

    The block's onset peaks ≥ `PEAK_FLOOR` are mapped through the calibration to ``q`` (the
    probability of being a true onset); keeping the n highest gives an expected F1 of
    ``2·Σ_top-n q / (n + Σ q)`` (plug-in rule: Lewis 1995; Nan et al. 2012). The threshold is
    the posterior of the n-th peak at the best n.

    Args:
        onset: float (n_frames, 88), onset probabilities of the block.
        config: with a calibration (`DecodeConfig.adaptive`).
    Returns:
        The threshold (a probability); ``config.onset_threshold`` when the peaks add up to fewer
        than `MIN_EXPECTED_ONSETS` expected true onsets (silence, or no confident peak).
    """
    values = onset[onset_peaks(onset) & (onset >= PEAK_FLOOR)]
    q = np.interp(values, config.onset_calibration_x, config.onset_calibration_y)
    if float(q.sum()) < MIN_EXPECTED_ONSETS:
        return config.onset_threshold
    return float(values[plugin_keep(q, rank=values)].min())


def plugin_keep(q: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
    """Which of a block's candidates to keep by the plug-in rule for the F-measure: the first n
    in descending ``rank`` (default ``q``, the probability of being a true onset), n
    maximising ``2·Σ_top-n q / (n + Σ q)`` (Lewis 1995; Nan et al. 2012).
    q, rank: float (n,) → bool (n,)."""
    order = np.argsort(-(q if rank is None else rank), kind="stable")
    expected_f1 = 2 * np.cumsum(q[order]) / (np.arange(1, len(q) + 1) + float(q.sum()))
    keep = np.zeros(len(q), bool)
    keep[order[: int(np.argmax(expected_f1)) + 1]] = True
    return keep


def block_onsets(
    onset: np.ndarray,
    frame: np.ndarray | None,
    config: DecodeConfig,
    previous: tuple[float, float | None] | None = None,
    spec: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float | None]:
    """The onset peaks one block may start notes at, and its onset threshold.

    With a rescorer (`DecodeConfig.rescorer`): the block's candidates are rescored
    (`avfusion.rescore.candidate_features`, `Rescorer.predict`) and `plugin_keep` picks them;
    the threshold is the ``frame_cap_quantile`` quantile of the onset posteriors of those kept
    (0: the lowest). Otherwise the threshold is
    `plugin_onset_threshold` (with a calibration) or ``config.onset_threshold``, and every peak
    at or above it may start a note. A block whose candidates add up to fewer than
    `MIN_EXPECTED_ONSETS` expected true onsets keeps ``config.onset_threshold``.

    Args:
        onset: float (n_frames, 88) probabilities of the block; frame: the same (only a
            rescorer reads it; None without one).
        config: the decoder's thresholds.
        previous: for a short last block, the (threshold, cut) the block before it returned:
            the block takes that threshold and, with a rescorer and a cut, admits the
            candidates rescored at or above the cut (too few frames for a plug-in choice of
            its own).
        spec: float (n_frames, 88), the block's log-CQT per key (the model's ``key_cqt``),
            read by a rescorer fitted on sound as well (`Rescorer.spectral`); None: no audio
            (silence).
    Returns:
        (admit, threshold, cut): bool (n_frames, 88), True where a peak of the onset posterior
        may start a note (peaks themselves are found on the whole performance:
        `onset_peaks`); the block's onset threshold (a probability); with a rescorer, the
        lowest rescored probability kept (None without one, or when the block kept the fixed
        threshold).
    Raises:
        ValueError: a rescorer without frame posteriors.
    """
    if previous is not None:
        thr, cut = previous
    elif config.rescorer is None:
        thr = plugin_onset_threshold(onset, config) if config.adaptive else config.onset_threshold
        cut = None
    else:
        thr, cut = config.onset_threshold, None
    if config.rescorer is None or (previous is not None and cut is None):
        return onset >= thr, thr, None
    if frame is None:
        raise ValueError("a rescorer needs the frame posteriors (frame=None)")
    r = config.rescorer
    t, k, features = candidate_features(onset, frame, spec, r.spectral, r.history, r.patch)
    q = r.predict(features)
    if cut is not None:  # a short last block: the cut of the block before it
        keep = q >= cut
    elif float(q.sum()) < MIN_EXPECTED_ONSETS:
        return onset >= thr, thr, None
    else:
        keep = plugin_keep(q)
        kept = onset[t[keep], k[keep]]
        thr = float(np.quantile(kept, config.frame_cap_quantile))  # 0: the lowest
        cut = float(q[keep].min())
    admit = np.zeros(onset.shape, bool)
    admit[t[keep], k[keep]] = True
    return admit, thr, cut


def onset_decisions(
    onset: np.ndarray,
    frame: np.ndarray | None,
    config: DecodeConfig,
    frame_rate_hz: float,
    spec: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`block_onsets` over a whole performance, in blocks of ``adaptive_block_s`` seconds from
    frame 0 (a last block shorter than half a block, after a full one, takes the threshold and
    the rescored cut of the block before it); one block with a fixed threshold.

    Args:
        onset: float (n_frames, 88) probabilities; frame: the same, or None without a rescorer.
        config: the decoder's thresholds.
        frame_rate_hz: model frames per second.
        spec: float (n_frames, 88), log-CQT per key (``key_cqt``) or None (`block_onsets`).
    Returns:
        (thresholds float (n_frames,), admit bool (n_frames, 88)).
    Raises:
        ValueError: a rescorer without frame posteriors.
    """
    n = onset.shape[0]
    if not config.adaptive:
        thresholds = np.full(n, config.onset_threshold, dtype=np.float64)
        return thresholds, onset >= config.onset_threshold
    thresholds = np.empty(n, dtype=np.float64)
    admit = np.zeros(onset.shape, bool)
    block = block_frames(config, frame_rate_hz)
    last: tuple[float, float | None] | None = None
    for start in range(0, n, block):
        part = slice(start, start + block)
        short = bool(start) and n - start < block / 2
        admit[part], thr, cut = block_onsets(
            onset[part],
            None if frame is None else frame[part],
            config,
            last if short else None,
            None if spec is None else spec[part],
        )
        thresholds[part] = thr
        last = (thr, cut)
    return thresholds, admit


def onset_thresholds(onset: np.ndarray, config: DecodeConfig, frame_rate_hz: float) -> np.ndarray:
    """The onset threshold of each frame: ``config.onset_threshold`` everywhere, or with a
    calibration one `plugin_onset_threshold` per block of ``adaptive_block_s`` seconds
    (blocks start at frame 0; a last block shorter than half a block, after a full one, takes
    the threshold of the block before it). The thresholds of `onset_decisions`.

    Args:
        onset: float (n_frames, 88), onset probabilities.
        config: the decoder's thresholds (without a rescorer, which needs the frame
            posteriors too: `onset_decisions`).
        frame_rate_hz: model frames per second.
    Returns:
        float (n_frames,).
    Raises:
        ValueError: ``config`` has a rescorer.
    """
    return onset_decisions(onset, None, config, frame_rate_hz)[0]


def frame_thresholds(onset_threshold: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """The frame threshold of each frame, given its onset threshold (`onset_thresholds`):
    ``config.frame_threshold``, capped at the onset threshold when the onset threshold is
    adaptive (a block whose notes start at a low posterior also sounds at a low one).
    float (n_frames,) → float (n_frames,)."""
    if not config.adaptive:
        return np.full(onset_threshold.shape, config.frame_threshold, dtype=np.float64)
    return np.minimum(config.frame_threshold, onset_threshold)


def block_frames(config: DecodeConfig, frame_rate_hz: float) -> int:
    """Frames per adaptive-threshold block (at least 1)."""
    return max(1, round(config.adaptive_block_s * frame_rate_hz))


def fit_onset_calibration(
    items: list[tuple[np.ndarray, Notes]], frame_rate_hz: float, max_knots: int = 64
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Fit the map from an onset peak's posterior to P(true onset) on validation posteriors.

    Every onset peak ≥ `PEAK_FLOOR` is a candidate note at its frame's time; the matching of
    the note metrics (`avfusion.notes.matched_onsets`: mir_eval, onset within 50 ms, same
    pitch, one-to-one) labels it true or false; an
    isotonic regression (scikit-learn) of the labels on the posteriors gives a non-decreasing
    map, thinned to at most ``max_knots`` knots.

    Args:
        items: (onset float (n_frames, 88), reference notes) per validation clip.
        frame_rate_hz: model frames per second.
    Returns:
        (x, y) knots for `DecodeConfig.onset_calibration_x` / ``_y``.
    Raises:
        ValueError: fewer than 2 distinct peak posteriors (nothing to fit).
    """
    from sklearn.isotonic import IsotonicRegression

    values, labels = [], []
    for onset, ref in items:
        t, k = np.nonzero(onset_peaks(onset) & (onset >= PEAK_FLOOR))
        values.append(onset[t, k])
        labels.append(label_candidates(t, k, ref, frame_rate_hz))
    x_all, y_all = np.concatenate(values), np.concatenate(labels)
    if len(np.unique(x_all)) < 2:
        raise ValueError("fit_onset_calibration: fewer than 2 distinct onset peaks to fit")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x_all, y_all)
    grid = np.unique(np.round(np.quantile(x_all, np.linspace(0, 1, max_knots)), 6))
    yk = np.maximum.accumulate(np.round(iso.predict(grid), 6))
    return tuple(float(v) for v in grid), tuple(float(v) for v in yk)


def decode_notes(
    onset: np.ndarray,
    frame: np.ndarray,
    velocity: np.ndarray | None,
    frame_rate_hz: float,
    config: DecodeConfig = DecodeConfig(),
    pedal: np.ndarray | None = None,
    spec: np.ndarray | None = None,
) -> Notes:
    """Turn per-key posteriors into notes.

    Args:
        onset, frame: float (n_frames, 88), probabilities in [0, 1].
        velocity: float (n_frames, 88), velocity / 127 (clipped to [0, 1]); None → 64.
        frame_rate_hz: model frames per second (frame i is at time i / frame_rate_hz).
        config: thresholds (with a calibration, one adaptive onset threshold per block:
            `onset_thresholds`).
        pedal: float (n_frames,), sustain-pedal probability, or None for no CC64.
        spec: float (n_frames, 88), the log-CQT per key (the posteriors' ``key_cqt``), read by
            a rescorer fitted on sound as well; None: no audio.
    Returns:
        :class:`Notes` with times in seconds.
    """
    n_frames, n_keys = onset.shape
    thresholds, admit = onset_decisions(onset, frame, config, frame_rate_hz, spec)
    sounding = frame >= frame_thresholds(thresholds, config)[:, None]
    peaks = admit & onset_peaks(onset)
    min_frames = max(1, int(np.ceil(config.min_note_ms / 1000 * frame_rate_hz)))
    notes: list[Note] = []
    for k in range(n_keys):
        starts = np.flatnonzero(peaks[:, k])
        for j, i in enumerate(starts):
            stop_at = starts[j + 1] if j + 1 < len(starts) else n_frames
            end = i + 1
            while end < stop_at and sounding[end, k]:
                end += 1
            end = min(max(end, i + min_frames), stop_at if stop_at > i else n_frames)
            end = max(end, i + 1)
            v = 64 if velocity is None else int(np.clip(round(float(velocity[i, k]) * 127), 1, 127))
            notes.append(
                Note(float(i / frame_rate_hz), float(end / frame_rate_hz), k + MIDI_MIN, v)
            )
    events: list[PedalEvent] = []
    if pedal is not None:
        down = pedal >= config.pedal_threshold
        changes = np.flatnonzero(np.diff(np.concatenate([[False], down]).astype(np.int8)))
        events = [PedalEvent(float(i / frame_rate_hz), 127 if down[i] else 0) for i in changes]
    return Notes.from_iterables(notes, events)


class StreamingDecoder:
    """Onsets-and-Frames decoding of posteriors that arrive in consecutive runs of frames.

    Gives exactly the notes and pedal events of :func:`avfusion.decoding.decode_notes` on the
    whole performance (the tests check it), holding only one frame of look-ahead and the notes
    still sounding. Per key: a note starts at an onset peak (a frame at or above
    ``onset_threshold`` that is ≥ the previous frame and > the next), lasts while the frame
    posterior stays at or above ``frame_threshold`` (at least ``min_note_ms``) and ends at the
    next onset of the key at the latest.

    With an onset calibration or a rescorer (`DecodeConfig.adaptive`) the frames are held until
    a block of ``adaptive_block_s`` seconds is complete (its threshold, or its rescored peaks,
    need all of it), so at most one block of posteriors is held.

    Usage::

        dec = StreamingDecoder(frame_rate_hz, DecodeConfig())
        for first_frame, post in iter_posteriors(...):
            dec.push(post["onset"], post["frame"], post["velocity"], post["pedal"],
                     post.get("key_cqt"))
        notes = dec.finish()
    """

    def __init__(self, frame_rate_hz: float, config: DecodeConfig | None = None) -> None:
        config = config or DecodeConfig()
        self.frame_rate_hz = float(frame_rate_hz)
        self.config = config
        self.min_frames = max(1, int(np.ceil(config.min_note_ms / 1000 * frame_rate_hz)))
        self.n_frames = 0  # frames pushed
        self._t = 0  # the next frame to decide on (frames before it are decided)
        self._prev_onset = np.zeros(N_KEYS)  # onset posterior of frame _t - 1
        self._held: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None  # frame _t
        self._held_admit = np.zeros(N_KEYS, bool)  # keys whose peak at frame _t may start a note
        self._open = np.zeros(N_KEYS, bool)
        self._n_open = 0
        self._running = np.zeros(N_KEYS, bool)
        self._start = np.zeros(N_KEYS, np.int64)
        self._run_end = np.zeros(N_KEYS, np.int64)
        self._velocity = np.full(N_KEYS, 64, np.int64)
        self._pedal_down = False
        self.notes: list[Note] = []
        self.pedal: list[PedalEvent] = []
        self._held_threshold = config.onset_threshold
        self._block = block_frames(config, frame_rate_hz)
        self._pending: list[tuple[np.ndarray | None, ...]]
        self._pending = []  # adaptive: frames of the block not yet complete
        self._n_pending = 0
        self._last_block: tuple[float, float | None] | None = None  # adaptive: the last full
        # block's threshold and rescored cut (`block_onsets`)

    def push(
        self,
        onset: np.ndarray,
        frame: np.ndarray,
        velocity: np.ndarray | None = None,
        pedal: np.ndarray | None = None,
        spec: np.ndarray | None = None,
    ) -> None:
        """Add the next ``n`` frames: onset, frame float (n, 88) probabilities; velocity float
        (n, 88) as velocity / 127 or None (64); pedal float (n,) probabilities or None; spec
        float (n, 88), the log-CQT per key (``key_cqt``) for a rescorer that reads the sound,
        or None (no audio)."""
        onset = np.asarray(onset)
        if onset.shape[0] == 0:
            return
        if not self.config.adaptive:
            onset_threshold = self.config.onset_threshold
            self._push(
                onset, np.asarray(frame), velocity, pedal, onset_threshold, onset >= onset_threshold
            )
            return
        self._pending.append(
            (
                onset,
                np.asarray(frame),
                None if velocity is None else np.asarray(velocity),
                None if pedal is None else np.asarray(pedal)[: onset.shape[0]],
                None if spec is None else np.asarray(spec),
            )
        )
        self._n_pending += onset.shape[0]
        while self._n_pending >= self._block:
            self._push_block(self._block)

    def _push_block(self, n: int, previous: tuple[float, float | None] | None = None) -> None:
        """Adaptive mode: decode the first ``n`` pending frames with their block's threshold and
        admitted peaks (`block_onsets` of them; ``previous``: a short last block's, from the
        block before it)."""
        parts = self._pending
        cat = [
            None if any(p[i] is None for p in parts) else np.concatenate([p[i] for p in parts])
            for i in range(5)
        ]
        onset, frame, vel, pedal, spec = cat
        assert onset is not None and frame is not None
        admit, threshold, cut = block_onsets(
            onset[:n], frame[:n], self.config, previous, None if spec is None else spec[:n]
        )
        if previous is None:
            self._last_block = (threshold, cut)
        self._push(onset[:n], frame[:n], None if vel is None else vel[:n],
                   None if pedal is None else pedal[:n], threshold, admit)  # fmt: skip
        rest = tuple(None if a is None else a[n:] for a in cat)
        self._pending = [rest] if rest[0] is not None and len(rest[0]) else []
        self._n_pending -= n

    def _push(
        self,
        onset: np.ndarray,
        frame: np.ndarray,
        velocity: np.ndarray | None,
        pedal: np.ndarray | None,
        threshold: float,
        admit: np.ndarray,
    ) -> None:
        """Decode the next frames with one onset threshold (it caps the frame threshold) and
        ``admit`` bool (n, 88), the peaks that may start notes (all frames but the last: it is
        held)."""
        n = onset.shape[0]
        vel = None if velocity is None else np.asarray(velocity)
        if pedal is not None:
            down = np.asarray(pedal)[:n] >= self.config.pedal_threshold
            states = np.concatenate([[self._pedal_down], down])
            for i in np.flatnonzero(states[1:] != states[:-1]):
                t_s = float((self.n_frames + int(i)) / self.frame_rate_hz)
                self.pedal.append(PedalEvent(t_s, 127 if down[i] else 0))
            self._pedal_down = bool(states[-1])
        # the frames decidable now: the held one and all new ones but the last (whose next
        # frame is not known yet); their peaks, vectorised
        if self._held is not None:
            h_on, h_fr, h_vel = self._held
            on = np.concatenate([h_on[None], onset[:-1]])
            fr = np.concatenate([h_fr[None], frame[:-1]])
            vl = None if vel is None or h_vel is None else np.concatenate([h_vel[None], vel[:-1]])
            adm = np.concatenate([self._held_admit[None], admit[:-1]])
            nxt = onset
        else:
            on, fr, nxt, adm = onset[:-1], frame[:-1], onset[1:], admit[:-1]
            vl = None if vel is None else vel[:-1]
        if len(on):
            prev = np.concatenate([self._prev_onset[None], on[:-1]])
            thr = np.full(len(on), threshold)
            if self._held is not None:
                thr[0] = self._held_threshold
            peaks = adm & (on >= prev) & (on > nxt)
            above = fr >= frame_thresholds(thr, self.config)[:, None]
            any_peak: np.ndarray = np.any(peaks, axis=1)
            for r in range(len(on)):
                if any_peak[r] or self._n_open:
                    self._decide(peaks[r], above[r], None if vl is None else vl[r])
                self._t += 1
            self._prev_onset = on[-1]
        self._held = (onset[-1], frame[-1], None if vel is None else vel[-1])
        self._held_admit = admit[-1]
        self._held_threshold = threshold
        self.n_frames += n

    def _emit(self, keys: np.ndarray, ends: np.ndarray) -> None:
        fr = self.frame_rate_hz
        for k, end in zip(keys.tolist(), ends.tolist(), strict=True):
            i = int(self._start[k])
            self.notes.append(Note(i / fr, end / fr, k + MIDI_MIN, int(self._velocity[k])))
        self._open[keys] = False
        self._running[keys] = False
        self._n_open -= len(keys)

    def _decide(self, peak: np.ndarray, above: np.ndarray, velocity: np.ndarray | None) -> None:
        """Decide frame ``self._t`` from its onset peaks and frame posteriors above threshold."""
        t = self._t
        # a new onset ends the key's open note (decode_notes' stop_at)
        closing = np.flatnonzero(peak & self._open)
        if closing.size:
            cand = np.maximum(self._run_end[closing], self._start[closing] + self.min_frames)
            self._emit(closing, np.minimum(cand, t))
        # notes still held extend while the frame posterior stays above its threshold
        held = self._open & self._running & (self._start < t)
        self._run_end[held & above] = t + 1
        self._running[held & ~above] = False
        # open a note at each peak
        starting = np.flatnonzero(peak)
        if starting.size:
            self._open[starting] = True
            self._n_open += len(starting)
            self._running[starting] = True
            self._start[starting] = t
            self._run_end[starting] = t + 1
            if velocity is None:
                self._velocity[starting] = 64
            else:
                for k in starting.tolist():
                    v = round(float(velocity[k]) * 127)  # as decode_notes: round, clip 1..127
                    self._velocity[k] = 1 if v < 1 else 127 if v > 127 else v
        # a note that stopped sounding is final once no onset can cut it short any more
        if self._n_open:
            cand = np.maximum(self._run_end, self._start + self.min_frames)
            done = np.flatnonzero(self._open & ~self._running & (t >= cand - 1))
            if done.size:
                self._emit(done, cand[done])

    def finish(self) -> Notes:
        """Decide the last frame, end the notes still open at the end, and return all notes.

        Returns:
            :class:`Notes` (seconds), the same as ``decode_notes`` on all frames pushed.
        """
        if self._n_pending:  # adaptive: the last, partial block
            short = self._last_block is not None and self._n_pending < self._block / 2
            self._push_block(self._n_pending, self._last_block if short else None)
        if self._held is not None:
            on, fr, vel = self._held
            peak = self._held_admit & (on >= self._prev_onset) & (on > 0)
            held = np.array([self._held_threshold])
            self._decide(peak, fr >= frame_thresholds(held, self.config)[0], vel)
            self._t += 1
            self._held = None
        n = self.n_frames
        keys = np.flatnonzero(self._open)
        if keys.size:
            cand = np.maximum(self._run_end[keys], self._start[keys] + self.min_frames)
            self._emit(keys, np.minimum(cand, n))
        return Notes.from_iterables(self.notes, self.pedal)
