"""Video degradations of rectified keyboard frames: named, seeded conditions
(``video:lowlight@0.3``, ``video:blur@3px``, ``video:occlusion@50%``,
``video:dropped-frames@20%``) used by the benchmark (``eval.conditions``, which joins them with
the audio conditions of :mod:`avfusion.noise.conditions`) and by training's validation
(``TrainConfig.val_conditions``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VideoKind:
    """A video degradation of the rectified frames and its one parameter.

    Attributes:
        name: as written after ``video:``.
        param: the parameter's name with its unit.
        unit: how the value is written (``px``, ``%``, or nothing).
        default: the value when none is written.
        lo, hi: accepted range (inclusive).
        description: one line for error messages.
    """

    name: str
    param: str
    unit: str
    default: float
    lo: float
    hi: float
    description: str


VIDEO_KINDS: dict[str, VideoKind] = {
    k.name: k
    for k in (
        VideoKind("blur", "sigma_px", "px", 3.0, 0.1, 40.0,
                  "Gaussian blur of this standard deviation in pixels of the 416 x 40 rectified "
                  "frame (a white key is 8 px wide; scaled to other frame sizes, so the blur is "
                  "the same on the keyboard), as from a defocused or shaken camera"),
        VideoKind("lowlight", "gain", "", 0.25, 0.01, 1.0,
                  "brightness scaled by this gain, plus Gaussian sensor noise of "
                  "standard deviation 6 grey levels, then rounded to uint8"),
        VideoKind("occlusion", "percent", "%", 30.0, 1.0, 100.0,
                  "a flat rectangle of random grey over this share of the keyboard's width "
                  "(random place, full key depth) for a random half of the time"),
        VideoKind("dropped-frames", "percent", "%", 30.0, 1.0, 95.0,
                  "this share of frames (random, independent) repeat the frame before them, "
                  "as from a stalling camera"),
    )
}  # fmt: skip
"""The video conditions, written ``video:<name>`` or ``video:<name>@<value><unit>``."""

BLUR_REFERENCE_PX: tuple[int, int] = (416, 40)
"""(width, height) of the rectified frame in whose pixels ``video:blur`` is written: on a
frame of another size the standard deviation is scaled by its width and height ratios, so a
condition blurs the keyboard by the same millimetres for every model's frame size."""

LOWLIGHT_NOISE_SD: float = 6.0
"""Sensor noise of ``video:lowlight``, grey levels (of 255)."""
OCCLUSION_TIME_SHARE: float = 0.5
"""Share of the frames during which ``video:occlusion`` covers the keys (one interval)."""

_VIDEO_STEP = re.compile(r"^video:(?P<name>[a-z-]+)(?:@(?P<value>\d+(?:\.\d+)?)(?P<unit>px|%)?)?$")


def video_accepted() -> str:
    """The accepted video conditions, one a line, for error messages."""
    return "\n".join(
        f"  video:{k.name}[@<{k.param}>{k.unit}]  (default {k.default:g}{k.unit}, "
        f"in [{k.lo:g}, {k.hi:g}]): {k.description}"
        for k in VIDEO_KINDS.values()
    )


def parse_video_step(text: str) -> tuple[VideoKind, float]:
    """Parse ``video:blur`` or ``video:occlusion@50%`` into its kind and parameter value.

    Raises:
        ValueError: unknown name, wrong unit or out-of-range value (lists what is accepted).
    """
    m = _VIDEO_STEP.match(text.strip().lower())
    if not m or m["name"] not in VIDEO_KINDS:
        raise ValueError(f"unknown video condition {text!r}; accepted:\n{video_accepted()}")
    kind = VIDEO_KINDS[m["name"]]
    if m["value"] is None:
        return kind, kind.default
    if (m["unit"] or "") != kind.unit:
        raise ValueError(
            f"{text!r}: write video:{kind.name}@<{kind.param}>{kind.unit} "
            f"(unit {kind.unit or 'none'})"
        )
    value = float(m["value"])
    if not kind.lo <= value <= kind.hi:
        raise ValueError(f"{text!r}: {kind.param} {value:g} is outside [{kind.lo:g}, {kind.hi:g}]")
    return kind, value


