"""Keyboard video renderer: a top-down video of a piano keyboard and the pianist's hands, drawn
from a performance's notes, encoded as H.264 with the audio muxed in as AAC.

Picture model (all of it drawn with OpenCV):

1. **Keyboard plane canvas.** The 88 keys are drawn once per performance on a canvas of the
   keyboard plane (:data:`CANVAS_PX_PER_MM` px per mm; plane coordinates as in
   :mod:`avfusion.keyboard`: x 0..1222 mm from A0's left edge, y 0 mm at the fallboard to
   150 mm at the front of the white keys), with the piano body (fallboard, felt strip, cheek
   blocks, key slip) and a textured floor around it. The canvas covers the whole frame.
2. **Per frame** only what moves is redrawn: each key that is down (front edge moved back by
   up to ``press_depth_mm``, a shading change and darker side edges, all strictly inside the
   key's own polygon) and the two hands (arm, palm, five fingers, a soft shadow on the keys).
3. The canvas is warped into the frame by the camera homography (:func:`plane_to_frame_homography`),
   then the camera response is applied: optical blur, a lighting gradient with vignetting,
   exposure and a colour tint, and Gaussian sensor noise.

Frame ``i`` at time ``t_s`` is a pure function of (params, notes, seed, t_s, i): the canvas is
restored from the static copy before each frame, the hand motion is planned once from the notes,
and the noise of frame ``i`` is a window, at an offset drawn from a Generator seeded with
``(seed, i)``, of a per-performance Gaussian noise field (a fresh pattern every frame at the
cost of one addition, so frames can be rendered in any order and on any worker).

Key motion: a key goes down linearly during ``press_ramp_ms`` ending at the note onset (the
hammer strikes when the key is down) and comes up linearly during ``release_ramp_ms`` starting
at the note offset; the amount is sampled at the frame time.

Camera and parameters: :mod:`avfusion.synth.camera`; hand planning and drawing:
:mod:`avfusion.synth.hands` (on a random two-hand texture about 87% of pressed keys
are partly hidden by a finger, palm or arm; see :meth:`KeyboardRenderer.hand_mask`).

Conventions: frame pixel coordinates have (0, 0) at the centre of the top-left pixel
(OpenCV's); images are RGB uint8, shape (height, width, 3). Module constants only; OpenCV and
PyAV are imported when first used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN, N_KEYS
from avfusion.fileio import atomic_path
from avfusion.keyboard import (
    BLACK_KEY_LENGTH_MM,
    KEYBOARD_WIDTH_MM,
    WHITE_KEY_LENGTH_MM,
    is_black,
    key_polygon_mm,
    key_x_span_mm,
    keyboard_geometry,
)
from avfusion.notes import Notes
from avfusion.synth.camera import (
    CAMERA_RANGES,
    CANVAS_PX_PER_MM,
    SUBPIXEL_BITS,
    SUBPIXEL_SCALE,
    CameraRanges,
    Canvas,
    VideoParams,
    canvas_for,
    draw_video_params,
    key_region_mask,
    plane_to_frame_homography,
    to_rgb,
)
from avfusion.synth.hands import (
    HandShape,
    down_amount,
    draw_hand,
    draw_silhouette,
    hand_colours,
    hand_shape,
    note_arrays,
    plan_hands,
)

__all__ = [
    "AUDIO_BITRATE_BPS",
    "CAMERA_RANGES",
    "CANVAS_PX_PER_MM",
    "PRESS_LEVELS",
    "CameraRanges",
    "KeyboardRenderer",
    "VideoParams",
    "draw_video_params",
    "key_region_mask",
    "plane_to_frame_homography",
    "write_video",
]

AUDIO_BITRATE_BPS: int = 64_000
"""AAC bit rate of the muxed audio track (bits/s)."""
_AAC_FRAME = 1024  # samples per AAC frame
PRESS_LEVELS: int = 8
"""Key-down amounts are drawn in this many steps (the ramps last less than a frame)."""

# --------------------------------------------------------------------------- static picture


def _white_top_polygon(midi_pitch: int, inset_mm: float) -> np.ndarray:
    """A white key's top polygon shrunk by ``inset_mm`` at its sides (the gaps)."""
    left, right = key_x_span_mm(midi_pitch)
    back_left, back_right = left, right
    if midi_pitch - 1 >= MIDI_MIN and is_black(midi_pitch - 1):
        back_left = key_x_span_mm(midi_pitch - 1)[1]
    if midi_pitch + 1 <= MIDI_MAX and is_black(midi_pitch + 1):
        back_right = key_x_span_mm(midi_pitch + 1)[0]
    g = inset_mm
    yb, yf = BLACK_KEY_LENGTH_MM + g, WHITE_KEY_LENGTH_MM
    pts = [(back_left + g, 0.0), (back_right - g, 0.0)]
    if back_right < right:
        pts += [(back_right - g, yb), (right - g, yb)]
    pts += [(right - g, yf), (left + g, yf)]
    if back_left > left:
        pts += [(left + g, yb), (back_left + g, yb)]
    return np.array(pts)


