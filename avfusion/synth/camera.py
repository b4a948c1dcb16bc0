"""Camera and per-performance picture parameters of the keyboard video, and the canvas of the
keyboard plane that :mod:`avfusion.synth.hands` and :mod:`avfusion.synth.render_video` draw on.

This module owns:

- :class:`VideoParams`, everything drawn once per performance (camera, lighting, piano and hand
  appearance), and :func:`draw_video_params`, which draws it from the :data:`CAMERA_RANGES`
  (disjoint ``train`` and ``test`` cameras);
- the camera: :func:`plane_to_frame_homography` maps keyboard-plane points to frame pixels, and
  :func:`key_region_mask` gives the frame pixels of one key;
- the keyboard-plane canvas (:class:`Canvas`, :func:`canvas_for`) and the fixed-point
  conventions of the OpenCV drawing (:data:`SUBPIXEL_BITS`, :data:`SUBPIXEL_SCALE`).

Units: plane coordinates in mm as in :mod:`avfusion.keyboard` (x 0..1222 mm from A0's left
edge, y 0 mm at the fallboard to 150 mm at the front of the white keys); canvas pixels at
:data:`CANVAS_PX_PER_MM` px per mm; frame pixel coordinates with (0, 0) at the centre of the
top-left pixel (OpenCV's); colours RGB 0..255. Module constants only; OpenCV is imported when
first used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from avfusion.keyboard import (
    KEYBOARD_WIDTH_MM,
    WHITE_KEY_LENGTH_MM,
    key_polygon_mm,
    keyboard_corners_mm,
)

CANVAS_PX_PER_MM: float = 1.0
"""Resolution of the keyboard-plane canvas (px/mm): about twice the frame's at 640x360."""
SUBPIXEL_BITS: int = 4
"""Sub-pixel bits of the fixed-point points given to OpenCV's drawing functions (``shift``)."""
SUBPIXEL_SCALE: int = 1 << SUBPIXEL_BITS
"""Canvas px × this = OpenCV fixed-point coordinates (see :data:`SUBPIXEL_BITS`)."""

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
    cv2.fillPoly(
        mask, [np.round(poly * SUBPIXEL_SCALE).astype(np.int32)], 1, cv2.LINE_8, SUBPIXEL_BITS
    )
    return mask.astype(bool)


@dataclass(frozen=True)
class Canvas:
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
        """Plane mm → canvas px as int32 with :data:`SUBPIXEL_BITS` fractional bits, for cv2."""
        return np.round(self.px(pts_mm) * scale * SUBPIXEL_SCALE).astype(np.int32)

    def y_mm(self, rows: np.ndarray) -> np.ndarray:
        """Canvas rows (float or int) → plane y (mm) of their centres."""
        return self.y0_mm + np.asarray(rows, float) / self.px_per_mm

    def matrix(self) -> np.ndarray:
        """Plane mm → canvas px, (3, 3)."""
        s = self.px_per_mm
        return np.array([[s, 0, -s * self.x0_mm], [0, s, -s * self.y0_mm], [0, 0, 1.0]])


def canvas_for(params: VideoParams, h: np.ndarray) -> Canvas:
    """The canvas covering the whole frame (plus a 10 mm margin, at most 700 mm beyond the
    keyboard) for the camera ``h`` (:func:`plane_to_frame_homography` of ``params``)."""
    w, hh = params.width_px, params.height_px
    frame_corners = np.array([(-0.5, -0.5), (w - 0.5, -0.5), (w - 0.5, hh - 0.5), (-0.5, hh - 0.5)])
    pts = _apply_h(np.linalg.inv(h), frame_corners)
    x_lo = max(float(pts[:, 0].min()) - 10, -700.0)
    x_hi = min(float(pts[:, 0].max()) + 10, KEYBOARD_WIDTH_MM + 700)
    y_lo = max(float(pts[:, 1].min()) - 10, -700.0)
    y_hi = min(float(pts[:, 1].max()) + 10, 1200.0)
    s = CANVAS_PX_PER_MM
    x0, y0 = math.floor(x_lo), math.floor(y_lo)
    return Canvas(x0, y0, math.ceil((x_hi - x0) * s) + 1, math.ceil((y_hi - y0) * s) + 1)


# --------------------------------------------------------------------------- colours


def to_rgb(c: Any) -> tuple[int, int, int]:
    """A colour (3 numbers, any range) rounded and clipped to an RGB 0..255 int tuple for cv2."""
    v = np.clip(np.round(np.asarray(c, float)), 0, 255).astype(int)
    return (int(v[0]), int(v[1]), int(v[2]))
