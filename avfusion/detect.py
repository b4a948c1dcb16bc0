"""Find an 88-key piano keyboard in a video frame, and follow it through a video.

The keyboard is found from its key pattern, as visual piano transcription systems locate the
keyboard and its black keys before reading key presses (e.g. Akbari & Cheng, "Real-time piano
music transcription based on computer vision", IEEE Trans. Multimedia 2015):

1. **Black keys.** A morphological black-hat with a horizontal line element (OpenCV
   ``MORPH_BLACKHAT``) keeps dark features narrower than the element with bright pixels on
   both sides: the black keys between white keys. Its connected components are kept when they
   are elongated along the image's vertical (±40°) and solid.
2. **The row of black keys.** RANSAC (Fischler & Bolles 1981) over pairs of components finds
   the largest set with similar length, width and orientation whose centres lie on one line.
3. **Which black key is which.** Along that line the gaps between neighbouring black keys are
   short inside a group (C#–D#, F#–G#–A#: 26.9–28.2 mm) and long between groups (41.3 mm),
   so a dynamic program aligns the observed sequence to the 36 black keys A#0 … A#7 of
   :func:`avfusion.keyboard.keyboard_geometry` (a scale from the gap histogram, missing keys
   under hands allowed at a cost). Which octave the first observed key is in is decided in
   step 5.
4. **Homography.** Each black key gives its back end, centre and front end, (x, 0),
   (x, 47.5) and (x, 95) mm on the keyboard plane; ``cv2.findHomography`` with RANSAC maps
   the plane (mm) to the frame (px), and refines the fit on the inliers (Levenberg-Marquardt).
5. **Verification.** A synthetic top view of the keys (white keys and their gaps, black keys,
   a dark strip behind and in front of the keys: :func:`key_template`) is correlated with the
   frame warped onto it by each octave hypothesis (the black-key pattern repeats every
   octave); the best hypothesis wins, and its match (the 2-D correlation times the correlation
   of the column profiles over the black keys' band, which checks their 2–3 grouping) is the
   detection's confidence.
   (Refining the corners further by ECC alignment to this template, Evangelidis & Psarakis
   2008, was tried: on rendered keyboards it moves the corners about 1 px away from the truth,
   as the template's shading is simpler than a keyboard's, so the black-key fit is kept.)

Conventions: corners as :func:`avfusion.keyboard.keyboard_corners_mm` mapped into the frame,
clockwise from the back-left (top-left in a top-down video): back-left, back-right,
front-right, front-left, the convention of :func:`avfusion.keyboard.rectify_homography` and of
meta.json's ``keyboard_corners_px``. Frame pixel coordinates have (0, 0) at the centre of the
top-left pixel (OpenCV's). Frames are uint8, (H, W) gray or (H, W, 3) RGB. OpenCV is imported
when first used.

Speed: about 0.08 s per 640x360 frame on one CPU core (0.12 s for 16 frames together).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from avfusion.config import MIDI_MIN
from avfusion.keyboard import (
    BLACK_KEY_LENGTH_MM,
    KEYBOARD_WIDTH_MM,
    WHITE_KEY_LENGTH_MM,
    key_polygon_mm,
    keyboard_corners_mm,
    keyboard_geometry,
)

MIN_CONFIDENCE: float = 0.4
"""Detections with a lower :attr:`KeyboardDetection.confidence` are not keyboards:
:func:`detect_keyboard` returns None below it. Rendered test-split frames with hands over the
keys score 0.70–0.90 (mean 0.80; ``eval/measure_sync_detect.py``); evenly spaced dark bars on
a bright ground (no 2–3 grouping) score 0.22; noise, uniform frames, gradients,
checkerboards and a photograph yield no row of black keys at all."""

TEMPLATE_Y_MM: tuple[float, float] = (-3.0, 152.0)
"""Plane y range the key template covers (mm): the felt strip behind the keys to the dark edge
under the white keys' front."""
_BLACK_X_MM = keyboard_geometry().center_mm[keyboard_geometry().is_black]  # (36,) mm
_MAX_WORK_WIDTH_PX = 960  # larger frames are analysed at this width
_GAP_LOG_SIGMA = 0.09  # tolerance of a gap's length against the model (natural log units)
_SKIP_KEY_COST = 1.0  # DP cost of a black key hidden (under a hand) between two observed ones
_SKIP_BLOB_COST = 4.0  # DP cost of an observed blob that is not a black key
_END_KEY_COST = 0.3  # DP cost of each black key beyond the first / last observed one
_MIN_BLACK_KEYS = 10  # fewer black keys in the row: no keyboard


