"""Piano keyboard geometry: where each of the 88 keys lies on the keyboard plane.

The keyboard plane is measured in millimetres, seen from above: x runs from the left edge of
A0 (0 mm) to the right edge of C8 (1222 mm); y runs from the back of the keys, at the fallboard
(0 mm), to the front edge of the white keys (150 mm). Black keys cover y in [0, 95] mm.

Geometry of a standard modern keyboard: white keys 23.5 mm wide (an octave spans 164.5 mm);
black keys follow the "equal key-top" layout used by piano makers, in which the key tops of
the C–E group (2 black keys) divide its 70.5 mm into 5 equal widths (14.1 mm) and those of the
F–B group (3 black keys) divide its 94 mm into 7 equal widths (13.43 mm). So C#/D# and
F#/G#/A# are not centred on the gaps between white keys, as on a real piano.

Finding, rectifying and tracking a keyboard in a video (later issues) use this same geometry,
so a key's x-span in a rectified image is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN, N_KEYS

WHITE_KEY_WIDTH_MM: float = 23.5
WHITE_KEY_LENGTH_MM: float = 150.0
BLACK_KEY_LENGTH_MM: float = 95.0
OCTAVE_WIDTH_MM: float = 7 * WHITE_KEY_WIDTH_MM
N_WHITE_KEYS: int = 52
KEYBOARD_WIDTH_MM: float = N_WHITE_KEYS * WHITE_KEY_WIDTH_MM  # 1222 mm

_WHITE_INDEX = {0: 0, 2: 1, 4: 2, 5: 3, 7: 4, 9: 5, 11: 6}  # pitch class -> white key in octave
_C_GROUP_MM = 3 * WHITE_KEY_WIDTH_MM / 5
_F_GROUP_MM = 4 * WHITE_KEY_WIDTH_MM / 7
_BLACK_SPAN = {  # pitch class -> (left, right) in mm from the octave's C
    1: (_C_GROUP_MM, 2 * _C_GROUP_MM),
    3: (3 * _C_GROUP_MM, 4 * _C_GROUP_MM),
    6: (3 * WHITE_KEY_WIDTH_MM + _F_GROUP_MM, 3 * WHITE_KEY_WIDTH_MM + 2 * _F_GROUP_MM),
    8: (3 * WHITE_KEY_WIDTH_MM + 3 * _F_GROUP_MM, 3 * WHITE_KEY_WIDTH_MM + 4 * _F_GROUP_MM),
    10: (3 * WHITE_KEY_WIDTH_MM + 5 * _F_GROUP_MM, 3 * WHITE_KEY_WIDTH_MM + 6 * _F_GROUP_MM),
}
# The C below A0 (MIDI 12) lies 5 white keys left of A0's left edge.
_C0_LEFT_MM = -5 * WHITE_KEY_WIDTH_MM


def is_black(midi_pitch: int) -> bool:
    """True for the black keys (C#, D#, F#, G#, A#)."""
    return midi_pitch % 12 not in _WHITE_INDEX


def _check_pitch(midi_pitch: int) -> None:
    if not MIDI_MIN <= midi_pitch <= MIDI_MAX:
        raise ValueError(f"MIDI pitch {midi_pitch} is not a piano key ({MIDI_MIN}..{MIDI_MAX})")


def key_x_span_mm(midi_pitch: int) -> tuple[float, float]:
    """Left and right x of a key's full width on the keyboard plane (mm from A0's left edge).

    Raises:
        ValueError: if the pitch is outside MIDI 21..108.
    """
    _check_pitch(midi_pitch)
    c_left = _C0_LEFT_MM + (midi_pitch // 12 - 1) * OCTAVE_WIDTH_MM
    pc = midi_pitch % 12
    if pc in _WHITE_INDEX:
        left = c_left + _WHITE_INDEX[pc] * WHITE_KEY_WIDTH_MM
        return left, left + WHITE_KEY_WIDTH_MM
    lo, hi = _BLACK_SPAN[pc]
    return c_left + lo, c_left + hi


@dataclass(frozen=True)
class KeyboardGeometry:
    """Arrays over the 88 keys (index = MIDI − 21), all in mm on the keyboard plane.

    Attributes:
        left_mm, right_mm: float64 arrays, shape (88,): x-span of each key's full width.
        is_black: bool array, shape (88,).
        length_mm: float64 array, shape (88,): 150 for white keys, 95 for black keys.
    """

    left_mm: np.ndarray
    right_mm: np.ndarray
    is_black: np.ndarray
    length_mm: np.ndarray

    @property
    def center_mm(self) -> np.ndarray:
        """x of each key's centre, shape (88,), mm."""
        return (self.left_mm + self.right_mm) / 2


@cache
def keyboard_geometry() -> KeyboardGeometry:
    """The geometry of all 88 keys (cached; the arrays are read-only)."""
    spans = np.array([key_x_span_mm(p) for p in range(MIDI_MIN, MIDI_MAX + 1)])
    black = np.array([is_black(p) for p in range(MIDI_MIN, MIDI_MAX + 1)])
    length = np.where(black, BLACK_KEY_LENGTH_MM, WHITE_KEY_LENGTH_MM)
    arrays = [spans[:, 0].copy(), spans[:, 1].copy(), black, length]
    for a in arrays:
        a.setflags(write=False)
    return KeyboardGeometry(*arrays)


def key_polygon_mm(midi_pitch: int) -> np.ndarray:
    """The visible top surface of one key, seen from above, as a polygon.

    A white key is narrowed at the back by its black neighbours (an L or T shape); a black
    key is a rectangle over y in [0, 95] mm.

    Returns:
        float64 array, shape (n_points, 2), (x, y) in mm, clockwise in image coordinates
        (y pointing to the front of the keyboard), starting at the back-left corner.
    Raises:
        ValueError: if the pitch is outside MIDI 21..108.
    """
    left, right = key_x_span_mm(midi_pitch)
    if is_black(midi_pitch):
        pts = [(left, 0.0), (right, 0.0), (right, BLACK_KEY_LENGTH_MM), (left, BLACK_KEY_LENGTH_MM)]
        return np.array(pts)
    back_left, back_right = left, right
    if midi_pitch - 1 >= MIDI_MIN and is_black(midi_pitch - 1):
        back_left = key_x_span_mm(midi_pitch - 1)[1]
    if midi_pitch + 1 <= MIDI_MAX and is_black(midi_pitch + 1):
        back_right = key_x_span_mm(midi_pitch + 1)[0]
    y_b, y_f = BLACK_KEY_LENGTH_MM, WHITE_KEY_LENGTH_MM
    pts = [(back_left, 0.0), (back_right, 0.0)]
    if back_right < right:
        pts += [(back_right, y_b), (right, y_b)]
    pts += [(right, y_f), (left, y_f)]
    if back_left > left:
        pts += [(left, y_b), (back_left, y_b)]
    return np.array(pts)


def keyboard_corners_mm() -> np.ndarray:
    """The keyboard's outline on its plane: float64 (4, 2), (x, y) mm, clockwise from the
    back-left corner (top-left in a top-down video): back-left, back-right, front-right,
    front-left."""
    w, h = KEYBOARD_WIDTH_MM, WHITE_KEY_LENGTH_MM
    return np.array([(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)])


assert N_KEYS == 88


RECT_DEPTH_MM: float = 160.0
"""Depth of the keyboard plane a rectified image shows: the keys (150 mm) and 10 mm in front."""


def rectify_homography(corners_px: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """Homography from video-frame pixels to a rectified keyboard image.

    The rectified image is ``width_px`` × ``height_px``; x maps the keyboard's 0..1222 mm
    linearly to 0..width_px (so key k spans ``left_mm·W/1222 .. right_mm·W/1222``), y maps
    0..:data:`RECT_DEPTH_MM` mm (back of the keys to just in front of them) to 0..height_px.

    Args:
        corners_px: (4, 2) the keyboard's corners in the frame, clockwise from the back-left
            (as meta.json's ``keyboard_corners_px``).
    Returns:
        float64 (3, 3), for ``cv2.warpPerspective(frame, h, (width_px, height_px))``.
    """
    import cv2

    src = keyboard_corners_mm().astype(np.float32)
    dst = np.asarray(corners_px, dtype=np.float32).reshape(4, 2)
    frame_from_mm = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    rect_from_mm = np.diag([width_px / KEYBOARD_WIDTH_MM, height_px / RECT_DEPTH_MM, 1.0])
    return rect_from_mm @ np.linalg.inv(frame_from_mm)


def key_x_spans_px(width_px: int) -> np.ndarray:
    """Each key's x-span in a rectified image of width ``width_px``: float64 (88, 2), pixels."""
    g = keyboard_geometry()
    return np.stack([g.left_mm, g.right_mm], axis=1) * (width_px / KEYBOARD_WIDTH_MM)