def _rect_mm(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def _fill(img: np.ndarray, cv: Canvas, poly_mm: np.ndarray, rgb: Any, aa: bool = False) -> None:
    import cv2

    cv2.fillPoly(
        img, [cv.ipx(poly_mm)], to_rgb(rgb), cv2.LINE_AA if aa else cv2.LINE_8, SUBPIXEL_BITS
    )


def _shade_rows(
    img: np.ndarray,
    cv: Canvas,
    x_mm: tuple[float, float],
    y_mm: tuple[float, float],
    gain: Callable[[np.ndarray], np.ndarray],
) -> None:
    """Multiply a plane rectangle of the canvas by gain(y_mm) row by row."""
    (c0, r0), (c1, r1) = cv.px(np.array([(x_mm[0], y_mm[0]), (x_mm[1], y_mm[1])]))
    c0, c1 = max(math.floor(c0), 0), min(math.ceil(c1) + 1, img.shape[1])
    r0, r1 = max(math.floor(r0), 0), min(math.ceil(r1) + 1, img.shape[0])
    if c1 <= c0 or r1 <= r0:
        return
    rows = np.arange(r0, r1)
    g = gain(cv.y_mm(rows)).astype(np.float32)[:, None, None]
    roi = img[r0:r1, c0:c1].astype(np.float32) * g
    img[r0:r1, c0:c1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)


def _background(params: VideoParams, cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """The floor around the piano: a smooth two-colour field with a texture. (H, W, 3) uint8."""
    import cv2

    hgt, wid = cv.height_px, cv.width_px
    low = rng.random((max(2, hgt // 300 + 2), max(2, wid // 300 + 2))).astype(np.float32)
    mix = cv2.resize(low, (wid, hgt), interpolation=cv2.INTER_CUBIC)[..., None]
    c1 = np.asarray(params.background_rgb, np.float32)
    c2 = np.asarray(params.background2_rgb, np.float32)
    img = c2 + (c1 - c2) * np.clip(mix, 0, 1)
    if params.background_style == "wood":
        plank_mm = rng.uniform(90, 160)
        rows = cv.y_mm(np.arange(hgt))
        plank = np.floor(rows / plank_mm).astype(int)
        shade = 1 + 0.08 * rng.standard_normal(plank.max() - plank.min() + 1)[plank - plank.min()]
        seam = (np.mod(rows, plank_mm) < 2.5).astype(np.float32)
        grain = cv2.resize(
            rng.standard_normal((hgt // 2 + 1, wid // 30 + 2)).astype(np.float32),
            (wid, hgt),
            interpolation=cv2.INTER_LINEAR,
        )
        img *= (shade * (1 - 0.35 * seam))[:, None, None].astype(np.float32)
        img *= (1 + 0.035 * grain)[..., None]
    elif params.background_style == "carpet":
        fine = rng.standard_normal((hgt, wid)).astype(np.float32)
        img *= (1 + 0.06 * cv2.GaussianBlur(fine, (3, 3), 0.8))[..., None]
    else:
        img *= (1 + 0.01 * rng.standard_normal((hgt, wid)).astype(np.float32))[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _draw_body(img: np.ndarray, params: VideoParams, cv: Canvas) -> None:
    """Piano body, fallboard, felt strip, cheek blocks and key slip around the keys."""
    body = np.asarray(params.body_rgb, float)
    light = body * 1.15 + 10
    dark = body * 0.7
    w, fb, slip, cheek = KEYBOARD_WIDTH_MM, params.fallboard_mm, params.key_slip_mm, params.cheek_mm
    y_top = -fb - params.body_depth_mm
    y_front = WHITE_KEY_LENGTH_MM + slip
    _fill(img, cv, _rect_mm(-cheek, y_top, w + cheek, y_front), body, aa=True)
    # glossy body top: a soft reflection band
    _shade_rows(
        img,
        cv,
        (-cheek, w + cheek),
        (y_top, -fb),
        lambda y: (
            1 + 0.25 * np.exp(-(((y - (y_top - fb) / 2) / max(params.body_depth_mm / 4, 5)) ** 2))
        ),
    )
    _fill(img, cv, _rect_mm(-cheek, -fb, w + cheek, 0.0), light, aa=True)  # fallboard
    _shade_rows(img, cv, (-cheek, w + cheek), (-fb, 0.0), lambda y: 1.1 - 0.25 * (y + fb) / fb)
    _fill(img, cv, _rect_mm(-cheek, -fb - 1.5, w + cheek, -fb + 0.5), light * 1.2 + 10)  # edge
    _fill(img, cv, _rect_mm(0.0, -3.0, w, 0.0), params.felt_rgb)
    for x0 in (-cheek, w):  # cheek blocks
        _fill(img, cv, _rect_mm(x0, -fb, x0 + cheek, y_front), body * 1.08 + 4, aa=True)
        edge = x0 + cheek if x0 < 0 else x0
        _fill(img, cv, _rect_mm(edge - 1.2, -fb, edge + 1.2, y_front), dark)
    _fill(img, cv, _rect_mm(0.0, WHITE_KEY_LENGTH_MM, w, y_front), body * 0.92, aa=True)  # key slip
    _fill(img, cv, _rect_mm(-cheek, y_front - 1.5, w + cheek, y_front), light)  # its front edge
    _fill(img, cv, _rect_mm(0.0, WHITE_KEY_LENGTH_MM, w, WHITE_KEY_LENGTH_MM + 2.0), dark * 0.6)
    # floor shadow in front of the piano
    (c0, r0) = cv.px(np.array([(-cheek, y_front)]))[0]
    r0 = int(max(r0, 0))
    r1 = min(r0 + int(30 * cv.px_per_mm), img.shape[0])
    c0 = int(max(c0, 0))
    c1 = int(min(cv.px(np.array([(w + cheek, 0.0)]))[0][0], img.shape[1]))
    if r1 > r0 and c1 > c0:
        g = (0.6 + 0.4 * np.linspace(0, 1, r1 - r0))[:, None, None].astype(np.float32)
        img[r0:r1, c0:c1] = (img[r0:r1, c0:c1] * g).astype(np.uint8)


def _draw_white_key(
    img: np.ndarray, params: VideoParams, cv: Canvas, pitch: int, gain: float
) -> None:
    _fill(img, cv, key_polygon_mm(pitch), params.gap_rgb)
    _fill(img, cv, _white_top_polygon(pitch, 0.55), np.asarray(params.white_key_rgb) * gain)


def _draw_black_key(img: np.ndarray, params: VideoParams, cv: Canvas, pitch: int) -> None:
    left, right = key_x_span_mm(pitch)
    blk = np.asarray(params.black_key_rgb, float)
    length = BLACK_KEY_LENGTH_MM
    _fill(img, cv, key_polygon_mm(pitch), blk * 0.55)  # tapered sides
    _fill(img, cv, _rect_mm(left + 1.3, 0.0, right - 1.3, length - 10.0), blk)  # top face
    for k, (y0, y1) in enumerate(
        ((length - 10, length - 6), (length - 6, length - 3), (length - 3, length - 1))
    ):
        _fill(
            img, cv, _rect_mm(left + 1.6, y0, right - 1.6, y1), blk + (28, 18, 6)[k]
        )  # front slope
    _fill(img, cv, _rect_mm(left + 1.3, 0.0, left + 2.1, length - 10), blk + 22)  # bevel sheen
    _fill(img, cv, _rect_mm(right - 2.1, 0.0, right - 1.3, length - 10), blk + 12)
    _fill(img, cv, _rect_mm(left + 3.0, length - 35, right - 3.0, length - 14), blk + 8)  # gloss


def _static_keyboard(params: VideoParams, cv: Canvas) -> np.ndarray:
    """The keyboard with no key down and no hands, before the anti-alias filter. (H, W, 3)."""
    import cv2

    rng = np.random.default_rng([params.background_seed, 7])
    img = _background(params, cv, rng)
    _draw_body(img, params, cv)
    geo = keyboard_geometry()
    gains = 1 + 0.012 * rng.standard_normal(N_KEYS)
    for k in range(N_KEYS):
        if not geo.is_black[k]:
            _draw_white_key(img, params, cv, MIDI_MIN + k, float(gains[k]))
    # rounded front edge of the white keys (inside their polygons)
    _shade_rows(
        img,
        cv,
        (0.0, KEYBOARD_WIDTH_MM),
        (WHITE_KEY_LENGTH_MM - 1.6, WHITE_KEY_LENGTH_MM - 0.5),
        lambda y: np.full_like(y, 0.86),
    )
    # soft shadow of the black keys on the white keys
    shadow = np.zeros(img.shape[:2], np.float32)
    for kb in np.flatnonzero(geo.is_black):
        left, right = float(geo.left_mm[kb]), float(geo.right_mm[kb])
        cv2.fillPoly(
            shadow,
            [cv.ipx(_rect_mm(left - 0.5, 0.0, right + 1.0, BLACK_KEY_LENGTH_MM + 2.5))],
            1.0,
            cv2.LINE_AA,
            SUBPIXEL_BITS,
        )
    sig = 1.5 * cv.px_per_mm
    soft = cv2.GaussianBlur(shadow, (0, 0), sig)
    img[:] = np.clip(img * (1 - 0.3 * soft[..., None]) + 0.5, 0, 255).astype(np.uint8)
    for kb in np.flatnonzero(geo.is_black):
        _draw_black_key(img, params, cv, MIDI_MIN + int(kb))
    # shadow of the fallboard on the back of all keys
    _shade_rows(
        img,
        cv,
        (0.0, KEYBOARD_WIDTH_MM),
        (0.0, 16.0),
        lambda y: 0.7 + 0.3 * np.clip(y / 16.0, 0, 1),
    )
    return img


def _prefilter(img: np.ndarray) -> np.ndarray:
    """Anti-alias filter of the canvas before it is warped down to the frame."""
    import cv2

    return cv2.GaussianBlur(img, (5, 5), 0.6 * CANVAS_PX_PER_MM)


@dataclass
class _KeyPatch:
    """A key's bounding box on the canvas and its polygon mask there."""

    r0: int
    r1: int
    c0: int
    c1: int
    mask: np.ndarray  # bool (r1 - r0, c1 - c0)
    edge_mm: np.ndarray  # float32, same shape: distance to the key's outline (mm, horizontal)


def _key_patch(cv: Canvas, pitch: int, canvas_shape: tuple[int, ...]) -> _KeyPatch:
    import cv2

    poly = cv.px(key_polygon_mm(pitch))
    c0 = max(math.floor(poly[:, 0].min()) - 3, 0)
    c1 = min(math.ceil(poly[:, 0].max()) + 4, canvas_shape[1])
    r0 = max(math.floor(poly[:, 1].min()) - 3, 0)
    r1 = min(math.ceil(poly[:, 1].max()) + 4, canvas_shape[0])
    m = np.zeros((r1 - r0, c1 - c0), np.uint8)
    cv2.fillPoly(
        m,
        [np.round((poly - (c0, r0)) * SUBPIXEL_SCALE).astype(np.int32)],
        1,
        cv2.LINE_8,
        SUBPIXEL_BITS,
    )
    # distance to the outline, ignoring the back and front ends (rows padded by replication)
    padded = np.pad(m, ((8, 8), (0, 0)), mode="edge")
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[8:-8] / cv.px_per_mm
    return _KeyPatch(r0, r1, c0, c1, m.astype(bool), dist.astype(np.float32))


def _pressed_patch(
    raw: np.ndarray, params: VideoParams, cv: Canvas, pitch: int, kp: _KeyPatch, amount: float
) -> np.ndarray:
    """The canvas patch of a key that is ``amount`` (0..1] down, already anti-alias filtered.

    Only pixels inside the key's polygon differ from the static picture (the caller pastes
    through ``kp.mask``).
    """
    import cv2

    patch = raw[kp.r0 : kp.r1, kp.c0 : kp.c1].astype(np.float32)
    st = amount * params.pressed_strength
    depth_mm = amount * params.press_depth_mm
    y = cv.y_mm(np.arange(kp.r0, kp.r1))[:, None]
    black = is_black(pitch)
    length = BLACK_KEY_LENGTH_MM if black else WHITE_KEY_LENGTH_MM
    gain = np.ones(kp.mask.shape, np.float32)
    if black:
        base = np.asarray(params.black_key_rgb, np.float32)
        patch = base + (patch - base) * (1 - 0.6 * st)  # sheen and highlights fade as it tilts
        gain *= 1 - st * 0.15 * np.clip(y / length, 0, 1)
    else:
        gain *= 1 - st * (0.015 + 0.045 * np.clip(y / length, 0, 1))  # tilts away from the light
    side_mm = 0.8 + 1.4 * amount
    gain *= 1 - st * 0.3 * np.clip(1 - kp.edge_mm / side_mm, 0, 1)  # neighbours' sides show
    patch *= gain[..., None]
    # the front edge moves back: the strip it leaves shows the dark gap below
    gap = np.asarray(params.gap_rgb, np.float32) * 0.6
    if black:
        gap = 0.6 * gap + 0.4 * np.asarray(params.white_key_rgb, np.float32) * 0.3
    cover = np.clip((y - (length - depth_mm)) * cv.px_per_mm + 0.5, 0, 1).astype(np.float32)
    cover = np.broadcast_to(cover, kp.mask.shape)[..., None] * 0.9
    patch = patch * (1 - cover) + gap * cover
    out = raw[kp.r0 : kp.r1, kp.c0 : kp.c1].copy()
    inside = kp.mask
    out[inside] = np.clip(patch[inside] + 0.5, 0, 255).astype(np.uint8)
    out = cv2.GaussianBlur(out, (5, 5), 0.6 * CANVAS_PX_PER_MM)
    return out


# --------------------------------------------------------------------------- renderer


def _warp_maps(
    canvas_to_frame: np.ndarray, width_px: int, height_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point source maps for ``cv2.remap``: each frame pixel's position on the canvas
    (the same bilinear sampling as ``cv2.warpPerspective``, without recomputing the map
    every frame)."""
    import cv2

    inv = np.linalg.inv(canvas_to_frame)
    yy, xx = np.mgrid[0:height_px, 0:width_px].astype(np.float64)
    pts = np.stack([xx, yy, np.ones_like(xx)], axis=-1) @ inv.T
    map_x = (pts[..., 0] / pts[..., 2]).astype(np.float32)
    map_y = (pts[..., 1] / pts[..., 2]).astype(np.float32)
    m1, m2 = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    return m1, m2


class KeyboardRenderer:
    """Renders frames of one performance (see the module docstring for the picture model).

    Args:
        params: the drawn :class:`VideoParams`.
        notes: the performance; notes outside MIDI 21..108 are ignored.
        hands: draw the pianist's hands (off for diagnostics and the key-region test).
        seed: seeds the hand planning details and the per-frame sensor noise.

    Building one costs about 0.3–0.4 s at 640x360 (the static keyboard, the warp maps, the
    noise field and the hand plan); a frame then takes about 7 ms on one core. A renderer
    keeps one working canvas, so it is not thread-safe: use one per thread or process.
    """

    def __init__(self, params: VideoParams, notes: Notes, *, hands: bool = True, seed: int) -> None:
        self.params = params
        self.hands = hands
        self.seed = int(seed)
        self._h = plane_to_frame_homography(params)
        self._cv = canvas_for(params, self._h)
        self._m = self._h @ np.linalg.inv(self._cv.matrix())  # canvas px -> frame px
        self._maps = _warp_maps(self._m, params.width_px, params.height_px)
        self._raw = _static_keyboard(params, self._cv)
        self._static = _prefilter(self._raw)
        self._work = self._static.copy()
        self._dirty: list[tuple[int, int, int, int]] = []
        self._patches: dict[int, _KeyPatch] = {}
        self._pressed: dict[tuple[int, int], np.ndarray] = {}
        self._notes = note_arrays(notes)
        self._tracks = plan_hands(self._notes, params, np.random.default_rng([self.seed, 1]))
        self._y_bottom_mm = float(self._cv.y_mm(np.array([self._cv.height_px]))[0])
        # camera response, fixed per performance
        wid, hgt = params.width_px, params.height_px
        yy, xx = np.mgrid[0:hgt, 0:wid].astype(np.float32)
        xn, yn = (xx - wid / 2) / (wid / 2), (yy - hgt / 2) / (hgt / 2)
        a = math.radians(params.light_angle_deg)
        grad = (xn * math.cos(a) + yn * math.sin(a)) / math.sqrt(2)
        light = (
            params.exposure
            * (1 + params.light_strength * grad)
            * (1 - params.vignette_strength * (xn**2 + yn**2) / 2)
        )
        self._gain = (light[..., None] * np.asarray(params.tint_rgb, np.float32)).astype(np.float32)
        noise_rng = np.random.default_rng([self.seed, 2])
        self._noise = (
            noise_rng.standard_normal((2 * hgt, 2 * wid, 3), dtype=np.float32) * params.noise_sigma
        )
        self._blur_r = (
            max(1, math.ceil(2 * params.blur_sigma_px)) if params.blur_sigma_px > 0 else 0
        )
        self._shadow_scale = 0.25
        self._colours = hand_colours(params)

    # -- state of the performance at a time

    def key_down(self, t_s: float) -> np.ndarray:
        """How far each key is down at ``t_s`` (0 up .. 1 fully down).

        Returns:
            float64 array, shape (88,), key index = MIDI − 21.
        """
        na, p = self._notes, self.params
        out = np.zeros(N_KEYS)
        if len(na.onset_s) == 0:
            return out
        press_s, release_s = p.press_ramp_ms / 1000, p.release_ramp_ms / 1000
        hi = int(np.searchsorted(na.onset_s, t_s + press_s, side="right"))
        lo = int(np.searchsorted(na.onset_s, t_s - na.max_len_s - release_s, side="left"))
        if hi <= lo:
            return out
        a = down_amount(t_s, na.onset_s[lo:hi], na.offset_s[lo:hi], press_s, release_s)
        np.maximum.at(out, na.key[lo:hi], a)
        return out

    def _hand_shapes(self, t_s: float) -> list[HandShape]:
        p = self.params
        press_s, release_s = p.press_ramp_ms / 1000, p.release_ramp_ms / 1000
        shapes = []
        for tr in self._tracks:
            tips = tr.tips_at(t_s).copy()
            for j, fn in enumerate(tr.finger_notes):
                if len(fn) == 0:
                    continue
                near = np.abs(fn[:, 0] - t_s) < 0.3
                near |= (fn[:, 0] <= t_s) & (t_s <= fn[:, 1] + release_s)
                if not near.any():
                    continue
                on, off = fn[near, 0], fn[near, 1]
                down = float(down_amount(t_s, on, off, press_s, release_s).max())
                lift = float(np.clip(1 - np.abs(t_s - (on - press_s - 0.06)) / 0.05, 0, 1).max())
                tips[j, 1] += -2.5 * down + 4.0 * lift
            shapes.append(hand_shape(tips, tr.side, p, self._y_bottom_mm))
        return shapes

    # -- drawing

    def _patch(self, k: int) -> _KeyPatch:
        if k not in self._patches:
            self._patches[k] = _key_patch(self._cv, MIDI_MIN + k, self._raw.shape)
        return self._patches[k]

    def _paste_key(self, k: int, level: int) -> None:
        kp = self._patch(k)
        img = self._pressed.get((k, level))
        if img is None:
            img = _pressed_patch(
                self._raw, self.params, self._cv, MIDI_MIN + k, kp, level / PRESS_LEVELS
            )
            self._pressed[(k, level)] = img
        roi = self._work[kp.r0 : kp.r1, kp.c0 : kp.c1]
        roi[kp.mask] = img[kp.mask]
        self._dirty.append((kp.r0, kp.r1, kp.c0, kp.c1))

    def _bbox(self, shapes: list[HandShape], margin_mm: float) -> tuple[int, int, int, int] | None:
        pts = np.concatenate(
            [np.concatenate([hs.arm, hs.sleeve, hs.palm, hs.tips, hs.knuckles]) for hs in shapes]
        )
        px = self._cv.px(pts)
        m = margin_mm * self._cv.px_per_mm
        c0 = max(int(px[:, 0].min() - m), 0)
        c1 = min(int(px[:, 0].max() + m) + 1, self._cv.width_px)
        r0 = max(int(px[:, 1].min() - m), 0)
        r1 = min(int(px[:, 1].max() + m) + 1, self._cv.height_px)
        if c1 <= c0 or r1 <= r0:
            return None
        return r0, r1, c0, c1

    def _draw_hands(self, shapes: list[HandShape]) -> None:
        """Both hands' soft shadows on the keyboard, then the hands over them."""
        import cv2

        p = self.params
        cv = self._cv
        off = np.asarray(p.shadow_offset_mm, float)
        boxes = [self._bbox([hs], 40.0 + float(np.abs(off).max())) for hs in shapes]
        # shadows are cast on the keys and the body just around them, not on the far floor
        row_lo = int(cv.px(np.array([(0.0, -p.fallboard_mm - 10.0)]))[0, 1])
        row_hi = int(cv.px(np.array([(0.0, WHITE_KEY_LENGTH_MM + p.key_slip_mm + 60.0)]))[0, 1])
        for hs, box in zip(shapes, boxes, strict=True):
            if box is None:
                continue
            self._dirty.append(box)
            r0, r1, c0, c1 = box
            r0, r1 = max(r0, row_lo), min(r1, row_hi)
            if p.shadow_strength <= 0 or r1 <= r0:
                continue
            sc = self._shadow_scale
            sub = Canvas(
                cv.x0_mm + c0 / cv.px_per_mm, cv.y0_mm + r0 / cv.px_per_mm, c1 - c0, r1 - r0
            )
            small = np.zeros((int((r1 - r0) * sc) + 1, int((c1 - c0) * sc) + 1), np.float32)
            draw_silhouette(small, sub, hs, sc, off, 1.0)
            soft = cv2.GaussianBlur(small, (0, 0), 10.0 * cv.px_per_mm * sc)
            keep = (255.5 - 255 * p.shadow_strength * np.clip(soft, 0, 1)).astype(np.uint8)
            keep_roi = cv2.resize(keep, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
            roi = self._work[r0:r1, c0:c1]  # a view: multiplied in place
            cv2.multiply(roi, cv2.cvtColor(keep_roi, cv2.COLOR_GRAY2RGB), roi, scale=1 / 255)
        for hs in shapes:
            draw_hand(self._work, cv, hs, self._colours, p.hand_scale)

    def _restore(self) -> None:
        for r0, r1, c0, c1 in self._dirty:
            self._work[r0:r1, c0:c1] = self._static[r0:r1, c0:c1]
        self._dirty.clear()

    def render_canvas(self, t_s: float) -> np.ndarray:
        """The keyboard-plane canvas at ``t_s`` before the camera (a view for debugging).

        Returns:
            uint8 (canvas height, canvas width, 3) RGB, a copy.
        """
        self._draw_state(t_s)
        return self._work.copy()

    def _draw_state(self, t_s: float) -> None:
        self._restore()
        down = self.key_down(t_s)
        for k in np.flatnonzero(down > 0):
            level = round(float(down[k]) * PRESS_LEVELS)
            if level > 0:
                self._paste_key(int(k), level)
        if self.hands:
            self._draw_hands(self._hand_shapes(t_s))

    def render_frame(self, t_s: float, frame_index: int) -> np.ndarray:
        """The video frame at time ``t_s`` (seconds); ``frame_index`` selects the sensor noise.

        Deterministic for the same (params, notes, hands, seed, t_s, frame_index), whatever
        was rendered before.

        Returns:
            uint8 array, shape (height_px, width_px, 3), RGB.
        """
        import cv2

        p = self.params
        self._draw_state(t_s)
        frame = cv2.remap(
            self._work, *self._maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        if self._blur_r:
            k = 2 * self._blur_r + 1
            frame = cv2.GaussianBlur(frame, (k, k), p.blur_sigma_px)
        lit = cv2.multiply(frame, self._gain, dtype=cv2.CV_32F)  # lighting, exposure, tint
        rng = np.random.default_rng([self.seed, 3, int(frame_index)])
        oy = int(rng.integers(0, p.height_px + 1))
        ox = int(rng.integers(0, p.width_px + 1))
        noise = self._noise[oy : oy + p.height_px, ox : ox + p.width_px]
        return cv2.add(lit, noise, dtype=cv2.CV_8U)  # rounds and saturates

    def hand_mask(self, t_s: float) -> np.ndarray:
        """Frame pixels covered by the hands and arms at ``t_s`` (no shadow): for occlusion
        statistics and labels.

        Returns:
            bool array, shape (height_px, width_px); all False when hands are off.
        """
        import cv2

        p = self.params
        if not self.hands:
            return np.zeros((p.height_px, p.width_px), bool)
        mask = np.zeros((self._cv.height_px, self._cv.width_px), np.uint8)
        for hs in self._hand_shapes(t_s):
            draw_silhouette(mask, self._cv, hs, 1.0, np.zeros(2), 255)
        out = cv2.remap(mask, *self._maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out >= 128

    def hand_coverage(self, notes: Notes) -> np.ndarray:
        """How much of each note's key the hands hide when the note starts: the share of the
        key's top surface in the frame (:func:`avfusion.synth.camera.key_region_mask`) that
        :meth:`hand_mask` covers at the note's onset time.

        This is the renderer's own ground truth, for asking how a video model's misses depend
        on what the camera could see (``eval.errors --coverage``).

        Args:
            notes: the notes to measure (usually the performance's own, as read back from
                its notes.mid).
        Returns:
            float64 array, shape (len(notes),), in the order of ``notes.notes``: 0 = the whole
            key visible .. 1 = all of it hidden; NaN for a note outside MIDI 21..108 and for a
            key that lies wholly outside the frame.
        """
        out = np.full(len(notes), np.nan)
        keys: dict[int, np.ndarray] = {}
        hands: dict[float, np.ndarray] = {}
        for i, note in enumerate(notes.notes):
            if not MIDI_MIN <= note.pitch <= MIDI_MAX:
                continue
            if note.pitch not in keys:
                keys[note.pitch] = key_region_mask(self.params, note.pitch)
            region = keys[note.pitch]
            area = int(region.sum())
            if area == 0:
                continue
            if note.onset_s not in hands:
                hands[note.onset_s] = self.hand_mask(note.onset_s)
            out[i] = float((region & hands[note.onset_s]).sum()) / area
        return out


# --------------------------------------------------------------------------- encoding


def write_video(
    path: str | Path,
    renderer: KeyboardRenderer,
    duration_s: float,
    audio: np.ndarray | None,
    sample_rate_hz: int = 16000,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Render and encode a performance as an MP4: H.264 (libx264, yuv420p, the params' bit
    rate, preset veryfast without mb-tree, one thread) and, when ``audio`` is given, an AAC
    track (64 kbit/s) interleaved with the video.

    Frame i shows time i / fps; ``n_frames = round(duration_s × fps)``. The audio is trimmed
    or zero-padded to the whole number of AAC frames (1024 samples) nearest to
    ``duration_s × sample_rate_hz``, so that the audio track lasts ``duration_s`` within 32 ms
    at 16 kHz (less than one video frame at 25 or 30 fps) both as the container reports it
    and as decoders that ignore MP4 edit lists decode it. The file is written atomically and
    is byte-identical for the same inputs (bit-exact muxer and encoder flags, one encoder
    thread, x264's mb-tree off: with it this x264 build's output varies from run to run).

    Args:
        path: output .mp4 path (its folder must exist).
        renderer: the performance's renderer.
        duration_s: length of the video (seconds, > 0).
        audio: float32 mono, shape (n_samples,), in [-1, 1], or None for no audio track.
        sample_rate_hz: audio sample rate (Hz).
        progress: called with the number of frames written so far, after each frame.
    Returns:
        dict with n_frames, fps, duration_s, width_px, height_px, size_bytes.
    Raises:
        ValueError: a bad duration or audio (names the problem). OSError: the folder is
        missing or not writable.
    """
    import av

    p = renderer.params
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(
            f"write_video: duration_s={duration_s} must be a positive number of seconds"
        )
    n_frames = max(1, round(duration_s * p.fps))
    samples: np.ndarray | None = None
    if audio is not None:
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(
                f"write_video: audio must be mono, shape (n_samples,), got {samples.shape}"
            )
        if not np.isfinite(samples).all():
            raise ValueError("write_video: audio has NaN or infinite samples")
        if samples.size and np.abs(samples).max() > 1.001:
            raise ValueError(
                f"write_video: audio exceeds [-1, 1] (peak {np.abs(samples).max():.3f})"
            )
        if sample_rate_hz <= 0:
            raise ValueError(f"write_video: sample_rate_hz={sample_rate_hz} must be positive")
        # a whole number of AAC frames nearest the duration: decoders that ignore the MP4
        # edit list then still give duration_s within half an AAC frame (32 ms at 16 kHz)
        n_samples = max(1, round(duration_s * sample_rate_hz / _AAC_FRAME)) * _AAC_FRAME
        samples = np.clip(samples[:n_samples], -1, 1)
        samples = np.pad(samples, (0, n_samples - samples.size))
    with atomic_path(path) as tmp:
        with av.open(
            str(tmp),
            mode="w",
            format="mp4",
            options={"fflags": "+bitexact", "movflags": "+faststart"},
        ) as container:
            container.metadata.clear()
            vs = container.add_stream("libx264", rate=Fraction(p.fps))
            vs.width, vs.height, vs.pix_fmt = p.width_px, p.height_px, "yuv420p"
            vs.bit_rate = int(p.bitrate_kbps * 1000)
            # mbtree off: with it, this x264 build's SIMD code makes runs differ (checked)
            vs.codec_context.options = {
                "preset": "veryfast",
                "threads": "1",
                "x264-params": "mbtree=0",
                "flags": "+bitexact",
            }
            vs.time_base = Fraction(1, p.fps)
            as_ = None
            if samples is not None:
                as_ = container.add_stream("aac", rate=int(sample_rate_hz), layout="mono")
                as_.bit_rate = AUDIO_BITRATE_BPS
                as_.codec_context.options = {"flags": "+bitexact"}
            a_done = 0
            for i in range(n_frames):
                img = renderer.render_frame(i / p.fps, i)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                for packet in vs.encode(frame):
                    container.mux(packet)
                if as_ is not None and samples is not None:  # interleave audio with video
                    a_end = (
                        samples.size
                        if i == n_frames - 1
                        else min(samples.size, round((i + 1) / p.fps * sample_rate_hz))
                    )
                    if a_end > a_done:
                        af = av.AudioFrame.from_ndarray(
                            samples[None, a_done:a_end], format="fltp", layout="mono"
                        )
                        af.sample_rate = int(sample_rate_hz)
                        af.pts = a_done
                        for packet in as_.encode(af):
                            container.mux(packet)
                        a_done = a_end
                if progress is not None:
                    progress(i + 1)
            for packet in vs.encode():
                container.mux(packet)
            if as_ is not None:
                for packet in as_.encode():
                    container.mux(packet)
        size_bytes = Path(tmp).stat().st_size
    return {
        "n_frames": int(n_frames),
        "fps": int(p.fps),
        "duration_s": n_frames / p.fps,
        "width_px": p.width_px,
        "height_px": p.height_px,
        "size_bytes": int(size_bytes),
    }