@dataclass(frozen=True)
class KeyboardDetection:
    """A keyboard found in a frame.

    Attributes:
        corners_px: float64 (4, 2), (x, y) pixels, clockwise from the back-left corner
            (back-left, back-right, front-right, front-left), as meta.json's
            ``keyboard_corners_px``; give them to :func:`avfusion.keyboard.rectify_homography`.
        confidence: 0..1, how well the frame rectified by these corners matches the key
            template (:func:`key_template`): the product of the 2-D correlation and the
            correlation of the column profiles over the black keys' band; see
            :data:`MIN_CONFIDENCE`.
    """

    corners_px: np.ndarray
    confidence: float

    def frame_from_mm(self) -> np.ndarray:
        """The homography (3, 3) float64 from keyboard-plane mm to frame pixels."""
        return _h_from_corners(self.corners_px)


# --------------------------------------------------------------------------- helpers


def _to_gray(frame: np.ndarray, name: str = "frame") -> np.ndarray:
    """Validate a frame and return it as (H, W) uint8 luma."""
    import cv2

    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels, got dtype {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 3:
        out = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    elif frame.ndim == 2:
        out = np.ascontiguousarray(frame)
    else:
        raise ValueError(f"{name}: expected shape (H, W) gray or (H, W, 3) RGB, got {frame.shape}")
    if min(out.shape) < 16:
        raise ValueError(f"{name}: {out.shape[1]}x{out.shape[0]} px is too small (at least 16x16)")
    return out


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def _h_from_corners(corners_px: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.getPerspectiveTransform(
        keyboard_corners_mm().astype(np.float32), np.asarray(corners_px, np.float32).reshape(4, 2)
    ).astype(np.float64)


def _corners(h_frame_from_mm: np.ndarray) -> np.ndarray:
    return _apply_h(h_frame_from_mm, keyboard_corners_mm())


def _plausible(h: np.ndarray | None, shape: tuple[int, ...]) -> bool:
    """A keyboard-like quadrilateral: convex, clockwise, wider than deep, not far outside."""
    import cv2

    if h is None or not np.isfinite(h).all() or abs(np.linalg.det(h)) < 1e-12:
        return False
    c = _corners(h)
    if not np.isfinite(c).all():
        return False
    hgt, wid = shape[:2]
    if c[:, 0].min() < -0.5 * wid or c[:, 0].max() > 1.5 * wid:
        return False
    if c[:, 1].min() < -0.5 * hgt or c[:, 1].max() > 1.5 * hgt:
        return False
    if not cv2.isContourConvex(c.astype(np.float32).reshape(-1, 1, 2)):
        return False
    e = np.roll(c, -1, axis=0) - c
    cross = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
    if not np.all(cross > 0):  # clockwise in image coordinates (y down)
        return False
    width = 0.5 * (np.linalg.norm(e[0]) + np.linalg.norm(e[2]))
    depth = 0.5 * (np.linalg.norm(e[1]) + np.linalg.norm(e[3]))
    return bool(width > 2.5 * depth and width > 40)


# --------------------------------------------------------------------------- template


@cache
def key_template(px_per_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic top view of the 88 keys: what a rectified keyboard should look like.

    White key tops 1.0, the 1.1 mm gaps between them 0.35, black keys 0.1, the felt strip
    behind the keys (y < 0) 0.2 and the dark edge under the white keys' front (y > 150 mm)
    0.3, blurred by 0.7 template pixels. Covers x 0..1222 mm and y :data:`TEMPLATE_Y_MM`.

    Args:
        px_per_mm: template resolution (pixels per mm), 0.1..2.
    Returns:
        (image, tpl_from_mm): float32 (h, w) in 0..1, read-only; float64 (3, 3) mapping plane
        mm to template pixels.
    Raises:
        ValueError: px_per_mm outside 0.1..2.
    """
    import cv2

    if not 0.1 <= px_per_mm <= 2.0:
        raise ValueError(f"key_template: px_per_mm={px_per_mm} must be within 0.1..2")
    y0, y1 = TEMPLATE_Y_MM
    r = px_per_mm
    w = round(KEYBOARD_WIDTH_MM * r)
    h = round((y1 - y0) * r)
    tpl_from_mm = np.array([[r, 0, 0], [0, r, -y0 * r], [0, 0, 1.0]])
    # draw at 4x and area-average down: sub-pixel accurate edges
    up = 4
    big = np.full((h * up, w * up), 0.2, np.float32)
    scale = 16  # 4 fractional bits

    def fill(poly_mm: np.ndarray, value: float) -> None:
        pts = _apply_h(tpl_from_mm, poly_mm) * up - 0.5 * (1 - 1 / up) * up
        cv2.fillPoly(big, [np.round(pts * scale).astype(np.int32)], value, cv2.LINE_8, 4)

    def rect(x0: float, ya: float, x1: float, yb: float) -> np.ndarray:
        return np.array([(x0, ya), (x1, ya), (x1, yb), (x0, yb)])

    fill(rect(0.0, 0.0, KEYBOARD_WIDTH_MM, WHITE_KEY_LENGTH_MM), 0.35)  # gaps
    geo = keyboard_geometry()
    for k in range(88):
        if not geo.is_black[k]:
            poly = key_polygon_mm(MIDI_MIN + k)
            cx = 0.5 * (geo.left_mm[k] + geo.right_mm[k])
            shrink = np.where(poly[:, 0] < cx, 0.55, -0.55)  # inset the sides by half a gap
            fill(np.c_[poly[:, 0] + shrink, poly[:, 1]], 1.0)
    for kb in np.flatnonzero(geo.is_black):
        fill(rect(geo.left_mm[kb], 0.0, geo.right_mm[kb], BLACK_KEY_LENGTH_MM), 0.1)
    fill(rect(0.0, WHITE_KEY_LENGTH_MM, KEYBOARD_WIDTH_MM, y1 + 1), 0.3)
    img = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    for a in (img, tpl_from_mm):
        a.setflags(write=False)
    return img, tpl_from_mm


def _template_for(h_frame_from_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The key template at about the frame's own resolution on the keyboard."""
    c = _corners(h_frame_from_mm)
    width_px = 0.5 * (np.linalg.norm(c[1] - c[0]) + np.linalg.norm(c[2] - c[3]))
    r = float(np.clip(round(width_px / KEYBOARD_WIDTH_MM / 0.05) * 0.05, 0.15, 1.0))
    return key_template(r)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _match(gray: np.ndarray, h_frame_from_mm: np.ndarray) -> float:
    """How well the frame, rectified by ``h_frame_from_mm``, matches the key template: the
    product of (a) the Pearson correlation of the whole rectified keyboard with the template
    and (b) that of their column profiles over the black keys' band (y 15..80 mm), each
    clipped at 0. (b) checks the 2–3 grouping of the black keys; (a) the keyboard's extent.
    """
    import cv2

    img, tpl_from_mm = _template_for(h_frame_from_mm)
    warp = h_frame_from_mm @ np.linalg.inv(tpl_from_mm)  # template px -> frame px
    rect = cv2.warpPerspective(
        gray,
        warp,
        (img.shape[1], img.shape[0]),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    ).astype(np.float32)
    r0, r1 = (round((y - TEMPLATE_Y_MM[0]) * tpl_from_mm[1, 1]) for y in (15.0, 80.0))
    whole = _pearson(rect, img)
    band = _pearson(rect[r0:r1].mean(axis=0), img[r0:r1].mean(axis=0))
    return max(whole, 0.0) * max(band, 0.0)


# --------------------------------------------------------------------------- black keys


@dataclass
class _Blobs:
    """Candidate black keys: centres, unit axes (pointing to the front), lengths, widths (px)."""

    centre: np.ndarray  # (n, 2)
    axis: np.ndarray  # (n, 2)
    length: np.ndarray  # (n,)
    width: np.ndarray  # (n,)


def _black_key_blobs(gray: np.ndarray) -> _Blobs:
    import cv2

    wid = gray.shape[1]
    k = max(5, round(wid / 40)) | 1
    hat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, np.ones((1, k), np.uint8))
    top = float(np.percentile(hat, 99.5))
    thr = max(30.0, 0.45 * top)
    binary = (hat > thr).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
    empty = _Blobs(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0))
    if n <= 1:
        return empty
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    keep = (area >= 6) & (stats[:, cv2.CC_STAT_HEIGHT] >= 4)
    keep[0] = False
    if not keep.any():
        return empty
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    m = n
    sx = np.bincount(lab, xs, m)
    sy = np.bincount(lab, ys, m)
    sxx = np.bincount(lab, xs.astype(np.float64) ** 2, m)
    syy = np.bincount(lab, ys.astype(np.float64) ** 2, m)
    sxy = np.bincount(lab, xs.astype(np.float64) * ys, m)
    a = np.maximum(area, 1)
    cx, cy = sx / a, sy / a
    vxx = sxx / a - cx**2 + 1 / 12
    vyy = syy / a - cy**2 + 1 / 12
    vxy = sxy / a - cx * cy
    tr, det = vxx + vyy, vxx * vyy - vxy**2
    disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0))
    lam1, lam2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 1e-6)
    length, width = np.sqrt(12 * lam1), np.sqrt(12 * lam2)
    # major axis direction (lam1 eigenvector), pointing down the image (to the keys' front)
    ax = np.stack([vxy, lam1 - vxx], axis=1)
    alt = np.stack([lam1 - vyy, vxy], axis=1)
    use_alt = np.linalg.norm(ax, axis=1) < 1e-9
    ax[use_alt] = alt[use_alt]
    ax /= np.maximum(np.linalg.norm(ax, axis=1, keepdims=True), 1e-12)
    ax[ax[:, 1] < 0] *= -1
    elong = length / np.maximum(width, 1e-6)
    solid = area / np.maximum(length * width, 1e-6)
    keep &= (elong >= 2.2) & (ax[:, 1] > math.cos(math.radians(40))) & (solid > 0.5)
    keep &= width >= 1.0
    idx = np.flatnonzero(keep)
    return _Blobs(np.c_[cx[idx], cy[idx]], ax[idx], length[idx], width[idx])


