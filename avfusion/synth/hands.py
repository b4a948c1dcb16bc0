"""The pianist's hands in the keyboard video: planned once from a performance's notes, then
drawn on the keyboard-plane canvas every frame.

This module owns the notes as arrays and the key-down amount (:class:`NoteArrays`,
:func:`note_arrays`, :func:`down_amount`, shared with the keys' motion), hand planning
(:func:`plan_hands`: keyframes of fingertip positions and the finger of each note) and hand
drawing (:func:`hand_shape`, :func:`hand_colours`, :func:`draw_hand`, :func:`draw_silhouette`).

Each onset group (onsets within 35 ms) goes to one hand, or is split at its largest
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
:meth:`avfusion.synth.render_video.KeyboardRenderer.hand_mask`).

Units: times in seconds; positions in keyboard-plane mm (see :mod:`avfusion.synth.camera`);
widths in mm; colours RGB 0..255. Module constants only; OpenCV is imported when first used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from avfusion.config import MIDI_MAX, MIDI_MIN
from avfusion.keyboard import (
    KEYBOARD_WIDTH_MM,
    WHITE_KEY_LENGTH_MM,
    WHITE_KEY_WIDTH_MM,
    is_black,
    key_x_span_mm,
)
from avfusion.notes import Notes
from avfusion.synth.camera import SUBPIXEL_BITS, SUBPIXEL_SCALE, Canvas, VideoParams, to_rgb

_GROUP_S = 0.035  # onsets closer than this form one group (one hand keyframe)
_REST_GAP_S = 2.0  # a hand idle for longer than this retreats toward the player
_TENTH_SEMITONES = 16  # widest span of one hand (a major tenth)
_BODY_X_MM = KEYBOARD_WIDTH_MM / 2  # the pianist sits at the middle of the keyboard

# --------------------------------------------------------------------------- key motion


@dataclass(frozen=True)
class NoteArrays:
    """The performance's piano notes as arrays, sorted by onset."""

    onset_s: np.ndarray
    offset_s: np.ndarray
    key: np.ndarray  # key index 0..87
    max_len_s: float


def note_arrays(notes: Notes) -> NoteArrays:
    """The notes on piano keys (MIDI 21..108; others dropped) as arrays sorted by onset."""
    kept = sorted((n for n in notes if MIDI_MIN <= n.pitch <= MIDI_MAX), key=lambda n: n.onset_s)
    on = np.array([n.onset_s for n in kept], np.float64)
    off = np.array([n.offset_s for n in kept], np.float64)
    key = np.array([n.pitch - MIDI_MIN for n in kept], np.int64)
    return NoteArrays(on, off, key, float((off - on).max()) if len(kept) else 0.0)