def degrade_video(
    frames: np.ndarray, condition: str, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Apply video conditions (``video:…`` steps joined by ``+``) to rectified frames.

    Args:
        frames: uint8, shape (T, H, W), grayscale rectified keyboard frames (x linear over
            the keyboard's width, y over the keys' depth).
        condition: e.g. ``"video:blur"`` or ``"video:occlusion@50%+video:lowlight"``.
        rng: the only source of randomness.
    Returns:
        (uint8 frames of the same shape, a new array; one record per step with the drawn
        parameters).
    Raises:
        ValueError: a bad condition (see :func:`parse_video_step`) or frames that are not
            uint8 (T, H, W).
    """
    import cv2

    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W), got {frames.dtype} {frames.shape}")
    x = np.array(frames, dtype=np.uint8, copy=True)
    n_frames, height, width = x.shape
    records: list[dict[str, Any]] = []
    for step in condition.split("+"):
        kind, value = parse_video_step(step)
        rec: dict[str, Any] = {"condition": f"video:{kind.name}", kind.param: value}
        if n_frames == 0:
            records.append(rec)
            continue
        if kind.name == "blur":
            sx = value * width / BLUR_REFERENCE_PX[0]
            sy = value * height / BLUR_REFERENCE_PX[1]
            for i in range(n_frames):
                x[i] = cv2.GaussianBlur(x[i], (0, 0), sigmaX=sx, sigmaY=sy)
        elif kind.name == "lowlight":
            noise = rng.standard_normal(x.shape, dtype=np.float32) * LOWLIGHT_NOISE_SD
            y = x.astype(np.float32) * value + noise  # (T, H, W)
            x = np.clip(np.round(y), 0, 255).astype(np.uint8)
            rec["noise_sd"] = LOWLIGHT_NOISE_SD
        elif kind.name == "occlusion":
            w_px = max(1, round(width * value / 100))
            x0 = int(rng.integers(0, width - w_px + 1))
            t_len = max(1, round(n_frames * OCCLUSION_TIME_SHARE))
            t0 = int(rng.integers(0, n_frames - t_len + 1))
            fill = int(rng.integers(20, 236))
            x[t0 : t0 + t_len, :, x0 : x0 + w_px] = fill
            rec.update(x_px=[x0, x0 + w_px], frames=[t0, t0 + t_len], fill=fill)
        elif kind.name == "dropped-frames":
            drop = np.asarray(rng.random(n_frames) < value / 100, dtype=bool)  # (T,)
            drop[0] = False
            for j in np.flatnonzero(drop):
                x[j] = x[j - 1]  # in order, so a run of drops holds one frame
            rec["dropped"] = np.flatnonzero(drop).tolist()
        else:  # pragma: no cover - VIDEO_KINDS and this function go together
            raise AssertionError(kind.name)
        records.append(rec)
    return x, records


def split_condition(text: str) -> tuple[str | None, str | None]:
    """Split a condition of audio steps (:mod:`avfusion.noise.conditions`) and ``video:…``
    steps joined by ``+`` into its two canonical parts.

    E.g. ``"Pink@-10dB+video:blur@2px"`` → ``("pink@-10db", "video:blur@2px")``,
    ``"video:lowlight"`` → ``(None, "video:lowlight")``, ``"clean"`` → ``(None, None)``. A video
    step keeps its value only when one was written.

    Returns:
        (audio text or None when the audio is untouched, video text or None).
    Raises:
        ValueError: empty, or any step unknown or malformed (the message lists what is
            accepted).
    """
    from avfusion.noise.conditions import condition_string, parse_condition

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty condition {text!r}")
    parts = [p.strip() for p in text.strip().lower().split("+")]
    video = [p for p in parts if p.startswith("video:")]
    audio = [p for p in parts if not p.startswith("video:")]
    audio_text = condition_string(parse_condition("+".join(audio))) if audio else None
    canon = []
    for p in video:
        kind, value = parse_video_step(p)
        canon.append(f"video:{kind.name}" + (f"@{value:g}{kind.unit}" if "@" in p else ""))
    return (None if audio_text == "clean" else audio_text), ("+".join(canon) or None)
