"""Audio-video offset estimation on a clip the test renders itself (FluidSynth audio, keyboard
video with hands, rectified with the true corners) whose video timestamps are shifted by known
amounts; hand-computed key motion energies; flat inputs; input validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avfusion.keyboard import key_x_spans_px, rectify_homography
from avfusion.notes import Note, Notes
from avfusion.sync import (
    GRID_HZ,
    MIN_CONFIDENCE,
    MODEL_VIDEO_LEAD_S,
    OffsetEstimate,
    audio_onset_strength,
    estimate_offset_from_onsets_s,
    estimate_offset_s,
    key_motion_energy,
)
from avfusion.synth.render_audio import draw_audio_params, render_audio
from avfusion.synth.render_video import KeyboardRenderer, draw_video_params

SR = 16_000
FPS = 25
RECT = (416, 40)


def _notes(rng: np.random.Generator, duration_s: float) -> Notes:
    notes, t = [], 0.4
    while t < duration_s - 1.0:
        for _ in range(int(rng.integers(1, 4))):
            pitch = int(rng.integers(36, 96))
            off = round(t + float(rng.uniform(0.1, 0.5)), 3)
            notes.append(Note(round(t, 3), off, pitch, int(rng.integers(50, 110))))
        t += float(rng.uniform(0.12, 0.6))
    return Notes.from_iterables(notes)


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 s: audio (n,), rectified gray frames (200, 40, 416), frame times (200,)."""
    seed, duration_s = 1, 8.0
    notes = _notes(np.random.default_rng(seed), duration_s)
    audio = render_audio(notes, duration_s, draw_audio_params(np.random.default_rng(seed), "train"))
    params = draw_video_params(np.random.default_rng([seed, 2]), "train", fps=FPS)
    renderer = KeyboardRenderer(params, notes, seed=seed)
    h = rectify_homography(np.asarray(params.corners_px), *RECT)
    n = round(duration_s * FPS)
    frames = np.stack(
        [
            cv2.warpPerspective(
                cv2.cvtColor(renderer.render_frame(i / FPS, i), cv2.COLOR_RGB2GRAY), h, RECT
            )
            for i in range(n)
        ]
    )
    return audio, frames, np.arange(n) / FPS


def _onset_posteriors(notes: Notes, duration_s: float, frame_rate_hz: float) -> np.ndarray:
    """What a perfect transcription model gives: 1 on each note's onset frame, (n_frames, 88)."""
    onset = np.zeros((int(duration_s * frame_rate_hz) + 1, 88))
    for n in notes:
        onset[round(n.onset_s * frame_rate_hz), n.pitch - 21] = 1.0
    return onset


@pytest.mark.parametrize("shift_s", [0.2, -0.333, 0.0])
def test_model_onsets_recover_a_known_shift_where_other_sounds_fool_spectral_flux(clip, shift_s):
    audio, frames, times = clip
    notes = _notes(np.random.default_rng(1), 8.0)  # the clip's notes (same seed)
    onset = _onset_posteriors(notes, 8.0, 31.25)
    est = estimate_offset_from_onsets_s(onset, 31.25, frames, times + shift_s)
    assert abs(est.offset_s - (-shift_s)) < 1 / FPS, est
    assert est.confidence >= MIN_CONFIDENCE
    # loud clicks every 0.29 s (another instrument's attacks) swamp the spectral flux; the
    # model's piano onsets do not contain them
    clicks = np.zeros_like(audio)
    for t in np.arange(0.05, 8.0, 0.29):
        i = int(t * SR)
        clicks[i : i + 400] = np.random.default_rng(i).standard_normal(400) * 0.9
    flux = estimate_offset_s(audio * 0.1 + clicks, SR, frames, times + shift_s)
    assert abs(flux.offset_s - (-shift_s)) > 1 / FPS or flux.confidence < MIN_CONFIDENCE


def test_model_onsets_estimator_refuses_bad_posteriors(clip):
    _, frames, times = clip
    with pytest.raises(ValueError, match="88"):
        estimate_offset_from_onsets_s(np.zeros((100, 87)), 31.25, frames, times)
    with pytest.raises(ValueError, match="frame_rate_hz"):
        estimate_offset_from_onsets_s(np.zeros((100, 88)), 0.0, frames, times)
    assert estimate_offset_from_onsets_s(np.zeros((100, 88)), 31.25, frames, times) == (
        OffsetEstimate(0.0, 0.0)
    )  # no onsets at all: nothing to align
    assert MODEL_VIDEO_LEAD_S > 0