def down_amount(
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


def plan_hands(
    notes: NoteArrays, params: VideoParams, rng: np.random.Generator
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
class HandShape:
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


def hand_shape(tips: np.ndarray, side: int, params: VideoParams, y_bottom_mm: float) -> HandShape:
    """A hand's drawable geometry (plane mm) from its fingertips ``tips`` (5, 2) mm, thumb..pinky;
    ``side`` +1 right hand, −1 left; the forearm reaches past ``y_bottom_mm`` (the canvas's
    bottom edge)."""
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
    return HandShape(
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


def hand_colours(params: VideoParams) -> _HandColours:
    """Skin and sleeve shades of a performance, computed once (RGB int tuples for cv2)."""
    skin = np.asarray(params.skin_rgb, float)
    sleeve = np.asarray(params.sleeve_rgb, float)

    def bands(c: np.ndarray) -> tuple[tuple[int, int, int], ...]:
        return tuple(to_rgb(np.minimum(c * g + (g - 0.8) * 20, 255)) for g in _BAND_GAIN)

    return _HandColours(
        dark=to_rgb(skin * 0.74),
        mid=to_rgb(skin * 0.93),
        base=to_rgb(skin),
        light=to_rgb(np.minimum(skin * 1.08 + 10, 255)),
        top=to_rgb(np.minimum(skin * 1.04 + 5, 255)),
        nail=to_rgb(0.7 * skin + 0.3 * np.array([250, 236, 230])),
        arm=bands(skin),
        sleeve=bands(sleeve),
    )


def draw_hand(
    img: np.ndarray, cv: Canvas, hs: HandShape, col: _HandColours, hand_scale: float
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
        cv2.fillConvexPoly(img, band_pts[k], col.arm[k], aa, SUBPIXEL_BITS)
    for k in range(3):
        cv2.fillConvexPoly(img, band_pts[3 + k], col.sleeve[k], aa, SUBPIXEL_BITS)
    n_palm = len(hs.palm)
    palm_pts = ip[2 * n_arm : 2 * n_arm + 4 * n_palm].reshape(4, n_palm, 2)
    q = [tuple(v) for v in ip[2 * n_arm + 4 * n_palm :].tolist()]
    tb, kn, jo, ti, hl, bump, nail = q[0], q[1:6], q[6:11], q[11:16], q[16:21], q[21:26], q[26:31]
    w = np.maximum(1, np.round(hs.widths * s)).astype(int).tolist()

    def line(a: tuple, b: tuple, c: tuple[int, int, int], wpx: int) -> None:
        cv2.line(img, a, b, c, max(1, wpx), aa, SUBPIXEL_BITS)

    extra = round(1.6 * s)
    # thumb (under the palm)
    line(tb, kn[0], col.dark, w[0][0] + int(6 * s))
    line(kn[0], jo[0], col.dark, w[0][0] + extra)
    line(jo[0], ti[0], col.dark, w[0][1] + extra)
    line(tb, kn[0], col.base, w[0][0] + int(4 * s))
    line(kn[0], jo[0], col.base, w[0][0])
    line(jo[0], ti[0], col.base, w[0][1])
    # back of the hand: rounded outline, lighter toward its middle
    cv2.fillConvexPoly(img, palm_pts[0], col.dark, aa, SUBPIXEL_BITS)
    cv2.polylines(img, [palm_pts[0]], True, col.dark, max(1, int(6 * s)), aa, SUBPIXEL_BITS)
    for k, c in zip((1, 2, 3), (col.mid, col.base, col.top), strict=True):
        cv2.fillConvexPoly(img, palm_pts[k], c, aa, SUBPIXEL_BITS)
    # the wrist: the forearm's shading bands continue 12 mm onto the hand, hiding the seam
    for k in range(3):
        b = band_pts[k]
        fwd = np.round(hs.forward * 12.0 * s * SUBPIXEL_SCALE).astype(np.int32)
        seam = np.stack([b[0], b[3], b[3] + fwd, b[0] + fwd])
        cv2.fillConvexPoly(img, seam, col.arm[k], aa, SUBPIXEL_BITS)
    r_bump = round(6 * s * SUBPIXEL_SCALE)
    for j in range(1, 5):
        cv2.circle(img, bump[j], r_bump, col.light, -1, aa, SUBPIXEL_BITS)
    # fingers, pinky first: outline, fill, highlight
    for j in (4, 3, 2, 1):
        line(kn[j], jo[j], col.dark, w[j][0] + extra)
        line(jo[j], ti[j], col.dark, w[j][1] + extra)
        line(kn[j], jo[j], col.base, w[j][0])
        line(jo[j], ti[j], col.base, w[j][1])
        line(hl[j], jo[j], col.light, round(w[j][0] * 0.35))
    line(hl[0], jo[0], col.light, round(w[0][0] * 0.35))
    axes = (
        round(3.6 * hand_scale * s * SUBPIXEL_SCALE),
        round(2.8 * hand_scale * s * SUBPIXEL_SCALE),
    )
    angles = np.degrees(np.arctan2(d[:, 1], d[:, 0])).tolist()
    for j in range(5):
        cv2.ellipse(img, nail[j], axes, angles[j], 0, 360, col.nail, -1, aa, SUBPIXEL_BITS)


def draw_silhouette(
    mask: np.ndarray, cv: Canvas, hs: HandShape, scale: float, offset_mm: np.ndarray, value: float
) -> None:
    """The hand's outline filled with ``value`` into a single-channel mask at ``scale`` × the
    canvas resolution, shifted by ``offset_mm``."""
    import cv2

    s = cv.px_per_mm * scale
    pts = np.concatenate([hs.arm, hs.palm, hs.thumb_base[None], hs.knuckles, hs.joints, hs.tips])
    ip = cv.ipx(pts + offset_mm, scale)
    n_palm = len(hs.palm)
    cv2.fillConvexPoly(mask, ip[:4], value, cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.fillConvexPoly(mask, ip[4 : 4 + n_palm], value, cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.polylines(
        mask, [ip[4 : 4 + n_palm]], True, value, max(1, int(6 * s)), cv2.LINE_AA, SUBPIXEL_BITS
    )
    q = [tuple(v) for v in ip[4 + n_palm :].tolist()]
    tb, kn, jo, ti = q[0], q[1:6], q[6:11], q[11:16]
    wid = np.maximum(1, np.round((hs.widths + 1.6) * s)).astype(int).tolist()
    cv2.line(
        mask, tb, kn[0], value, max(1, round((hs.widths[0, 0] + 6) * s)), cv2.LINE_AA, SUBPIXEL_BITS
    )
    for j in range(5):
        cv2.line(mask, kn[j], jo[j], value, wid[j][0], cv2.LINE_AA, SUBPIXEL_BITS)
        cv2.line(mask, jo[j], ti[j], value, wid[j][1], cv2.LINE_AA, SUBPIXEL_BITS)
