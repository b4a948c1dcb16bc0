"""Keyboard video renderer: key presses stay on their key, geometry, determinism, the encoded
file, hand occlusion, and the disjoint train/test camera ranges. Small frames (320x180) and
clips of a second or two keep the file fast."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import av
import cv2
import numpy as np
import pytest

from avfusion.keyboard import is_black
from avfusion.notes import Note, Notes
from avfusion.synth.render_video import (
    CAMERA_RANGES,
    KeyboardRenderer,
    VideoParams,
    draw_video_params,
    key_region_mask,
    plane_to_frame_homography,
    write_video,
)

SMALL = (320, 180)


def _params(seed: int = 3, camera: str = "train", **changes: object) -> VideoParams:
    p = draw_video_params(np.random.default_rng(seed), camera, fps=25, size_px=SMALL)
    return dataclasses.replace(p, **changes)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("pitch", [60, 61])  # C4 (white), C#4 (black)
def test_pressed_key_changes_only_its_own_region(pitch):
    params = _params(blur_sigma_px=0.5)  # blur kernel radius 1 px
    t_s, frame_index = 0.5, 12
    down = KeyboardRenderer(params, Notes((Note(0.2, 1.0, pitch),)), hands=False, seed=5)
    up = KeyboardRenderer(params, Notes(), hands=False, seed=5)
    assert down.key_down(t_s)[pitch - 21] == 1.0
    changed = np.any(
        down.render_frame(t_s, frame_index) != up.render_frame(t_s, frame_index), axis=-1
    )
    region = key_region_mask(params, pitch)
    # bilinear warp (1 px) + blur radius (1 px) + rasterisation (1 px)
    near = cv2.dilate(region.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert changed[region].sum() >= 3, "pressing the key should visibly change it"
    assert not changed[~near].any(), (
        f"pixels changed outside key {pitch}: {np.argwhere(changed & ~near)[:5]}"
    )


def test_key_regions_nonempty_and_ordered():
    params = _params()
    masks = [key_region_mask(params, p) for p in range(21, 109)]
    assert all(m.shape == (SMALL[1], SMALL[0]) and m.dtype == bool for m in masks)
    assert all(m.any() for m in masks)
    centroid_x = np.array([np.argwhere(m)[:, 1].mean() for m in masks])
    white = [k for k in range(88) if not is_black(k + 21)]
    assert len(white) == 52
    assert np.all(np.diff(centroid_x[white]) > 0)
    # the homography maps the keyboard's corners onto the recorded corners
    h = plane_to_frame_homography(params)
    corner = h @ np.array([1222.0, 150.0, 1.0])
    assert np.allclose(corner[:2] / corner[2], params.corners_px[2], atol=1e-3)


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    params = _params()
    notes = Notes.from_iterables([Note(0.1, 0.6, 48), Note(0.1, 0.6, 64), Note(0.4, 0.9, 67)])
    audio = (0.2 * np.sin(np.arange(16000) * 0.07)).astype(np.float32)
    paths = [tmp_path / f"{k}.mp4" for k in range(3)]
    for path, seed in zip(paths, (1, 1, 2), strict=True):
        write_video(path, KeyboardRenderer(params, notes, seed=seed), 1.0, audio)
    assert _sha256(paths[0]) == _sha256(paths[1])
    assert _sha256(paths[0]) != _sha256(paths[2])


def test_frames_do_not_depend_on_render_order():
    notes = Notes.from_iterables([Note(0.1, 0.8, 60), Note(0.5, 1.2, 72)])
    a = KeyboardRenderer(_params(), notes, seed=9)
    b = KeyboardRenderer(_params(), notes, seed=9)
    a.render_frame(0.9, 22)
    assert np.array_equal(a.render_frame(0.3, 7), b.render_frame(0.3, 7))
    assert not np.array_equal(a.render_frame(0.3, 7), a.render_frame(0.3, 8))  # fresh noise


def test_written_video_decodes_with_both_tracks(tmp_path):
    params = _params()
    duration_s = 1.32
    notes = Notes.from_iterables([Note(0.2, 1.0, 60), Note(0.5, 1.1, 43)])
    audio = (0.3 * np.sin(np.arange(int(duration_s * 16000) + 300) * 0.05)).astype(np.float32)
    done: list[int] = []
    info = write_video(
        tmp_path / "v.mp4",
        KeyboardRenderer(params, notes, seed=1),
        duration_s,
        audio,
        16000,
        progress=done.append,
    )
    n_frames = round(duration_s * params.fps)
    assert info["n_frames"] == n_frames == done[-1]
    frame_s = 1 / params.fps
    with av.open(str(tmp_path / "v.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    with av.open(str(tmp_path / "v.mp4")) as c:
        a = c.streams.audio[0]
        assert a.rate == 16000
        track_s = float(a.duration * a.time_base)
        decoded_s = sum(f.samples for f in c.decode(a)) / a.rate
    assert len(frames) == n_frames
    assert all(f.shape == (SMALL[1], SMALL[0], 3) for f in frames)
    assert abs(track_s - duration_s) <= frame_s
    assert abs(decoded_s - duration_s) <= frame_s
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_hands_occlude_pressed_keys():
    params = _params(seed=4)
    chord = [48, 52, 55, 60, 64, 67]
    notes = Notes.from_iterables([Note(0.2, 1.5, p) for p in chord])
    t_s, frame_index = 1.0, 25
    with_hands = KeyboardRenderer(params, notes, hands=True, seed=2)
    without = KeyboardRenderer(params, notes, hands=False, seed=2)
    hand = with_hands.hand_mask(t_s)
    assert hand.any() and not without.hand_mask(t_s).any()
    diff = np.abs(
        with_hands.render_frame(t_s, frame_index).astype(int)
        - without.render_frame(t_s, frame_index).astype(int)
    ).max(axis=-1)
    hidden = []
    for p in chord:
        region = key_region_mask(params, p)
        overlap = region & hand
        hidden.append(overlap.sum() / region.sum())
        if overlap.sum() >= 3:  # where the mask says "hand", the picture shows one
            assert np.median(diff[overlap]) > 15
    assert max(hidden) > 0.15, f"no pressed key is noticeably hidden: {hidden}"
    assert min(hidden) < 1.0


def test_camera_ranges_disjoint_and_unknown_camera_rejected():
    for name in (
        "rotation_abs_deg",
        "keystone_abs",
        "side_keystone_abs",
        "light_strength",
        "tint_abs",
        "noise_sigma",
        "blur_sigma_px",
    ):
        assert getattr(CAMERA_RANGES["train"], name)[1] <= getattr(CAMERA_RANGES["test"], name)[0]
    rng = np.random.default_rng(0)
    draws = {
        c: [draw_video_params(rng, c, size_px=SMALL) for _ in range(150)] for c in ("train", "test")
    }

    def measured(p: VideoParams) -> tuple[float, float]:
        c = np.array(p.corners_px)
        top, bottom = c[1] - c[0], c[2] - c[3]
        angle = math.degrees(math.atan2(top[1] + bottom[1], top[0] + bottom[0]))
        return abs(angle), abs(np.linalg.norm(top) / np.linalg.norm(bottom) - 1)

    train = np.array([measured(p) for p in draws["train"]])
    test = np.array([measured(p) for p in draws["test"]])
    assert train[:, 0].max() < test[:, 0].min()  # rotation
    assert train[:, 1].max() < test[:, 1].min()  # keystone
    assert max(p.light_strength for p in draws["train"]) <= min(
        p.light_strength for p in draws["test"]
    )
    for p in draws["train"] + draws["test"]:
        c = np.array(p.corners_px)
        assert c[:, 0].min() >= 0 and c[:, 0].max() < SMALL[0] and c[:, 1].min() >= 0
        assert c[:, 1].max() < SMALL[1] and p.fps in (25, 30)
    with pytest.raises(ValueError, match="train"):
        draw_video_params(rng, "validation")


def test_params_round_trip_through_json():
    p = _params(camera="test")
    assert VideoParams.from_dict(json.loads(json.dumps(dataclasses.asdict(p)))) == p
    with pytest.raises(ValueError, match="width_px"):
        dataclasses.replace(p, width_px=321)
