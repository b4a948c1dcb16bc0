"""Audio-video offset estimation: how far a video's timestamps are off the audio's clock.

Method: time-delay estimation by cross-correlation (Knapp & Carter, "The generalized
correlation method for estimation of time delay", IEEE Trans. ASSP 1976) of two onset
envelopes, one per modality, that peak when keys go down:

- video: :func:`key_motion_energy`, the darkening of each key's column band between
  consecutive rectified frames (a pressed key's front edge moves back and its top shades);
- audio: :func:`audio_onset_strength`, spectral flux of a log-mel spectrogram (Bello et al.,
  "A tutorial on onset detection in music signals", IEEE Trans. SAP 2005), computed by
  :func:`librosa.onset.onset_strength` (Böck & Widmer's SuperFlux, DAFx 2013, with
  ``max_size=1``: plain spectral flux);
- or, for the audio, a transcription model's onset posteriors of the sound alone summed over
  the keys (:func:`estimate_offset_from_onsets_s`, what ``avfusion transcribe`` uses): they
  respond to piano notes only, so other instruments and noise, which add onsets of their own
  to the spectral flux, barely move them.

Both are resampled onto a common grid (:data:`GRID_HZ`), standardised, and their normalised
cross-correlation is evaluated at every lag within ``±max_offset_s``; the peak is refined by
parabolic interpolation (sub-grid accuracy). See :func:`estimate_offset_s` for the sign
convention.

Timestamps of the envelopes: the change between frames ``i − 1`` and ``i`` is dated at their
midpoint (it gathers the key motion of that interval); the flux between spectrogram frames
``i − 1`` and ``i`` (centred STFT frames) is dated at their midpoint too.

The video envelope leads the sound: hands move onto the keys, fingers lift and dip, and keys
travel down before the hammer strikes, so visible motion peaks before the onset it belongs
to. On the rendered validation split the cross-correlation peak sits :data:`VIDEO_LEAD_S`
(79 ms) before the sound (27 performances: median 79 ms, standard deviation 7 ms; the audio
envelope itself peaks within 6 ms of the true onsets), and :func:`estimate_offset_s` removes
this lead. Real pianists' motion leads the sound too (key
travel alone takes 20–50 ms, finger motion starts earlier); for real videos the constant is
the renderer's, and the caller can pass their own ``video_lead_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avfusion.keyboard import key_x_spans_px

GRID_HZ: float = 100.0
"""Rate of the common grid the two envelopes are resampled to for the cross-correlation."""
ONSET_N_FFT_S: float = 0.032
"""STFT window of the audio onset envelope (s): short, so the flux peak stays near the onset."""
ONSET_N_MELS: int = 64
"""Mel bands of the audio onset envelope."""
VIDEO_LEAD_S: float = 0.079
"""How long the video's key-motion envelope leads the audio's onset envelope (seconds):
median over the 27 performances of the rendered validation split of the cross-correlation
lag (``python -m eval.measure_sync_detect --calibrate``; the test split is not used)."""
MODEL_VIDEO_LEAD_S: float = 0.080
"""The same lead for :func:`estimate_offset_from_onsets_s` (seconds): median over the 27
performances of the rendered validation split of the lag between the video's key motion and
a fusion model's summed onset posteriors of the sound alone (80.0 ms, standard deviation
7.1 ms, with the stage-3 model; 81.8 ms, sd 7.4 ms, with the bundled stage-5b one: within a
few ms of each other, a tenth of a video frame; ``python -m eval.measure_sync_detect --split
validation --calibrate --model fusion``; the test split is not used)."""
MIN_CONFIDENCE: float = 0.05
"""Offsets estimated with a lower :attr:`OffsetEstimate.confidence` should not be trusted: no
key motion or silent audio (confidence 0), a clip too short to hold several notes, or a rhythm
so regular that lags a beat apart match almost equally well. On the rendered validation and
test splits (40 performances) every matched pair scores 0.07–0.56. The confidence cannot
reject a wrong audio track with a similar rhythm: the audio of another performance of the
corpus scores up to 0.17 (half of such pairs score below 0.05)."""


@dataclass(frozen=True)
class OffsetEstimate:
    """An audio-video offset and how much to trust it.

    Attributes:
        offset_s: audio time minus video time of the same event (seconds): add it to the video
            frames' timestamps to put them on the audio clock.
        confidence: 0..1; 0 when either envelope is flat (no motion, silence); below
            :data:`MIN_CONFIDENCE` the estimate should not be used.
    """

    offset_s: float
    confidence: float


def key_motion_energy(frames: np.ndarray) -> np.ndarray:
    """Key-press motion of rectified keyboard frames.

    For each pair of consecutive frames, the darkening ``frames[t - 1] − frames[t]`` is
    averaged over each of the 88 keys' column bands (:func:`avfusion.keyboard.key_x_spans_px`,
    whole rectified height), its positive part taken per key (a pressed key's front edge moves
    back, uncovering the dark gap under it, and its top tilts away from the light), and summed
    over the keys.

    Args:
        frames: uint8 (or any real dtype) array, shape (T, H, W): rectified grayscale keyboard
            frames (:func:`avfusion.data.rectified_frames`; x spans the keyboard's 1222 mm
            linearly, so key k covers the columns ``key_x_spans_px(W)[k]``).
    Returns:
        float64 (T,), ≥ 0: gray levels (8-bit, 0..255) of darkening per pixel, averaged within
        each key's band and summed over the 88 keys. Element 0 is 0 (no previous frame);
        element t describes the interval between frames t − 1 and t.
    Raises:
        ValueError: ``frames`` is not 3-D or is narrower than 88 columns.
    """
    x = np.asarray(frames)
    if x.ndim != 3:
        raise ValueError(
            f"key_motion_energy: frames must be (T, H, W) rectified grayscale frames, got shape "
            f"{x.shape}"
        )
    n, _, width = x.shape
    if width < 88:
        raise ValueError(
            f"key_motion_energy: rectified frames are {width} px wide; need at least 88 "
            "(one column per key; the default is 416)"
        )
    out = np.zeros(n, np.float64)
    if n < 2:
        return out
    spans = key_x_spans_px(width)
    lo = np.clip(np.floor(spans[:, 0]).astype(int), 0, width - 1)
    hi = np.clip(np.ceil(spans[:, 1]).astype(int), lo + 1, width)
    cols = np.asarray(x, np.float32).mean(axis=1)  # (T, W): column means
    csum = np.concatenate([np.zeros((n, 1), np.float64), np.cumsum(cols, axis=1)], axis=1)
    bands = (csum[:, hi] - csum[:, lo]) / (hi - lo)  # (T, 88): mean gray level per key band
    darkening = bands[:-1] - bands[1:]
    out[1:] = np.maximum(darkening, 0.0).sum(axis=1)
    return out


def audio_onset_strength(audio: np.ndarray, sample_rate_hz: int, hop_s: float) -> np.ndarray:
    """Spectral-flux onset envelope of an audio signal.

    ``librosa.onset.onset_strength`` (positive first difference of a log-power mel
    spectrogram, averaged over :data:`ONSET_N_MELS` bands, ``lag=1``, ``max_size=1``) on a
    centred STFT with a :data:`ONSET_N_FFT_S` window and hop ``hop_s``.

    Args:
        audio: float array, shape (n_samples,), mono, in [-1, 1].
        sample_rate_hz: its sample rate (Hz).
        hop_s: spacing of the envelope's frames (seconds); rounded to whole samples.
    Returns:
        float64 (n_env,), ≥ 0, dB per mel band: element i is the flux between STFT frames
        i − 1 and i, centred at ``(i − 0.5) · hop`` seconds (element 0 is 0); ``n_env =
        1 + n_samples // hop`` samples.
    Raises:
        ValueError: audio not 1-D, empty or not finite, a non-positive rate, or a hop shorter
            than one sample.
    """
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(
            f"audio_onset_strength: audio must be mono, shape (n_samples,), got {y.shape}"
        )
    if not np.isfinite(y).all():
        raise ValueError("audio_onset_strength: audio has NaN or infinite samples")
    if y.size < 2:
        raise ValueError(f"audio_onset_strength: audio has {y.size} samples; need at least 2")
    if not sample_rate_hz > 0:
        raise ValueError(f"audio_onset_strength: sample_rate_hz={sample_rate_hz} must be positive")
    hop = round(hop_s * sample_rate_hz) if hop_s > 0 else 0
    if hop < 1:
        raise ValueError(f"audio_onset_strength: hop_s={hop_s} must be at least one sample")
    n_fft = max(2 ** round(math.log2(max(ONSET_N_FFT_S * sample_rate_hz, 16))), 16)
    mel = librosa.feature.melspectrogram(
        y=y, sr=sample_rate_hz, n_fft=n_fft, hop_length=hop, n_mels=ONSET_N_MELS, center=True
    )
    s_db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
    env = librosa.onset.onset_strength(S=s_db, lag=1, max_size=1, center=False)
    return np.asarray(env, np.float64)


def _standardise(x: np.ndarray) -> np.ndarray | None:
    sd = float(x.std())
    if not np.isfinite(sd) or sd < 1e-9 * max(float(np.abs(x).max()), 1e-30) or sd == 0.0:
        return None
    return (x - x.mean()) / sd


def estimate_offset_s(
    audio: np.ndarray,
    sample_rate_hz: int,
    frames: np.ndarray,
    times_s: np.ndarray,
    max_offset_s: float = 1.0,
    *,
    video_lead_s: float = VIDEO_LEAD_S,
) -> OffsetEstimate:
    """Estimate the offset between a performance's audio and its keyboard video.

    Convention: if an event (a key press) happens at video time ``t_v`` (the timestamp of the
    frame that shows it) and at audio time ``t_a`` (``t_a = sample index / sample_rate_hz``),
    then ``offset_s = t_a − t_v``; correct the video by using ``times_s + offset_s`` as the
    frames' times on the audio clock. A video whose timestamps run 0.2 s late (events appear
    at ``t_v = t_a + 0.2``) gives ``offset_s ≈ −0.2``.

    Method (module docstring): the video's :func:`key_motion_energy` (dated at the midpoints
    between frames, plus ``video_lead_s``) and the audio's :func:`audio_onset_strength` are
    resampled by linear interpolation onto a :data:`GRID_HZ` grid, the audio envelope is
    averaged over one frame interval (the video difference gathers one interval's motion), and
    the Pearson correlation of the overlapping parts is computed at every grid lag within
    ``±max_offset_s``; the best lag is refined by a parabola through its neighbours.

    Confidence: ``r_peak − max(r_2, 0)`` clipped to 0..1, where ``r_peak`` is the peak
    correlation and ``r_2`` the highest correlation at lags more than 0.1 s from it: high when
    the peak is both strong and unique (rhythmic music gives rival peaks a beat away). 0 when
    either envelope is flat (no motion, silence). See :data:`MIN_CONFIDENCE`.

    Args:
        audio: float array, shape (n_samples,), mono, in [-1, 1].
        sample_rate_hz: the audio's sample rate (Hz).
        frames: array, shape (T, H, W), rectified grayscale keyboard frames (T ≥ 3).
        times_s: float array, shape (T,), the frames' presentation times (seconds, video clock,
            increasing).
        max_offset_s: largest offset searched, either way (seconds, > 0).
        video_lead_s: how long visible key motion precedes the sound (seconds,
            :data:`VIDEO_LEAD_S`); 0 aligns the raw envelopes.
    Returns:
        The :class:`OffsetEstimate`; ``offset_s`` lies within ``±max_offset_s``.
    Raises:
        ValueError: wrong shapes (frames not (T, H, W), times_s not (T,)), fewer than 3
            frames, times not strictly increasing or not finite, audio not 1-D or not finite,
            a non-positive sample rate or max_offset_s.
    """
    frames = np.asarray(frames)
    times = np.asarray(times_s, dtype=np.float64)
    _check_video(frames, times, max_offset_s, video_lead_s, "estimate_offset_s")
    y = np.asarray(audio)
    if y.ndim != 1:
        raise ValueError(
            f"estimate_offset_s: audio must be mono, shape (n_samples,), got {y.shape}"
        )

    hop_s = 1.0 / GRID_HZ
    a_env = audio_onset_strength(y, sample_rate_hz, hop_s)
    hop_true_s = round(hop_s * sample_rate_hz) / sample_rate_hz
    a_t = (np.arange(len(a_env)) - 0.5) * hop_true_s
    return _estimate(a_t, a_env, frames, times, max_offset_s, video_lead_s)


def _check_video(
    frames: np.ndarray, times: np.ndarray, max_offset_s: float, lead_s: float, where: str
) -> None:
    """The argument checks common to both estimators (see their Raises); messages start with
    ``where``, the estimator's name."""
    if frames.ndim != 3:
        raise ValueError(
            f"{where}: frames must be (T, H, W) rectified grayscale frames, got "
            f"shape {frames.shape}"
        )
    if times.shape != (frames.shape[0],):
        raise ValueError(
            f"{where}: times_s must have shape ({frames.shape[0]},) (one time per "
            f"frame), got {times.shape}"
        )
    if len(times) < 3:
        raise ValueError(f"{where}: need at least 3 frames, got {len(times)}")
    if not np.isfinite(times).all() or not np.all(np.diff(times) > 0):
        raise ValueError(f"{where}: times_s must be finite and strictly increasing")
    if not (max_offset_s > 0 and math.isfinite(max_offset_s)):
        raise ValueError(f"{where}: max_offset_s={max_offset_s} must be positive")
    if not math.isfinite(lead_s):
        raise ValueError(f"{where}: video_lead_s={lead_s} must be finite")