def _black_key_row(b: _Blobs) -> np.ndarray:
    """Indices of the largest set of blobs along one line with similar size and direction
    (RANSAC over all pairs, then a least-squares refit)."""
    n = len(b.length)
    if n < _MIN_BLACK_KEYS:
        return np.zeros(0, int)
    best: np.ndarray = np.zeros(0, int)
    best_score = -1.0
    i_idx, j_idx = np.triu_indices(n, 1)
    if len(i_idx) > 4000:
        sel = np.random.default_rng(0).choice(len(i_idx), 4000, replace=False)
        i_idx, j_idx = i_idx[sel], j_idx[sel]
    for i, j in zip(i_idx, j_idx, strict=True):
        li, lj = b.length[i], b.length[j]
        if max(li, lj) > 1.4 * min(li, lj):
            continue
        d = b.centre[j] - b.centre[i]
        nd = float(np.hypot(*d))
        if nd < 1e-6:
            continue
        normal = np.array([-d[1], d[0]]) / nd
        ref_len = 0.5 * (li + lj)
        ref_w = 0.5 * (b.width[i] + b.width[j])
        dist = np.abs((b.centre - b.centre[i]) @ normal)
        ok = dist < 0.2 * ref_len
        ok &= (b.length > 0.7 * ref_len) & (b.length < 1.4 * ref_len)
        ok &= (b.width > 0.5 * ref_w) & (b.width < 2.0 * ref_w)
        # the keys' axes are roughly perpendicular to the row
        ok &= np.abs(b.axis @ (d / nd)) < math.sin(math.radians(25))
        score = float(ok.sum())
        if score > best_score:
            best_score, best = score, np.flatnonzero(ok)
    if len(best) < _MIN_BLACK_KEYS:
        return np.zeros(0, int)
    # refit: a line through the inliers' centres (total least squares), re-select
    c = b.centre[best]
    mean = c.mean(axis=0)
    _, _, vt = np.linalg.svd(c - mean)
    normal = vt[1]
    ref_len = float(np.median(b.length[best]))
    dist = np.abs((b.centre - mean) @ normal)
    ok = (dist < 0.2 * ref_len) & (b.length > 0.7 * ref_len) & (b.length < 1.4 * ref_len)
    idx = np.flatnonzero(ok)
    return idx if len(idx) >= _MIN_BLACK_KEYS else best


