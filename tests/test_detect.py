"""Keyboard detection on frames of the project's own renderer (train and test cameras, hands
over the keys) against the true corners, its refusals (noise, uniform, gradient,
checkerboard, evenly spaced bars, a photograph), tracking of a slowly moving camera, and
input validation. Frames are 640x360 and few, so the file runs in a few seconds."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from avfusion.detect import (
    MIN_CONFIDENCE,
    KeyboardDetection,
    KeyboardTracker,
    detect_keyboard,
    detect_keyboard_in_frames,
    key_template,
)
from avfusion.keyboard import keyboard_geometry
from avfusion.notes import Note, Notes
from avfusion.synth.render_video import KeyboardRenderer, draw_video_params

SIZE = (640, 360)


def _notes(seed: int, duration_s: float = 6.0) -> Notes:
    """Chords and runs over the whole keyboard, so both hands move over the keys."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0.3
    while t < duration_s - 0.5:
        for _ in range(int(rng.integers(1, 4))):
            pitch = int(rng.integers(30, 100))
            notes.append(Note(round(t, 3), round(t + float(rng.uniform(0.1, 0.5)), 3), pitch, 80))
        t += float(rng.uniform(0.15, 0.5))
    return Notes.from_iterables(notes)


def _renderer(camera: str, seed: int) -> KeyboardRenderer:
    params = draw_video_params(np.random.default_rng(seed), camera, fps=25, size_px=SIZE)
    return KeyboardRenderer(params, _notes(seed), hands=True, seed=seed)


def _corner_error_px(det: KeyboardDetection, true: np.ndarray) -> float:
    return float(np.linalg.norm(det.corners_px - true, axis=1).mean())


@pytest.fixture(scope="module", params=[("train", 11), ("test", 12)], ids=["train", "test"])
def rendered(request) -> tuple[list[np.ndarray], np.ndarray]:
    camera, seed = request.param
    r = _renderer(camera, seed)
    frames = [r.render_frame(t, i) for i, t in enumerate(np.linspace(0.8, 5.2, 8))]
    return frames, np.asarray(r.params.corners_px, np.float64)


def test_detects_rendered_keyboard_with_hands(rendered):
    frames, true = rendered
    for frame in frames[:4]:
        t0 = time.perf_counter()
        det = detect_keyboard(frame)
        elapsed_s = time.perf_counter() - t0
        assert det is not None
        assert det.corners_px.shape == (4, 2) and det.corners_px.dtype == np.float64
        assert MIN_CONFIDENCE <= det.confidence <= 1.0
        assert _corner_error_px(det, true) < 2.0, (det.corners_px, true)
        assert elapsed_s < 1.0, f"detection took {elapsed_s:.2f} s on a 640x360 frame"


def test_detect_in_frames_uses_the_median_frame(rendered):
    frames, true = rendered
    det = detect_keyboard_in_frames(iter(frames))
    assert det is not None and det.confidence >= MIN_CONFIDENCE
    assert _corner_error_px(det, true) < 1.5


def test_gray_and_rgb_frames_give_the_same_corners(rendered):
    frames, _ = rendered
    a = detect_keyboard(frames[0])
    b = detect_keyboard(cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY))
    assert a is not None and b is not None
    np.testing.assert_allclose(a.corners_px, b.corners_px, atol=1e-9)


def test_large_frame_is_analysed_downscaled_but_reported_in_its_own_pixels(rendered):
    frames, true = rendered
    big = cv2.resize(frames[1], (1280, 720), interpolation=cv2.INTER_LINEAR)
    det = detect_keyboard(big)
    assert det is not None
    # pixel centres: x_big = 2 x + 0.5
    assert _corner_error_px(det, 2 * true + 0.5) < 4.0


def _bars() -> np.ndarray:
    img = np.full(SIZE[::-1], 230, np.uint8)
    for x in range(20, 620, 14):  # evenly spaced dark bars: no 2-3 grouping
        img[100:160, x : x + 7] = 20
    return img


def _photo() -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        data = np.frombuffer(f.read(), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


NOT_KEYBOARDS = {
    "noise": lambda: np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8),
    "uniform": lambda: np.full((360, 640), 128, np.uint8),
    "gradient": lambda: np.tile(np.linspace(0, 255, 640), (360, 1)).astype(np.uint8),
    "checkerboard": lambda: ((np.indices((360, 640)) // 12).sum(axis=0) % 2 * 255).astype(np.uint8),
    "bars": _bars,
    "photo": _photo,
}


@pytest.mark.parametrize("name", list(NOT_KEYBOARDS))
def test_not_a_keyboard_gives_none(name):
    det = detect_keyboard(NOT_KEYBOARDS[name]())
    assert det is None or det.confidence < MIN_CONFIDENCE


def test_tracker_follows_a_slowly_moving_camera_and_holds_when_lost():
    r = _renderer("train", 21)
    true0 = np.asarray(r.params.corners_px, np.float64)
    velocity_px_s = np.array([3.0, 1.0])
    tracker = KeyboardTracker(recheck_interval_s=0.5, smoothing_s=0.5)
    fps = 5
    times = np.arange(0, 8.0, 1 / fps)
    for i, t in enumerate(times):
        dx, dy = velocity_px_s * t
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        frame = cv2.warpAffine(
            r.render_frame(float(t), i), m, SIZE, borderMode=cv2.BORDER_REPLICATE
        )
        det = tracker.update(frame, float(t))
        assert det is not None
    true_end = true0 + velocity_px_s * times[-1]
    assert _corner_error_px(det, true_end) < 3.0
    assert _corner_error_px(det, true0) > 15.0  # it really moved with the camera
    # a lost keyboard (a black frame) holds the last corners
    held = tracker.update(np.zeros(SIZE[::-1], np.uint8), float(times[-1] + 1.0))
    assert held is not None
    np.testing.assert_allclose(held.corners_px, det.corners_px)


def test_tracker_returns_none_until_found():
    tracker = KeyboardTracker()
    assert tracker.update(np.full((360, 640), 90, np.uint8), 0.0) is None
    assert tracker.detection is None


def test_key_template_shows_black_and_white_keys():
    img, tpl_from_mm = key_template(0.5)
    assert img.shape == (round(155 * 0.5), round(1222 * 0.5))
    g = keyboard_geometry()
    row = round((50.0 + 3.0) * 0.5)  # y = 50 mm
    cols = np.round(g.center_mm * tpl_from_mm[0, 0]).astype(int)
    assert np.all(img[row, cols[g.is_black]] < 0.3)
    front = round((130.0 + 3.0) * 0.5)
    assert np.all(img[front, cols[~g.is_black]] > 0.8)
    with pytest.raises(ValueError, match="px_per_mm"):
        key_template(5.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((360, 640), np.float32), "uint8"),
        (np.zeros((360, 640, 4), np.uint8), "shape"),
        (np.zeros(640, np.uint8), "shape"),
        (np.zeros((8, 8), np.uint8), "too small"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_invalid_frames_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        detect_keyboard(bad)


def test_detect_in_frames_rejects_empty_and_mixed_shapes():
    with pytest.raises(ValueError, match="no frames"):
        detect_keyboard_in_frames([])
    with pytest.raises(ValueError, match="differs"):
        detect_keyboard_in_frames([np.zeros((360, 640), np.uint8), np.zeros((180, 320), np.uint8)])
    with pytest.raises(ValueError, match="time_s"):
        KeyboardTracker().update(np.zeros((360, 640), np.uint8), float("nan"))
    with pytest.raises(ValueError, match="smoothing_s"):
        KeyboardTracker(smoothing_s=-1.0)
