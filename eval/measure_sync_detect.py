"""Measure keyboard detection and audio-video offset estimation on a corpus split.

    python -m eval.measure_sync_detect --corpus data/corpus --split test \\
        --out experiments/runs/detect-sync/metrics.json

For every performance of the split (video.mp4, audio.flac, meta.json):

- **Detection**: :func:`avfusion.detect.detect_keyboard` on ``--frames`` frames spread evenly
  over the video (hands over the keys), and :func:`avfusion.detect.detect_keyboard_in_frames`
  on the same frames together; share found, mean and max corner error (pixels, mean over the
  four corners of the distance to meta.json's ``keyboard_corners_px``), time per frame.
- **Offset**: the video's timestamps are shifted by each of ``--shifts`` seconds (an event at
  audio time t then shows at video time t + shift, so the true offset is −shift) and
  :func:`avfusion.sync.estimate_offset_s` is run on the clean audio and the rectified frames,
  once rectified with the true corners (the cached frames of :func:`avfusion.data.rectified_frames`)
  and once with the detected corners (end to end); error = estimate − true offset (ms).
- **Null pairs**: the video of each performance with the audio of the next one; their
  confidences show where :data:`avfusion.sync.MIN_CONFIDENCE` should lie.

``--calibrate`` instead measures the raw lead of the video envelope over the audio
(``video_lead_s=0``) on the split (use ``--split validation``; the value of
:data:`avfusion.sync.VIDEO_LEAD_S` comes from it).

``--model NAME`` (a bundled model or a checkpoint folder) uses
:func:`avfusion.sync.estimate_offset_from_onsets_s` instead: the model's onset posteriors of
the audio alone as the audio envelope (what ``avfusion transcribe`` does); with ``--calibrate``
it measures :data:`avfusion.sync.MODEL_VIDEO_LEAD_S`. ``--condition`` degrades the audio first
(an :mod:`avfusion.noise` condition; the bank's test half on the test split, its train half
otherwise, seeded per performance), e.g. ``music@0db``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.audio import load_audio
from avfusion.config import SAMPLE_RATE_HZ
from avfusion.data import DataConfig, Performance, list_performances, rectified_frames
from avfusion.detect import KeyboardDetection, detect_keyboard, detect_keyboard_in_frames
from avfusion.fileio import atomic_path
from avfusion.keyboard import rectify_homography
from avfusion.sync import (
    MODEL_VIDEO_LEAD_S,
    VIDEO_LEAD_S,
    OffsetEstimate,
    estimate_offset_from_onsets_s,
    estimate_offset_s,
)
from avfusion.video import iter_frames
from eval.conditions import noise_half
from eval.machine import machine

SHIFTS_S = (-0.5, -0.333, -0.2, 0.0, 0.1, 0.137, 0.4)


def _corner_error_px(det: KeyboardDetection | None, true: np.ndarray) -> float | None:
    if det is None:
        return None
    return float(np.linalg.norm(det.corners_px - true, axis=1).mean())


def _sample_frames(perf: Performance, n: int) -> list[np.ndarray]:
    """``n`` gray frames spread evenly over the video (decoded in one pass)."""
    total = max(1, round(perf.duration_s * perf.fps))
    want = set(np.linspace(0, total - 1, n).round().astype(int).tolist())
    out = []
    for i, (_, img) in enumerate(iter_frames(perf.folder / "video.mp4", gray=True)):
        if i in want:
            out.append(img)
    return out


def _rectify_video(perf: Performance, corners: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Rectified gray frames (T, H, W) of the whole video with the given corners."""
    import cv2

    w, h = cfg.rect_width_px, cfg.rect_height_px
    hom = rectify_homography(corners, w, h)
    return np.stack(
        [
            cv2.warpPerspective(img, hom, (w, h), flags=cv2.INTER_LINEAR)
            for _, img in iter_frames(perf.folder / "video.mp4", gray=True)
        ]
    )


def _summary(errors_ms: list[float], frame_ms: list[float]) -> dict[str, float]:
    e = np.asarray(errors_ms, dtype=np.float64)
    return {
        "mean_abs_ms": float(np.abs(e).mean()),
        "median_abs_ms": float(np.median(np.abs(e))),
        "max_abs_ms": float(np.abs(e).max()),
        "mean_signed_ms": float(e.mean()),
        "share_within_one_frame": float(np.mean(np.abs(e) < np.asarray(frame_ms))),
        "n": len(e),
    }