def _gap_scale(gaps_px: np.ndarray) -> list[float]:
    """Candidate frame scales (px per mm along the row) that explain the gaps between
    neighbouring observed black keys as model gaps (spans of 1..3 black keys), best first."""
    d1 = np.diff(_BLACK_X_MM)
    spans = [
        (d1, 1.0),
        (_BLACK_X_MM[2:] - _BLACK_X_MM[:-2], 0.5),
        (_BLACK_X_MM[3:] - _BLACK_X_MM[:-3], 0.3),
    ]
    model = np.concatenate([s for s, _ in spans])
    weight = np.concatenate([np.full(len(s), w) for s, w in spans])
    g = gaps_px[gaps_px > 0]
    lo, hi = float(g.min()) / model.max(), float(g.max()) / model.min()
    grid = np.exp(np.linspace(math.log(lo), math.log(hi), 400))
    z = np.log(g[None, :, None] / (grid[:, None, None] * model[None, None, :]))
    fit = (weight * np.exp(-0.5 * (z / _GAP_LOG_SIGMA) ** 2)).max(axis=2).sum(axis=1)
    order = np.argsort(-fit)
    out: list[float] = []
    for o in order:
        s = float(grid[o])
        if all(abs(math.log(s / t)) > 0.15 for t in out):
            out.append(s)
        if len(out) == 3:
            break
    return out