def estimate_offset_from_onsets_s(
    onset: np.ndarray,
    frame_rate_hz: float,
    frames: np.ndarray,
    times_s: np.ndarray,
    max_offset_s: float = 1.0,
    *,
    video_lead_s: float = MODEL_VIDEO_LEAD_S,
) -> OffsetEstimate:
    """Estimate the audio-video offset with a transcription model's onset posteriors as the
    audio envelope: :func:`estimate_offset_s` with ``onset.sum(axis=1)`` (expected number of
    piano note onsets per model frame) in place of spectral flux.

    A trained model's onsets respond to piano notes only, so other instruments, babble and
    broadband noise, which put their own onsets into spectral flux, barely move them. On the
    validation split (27 performances × 7 shifts) with other instruments at 0 dB, the
    stage-3 fusion model's onsets put every estimate within one video frame (largest error 21 ms),
    spectral flux 94 % (largest error 783 ms) (``python -m eval.measure_sync_detect --split
    validation --condition music@0db [--model fusion]``).

    Args:
        onset: float (n_frames, 88) onset probabilities (:func:`avfusion.inference.
            predict_posteriors` on the audio alone); model frame i at ``i / frame_rate_hz`` s
            of the audio.
        frame_rate_hz: the model's frame rate (frames/s).
        frames, times_s, max_offset_s: as for :func:`estimate_offset_s`.
        video_lead_s: how long visible key motion precedes the model's onsets (seconds,
            :data:`MODEL_VIDEO_LEAD_S`).
    Returns:
        The :class:`OffsetEstimate` (same convention and confidence as
        :func:`estimate_offset_s`).
    Raises:
        ValueError: as :func:`estimate_offset_s`; ``onset`` not (n_frames, 88) or not finite,
            a non-positive frame rate.
    """
    frames = np.asarray(frames)
    times = np.asarray(times_s, dtype=np.float64)
    _check_video(frames, times, max_offset_s, video_lead_s, "estimate_offset_from_onsets_s")
    post = np.asarray(onset, dtype=np.float64)
    if post.ndim != 2 or post.shape[1] != 88:
        raise ValueError(
            f"estimate_offset_from_onsets_s: onset must be (n_frames, 88), got {post.shape}"
        )
    if not np.isfinite(post).all():
        raise ValueError("estimate_offset_from_onsets_s: onset has NaN or infinite values")
    if not frame_rate_hz > 0:
        raise ValueError(f"estimate_offset_from_onsets_s: frame_rate_hz={frame_rate_hz} <= 0")
    a_env = post.sum(axis=1)
    a_t = np.arange(len(a_env)) / float(frame_rate_hz)
    return _estimate(a_t, a_env, frames, times, max_offset_s, video_lead_s)


