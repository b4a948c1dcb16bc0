"""Transcription metrics with mir_eval, under stable keys.

Keys: ``note/{precision,recall,f1}`` (onset within 50 ms, pitch within 50 cents),
``note_offset/…`` (and offset within 20 % of the note or 50 ms), ``note_velocity/…`` (onset
and velocity, offsets ignored: MAESTRO's "note with velocity", Hawthorne et al. 2019),
``note_offset_velocity/…`` (onset, offset and velocity; mir_eval.transcription_velocity
rescales each piece's estimated velocities by a least-squares line onto the reference's, and a
velocity matches within 0.1 of the reference's range), ``frame/…`` (key-down frames at
``frame_rate_hz``, precision/recall/F1 over (frame, key) pairs as in Onsets and Frames).
"""

from __future__ import annotations

import numpy as np

from avfusion.notes import Notes

METRIC_KEYS: tuple[str, ...] = tuple(
    f"{group}/{m}"
    for group in ("note", "note_offset", "note_velocity", "note_offset_velocity", "frame")
    for m in ("precision", "recall", "f1")
)


def _prf(tp: float, n_est: float, n_ref: float) -> tuple[float, float, float]:
    p = tp / n_est if n_est else 0.0
    r = tp / n_ref if n_ref else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def transcription_metrics(
    reference: Notes, estimate: Notes, frame_rate_hz: float = 31.25
) -> dict[str, float]:
    """Note- and frame-level precision, recall and F1 of ``estimate`` against ``reference``.

    Empty cases follow the convention that nothing to find and nothing found scores 1.0, and
    that anything else with an empty side scores 0.0 (mir_eval warns and returns 0 for both).

    Returns:
        A dict with the :data:`METRIC_KEYS`.
    """
    import mir_eval

    ref_i, ref_p, ref_v = reference.to_mir_eval()
    est_i, est_p, est_v = estimate.to_mir_eval()
    out: dict[str, float] = {}
    if len(ref_i) == 0 or len(est_i) == 0:
        score = 1.0 if len(ref_i) == len(est_i) == 0 else 0.0
        return dict.fromkeys(METRIC_KEYS, score)
    tr = mir_eval.transcription
    p, r, f, _ = tr.precision_recall_f1_overlap(ref_i, ref_p, est_i, est_p, offset_ratio=None)
    out.update({"note/precision": p, "note/recall": r, "note/f1": f})
    p, r, f, _ = tr.precision_recall_f1_overlap(ref_i, ref_p, est_i, est_p)
    out.update({"note_offset/precision": p, "note_offset/recall": r, "note_offset/f1": f})
    p, r, f, _ = mir_eval.transcription_velocity.precision_recall_f1_overlap(
        ref_i, ref_p, ref_v, est_i, est_p, est_v, offset_ratio=None
    )
    out.update({"note_velocity/precision": p, "note_velocity/recall": r, "note_velocity/f1": f})
    p, r, f, _ = mir_eval.transcription_velocity.precision_recall_f1_overlap(
        ref_i, ref_p, ref_v, est_i, est_p, est_v
    )
    out.update(
        {
            "note_offset_velocity/precision": p,
            "note_offset_velocity/recall": r,
            "note_offset_velocity/f1": f,
        }
    )
    n = int(np.ceil(max(reference.end_s, estimate.end_s) * frame_rate_hz)) + 1
    ref_roll, est_roll = reference.key_roll(frame_rate_hz, n), estimate.key_roll(frame_rate_hz, n)
    p, r, f = _prf(float(np.sum(ref_roll & est_roll)), float(est_roll.sum()), float(ref_roll.sum()))
    out.update({"frame/precision": p, "frame/recall": r, "frame/f1": f})
    return {k: float(out[k]) for k in METRIC_KEYS}