def _assign_black_keys(u_px: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """Align observed black keys (positions along the row, px, increasing) to the 36 model
    black keys by dynamic programming.

    Returns:
        (model index per observed key, -1 for a blob taken as not a black key; total cost).
    """
    n, m = len(u_px), len(_BLACK_X_MM)
    inf = math.inf
    cost = np.full((n, m), inf)
    back = np.full((n, m, 2), -1, int)
    cost[0] = _END_KEY_COST * np.arange(m)
    for i in range(1, n):
        for di in (1, 2):  # di = 2: blob i - 1 is not a black key
            ip = i - di
            if ip < 0:
                continue
            g = u_px[i] - u_px[ip]
            if g <= 0:
                continue
            for step in range(1, 6):
                d = _BLACK_X_MM[step:] - _BLACK_X_MM[:-step]
                c = 0.5 * (np.log(g / (scale * d)) / _GAP_LOG_SIGMA) ** 2
                c += _SKIP_KEY_COST * (step - 1) + _SKIP_BLOB_COST * (di - 1)
                cand = cost[ip, :-step] + c
                better = cand < cost[i, step:]
                jj = np.flatnonzero(better) + step
                cost[i, jj] = cand[better]
                back[i, jj, 0] = ip
                back[i, jj, 1] = jj - step
    # the last observed key, or the one before it taken as a stray blob
    final = cost[n - 1] + _END_KEY_COST * (m - 1 - np.arange(m))
    j = int(np.argmin(final))
    total = float(final[j])
    out = np.full(n, -1, int)
    i = n - 1
    while i >= 0 and j >= 0:
        out[i] = j
        i, j = int(back[i, j, 0]), int(back[i, j, 1])
    return out, total


def _fit_homography(
    b: _Blobs, idx: np.ndarray, assign: np.ndarray, thresh_px: float
) -> np.ndarray | None:
    import cv2

    ok = assign >= 0
    if ok.sum() < 6:
        return None
    x_mm = _BLACK_X_MM[assign[ok]]
    c = b.centre[idx[ok]]
    ax = b.axis[idx[ok]] * b.length[idx[ok], None] / 2
    src = np.concatenate(
        [
            np.c_[x_mm, np.zeros_like(x_mm)],
            np.c_[x_mm, np.full_like(x_mm, BLACK_KEY_LENGTH_MM / 2)],
            np.c_[x_mm, np.full_like(x_mm, BLACK_KEY_LENGTH_MM)],
        ]
    )
    dst = np.concatenate([c - ax, c, c + ax])
    h, _ = cv2.findHomography(src, dst, cv2.RANSAC, thresh_px, maxIters=500, confidence=0.995)
    return None if h is None else h / h[2, 2]


# --------------------------------------------------------------------------- public API


def _detect_gray(gray: np.ndarray) -> KeyboardDetection | None:
    import cv2

    hgt, wid = gray.shape
    f = 1.0
    work = gray
    if wid > _MAX_WORK_WIDTH_PX:
        f = _MAX_WORK_WIDTH_PX / wid
        work = cv2.resize(gray, (round(wid * f), round(hgt * f)), interpolation=cv2.INTER_AREA)
    blobs = _black_key_blobs(work)
    row = _black_key_row(blobs)
    if len(row) < _MIN_BLACK_KEYS:
        return None
    c = blobs.centre[row]
    mean = c.mean(axis=0)
    _, _, vt = np.linalg.svd(c - mean)
    direction = vt[0] if vt[0][0] >= 0 else -vt[0]
    u = (c - mean) @ direction
    order = np.argsort(u)
    row, u = row[order], u[order]
    gaps = np.diff(u)
    if (gaps <= 0).any():
        keep = np.r_[True, gaps > 0]
        row, u = row[keep], u[keep]
        gaps = np.diff(u)
    best_h: np.ndarray | None = None
    best_score = -math.inf
    for scale in _gap_scale(gaps):
        assign, _ = _assign_black_keys(u, scale)
        used = assign[assign >= 0]
        if len(used) < _MIN_BLACK_KEYS:
            continue
        thresh = max(1.5, 0.12 * float(np.median(gaps)))
        for shift in range(-35, 36, 5):  # the same pattern one or more octaves along
            if used.min() + shift < 0 or used.max() + shift > 35:
                continue
            a = np.where(assign >= 0, assign + shift, -1)
            h = _fit_homography(blobs, row, a, thresh)
            if not _plausible(h, work.shape):
                continue
            assert h is not None
            score = _match(work, h)
            if score > best_score:
                best_score, best_h = score, h
    if best_h is None:
        return None
    h, conf = best_h, best_score
    if f != 1.0:
        h = np.diag([1 / f, 1 / f, 1.0]) @ h
    conf = float(np.clip(conf, 0.0, 1.0))
    if conf < MIN_CONFIDENCE:
        return None
    return KeyboardDetection(_corners(h), conf)


def detect_keyboard(frame: np.ndarray) -> KeyboardDetection | None:
    """Find the 88-key keyboard in one frame (see the module docstring for the method).

    Args:
        frame: uint8, shape (H, W) gray or (H, W, 3) RGB; a top-down-ish view (keys roughly
            vertical in the image, the player at the bottom) with most of the keyboard
            visible. Frames wider than 960 px are analysed at 960 px width.
    Returns:
        The keyboard's corners (pixels of ``frame``) and the confidence, or None when no
        keyboard with confidence at least :data:`MIN_CONFIDENCE` is found.
    Raises:
        ValueError: not a uint8 array of shape (H, W) or (H, W, 3), or smaller than 16x16.
    """
    return _detect_gray(_to_gray(frame))


def detect_keyboard_in_frames(
    frames: Iterable[np.ndarray], max_frames: int = 64
) -> KeyboardDetection | None:
    """Find the keyboard from several frames of one video, robust to hands over the keys.

    Detects on the per-pixel median of the frames (moving hands vanish from it, leaving a
    hand-free picture of the keyboard like the background image of Akbari & Cheng 2015), then
    falls back to the per-corner median of the single-frame detections that succeed.

    Args:
        frames: uint8 frames of one shape, (H, W) gray or (H, W, 3) RGB, best spread over
            the video (e.g. 16–32 frames seconds apart). Only the first ``max_frames`` are used.
        max_frames: the most frames read from ``frames`` (≥ 1).
    Returns:
        The detection (confidence as for :func:`detect_keyboard`), or None.
    Raises:
        ValueError: no frames, frames of different shapes, a frame as
            :func:`detect_keyboard` rejects, or max_frames < 1.
    """
    if max_frames < 1:
        raise ValueError(f"detect_keyboard_in_frames: max_frames={max_frames} must be >= 1")
    grays: list[np.ndarray] = []
    for k, fr in enumerate(frames):
        if k >= max_frames:
            break
        g = _to_gray(fr, f"frames[{k}]")
        if grays and g.shape != grays[0].shape:
            raise ValueError(
                f"frames[{k}]: shape {g.shape} differs from the first frame's {grays[0].shape}"
            )
        grays.append(g)
    if not grays:
        raise ValueError("detect_keyboard_in_frames: no frames given")
    median = np.median(np.stack(grays), axis=0).astype(np.uint8) if len(grays) > 2 else grays[0]
    det = _detect_gray(median)
    if det is not None:
        return det
    dets = [d for g in grays if (d := _detect_gray(g)) is not None]
    if not dets:
        return None
    corners = np.median(np.stack([d.corners_px for d in dets]), axis=0)
    return KeyboardDetection(corners, float(np.median([d.confidence for d in dets])))


class KeyboardTracker:
    """Follow a keyboard through a video: detect it, re-detect it every
    ``recheck_interval_s`` seconds, and smooth the corners over time, so that a camera that
    moves slowly is followed.

    Each frame's match with the key template (the correlation that gives the confidence) is
    checked under the current corners; when it falls below ``drop_ratio`` × its value at the
    last accepted detection (the camera moved, or a cut), a re-detection runs at once.
    Accepted detections are averaged exponentially: weight ``1 − exp(−Δt / smoothing_s)`` for
    Δt seconds since the previous one; a detection more than ``jump_px`` (mean over the
    corners) from the smoothed corners, a camera cut, replaces them. When a re-detection
    fails (hands over most of the keys, a dark frame) the last corners are held.

    Args:
        recheck_interval_s: seconds between re-detections (≥ 0; 0 = every frame).
        smoothing_s: time constant of the corner smoothing (seconds, ≥ 0; 0 = none).
        jump_px: mean corner move (pixels, > 0) above which a detection resets the smoothing.
        drop_ratio: relative drop of the template match that triggers an early re-detection
            (0..1; 0 = never).
    Raises:
        ValueError: a parameter out of its range (named).
    """

    def __init__(
        self,
        recheck_interval_s: float = 1.0,
        smoothing_s: float = 1.0,
        jump_px: float = 25.0,
        drop_ratio: float = 0.8,
    ) -> None:
        for name, v, ok in (
            ("recheck_interval_s", recheck_interval_s, recheck_interval_s >= 0),
            ("smoothing_s", smoothing_s, smoothing_s >= 0),
            ("jump_px", jump_px, jump_px > 0),
            ("drop_ratio", drop_ratio, 0 <= drop_ratio <= 1),
        ):
            if not (ok and math.isfinite(v)):
                raise ValueError(f"KeyboardTracker: {name}={v} is out of range")
        self.recheck_interval_s = float(recheck_interval_s)
        self.smoothing_s = float(smoothing_s)
        self.jump_px = float(jump_px)
        self.drop_ratio = float(drop_ratio)
        self._corners: np.ndarray | None = None
        self._confidence = 0.0
        self._last_check_s = -math.inf
        self._last_accept_s = -math.inf

    @property
    def detection(self) -> KeyboardDetection | None:
        """The current (smoothed) keyboard, or None before the first detection."""
        if self._corners is None:
            return None
        return KeyboardDetection(self._corners.copy(), self._confidence)

    def _accept(self, det: KeyboardDetection, time_s: float) -> None:
        new = det.corners_px
        if self._corners is None:
            self._corners = new.copy()
        else:
            move = float(np.linalg.norm(new - self._corners, axis=1).mean())
            dt = max(time_s - self._last_accept_s, 0.0)
            w = 1.0 if self.smoothing_s == 0 else 1.0 - math.exp(-dt / self.smoothing_s)
            if move > self.jump_px:
                w = 1.0
            self._corners = self._corners + w * (new - self._corners)
        self._confidence = det.confidence
        self._last_accept_s = time_s

    def update(self, frame: np.ndarray, time_s: float) -> KeyboardDetection | None:
        """Process the next frame.

        Args:
            frame: uint8 (H, W) gray or (H, W, 3) RGB.
            time_s: its presentation time (seconds, non-decreasing over calls).
        Returns:
            The current keyboard (smoothed corners, pixels; the confidence of the last
            accepted detection), or None while no keyboard has been found yet.
        Raises:
            ValueError: a frame :func:`detect_keyboard` rejects, or a non-finite time.
        """
        if not math.isfinite(time_s):
            raise ValueError(f"KeyboardTracker.update: time_s={time_s} must be finite")
        gray = _to_gray(frame)
        due = self._corners is None or time_s - self._last_check_s >= self.recheck_interval_s
        if not due and self._corners is not None and self.drop_ratio > 0:
            match = _match(gray, _h_from_corners(self._corners))
            due = match < self.drop_ratio * self._confidence
        if due:
            self._last_check_s = time_s
            det = _detect_gray(gray)
            if det is not None:
                self._accept(det, time_s)
        return self.detection