def _estimate(
    a_t: np.ndarray,
    a_env: np.ndarray,
    frames: np.ndarray,
    times: np.ndarray,
    max_offset_s: float,
    video_lead_s: float,
) -> OffsetEstimate:
    """Cross-correlate an audio onset envelope (times ``a_t``, values ``a_env``) with the
    video's key motion; the peak lag, refined by a parabola, and its confidence."""
    v_env = key_motion_energy(frames)[1:]
    v_t = 0.5 * (times[1:] + times[:-1]) + video_lead_s
    frame_s = float(np.median(np.diff(times)))
    lags, r = _lag_correlation(a_t, a_env, v_t, v_env, frame_s, max_offset_s)
    if r is None:
        return OffsetEstimate(0.0, 0.0)

    inner = slice(1, len(lags) - 1)
    m = 1 + int(np.argmax(r[inner]))
    r_peak = float(r[m])
    if r_peak <= 0:
        return OffsetEstimate(0.0, 0.0)
    delta = 0.0
    denom = r[m - 1] - 2 * r[m] + r[m + 1]
    if r[m - 1] > -1 and r[m + 1] > -1 and denom < 0:
        delta = float(np.clip(0.5 * (r[m - 1] - r[m + 1]) / denom, -0.5, 0.5))
    offset_s = float(np.clip((lags[m] + delta) / GRID_HZ, -max_offset_s, max_offset_s))
    return OffsetEstimate(offset_s, _confidence(lags, r, m))