@pytest.mark.parametrize("shift_s", [0.2, -0.333, 0.137, 0.0])
def test_recovers_a_known_shift_within_one_frame(clip, shift_s):
    audio, frames, times = clip
    # video timestamps run shift_s late: an event at audio time t shows at video time t + shift
    est = estimate_offset_s(audio, SR, frames, times + shift_s)
    assert isinstance(est, OffsetEstimate)
    assert abs(est.offset_s - (-shift_s)) < 1 / FPS, est
    assert est.confidence >= MIN_CONFIDENCE
    # correcting by the convention puts the frames back on the audio clock
    corrected = times + shift_s + est.offset_s
    assert np.abs(corrected - times).max() < 1 / FPS


def test_offset_stays_within_the_search_range(clip):
    audio, frames, times = clip
    est = estimate_offset_s(audio, SR, frames, times + 0.2, max_offset_s=0.1)
    assert -0.1 <= est.offset_s <= 0.1


def test_no_motion_or_silence_gives_zero_confidence(clip):
    audio, frames, times = clip
    still = np.repeat(frames[:1], len(frames), axis=0)
    assert estimate_offset_s(audio, SR, still, times) == OffsetEstimate(0.0, 0.0)
    silent = np.zeros_like(audio)
    assert estimate_offset_s(silent, SR, frames, times) == OffsetEstimate(0.0, 0.0)


def test_key_motion_energy_hand_computed():
    frames = np.full((4, 40, 416), 200, np.uint8)
    frames[1] -= 10  # everything 10 levels darker: every key band darkens by 10
    frames[2] = frames[1]  # no change
    frames[3] = 200  # brighter again: not counted
    e = key_motion_energy(frames)
    np.testing.assert_allclose(e, [0.0, 88 * 10.0, 0.0, 0.0])
    # A0's band is columns 0..7 (23.5 mm of 1222 mm at 416 px); A#0's starts at column 6.9
    assert key_x_spans_px(416)[0, 1] == pytest.approx(8.0, abs=1e-3)
    one = np.full((2, 40, 416), 200, np.uint8)
    one[1, :, 0:6] = 100  # 6 of A0's 8 columns darken by 100; no other key's band holds them
    assert key_motion_energy(one)[1] == pytest.approx(100 * 6 / 8)


def test_audio_onset_strength_peaks_at_clicks():
    hop_s = 1 / GRID_HZ
    audio = np.zeros(SR * 3, np.float32)
    clicks_s = [0.5, 1.3, 2.2]
    rng = np.random.default_rng(0)
    for t in clicks_s:
        i = round(t * SR)
        audio[i : i + 800] = 0.5 * rng.standard_normal(800) * np.exp(-np.arange(800) / 200)
    env = audio_onset_strength(audio, SR, hop_s)
    assert env.shape == (len(audio) // round(hop_s * SR) + 1,)
    assert np.all(env >= 0)
    times = (np.arange(len(env)) - 0.5) * hop_s
    peaks = np.sort(np.argsort(env)[-3:])
    np.testing.assert_allclose(times[peaks], clicks_s, atol=0.02)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frames": np.zeros((10, 416), np.uint8)}, r"\(T, H, W\)"),
        ({"times_s": np.arange(9) / FPS}, r"times_s must have shape \(10,\)"),
        ({"times_s": np.zeros(10)}, "strictly increasing"),
        ({"audio": np.zeros((2, SR), np.float32)}, "mono"),
        ({"max_offset_s": 0.0}, "max_offset_s"),
        ({"frames": np.zeros((2, 40, 416), np.uint8), "times_s": np.arange(2.0)}, "at least 3"),
    ],
)
def test_bad_inputs_raise(kwargs, message):
    args = {
        "audio": np.zeros(SR, np.float32),
        "sample_rate_hz": SR,
        "frames": np.zeros((10, 40, 416), np.uint8),
        "times_s": np.arange(10) / FPS,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        estimate_offset_s(**args)


def test_key_motion_energy_and_onset_strength_validate():
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        key_motion_energy(np.zeros((40, 416), np.uint8))
    with pytest.raises(ValueError, match="88"):
        key_motion_energy(np.zeros((3, 40, 50), np.uint8))
    with pytest.raises(ValueError, match="hop_s"):
        audio_onset_strength(np.zeros(SR, np.float32), SR, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        audio_onset_strength(np.full(SR, np.nan, np.float32), SR, 0.01)
