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

Hands: each onset group (onsets within 35 ms) goes to one hand, or is split at its largest
pitch gap between the hands when it spans more than an octave; a hand plays at most five
notes spanning at most a tenth (other notes of the group are still pressed, but by no visible
finger). Fingers are assigned by a small cost (stretch, thumb off black keys, staying near
the hand's last position); the fingers that do not play hover over the neighbouring keys at
the same depth, so that "a finger is there" is a weak cue for "the key is down". An idle
hand makes room so that the hands' centres stay at least 124 mm (about five white keys) apart;
a hand that never plays rests on the lap. Hands move between
keyframes (one per onset group) with a smooth ease (at most 0.3 s) that ends shortly before
the onset; a playing finger dips during its key's press and lifts a little just before; a
hand with no notes for 2 s, and each hand after its last note, draws back to the front edge
of the keys. On a random two-hand texture about 87% of pressed keys are partly hidden by a
finger, palm or arm (mean hidden share of a pressed key's area ≈ 29%; see
:meth:`KeyboardRenderer.hand_mask`).

Conventions: frame pixel coordinates have (0, 0) at the centre of the top-left pixel
(OpenCV's); images are RGB uint8, shape (height, width, 3). Module constants only; OpenCV and
PyAV are imported when first used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN, N_KEYS
from avfusion.fileio import atomic_path
from avfusion.keyboard import (
    BLACK_KEY_LENGTH_MM,
    KEYBOARD_WIDTH_MM,
    WHITE_KEY_LENGTH_MM,
    WHITE_KEY_WIDTH_MM,
    is_black,
    key_polygon_mm,
    key_x_span_mm,
    keyboard_corners_mm,
    keyboard_geometry,
)
from avfusion.notes import Notes

CANVAS_PX_PER_MM: float = 1.0
"""Resolution of the keyboard-plane canvas (px/mm): about twice the frame's at 640x360."""
AUDIO_BITRATE_BPS: int = 64_000
"""AAC bit rate of the muxed audio track (bits/s)."""
_AAC_FRAME = 1024  # samples per AAC frame
PRESS_LEVELS: int = 8
"""Key-down amounts are drawn in this many steps (the ramps last less than a frame)."""

_SHIFT = 4  # OpenCV sub-pixel bits for drawing
_ONE = 1 << _SHIFT
_GROUP_S = 0.035  # onsets closer than this form one group (one hand keyframe)
_REST_GAP_S = 2.0  # a hand idle for longer than this retreats toward the player
_TENTH_SEMITONES = 16  # widest span of one hand (a major tenth)
_BODY_X_MM = KEYBOARD_WIDTH_MM / 2  # the pianist sits at the middle of the keyboard

# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class CameraRanges:
    """Ranges (lo, hi) from which :func:`draw_video_params` draws camera and lighting.

    Ranges named ``*_abs`` are magnitudes: a random sign is drawn too.

    Attributes:
        width_frac: keyboard width (mean of its back and front edges) / frame width.
        rotation_abs_deg: in-plane rotation of the keyboard in the frame (degrees).
        keystone_abs: back (top) edge length / front (bottom) edge length − 1 (camera tilt
            toward or away from the player).
        side_keystone_abs: left edge height / right edge height − 1 (camera off to one side).
        vertical_scale: keyboard height in the frame / the height a pure top-down view of the
            same width gives (squash from tilt, < 1; or a slightly oblique view, > 1).
        center_y_frac: keyboard centre's height in the frame / frame height.
        light_strength: relative brightness change across the frame along a random direction.
        vignette_strength: darkening at the frame corners (relative).
        exposure: overall gain.
        tint_abs: largest per-channel colour gain deviation (white balance), relative.
        noise_sigma: sensor noise standard deviation (8-bit levels).
        blur_sigma_px: optical blur (Gaussian sigma, frame pixels).
        bitrate_kbps: H.264 bit rate (kbit/s, for 640x360; scaled with the frame area).
    """

    width_frac: tuple[float, float]
    rotation_abs_deg: tuple[float, float]
    keystone_abs: tuple[float, float]
    side_keystone_abs: tuple[float, float]
    vertical_scale: tuple[float, float]
    center_y_frac: tuple[float, float]
    light_strength: tuple[float, float]
    vignette_strength: tuple[float, float]
    exposure: tuple[float, float]
    tint_abs: tuple[float, float]
    noise_sigma: tuple[float, float]
    blur_sigma_px: tuple[float, float]
    bitrate_kbps: tuple[float, float]


CAMERA_RANGES: dict[str, CameraRanges] = {
    "train": CameraRanges(
        width_frac=(0.82, 0.98),
        rotation_abs_deg=(0.0, 1.5),
        keystone_abs=(0.0, 0.04),
        side_keystone_abs=(0.0, 0.02),
        vertical_scale=(0.80, 1.15),
        center_y_frac=(0.38, 0.62),
        light_strength=(0.0, 0.20),
        vignette_strength=(0.0, 0.15),
        exposure=(0.90, 1.10),
        tint_abs=(0.0, 0.04),
        noise_sigma=(1.0, 3.5),
        blur_sigma_px=(0.3, 0.8),
        bitrate_kbps=(600.0, 1500.0),
    ),
    "test": CameraRanges(
        width_frac=(0.78, 0.95),
        rotation_abs_deg=(1.6, 3.0),
        keystone_abs=(0.045, 0.08),
        side_keystone_abs=(0.025, 0.045),
        vertical_scale=(0.70, 1.25),
        center_y_frac=(0.35, 0.65),
        light_strength=(0.20, 0.40),
        vignette_strength=(0.15, 0.30),
        exposure=(0.75, 1.20),
        tint_abs=(0.04, 0.08),
        noise_sigma=(3.5, 6.0),
        blur_sigma_px=(0.8, 1.2),
        bitrate_kbps=(400.0, 800.0),
    ),
}
"""Camera ranges by name. Validation uses ``train``. The ``test`` ranges do not overlap the
``train`` ones in rotation (|θ| ≤ 1.5° vs 1.6–3°), keystone (≤ 4% vs 4.5–8%), side keystone,
lighting gradient, vignetting, tint, noise and blur (they lie beyond them), and reach further
in width, squash, position, exposure and bit rate, so a test camera is never seen in
training."""


def _default_corners() -> tuple[tuple[float, float], ...]:
    return _camera_corners(640, 360, 0.9, 0.0, 0.0, 0.0, 1.0, 320.0, 180.0)


@dataclass(frozen=True)
class VideoParams:
    """Everything drawn once per performance; JSON-serialisable with :func:`dataclasses.asdict`
    and back with :meth:`from_dict`. Colours are RGB 0..255.

    The defaults are a neutral top-down camera at 640x360, 30 fps.

    Attributes:
        fps: frames per second (25 or 30 in the corpus).
        width_px, height_px: frame size (even, for yuv420p).
        corners_px: the keyboard's corners in the frame, ((x, y), ...) px, clockwise from the
            top-left: back-left, back-right, front-right, front-left, i.e.
            :func:`avfusion.keyboard.keyboard_corners_mm` mapped by the camera. These define
            the homography; the camera fields below only record how they were drawn.
        camera: name of the :data:`CAMERA_RANGES` entry drawn from.
        rotation_deg, keystone, side_keystone, vertical_scale, width_frac: the drawn camera.
        white_key_rgb, black_key_rgb, gap_rgb: key tops and the gaps between white keys.
        body_rgb, felt_rgb: piano body; the felt strip along the fallboard.
        background_rgb, background2_rgb, background_style, background_seed: the floor around
            the piano (style ``wood``, ``carpet`` or ``plain``; the seed draws its texture and
            small key-to-key brightness differences).
        cheek_mm, fallboard_mm, body_depth_mm, key_slip_mm: piano body sizes (mm).
        press_depth_mm: how far the front edge of a fully pressed key moves back (mm).
        pressed_strength: 0..1, how strongly a pressed key's shading changes.
        press_ramp_ms, release_ramp_ms: key travel time down (ends at the onset) and up
            (starts at the offset).
        skin_rgb, sleeve_rgb, sleeve_mm: hands and arms; sleeves start ``sleeve_mm`` from the
            wrist.
        hand_scale: hand size relative to an adult's (finger spacing ≈ 23.5 mm × scale).
        hand_lean_mm: how far the raised knuckles and palm appear shifted toward the back of
            the keys (a camera in front of the keyboard sees raised parts further back).
        shadow_strength, shadow_offset_mm: hand shadow on the keys (darkening 0..1; (dx, dy)).
        light_angle_deg, light_strength, vignette_strength, exposure, tint_rgb: lighting
            gradient direction (degrees, image axes) and strength, vignetting, gain and
            per-channel colour gains.
        noise_sigma: sensor noise (8-bit levels). blur_sigma_px: optical blur (px).
        bitrate_kbps: H.264 bit rate.
    """

    fps: int = 30
    width_px: int = 640
    height_px: int = 360
    corners_px: tuple[tuple[float, float], ...] = field(default_factory=_default_corners)
    camera: str = "train"
    rotation_deg: float = 0.0
    keystone: float = 0.0
    side_keystone: float = 0.0
    vertical_scale: float = 1.0
    width_frac: float = 0.9
    white_key_rgb: tuple[int, int, int] = (240, 238, 230)
    black_key_rgb: tuple[int, int, int] = (24, 23, 25)
    gap_rgb: tuple[int, int, int] = (70, 66, 62)
    body_rgb: tuple[int, int, int] = (20, 18, 18)
    felt_rgb: tuple[int, int, int] = (120, 24, 32)
    background_rgb: tuple[int, int, int] = (120, 86, 58)
    background2_rgb: tuple[int, int, int] = (88, 60, 40)
    background_style: str = "wood"
    background_seed: int = 0
    cheek_mm: float = 40.0
    fallboard_mm: float = 35.0
    body_depth_mm: float = 150.0
    key_slip_mm: float = 15.0
    press_depth_mm: float = 2.0
    pressed_strength: float = 0.8
    press_ramp_ms: float = 18.0
    release_ramp_ms: float = 45.0
    skin_rgb: tuple[int, int, int] = (224, 172, 140)
    sleeve_rgb: tuple[int, int, int] = (40, 52, 84)
    sleeve_mm: float = 160.0
    hand_scale: float = 1.0
    hand_lean_mm: float = 5.0
    shadow_strength: float = 0.3
    shadow_offset_mm: tuple[float, float] = (6.0, -8.0)
    light_angle_deg: float = 0.0
    light_strength: float = 0.0
    vignette_strength: float = 0.0
    exposure: float = 1.0
    tint_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise_sigma: float = 2.0
    blur_sigma_px: float = 0.5
    bitrate_kbps: int = 900

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.fps > 240:
            raise ValueError(f"VideoParams.fps={self.fps}: must be 1..240 frames per second")
        for name in ("width_px", "height_px"):
            v = getattr(self, name)
            if v < 32 or v % 2:
                raise ValueError(f"VideoParams.{name}={v}: must be even and at least 32 (yuv420p)")
        if np.asarray(self.corners_px, dtype=float).shape != (4, 2):
            raise ValueError(
                "VideoParams.corners_px: must be 4 (x, y) points, clockwise from top-left"
            )
        if self.bitrate_kbps <= 0:
            raise ValueError(f"VideoParams.bitrate_kbps={self.bitrate_kbps}: must be positive")
        if self.noise_sigma < 0 or self.blur_sigma_px < 0:
            raise ValueError("VideoParams.noise_sigma and blur_sigma_px must be >= 0")
        if self.press_ramp_ms <= 0 or self.release_ramp_ms <= 0:
            raise ValueError("VideoParams.press_ramp_ms and release_ramp_ms must be positive")
        if self.background_style not in ("wood", "carpet", "plain"):
            raise ValueError(
                f"VideoParams.background_style={self.background_style!r}: wood, carpet or plain"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoParams:
        """Rebuild from :func:`dataclasses.asdict` output, also after a JSON round trip
        (lists become tuples); unknown keys are an error.

        Raises:
            ValueError: a key that is not a VideoParams field (named).
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"VideoParams.from_dict: unknown keys {unknown}")

        def tup(v: Any) -> Any:
            return tuple(tup(x) for x in v) if isinstance(v, list | tuple) else v

        return cls(**{k: tup(v) for k, v in d.items()})


def _camera_corners(
    width_px: int,
    height_px: int,
    width_frac: float,
    rotation_deg: float,
    keystone: float,
    side_keystone: float,
    vertical_scale: float,
    center_x_px: float,
    center_y_px: float,
) -> tuple[tuple[float, float], ...]:
    """Keyboard corners in the frame (clockwise from top-left) for a camera description."""
    w = width_frac * width_px
    h = w * WHITE_KEY_LENGTH_MM / KEYBOARD_WIDTH_MM * vertical_scale
    wt, wb = (
        2 * w * (1 + keystone) / (2 + keystone),
        2 * w / (2 + keystone),
    )  # wt / wb = 1 + keystone
    hl, hr = 2 * h * (1 + side_keystone) / (2 + side_keystone), 2 * h / (2 + side_keystone)
    pts = np.array([(-wt / 2, -hl / 2), (wt / 2, -hr / 2), (wb / 2, hr / 2), (-wb / 2, hl / 2)])
    a = math.radians(rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = pts @ rot.T + (center_x_px, center_y_px)
    return tuple((round(float(x), 3), round(float(y), 3)) for x, y in pts)


_SKIN_TONES = (
    (255, 224, 196),
    (241, 194, 167),
    (224, 172, 140),
    (205, 150, 115),
    (176, 118, 84),
    (134, 88, 62),
    (96, 64, 46),
)
_BACKGROUNDS = {  # style -> two colour families (RGB)
    "wood": (
        ((150, 104, 66), (108, 72, 44)),
        ((96, 64, 40), (64, 42, 28)),
        ((186, 150, 110), (150, 116, 82)),
    ),
    "carpet": (
        ((120, 118, 112), (90, 88, 84)),
        ((110, 60, 54), (80, 44, 40)),
        ((70, 80, 100), (50, 58, 74)),
    ),
    "plain": (
        ((200, 196, 190), (170, 166, 160)),
        ((60, 58, 56), (44, 42, 40)),
        ((150, 140, 124), (120, 112, 100)),
    ),
}
_BODIES = ((18, 16, 16), (26, 24, 24), (74, 42, 26), (52, 30, 20), (224, 222, 216), (44, 44, 46))
_FELTS = ((120, 24, 32), (96, 20, 26), (30, 60, 40), (20, 20, 20))


def _jitter_rgb(
    rng: np.random.Generator, rgb: tuple[int, ...], amount: float
) -> tuple[int, int, int]:
    v = np.clip(np.asarray(rgb, float) + rng.uniform(-amount, amount, 3), 0, 255)
    r, g, b = (int(x) for x in np.round(v))
    return (r, g, b)


def draw_video_params(
    rng: np.random.Generator,
    camera: str = "train",
    fps: int | None = None,
    size_px: tuple[int, int] = (640, 360),
) -> VideoParams:
    """Draw a performance's camera, lighting, piano and hand appearance.

    Args:
        rng: the only source of randomness (record its seed to replay).
        camera: a key of :data:`CAMERA_RANGES` (``train`` or ``test``; validation uses
            ``train``).
        fps: frame rate; None draws 25 or 30.
        size_px: (width, height) of the frame, even numbers.
    Returns:
        The drawn parameters; the keyboard lies wholly inside the frame.
    Raises:
        ValueError: unknown camera (lists the accepted names) or a bad size.
    """
    if camera not in CAMERA_RANGES:
        raise ValueError(f"unknown camera {camera!r}; accepted: {sorted(CAMERA_RANGES)}")
    r = CAMERA_RANGES[camera]
    width_px, height_px = (int(size_px[0]), int(size_px[1]))
    if width_px < 32 or height_px < 32 or width_px % 2 or height_px % 2:
        raise ValueError(f"size_px={size_px}: width and height must be even and at least 32")
    if fps is None:
        fps = int(rng.choice([25, 30]))

    def u(lo_hi: tuple[float, float]) -> float:
        return float(rng.uniform(lo_hi[0], lo_hi[1]))

    def signed(lo_hi: tuple[float, float]) -> float:
        return float(rng.choice([-1.0, 1.0])) * u(lo_hi)

    corners: tuple[tuple[float, float], ...] = ()
    for _ in range(200):
        width_frac = u(r.width_frac)
        rotation_deg = signed(r.rotation_abs_deg)
        keystone = signed(r.keystone_abs)
        side_keystone = signed(r.side_keystone_abs)
        vertical_scale = u(r.vertical_scale)
        cy = u(r.center_y_frac) * height_px
        pts = np.array(
            _camera_corners(
                width_px,
                height_px,
                width_frac,
                rotation_deg,
                keystone,
                side_keystone,
                vertical_scale,
                0.0,
                cy,
            )
        )
        span_x = pts[:, 0].max() - pts[:, 0].min()
        slack = max(0.0, (width_px - 4 - span_x) / 2)
        cx = width_px / 2 + float(rng.uniform(-1, 1)) * slack
        corners = _camera_corners(
            width_px,
            height_px,
            width_frac,
            rotation_deg,
            keystone,
            side_keystone,
            vertical_scale,
            cx,
            cy,
        )
        c = np.array(corners)
        if (
            c[:, 0].min() >= 1
            and c[:, 0].max() <= width_px - 2
            and c[:, 1].min() >= 1
            and c[:, 1].max() <= height_px - 2
        ):
            break
    else:  # pragma: no cover - the ranges always fit within a few draws
        raise AssertionError("could not place the keyboard inside the frame")

    style = str(rng.choice(list(_BACKGROUNDS)))
    families = _BACKGROUNDS[style]
    fam = families[int(rng.integers(len(families)))]
    body = _BODIES[int(rng.integers(len(_BODIES)))]
    felt = _FELTS[int(rng.integers(len(_FELTS)))]
    skin = _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))]
    tint_abs = u(r.tint_abs)
    tint_dir = rng.normal(size=3)
    tint_dir /= max(np.abs(tint_dir).max(), 1e-9)
    tint = tuple(round(float(1 + tint_abs * t), 4) for t in tint_dir)
    sleeve_bare = rng.random() < 0.25
    scale = (width_px * height_px) / (640 * 360)
    return VideoParams(
        fps=fps,
        width_px=width_px,
        height_px=height_px,
        corners_px=corners,
        camera=camera,
        rotation_deg=rotation_deg,
        keystone=keystone,
        side_keystone=side_keystone,
        vertical_scale=vertical_scale,
        width_frac=width_frac,
        white_key_rgb=_jitter_rgb(
            rng, (242, 240, 232) if rng.random() < 0.6 else (236, 228, 204), 8
        ),
        black_key_rgb=_jitter_rgb(rng, (22, 21, 23), 10),
        gap_rgb=_jitter_rgb(rng, (72, 68, 64), 20),
        body_rgb=_jitter_rgb(rng, body, 8),
        felt_rgb=_jitter_rgb(rng, felt, 10),
        background_rgb=_jitter_rgb(rng, fam[0], 12),
        background2_rgb=_jitter_rgb(rng, fam[1], 12),
        background_style=style,
        background_seed=int(rng.integers(0, 2**31 - 1)),
        cheek_mm=u((25.0, 60.0)),
        fallboard_mm=u((25.0, 45.0)),
        body_depth_mm=u((60.0, 260.0)),
        key_slip_mm=u((8.0, 25.0)),
        press_depth_mm=u((1.0, 3.0)),
        pressed_strength=u((0.4, 1.0)),
        press_ramp_ms=u((15.0, 20.0)),
        release_ramp_ms=u((40.0, 50.0)),
        skin_rgb=_jitter_rgb(rng, tuple(int(c * rng.uniform(0.92, 1.05)) for c in skin), 8),
        sleeve_rgb=_jitter_rgb(rng, tuple(int(c) for c in rng.integers(20, 230, 3)), 0),
        sleeve_mm=u((400.0, 500.0)) if sleeve_bare else u((60.0, 260.0)),
        hand_scale=u((0.95, 1.2)),
        hand_lean_mm=u((0.0, 12.0)),
        shadow_strength=u((0.15, 0.45)),
        shadow_offset_mm=(round(u((-12.0, 12.0)), 2), round(u((-14.0, 4.0)), 2)),
        light_angle_deg=u((0.0, 360.0)),
        light_strength=u(r.light_strength),
        vignette_strength=u(r.vignette_strength),
        exposure=u(r.exposure),
        tint_rgb=(tint[0], tint[1], tint[2]),
        noise_sigma=u(r.noise_sigma),
        blur_sigma_px=u(r.blur_sigma_px),
        bitrate_kbps=round(u(r.bitrate_kbps) * max(scale, 0.25)),
    )


# --------------------------------------------------------------------------- geometry


def plane_to_frame_homography(params: VideoParams) -> np.ndarray:
    """The camera: maps keyboard-plane points (x, y, 1) in mm to frame pixels.

    Returns:
        float64 (3, 3), from the four corners ``params.corners_px``.
    """
    import cv2

    src = keyboard_corners_mm().astype(np.float32)
    dst = np.asarray(params.corners_px, dtype=np.float32)
    return cv2.getPerspectiveTransform(src, dst).astype(np.float64)


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def key_region_mask(params: VideoParams, midi_pitch: int) -> np.ndarray:
    """Pixels of the frame covered by one key's top surface (its
    :func:`avfusion.keyboard.key_polygon_mm` projected by the camera).

    Returns:
        bool array, shape (height_px, width_px).
    Raises:
        ValueError: the pitch is not a piano key.
    """
    import cv2

    poly = _apply_h(plane_to_frame_homography(params), key_polygon_mm(midi_pitch))
    mask = np.zeros((params.height_px, params.width_px), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


@dataclass(frozen=True)
class _Canvas:
    """The keyboard-plane canvas: pixel (row j, column i) has its centre at plane point
    (x0_mm + i / s, y0_mm + j / s)."""

    x0_mm: float
    y0_mm: float
    width_px: int
    height_px: int
    px_per_mm: float = CANVAS_PX_PER_MM

    def px(self, pts_mm: np.ndarray) -> np.ndarray:
        """Plane mm (…, 2) → canvas px (float)."""
        return (np.asarray(pts_mm, float) - (self.x0_mm, self.y0_mm)) * self.px_per_mm

    def ipx(self, pts_mm: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Plane mm → canvas px as int32 with :data:`_SHIFT` fractional bits, for cv2."""
        return np.round(self.px(pts_mm) * scale * _ONE).astype(np.int32)

    def y_mm(self, rows: np.ndarray) -> np.ndarray:
        return self.y0_mm + np.asarray(rows, float) / self.px_per_mm

    def matrix(self) -> np.ndarray:
        """Plane mm → canvas px, (3, 3)."""
        s = self.px_per_mm
        return np.array([[s, 0, -s * self.x0_mm], [0, s, -s * self.y0_mm], [0, 0, 1.0]])


def _canvas_for(params: VideoParams, h: np.ndarray) -> _Canvas:
    w, hh = params.width_px, params.height_px
    frame_corners = np.array([(-0.5, -0.5), (w - 0.5, -0.5), (w - 0.5, hh - 0.5), (-0.5, hh - 0.5)])
    pts = _apply_h(np.linalg.inv(h), frame_corners)
    x_lo = max(float(pts[:, 0].min()) - 10, -700.0)
    x_hi = min(float(pts[:, 0].max()) + 10, KEYBOARD_WIDTH_MM + 700)
    y_lo = max(float(pts[:, 1].min()) - 10, -700.0)
    y_hi = min(float(pts[:, 1].max()) + 10, 1200.0)
    s = CANVAS_PX_PER_MM
    x0, y0 = math.floor(x_lo), math.floor(y_lo)
    return _Canvas(x0, y0, math.ceil((x_hi - x0) * s) + 1, math.ceil((y_hi - y0) * s) + 1)


# --------------------------------------------------------------------------- static picture


def _rgb(c: Any) -> tuple[int, int, int]:
    v = np.clip(np.round(np.asarray(c, float)), 0, 255).astype(int)
    return (int(v[0]), int(v[1]), int(v[2]))


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


def _fill(img: np.ndarray, cv: _Canvas, poly_mm: np.ndarray, rgb: Any, aa: bool = False) -> None:
    import cv2

    cv2.fillPoly(img, [cv.ipx(poly_mm)], _rgb(rgb), cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)


def _shade_rows(
    img: np.ndarray,
    cv: _Canvas,
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


def _background(params: VideoParams, cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
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


def _draw_body(img: np.ndarray, params: VideoParams, cv: _Canvas) -> None:
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
    img: np.ndarray, params: VideoParams, cv: _Canvas, pitch: int, gain: float
) -> None:
    _fill(img, cv, key_polygon_mm(pitch), params.gap_rgb)
    _fill(img, cv, _white_top_polygon(pitch, 0.55), np.asarray(params.white_key_rgb) * gain)


def _draw_black_key(img: np.ndarray, params: VideoParams, cv: _Canvas, pitch: int) -> None:
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


def _static_keyboard(params: VideoParams, cv: _Canvas) -> np.ndarray:
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
            _SHIFT,
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


def _key_patch(cv: _Canvas, pitch: int, canvas_shape: tuple[int, ...]) -> _KeyPatch:
    import cv2

    poly = cv.px(key_polygon_mm(pitch))
    c0 = max(math.floor(poly[:, 0].min()) - 3, 0)
    c1 = min(math.ceil(poly[:, 0].max()) + 4, canvas_shape[1])
    r0 = max(math.floor(poly[:, 1].min()) - 3, 0)
    r1 = min(math.ceil(poly[:, 1].max()) + 4, canvas_shape[0])
    m = np.zeros((r1 - r0, c1 - c0), np.uint8)
    cv2.fillPoly(m, [np.round((poly - (c0, r0)) * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    # distance to the outline, ignoring the back and front ends (rows padded by replication)
    padded = np.pad(m, ((8, 8), (0, 0)), mode="edge")
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[8:-8] / cv.px_per_mm
    return _KeyPatch(r0, r1, c0, c1, m.astype(bool), dist.astype(np.float32))


def _pressed_patch(
    raw: np.ndarray, params: VideoParams, cv: _Canvas, pitch: int, kp: _KeyPatch, amount: float
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


# --------------------------------------------------------------------------- key motion


@dataclass(frozen=True)
class _NoteArrays:
    """The performance's piano notes as arrays, sorted by onset."""

    onset_s: np.ndarray
    offset_s: np.ndarray
    key: np.ndarray  # key index 0..87
    max_len_s: float


def _note_arrays(notes: Notes) -> _NoteArrays:
    kept = sorted((n for n in notes if MIDI_MIN <= n.pitch <= MIDI_MAX), key=lambda n: n.onset_s)
    on = np.array([n.onset_s for n in kept], np.float64)
    off = np.array([n.offset_s for n in kept], np.float64)
    key = np.array([n.pitch - MIDI_MIN for n in kept], np.int64)
    return _NoteArrays(on, off, key, float((off - on).max()) if len(kept) else 0.0)


def _down_amount(
    t_s: float, on: np.ndarray, off: np.ndarray, press_s: float, release_s: float
) -> np.ndarray:
    """How far keys are down (0..1) at ``t_s`` for notes (on, off): linear press ramp ending at
    the onset, linear release ramp starting at the offset."""
    start = on - press_s
    down = np.clip((t_s - start) / press_s, 0, 1)
    at_off = np.clip((off - start) / press_s, 0, 1)
    up = at_off * np.clip(1 - (t_s - off) / release_s, 0, 1)
    return np.where(t_s < off, down, up)


# --------------------------------------------------------------------------- hand planning

_FINGER_HOVER_Y = np.array([128.0, 112.0, 106.0, 110.0, 119.0])  # tip y over white keys (mm)
_FINGER_LEN_MM = np.array([0.0, 46.0, 50.0, 47.0, 38.0])  # projected knuckle-to-tip length
_FINGER_W_MM = np.array([(21.0, 18.0), (17.5, 15.0), (18.0, 15.5), (17.0, 14.5), (15.0, 13.0)])


@dataclass
class _HandTrack:
    """One hand's motion: keyframes of fingertip positions and the notes each finger plays.

    side: +1 right hand (thumb at the low-x side), −1 left hand.
    arrive_s (K,), move_s (K,): the hand reaches keyframe k at arrive_s[k] after moving for
        move_s[k] from keyframe k − 1.
    tips_mm (K, 5, 2): fingertips (x, y) thumb..pinky.
    finger_notes: per finger, float64 (n, 2) of (onset_s, offset_s) of the notes it plays.
    """

    side: int
    arrive_s: np.ndarray
    move_s: np.ndarray
    tips_mm: np.ndarray
    finger_notes: list[np.ndarray]

    def tips_at(self, t_s: float) -> np.ndarray:
        """Fingertips (5, 2) mm at time ``t_s``, eased between keyframes."""
        k = int(np.searchsorted(self.arrive_s, t_s, side="right"))
        if k == 0:
            return self.tips_mm[0]
        if k >= len(self.arrive_s):
            return self.tips_mm[-1]
        s = (t_s - (self.arrive_s[k] - self.move_s[k])) / self.move_s[k]
        if s <= 0:
            return self.tips_mm[k - 1]
        s = min(s, 1.0)
        e = s * s * (3 - 2 * s)
        return self.tips_mm[k - 1] * (1 - e) + self.tips_mm[k] * e


def _key_center_mm(pitch: int) -> float:
    lo, hi = key_x_span_mm(pitch)
    return (lo + hi) / 2


def _assign_fingers(
    q_mm: np.ndarray, black: np.ndarray, prev_q_mm: float, sp_mm: float, rng: np.random.Generator
) -> tuple[int, ...]:
    """Fingers (0 thumb .. 4 pinky) for notes at increasing hand positions ``q_mm``
    (q = side × x), at most five notes."""
    best: tuple[int, ...] = ()
    best_cost = math.inf
    for fs in combinations(range(5), len(q_mm)):
        cost = 0.0
        for i in range(len(fs) - 1):
            n_f = fs[i + 1] - fs[i]
            gap = q_mm[i + 1] - q_mm[i]
            ideal = n_f * sp_mm
            reach = n_f * sp_mm * 1.9 + (40.0 if fs[i] == 0 else 0.0)
            cost += 0.5 * ((gap - ideal) / sp_mm) ** 2
            if gap > reach:
                cost += 10 * (gap - reach) / sp_mm
            if gap < 0.45 * ideal:
                cost += 2 * ((0.45 * ideal - gap) / sp_mm) ** 2
        for i, f in enumerate(fs):
            if black[i] and f == 0:
                cost += 1.0
            elif black[i] and f == 4:
                cost += 0.3
        centre = float(np.mean([q_mm[i] + (2 - f) * sp_mm for i, f in enumerate(fs)]))
        cost += 0.5 * ((centre - prev_q_mm) / (3 * sp_mm)) ** 2
        cost += float(rng.uniform(0, 0.35))
        if cost < best_cost:
            best, best_cost = fs, cost
    return best


def _hand_pose(
    pitches: list[int], side: int, prev_q_mm: float, params: VideoParams, rng: np.random.Generator
) -> tuple[np.ndarray, dict[int, int]]:
    """Fingertips (5, 2) mm for a hand playing ``pitches`` and the finger of each pitch."""
    sp = WHITE_KEY_WIDTH_MM * params.hand_scale
    ps = sorted(set(pitches), key=lambda p: side * _key_center_mm(p))
    # keep at most a tenth: drop notes from the end farther from the hand's last position
    while len(ps) > 1 and abs(ps[-1] - ps[0]) > _TENTH_SEMITONES:
        q_lo, q_hi = side * _key_center_mm(ps[0]), side * _key_center_mm(ps[-1])
        ps = ps[1:] if abs(q_lo - prev_q_mm) > abs(q_hi - prev_q_mm) else ps[:-1]
    if len(ps) > 5:
        ps = [ps[int(i)] for i in np.round(np.linspace(0, len(ps) - 1, 5))]
    q = np.array([side * _key_center_mm(p) for p in ps])
    black = np.array([is_black(p) for p in ps])
    fs = _assign_fingers(q, black, prev_q_mm, sp, rng) if ps else ()
    tips = np.zeros((5, 2))
    fq = np.full(5, np.nan)
    fy = np.full(5, np.nan)
    for i, f in enumerate(fs):
        fq[f] = q[i]
        if black[i]:
            fy[f] = rng.uniform(72, 88) if f == 0 else rng.uniform(56, 84)
        else:
            fy[f] = rng.uniform(114, 132) if f == 0 else rng.uniform(96, 124)
    known = np.flatnonzero(~np.isnan(fq))
    if len(known) == 0:
        fq[:] = prev_q_mm + (np.arange(5) - 2) * sp
        known = np.arange(5)
    for j in range(5):
        if np.isnan(fq[j]):
            if j < known[0]:
                fq[j] = fq[known[0]] - (known[0] - j) * sp * (1.25 if j == 0 else 1.0)
            elif j > known[-1]:
                fq[j] = fq[known[-1]] + (j - known[-1]) * sp
            else:
                fq[j] = np.interp(j, known, fq[known])
    # hovering fingers keep the depth of the playing ones (plus their natural offsets)
    depth_shift = np.nanmean(fy - _FINGER_HOVER_Y) if np.isfinite(fy).any() else 0.0
    for j in range(5):
        if np.isnan(fy[j]):
            fy[j] = (
                _FINGER_HOVER_Y[j]
                + depth_shift
                + rng.normal(0, 3.0)
                + (6 if j == 0 and depth_shift < -20 else 0)
            )
    tips[:, 0] = np.clip(side * fq, -40, KEYBOARD_WIDTH_MM + 40)
    tips[:, 1] = fy
    return tips, {p: f for p, f in zip(ps, fs, strict=True)}


def _rest_pose(tips: np.ndarray, on_lap: bool = False) -> np.ndarray:
    """The idle hand: drawn back toward the front of the keys, fingers closer together (it
    still hides the front of a few keys, as a resting hand does), or on the lap."""
    c = tips[:, 0].mean()
    out = tips.copy()
    out[:, 0] = c + (tips[:, 0] - c) * 0.85
    out[:, 1] = np.maximum(tips[:, 1], _FINGER_HOVER_Y) + (260.0 if on_lap else 30.0)
    return out


def _plan_hands(
    notes: _NoteArrays, params: VideoParams, rng: np.random.Generator
) -> list[_HandTrack]:
    """Left and right hand tracks for the notes (see the module docstring).

    A hand keeps the keys it still holds in its next position when they fit (five fingers,
    a tenth), and does not start moving before the keys it leaves are released, unless the
    next onset leaves no time (then it moves in the last 50 ms).
    """
    press_s = params.press_ramp_ms / 1000
    centre_x = {-1: _key_center_mm(48), +1: _key_center_mm(72)}  # C3, C5 until they play
    # keyframes per hand: (arrival time, fingertips (5, 2), earliest start of the move)
    frames: dict[int, list[tuple[float, np.ndarray, float]]] = {-1: [], +1: []}
    busy_until = {-1: -math.inf, +1: -math.inf}
    held: dict[int, list[tuple[int, float]]] = {-1: [], +1: []}  # (pitch, offset) per hand
    finger_notes: dict[int, list[list[tuple[float, float]]]] = {
        s: [[] for _ in range(5)] for s in (-1, 1)
    }
    n = len(notes.onset_s)
    i = 0
    while i < n:
        j = i
        while j < n and notes.onset_s[j] - notes.onset_s[i] <= _GROUP_S:
            j += 1
        idx = list(range(i, j))
        t0 = float(notes.onset_s[i])
        pitches = sorted({int(notes.key[k]) + MIDI_MIN for k in idx})
        if pitches[-1] - pitches[0] > 12:
            gaps = np.diff(pitches)
            cut = int(np.argmax(gaps)) + 1
            parts = {-1: pitches[:cut], +1: pitches[cut:]}
        else:
            cx = float(np.mean([_key_center_mm(p) for p in pitches]))
            side = -1 if abs(cx - centre_x[-1]) <= abs(cx - centre_x[1]) else 1
            parts = {side: pitches}
        arrive_s = t0 - press_s - 0.02
        for s, ps in parts.items():
            if not ps:
                continue
            if frames[s] and arrive_s - busy_until[s] > _REST_GAP_S:
                rest = _rest_pose(frames[s][-1][1])
                frames[s].append((busy_until[s] + 0.5, rest, busy_until[s]))
            still = {p: off for p, off in held[s] if off > arrive_s + 0.03 and p not in ps}
            plan = sorted(set(ps) | set(still))
            if len(plan) > 5 or plan[-1] - plan[0] > _TENTH_SEMITONES:
                plan = ps
            left_keys = [off for p, off in held[s] if p not in plan]
            earliest = max(left_keys, default=-math.inf)
            tips, fingers = _hand_pose(plan, s, s * centre_x[s], params, rng)
            frames[s].append((arrive_s, tips, earliest))
            centre_x[s] = float(tips[1:, 0].mean())
            held[s] = [(p, off) for p, off in held[s] if off > arrive_s and p in fingers]
            for k in idx:
                p = int(notes.key[k]) + MIDI_MIN
                if p in fingers and p in ps:
                    on_off = (float(notes.onset_s[k]), float(notes.offset_s[k]))
                    finger_notes[s][fingers[p]].append(on_off)
                    held[s].append((p, on_off[1]))
            busy_until[s] = max(busy_until[s], float(notes.offset_s[idx].max()))
        # keep the hands apart: the idle hand makes room
        gap_mm = 30.0
        lx, rx = centre_x[-1], centre_x[1]
        if rx - lx < 4 * WHITE_KEY_WIDTH_MM + gap_mm:
            for s in (-1, 1):
                if s in parts:
                    continue
                shift = (4 * WHITE_KEY_WIDTH_MM + gap_mm - (rx - lx)) * s
                centre_x[s] += shift
                if frames[s]:
                    moved = frames[s][-1][1].copy()
                    moved[:, 0] += shift
                else:
                    moved = _rest_pose(_hand_pose([], s, s * centre_x[s], params, rng)[0])
                frames[s].append((arrive_s, moved, -math.inf))
                held[s] = []
        i = j
    tracks = []
    for s in (-1, 1):
        kf = frames[s]
        if not kf:  # a hand that never plays rests on the lap, in front of the piano
            tips, _ = _hand_pose([], s, s * centre_x[s], params, rng)
            kf = [(0.0, _rest_pose(tips, on_lap=True), -math.inf)]
        elif math.isfinite(busy_until[s]):  # the hand comes off the keys after its last note
            kf.append((busy_until[s] + 0.6, _rest_pose(kf[-1][1]), busy_until[s]))
        kf.sort(key=lambda a: a[0])
        arrive = np.array([a for a, _, _ in kf])
        tips = np.stack([p for _, p, _ in kf])
        move = np.zeros(len(kf))
        for k in range(1, len(kf)):
            dist = float(np.abs(tips[k] - tips[k - 1]).max())
            want = float(np.clip(0.06 + dist / 1500, 0.08, 0.3))
            want = min(want, max(arrive[k] - kf[k][2], 0.05))  # wait for released keys
            move[k] = max(min(want, 0.85 * (arrive[k] - arrive[k - 1])), 1e-3)
        move[0] = 1e-3
        fn = [np.array(sorted(f), np.float64).reshape(-1, 2) for f in finger_notes[s]]
        tracks.append(_HandTrack(s, arrive, move, tips, fn))
    return tracks


# --------------------------------------------------------------------------- hand drawing


@dataclass
class _HandShape:
    """A hand's drawable geometry in plane mm."""

    arm: np.ndarray  # (4, 2) forearm quadrilateral, wrist to beyond the canvas
    sleeve: np.ndarray  # (4, 2)
    palm: np.ndarray  # (n, 2) convex outline
    knuckles: np.ndarray  # (5, 2) (thumb: its MCP joint)
    joints: np.ndarray  # (5, 2) middle joints (thumb: between MCP and tip)
    tips: np.ndarray  # (5, 2)
    thumb_base: np.ndarray  # (2,)
    widths: np.ndarray  # (5, 2) proximal, distal widths (mm)
    forward: np.ndarray  # (2,) unit vector toward the fingers
    arm_axis: np.ndarray  # (2, 2) wrist and a far point along the forearm
    arm_widths: tuple[float, float]


def _hand_shape(tips: np.ndarray, side: int, params: VideoParams, y_bottom_mm: float) -> _HandShape:
    sc = params.hand_scale
    mean4 = tips[1:].mean(axis=0)
    proj = 38.0 * sc
    elbow0 = np.array([_BODY_X_MM + side * 290.0, WHITE_KEY_LENGTH_MM + 330.0])
    wrist0 = mean4 + np.array([0.0, proj + 95.0 * sc])
    elbow = elbow0 + 0.4 * (np.array([wrist0[0], elbow0[1]]) - elbow0)
    ang = math.atan2(wrist0[0] - elbow[0], elbow[1] - wrist0[1])
    phi = float(np.clip(0.5 * ang, -0.45, 0.45))
    f = np.array([math.sin(phi), -math.cos(phi)])
    r = np.array([math.cos(phi), math.sin(phi)])
    c = mean4 - f * (proj - params.hand_lean_mm)
    spread = abs(tips[4, 0] - tips[1, 0]) / 3
    ks = float(np.clip(0.85 * spread, 19.0 * sc, 25.0 * sc))
    knuckles = np.zeros((5, 2))
    for j in range(1, 5):
        knuckles[j] = c + r * side * (j - 2.5) * ks + f * (2.0 if j in (2, 3) else 0.0)
    lengths = np.linalg.norm(tips[1:] - knuckles[1:], axis=1)
    # a finger seen from above is never longer than its projected length allows: pull the
    # knuckle toward the tip when the tip lies far ahead
    for j in range(1, 5):
        d = tips[j] - knuckles[j]
        if lengths[j - 1] > 1.5 * _FINGER_LEN_MM[j] * sc:
            knuckles[j] = tips[j] - d / lengths[j - 1] * 1.5 * _FINGER_LEN_MM[j] * sc
    knuckles[0] = c - f * 24.0 * sc - r * side * 44.0 * sc
    thumb_base = c - f * 62.0 * sc - r * side * 26.0 * sc
    joints = knuckles + 0.5 * (tips - knuckles)
    joints[1:] += f * 2.0
    wrist = c - f * 88.0 * sc
    palm = np.array(
        [
            knuckles[1] - r * side * 7 * sc - f * 3,
            knuckles[2] - f * 1,
            knuckles[3] - f * 1,
            knuckles[4] + r * side * 6 * sc - f * 4,
            c + r * side * 40 * sc - f * 34 * sc,
            wrist + r * side * 29 * sc,
            wrist - r * side * 29 * sc,
            c - r * side * 44 * sc - f * 42 * sc,
            c - r * side * 36 * sc - f * 10 * sc,
        ]
    )
    u = elbow - wrist
    u /= np.linalg.norm(u)
    length = max((y_bottom_mm + 60.0 - wrist[1]) / max(u[1], 0.2), 60.0)
    far = wrist + u * length
    nrm = np.array([-u[1], u[0]])
    w0 = 31.0 * sc
    w1 = w0 + min(0.05 * length, 22.0) * sc
    arm = np.array([wrist + nrm * w0, far + nrm * w1, far - nrm * w1, wrist - nrm * w0])
    s0 = wrist + u * params.sleeve_mm
    ws = w0 + (w1 - w0) * params.sleeve_mm / length + 6.0
    sleeve = np.array([s0 + nrm * ws, far + nrm * (w1 + 8), far - nrm * (w1 + 8), s0 - nrm * ws])
    return _HandShape(
        arm,
        sleeve,
        palm,
        knuckles,
        joints,
        tips,
        thumb_base,
        _FINGER_W_MM * sc,
        f,
        np.stack([wrist, far]),
        (w0, w1),
    )


@dataclass(frozen=True)
class _HandColours:
    """Skin and sleeve shades of one performance (RGB tuples for cv2)."""

    dark: tuple[int, int, int]
    mid: tuple[int, int, int]
    base: tuple[int, int, int]
    light: tuple[int, int, int]
    top: tuple[int, int, int]
    nail: tuple[int, int, int]
    arm: tuple[tuple[int, int, int], ...]
    sleeve: tuple[tuple[int, int, int], ...]


_BAND_SHRINK = (1.0, 0.7, 0.38)
_BAND_GAIN = (0.8, 0.92, 1.02)
_PALM_SHRINK = (1.0, 0.93, 0.72, 0.42)


def _hand_colours(params: VideoParams) -> _HandColours:
    skin = np.asarray(params.skin_rgb, float)
    sleeve = np.asarray(params.sleeve_rgb, float)

    def bands(c: np.ndarray) -> tuple[tuple[int, int, int], ...]:
        return tuple(_rgb(np.minimum(c * g + (g - 0.8) * 20, 255)) for g in _BAND_GAIN)

    return _HandColours(
        dark=_rgb(skin * 0.74),
        mid=_rgb(skin * 0.93),
        base=_rgb(skin),
        light=_rgb(np.minimum(skin * 1.08 + 10, 255)),
        top=_rgb(np.minimum(skin * 1.04 + 5, 255)),
        nail=_rgb(0.7 * skin + 0.3 * np.array([250, 236, 230])),
        arm=bands(skin),
        sleeve=bands(sleeve),
    )


def _draw_hand(
    img: np.ndarray, cv: _Canvas, hs: _HandShape, col: _HandColours, hand_scale: float
) -> None:
    """Arm, thumb, palm and fingers of one hand, with simple shading, on the canvas.

    All points are converted to OpenCV's fixed point at once (this runs every frame).
    """
    import cv2

    s = cv.px_per_mm
    aa = cv2.LINE_AA
    # forearm and sleeve as cylinders: darker sides, a lighter band along the top
    polys = []
    for poly in (hs.arm, hs.sleeve):
        centre_line = (poly + poly[::-1]) / 2  # rows 0, 1 and 3, 2 are the two sides
        across = (poly[3] - poly[0]) / max(float(np.linalg.norm(poly[3] - poly[0])), 1e-6)
        for shrink in _BAND_SHRINK:
            polys.append(centre_line + (poly - centre_line) * shrink + across * (1 - shrink) * 6)
    centre = hs.palm.mean(axis=0) + hs.forward * 6
    for shrink in _PALM_SHRINK:
        polys.append(centre + shrink * (hs.palm - centre))
    d = hs.tips - hs.joints
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    pts = np.concatenate(
        [
            np.concatenate(polys),
            hs.thumb_base[None],  # n0
            hs.knuckles,
            hs.joints,
            hs.tips,  # n0+1 .. n0+15
            hs.knuckles + (hs.joints - hs.knuckles) * 0.18,  # highlight starts
            hs.knuckles - hs.forward * 3,  # knuckle bumps
            hs.tips - d * 3.5,  # nails
        ]
    )
    ip = cv.ipx(pts)
    n_arm = 4 * 3
    band_pts = ip[: 2 * n_arm].reshape(6, 4, 2)
    for k in range(3):
        cv2.fillConvexPoly(img, band_pts[k], col.arm[k], aa, _SHIFT)
    for k in range(3):
        cv2.fillConvexPoly(img, band_pts[3 + k], col.sleeve[k], aa, _SHIFT)
    n_palm = len(hs.palm)
    palm_pts = ip[2 * n_arm : 2 * n_arm + 4 * n_palm].reshape(4, n_palm, 2)
    q = [tuple(v) for v in ip[2 * n_arm + 4 * n_palm :].tolist()]
    tb, kn, jo, ti, hl, bump, nail = q[0], q[1:6], q[6:11], q[11:16], q[16:21], q[21:26], q[26:31]
    w = np.maximum(1, np.round(hs.widths * s)).astype(int).tolist()

    def line(a: tuple, b: tuple, c: tuple[int, int, int], wpx: int) -> None:
        cv2.line(img, a, b, c, max(1, wpx), aa, _SHIFT)

    extra = round(1.6 * s)
    # thumb (under the palm)
    line(tb, kn[0], col.dark, w[0][0] + int(6 * s))
    line(kn[0], jo[0], col.dark, w[0][0] + extra)
    line(jo[0], ti[0], col.dark, w[0][1] + extra)
    line(tb, kn[0], col.base, w[0][0] + int(4 * s))
    line(kn[0], jo[0], col.base, w[0][0])
    line(jo[0], ti[0], col.base, w[0][1])
    # back of the hand: rounded outline, lighter toward its middle
    cv2.fillConvexPoly(img, palm_pts[0], col.dark, aa, _SHIFT)
    cv2.polylines(img, [palm_pts[0]], True, col.dark, max(1, int(6 * s)), aa, _SHIFT)
    for k, c in zip((1, 2, 3), (col.mid, col.base, col.top), strict=True):
        cv2.fillConvexPoly(img, palm_pts[k], c, aa, _SHIFT)
    # the wrist: the forearm's shading bands continue 12 mm onto the hand, hiding the seam
    for k in range(3):
        b = band_pts[k]
        fwd = np.round(hs.forward * 12.0 * s * _ONE).astype(np.int32)
        seam = np.stack([b[0], b[3], b[3] + fwd, b[0] + fwd])
        cv2.fillConvexPoly(img, seam, col.arm[k], aa, _SHIFT)
    r_bump = round(6 * s * _ONE)
    for j in range(1, 5):
        cv2.circle(img, bump[j], r_bump, col.light, -1, aa, _SHIFT)
    # fingers, pinky first: outline, fill, highlight
    for j in (4, 3, 2, 1):
        line(kn[j], jo[j], col.dark, w[j][0] + extra)
        line(jo[j], ti[j], col.dark, w[j][1] + extra)
        line(kn[j], jo[j], col.base, w[j][0])
        line(jo[j], ti[j], col.base, w[j][1])
        line(hl[j], jo[j], col.light, round(w[j][0] * 0.35))
    line(hl[0], jo[0], col.light, round(w[0][0] * 0.35))
    axes = (round(3.6 * hand_scale * s * _ONE), round(2.8 * hand_scale * s * _ONE))
    angles = np.degrees(np.arctan2(d[:, 1], d[:, 0])).tolist()
    for j in range(5):
        cv2.ellipse(img, nail[j], axes, angles[j], 0, 360, col.nail, -1, aa, _SHIFT)


def _draw_silhouette(
    mask: np.ndarray, cv: _Canvas, hs: _HandShape, scale: float, offset_mm: np.ndarray, value: float
) -> None:
    """The hand's outline filled with ``value`` into a single-channel mask at ``scale`` × the
    canvas resolution, shifted by ``offset_mm``."""
    import cv2

    s = cv.px_per_mm * scale
    pts = np.concatenate([hs.arm, hs.palm, hs.thumb_base[None], hs.knuckles, hs.joints, hs.tips])
    ip = cv.ipx(pts + offset_mm, scale)
    n_palm = len(hs.palm)
    cv2.fillConvexPoly(mask, ip[:4], value, cv2.LINE_AA, _SHIFT)
    cv2.fillConvexPoly(mask, ip[4 : 4 + n_palm], value, cv2.LINE_AA, _SHIFT)
    cv2.polylines(mask, [ip[4 : 4 + n_palm]], True, value, max(1, int(6 * s)), cv2.LINE_AA, _SHIFT)
    q = [tuple(v) for v in ip[4 + n_palm :].tolist()]
    tb, kn, jo, ti = q[0], q[1:6], q[6:11], q[11:16]
    wid = np.maximum(1, np.round((hs.widths + 1.6) * s)).astype(int).tolist()
    cv2.line(mask, tb, kn[0], value, max(1, round((hs.widths[0, 0] + 6) * s)), cv2.LINE_AA, _SHIFT)
    for j in range(5):
        cv2.line(mask, kn[j], jo[j], value, wid[j][0], cv2.LINE_AA, _SHIFT)
        cv2.line(mask, jo[j], ti[j], value, wid[j][1], cv2.LINE_AA, _SHIFT)


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
        self._cv = _canvas_for(params, self._h)
        self._m = self._h @ np.linalg.inv(self._cv.matrix())  # canvas px -> frame px
        self._maps = _warp_maps(self._m, params.width_px, params.height_px)
        self._raw = _static_keyboard(params, self._cv)
        self._static = _prefilter(self._raw)
        self._work = self._static.copy()
        self._dirty: list[tuple[int, int, int, int]] = []
        self._patches: dict[int, _KeyPatch] = {}
        self._pressed: dict[tuple[int, int], np.ndarray] = {}
        self._notes = _note_arrays(notes)
        self._tracks = _plan_hands(self._notes, params, np.random.default_rng([self.seed, 1]))
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
        self._colours = _hand_colours(params)

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
        a = _down_amount(t_s, na.onset_s[lo:hi], na.offset_s[lo:hi], press_s, release_s)
        np.maximum.at(out, na.key[lo:hi], a)
        return out

    def _hand_shapes(self, t_s: float) -> list[_HandShape]:
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
                down = float(_down_amount(t_s, on, off, press_s, release_s).max())
                lift = float(np.clip(1 - np.abs(t_s - (on - press_s - 0.06)) / 0.05, 0, 1).max())
                tips[j, 1] += -2.5 * down + 4.0 * lift
            shapes.append(_hand_shape(tips, tr.side, p, self._y_bottom_mm))
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

    def _bbox(self, shapes: list[_HandShape], margin_mm: float) -> tuple[int, int, int, int] | None:
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

    def _draw_hands(self, shapes: list[_HandShape]) -> None:
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
            sub = _Canvas(
                cv.x0_mm + c0 / cv.px_per_mm, cv.y0_mm + r0 / cv.px_per_mm, c1 - c0, r1 - r0
            )
            small = np.zeros((int((r1 - r0) * sc) + 1, int((c1 - c0) * sc) + 1), np.float32)
            _draw_silhouette(small, sub, hs, sc, off, 1.0)
            soft = cv2.GaussianBlur(small, (0, 0), 10.0 * cv.px_per_mm * sc)
            keep = (255.5 - 255 * p.shadow_strength * np.clip(soft, 0, 1)).astype(np.uint8)
            keep_roi = cv2.resize(keep, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
            roi = self._work[r0:r1, c0:c1]  # a view: multiplied in place
            cv2.multiply(roi, cv2.cvtColor(keep_roi, cv2.COLOR_GRAY2RGB), roi, scale=1 / 255)
        for hs in shapes:
            _draw_hand(self._work, cv, hs, self._colours, p.hand_scale)

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
            _draw_silhouette(mask, self._cv, hs, 1.0, np.zeros(2), 255)
        out = cv2.remap(mask, *self._maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out >= 128


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