def _box_mean(t: np.ndarray, x: np.ndarray, grid_t: np.ndarray, width_s: float) -> np.ndarray:
    """Mean of the piecewise-linear signal (t, x) over [g − width/2, g + width/2] for each g
    (exact, through the integral of the linear interpolant)."""
    seg = 0.5 * (x[1:] + x[:-1]) * np.diff(t)
    integral = np.concatenate([[0.0], np.cumsum(seg)])

    def at(u: np.ndarray) -> np.ndarray:
        u = np.clip(u, t[0], t[-1])
        i = np.clip(np.searchsorted(t, u, side="right") - 1, 0, len(t) - 2)
        dt = u - t[i]
        slope = (x[i + 1] - x[i]) / (t[i + 1] - t[i])
        return integral[i] + x[i] * dt + 0.5 * slope * dt**2

    return (at(grid_t + width_s / 2) - at(grid_t - width_s / 2)) / width_s


def _lag_correlation(
    a_t: np.ndarray,
    a_env: np.ndarray,
    v_t: np.ndarray,
    v_env: np.ndarray,
    frame_s: float,
    max_offset_s: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pearson correlation of the video envelope with the audio envelope shifted by each lag.

    Returns:
        (lags, r): int lags in grid steps from ``−L − 1`` to ``L + 1`` (L = max_offset_s on
        the grid; the outer two only for the parabola) and float r per lag (−1 where the
        overlap is too short); r is None when either envelope is flat.
    """
    if len(a_t) < 2 or len(v_t) < 2:
        return np.zeros(0, int), None
    # audio averaged over one frame interval (the box the video difference integrates)
    grid_t = np.arange(math.floor(a_t[0] * GRID_HZ), math.ceil(a_t[-1] * GRID_HZ) + 1) / GRID_HZ
    a_grid = _box_mean(a_t, a_env, grid_t, frame_s)
    v_grid_t = np.arange(math.ceil(v_t[0] * GRID_HZ), math.floor(v_t[-1] * GRID_HZ) + 1) / GRID_HZ
    if len(v_grid_t) < 3:
        return np.zeros(0, int), None
    v_grid = np.interp(v_grid_t, v_t, v_env)
    if _standardise(v_grid) is None or _standardise(a_grid) is None:
        return np.zeros(0, int), None

    max_lag = max(1, math.floor(max_offset_s * GRID_HZ + 1e-9))
    lags = np.arange(-max_lag - 1, max_lag + 2)
    r = np.full(len(lags), -1.0)
    i0 = round(v_grid_t[0] * GRID_HZ) - round(grid_t[0] * GRID_HZ)  # a index of v_grid_t[0]
    for m, lag in enumerate(lags):
        a_lo = i0 + lag
        lo = max(0, -a_lo)
        hi = min(len(v_grid), len(a_grid) - a_lo)
        if hi - lo < max(3, len(v_grid) // 4):
            continue
        va = v_grid[lo:hi]
        aa = a_grid[a_lo + lo : a_lo + hi]
        sv, sa = va.std(), aa.std()
        if sv <= 0 or sa <= 0:
            continue
        r[m] = float(np.mean((va - va.mean()) * (aa - aa.mean())) / (sv * sa))
    return lags, r


def _confidence(lags: np.ndarray, r: np.ndarray, m: int) -> float:
    """Peak correlation minus the best rival's more than 0.1 s away, clipped to 0..1."""
    far = np.abs(lags - lags[m]) > 0.1 * GRID_HZ
    far[0] = far[-1] = False
    r_2 = float(r[far].max()) if far.any() else 0.0
    return float(np.clip(r[m] - max(r_2, 0.0), 0.0, 1.0))