def _detection_summary(
    errors: list[float | None], confidences: list[float], times_s: list[float]
) -> dict[str, float]:
    found = [e for e in errors if e is not None]
    return {
        "min_confidence": float(np.min(confidences)) if confidences else float("nan"),
        "mean_confidence": float(np.mean(confidences)) if confidences else float("nan"),
        "found_share": len(found) / max(len(errors), 1),
        "mean_corner_error_px": float(np.mean(found)) if found else float("nan"),
        "max_corner_error_px": float(np.max(found)) if found else float("nan"),
        "mean_time_s": float(np.mean(times_s)) if times_s else float("nan"),
        "n": len(errors),
    }


def _degraded(audio: np.ndarray, perf_id: str, args: argparse.Namespace) -> np.ndarray:
    """The audio under ``args.condition`` (seeded by the performance), or as it is."""
    if args.condition == "clean":
        return audio
    import zlib

    from avfusion.noise import NoiseBank, degrade

    bank = NoiseBank(args.bank) if (args.bank / "manifest.json").is_file() else None
    rng = np.random.default_rng(zlib.crc32(f"{perf_id}|{args.condition}".encode()))
    return degrade(audio, args.condition, rng, bank=bank, half=noise_half(args.split)).audio


def _estimator(model_name: str | None) -> Callable[..., OffsetEstimate]:
    """``estimate(audio, frames, times, lead_s or None) -> OffsetEstimate``: spectral flux, or
    the onset posteriors of a model (its audio alone)."""
    if model_name is None:

        def flux(audio, frames, times, lead_s):  # type: ignore[no-untyped-def]
            kw = {} if lead_s is None else {"video_lead_s": lead_s}
            return estimate_offset_s(audio, SAMPLE_RATE_HZ, frames, times, **kw)

        return flux
    from avfusion.inference import predict_posteriors, window_s_from_extra
    from avfusion.model.checkpoint import load_checkpoint
    from avfusion.train import resolve_init

    model, extra = load_checkpoint(resolve_init(model_name))
    window_s = window_s_from_extra(extra, model_name)
    # the shifts reuse one audio's posteriors: keep the last audio array itself (held, so no
    # other array can take its identity) with its onset posteriors
    last: list[Any] = [None, None]

    def onsets(audio, frames, times, lead_s):  # type: ignore[no-untyped-def]
        if last[0] is not audio:
            post = predict_posteriors(model, audio, None, None, window_s=window_s)
            last[0], last[1] = audio, post["onset"]
        kw = {} if lead_s is None else {"video_lead_s": lead_s}
        return estimate_offset_from_onsets_s(
            last[1], model.config.frame_rate_hz, frames, times, **kw
        )

    return onsets


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="corpus root")
    ap.add_argument("--split", default="test", help="split to measure (default: test)")
    ap.add_argument("--out", type=Path, required=True, help="output metrics.json")
    ap.add_argument(
        "--shifts", type=float, nargs="+", default=list(SHIFTS_S), help="video shifts (s)"
    )
    ap.add_argument("--frames", type=int, default=16, help="frames per video for detection")
    ap.add_argument("--max-performances", type=int, default=None)
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="measure the raw video lead (video_lead_s=0) instead; use --split validation",
    )
    ap.add_argument(
        "--model",
        help="estimate with this model's onset posteriors (a bundled model name or a "
        "checkpoint folder) instead of spectral flux",
    )
    ap.add_argument("--condition", default="clean", help="degrade the audio first (default clean)")
    ap.add_argument("--bank", type=Path, default=Path("data/noise"), help="noise bank folder")
    args = ap.parse_args(argv)
    cfg = DataConfig()
    perfs = list_performances(args.corpus, args.split)[: args.max_performances]
    audios = {
        p.id: _degraded(load_audio(p.folder / "audio.flac", SAMPLE_RATE_HZ), p.id, args)
        for p in perfs
    }
    estimate = _estimator(args.model)
    record: dict = {
        "command": "python -m eval.measure_sync_detect "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "corpus": str(args.corpus),
        "split": args.split,
        "n_performances": len(perfs),
        "rect_size_px": [cfg.rect_width_px, cfg.rect_height_px],
        "estimator": f"onset posteriors of {args.model}" if args.model else "spectral flux",
        "condition": args.condition,
    }
    t_start = time.perf_counter()
    if args.calibrate:
        leads = []
        for p in tqdm(perfs, desc="calibrate", unit="perf"):
            frames, times = rectified_frames(p, cfg.rect_width_px, cfg.rect_height_px)
            est = estimate(audios[p.id], np.asarray(frames), times, 0.0)
            leads.append({"id": p.id, "lead_ms": 1000 * est.offset_s, "confidence": est.confidence})
        v = np.array([x["lead_ms"] for x in leads])
        record["calibration"] = {
            "median_lead_ms": float(np.median(v)),
            "mean_lead_ms": float(v.mean()),
            "sd_lead_ms": float(v.std()),
            "per_performance": leads,
        }
    else:
        per_perf = []
        det_single: list[float | None] = []
        det_single_t: list[float] = []
        det_single_c: list[float] = []
        det_multi_c: list[float] = []
        det_multi: list[float | None] = []
        det_multi_t: list[float] = []
        err_true: list[float] = []
        err_det: list[float] = []
        frame_true_ms: list[float] = []
        frame_det_ms: list[float] = []
        conf_true: list[float] = []
        null_conf: list[float] = []
        for k, p in enumerate(tqdm(perfs, desc=args.split, unit="perf")):
            true = p.corners_px
            sample = _sample_frames(p, args.frames)
            singles, times_single = [], []
            for img in sample:
                t0 = time.perf_counter()
                det = detect_keyboard(img)
                times_single.append(time.perf_counter() - t0)
                singles.append(_corner_error_px(det, true))
                if det is not None:
                    det_single_c.append(det.confidence)
            t0 = time.perf_counter()
            multi = detect_keyboard_in_frames(sample)
            det_multi_t.append(time.perf_counter() - t0)
            det_multi.append(_corner_error_px(multi, true))
            if multi is not None:
                det_multi_c.append(multi.confidence)
            det_single += singles
            det_single_t += times_single

            frames_true, times = rectified_frames(p, cfg.rect_width_px, cfg.rect_height_px)
            frames_true = np.asarray(frames_true)
            frames_det = _rectify_video(p, multi.corners_px, cfg) if multi is not None else None
            audio = audios[p.id]
            shifts = []
            for shift in args.shifts:
                est = estimate(audio, frames_true, times + shift, None)
                e_true = 1000 * (est.offset_s + shift)
                err_true.append(e_true)
                frame_true_ms.append(1000 / p.fps)
                conf_true.append(est.confidence)
                row = {"shift_s": shift, "error_ms": e_true, "confidence": est.confidence}
                if frames_det is not None and len(frames_det) == len(times):
                    est_d = estimate(audio, frames_det, times + shift, None)
                    row["error_detected_corners_ms"] = 1000 * (est_d.offset_s + shift)
                    err_det.append(row["error_detected_corners_ms"])
                    frame_det_ms.append(1000 / p.fps)
                shifts.append(row)
            other = audios[perfs[(k + 1) % len(perfs)].id]
            null = estimate(other, frames_true, times, None)
            null_conf.append(null.confidence)
            per_perf.append(
                {
                    "id": p.id,
                    "fps": p.fps,
                    "duration_s": p.duration_s,
                    "single_frame_corner_error_px": singles,
                    "multi_frame_corner_error_px": det_multi[-1],
                    "multi_frame_confidence": None if multi is None else multi.confidence,
                    "offsets": shifts,
                    "null_pair_confidence": null.confidence,
                }
            )
        record["detection"] = {
            "single_frame": _detection_summary(det_single, det_single_c, det_single_t),
            "multi_frame": _detection_summary(det_multi, det_multi_c, det_multi_t),
        }
        record["sync"] = {
            "shifts_s": args.shifts,
            "video_lead_s": MODEL_VIDEO_LEAD_S if args.model else VIDEO_LEAD_S,
            "true_corners": {
                **_summary(err_true, frame_true_ms),
                "min_confidence": float(np.min(conf_true)),
            },
            "detected_corners": _summary(err_det, frame_det_ms) if err_det else None,
            "null_pairs_max_confidence": float(np.max(null_conf)),
        }
        record["per_performance"] = per_perf
    record["wall_s"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    summary = {k: record[k] for k in ("detection", "sync") if k in record}
    if "calibration" in record:
        summary["calibration"] = {
            k: v for k, v in record["calibration"].items() if k != "per_performance"
        }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
