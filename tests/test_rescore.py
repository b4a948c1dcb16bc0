"""Note-candidate rescoring (avfusion.rescore): it learns to drop overtone ghosts that no
threshold on the peak's own posterior can separate from quiet true notes."""

import json

import numpy as np
import pytest

from avfusion.decoding import (
    DecodeConfig,
    StreamingDecoder,
    decode_notes,
    fit_onset_calibration,
    onset_thresholds,
)
from avfusion.metrics import transcription_metrics
from avfusion.notes import Note, Notes
from avfusion.rescore import (
    HISTORY_HORIZON,
    N_FEATURES,
    N_HISTORY,
    N_SPECTRAL,
    Rescorer,
    candidate_features,
    fit_rescorer,
    history_features,
    spectral_features,
)

FR = 31.25


def _ghost_block(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray, Notes]:
    """Posteriors of one block: loud true notes (onset 0.9) each with an octave ghost above
    (0.7, false), and quiet true notes alone (0.5). Ranked by posterior, the ghosts sit between
    the two kinds of true notes."""
    onset, frame = np.zeros((n, 88)), np.zeros((n, 88))
    truth = []
    for j, t in enumerate(range(8, n - 10, 9)):
        loud = j % 2 == 0
        k = int(rng.integers(10, 60))
        onset[t, k] = 0.9 if loud else 0.5
        frame[t : t + 6, k] = 0.8
        truth.append(Note(t / FR, (t + 6) / FR, k + 21, 64))
        if loud:
            onset[t, k + 12] = 0.7
            frame[t : t + 6, k + 12] = 0.8
    return onset, frame, Notes.from_iterables(truth)


def _note_f1(ref: Notes, onset, frame, spec=None, **rescorers: Rescorer) -> dict[str, float]:
    """Note F1 of each rescorer's decoding of one block (the same posteriors for all)."""
    return {
        name: transcription_metrics(
            ref, decode_notes(onset, frame, None, FR, DecodeConfig(rescorer=r), spec=spec)
        )["note/f1"]
        for name, r in rescorers.items()
    }


def test_features_see_the_sub_harmonic():
    onset, frame, _ = _ghost_block(np.random.default_rng(0))
    t, k, x = candidate_features(onset, frame)
    assert x.shape == (len(t), N_FEATURES) and np.all(np.isfinite(x))
    assert len(t) == np.count_nonzero(onset)  # every isolated peak is a candidate
    ghost = onset[t, k] == 0.7
    sub = x[:, -6]  # the strongest sub-harmonic's onset posterior (near the candidate)
    assert np.allclose(sub[ghost], 0.9) and np.all(sub[onset[t, k] == 0.5] == 0.0)
    assert candidate_features(np.zeros((50, 88)), np.zeros((50, 88)))[2].shape == (0, N_FEATURES)


def test_rescorer_drops_ghosts_a_calibration_cannot():
    rng = np.random.default_rng(1)
    train = [_ghost_block(rng) for _ in range(12)]
    rescorer = fit_rescorer(train, FR)
    x, y = fit_onset_calibration([(o, ref) for o, _, ref in train], FR)
    calibrated = DecodeConfig(onset_threshold=0.5, onset_calibration_x=x, onset_calibration_y=y)
    rescored = DecodeConfig(onset_threshold=0.5, rescorer=rescorer)
    for onset, frame, ref in (_ghost_block(rng) for _ in range(3)):  # fresh blocks
        f1 = {
            name: transcription_metrics(ref, decode_notes(onset, frame, None, FR, dec))["note/f1"]
            for name, dec in (("calibrated", calibrated), ("rescored", rescored))
        }
        assert f1["rescored"] == 1.0
        assert f1["calibrated"] <= 0.81  # at best all peaks: 2/3 precision


def test_rescorer_round_trip_and_refusals():
    rng = np.random.default_rng(2)
    rescorer = fit_rescorer([_ghost_block(rng) for _ in range(4)], FR, hidden=4)
    dec = DecodeConfig(onset_threshold=0.4, rescorer=rescorer)
    back = DecodeConfig.from_extra(json.loads(json.dumps({"decode": dec.to_dict()})), "m.json")
    assert back == dec and back.adaptive
    onset, frame, _ = _ghost_block(rng)
    features = candidate_features(onset, frame)[2]
    np.testing.assert_array_equal(back.rescorer.predict(features), rescorer.predict(features))
    with pytest.raises(ValueError, match="frame posteriors"):  # rescoring reads the frames too
        onset_thresholds(onset, dec, FR)
    d = rescorer.to_dict()
    with pytest.raises(ValueError, match="features"):
        Rescorer.from_dict({**d, "feature_set": "peaks-v0"})
    with pytest.raises(ValueError, match="do not fit"):
        Rescorer.from_dict({**d, "mean": d["mean"][:-1]})
    with pytest.raises(ValueError, match="malformed"):
        Rescorer.from_dict({k: v for k, v in d.items() if k != "w2"})
    with pytest.raises(ValueError, match="true and false"):
        fit_rescorer([(np.zeros((50, 88)), np.zeros((50, 88)), Notes.from_iterables([]))], FR)


def test_tune_decoder_keeps_a_rescorer_only_if_it_helps():
    from dataclasses import replace

    from avfusion.train import tune_decoder

    rng = np.random.default_rng(3)
    rescorer = fit_rescorer([_ghost_block(rng) for _ in range(12)], FR)
    clips = []
    for onset, frame, ref in (_ghost_block(rng) for _ in range(2)):
        post = {"onset": onset, "frame": frame, "velocity": np.full(onset.shape, 0.5)}
        clips.append(("clean", post, ref))
    dec, scores = tune_decoder(clips, FR, rescorer)
    assert dec.rescorer == rescorer and scores["note_f1/clean"] == 1.0
    inverted = replace(rescorer, w2=tuple(-w for w in rescorer.w2), b2=-rescorer.b2)
    dec, scores = tune_decoder(clips, FR, inverted)
    assert dec.rescorer is None and scores["note_f1/clean"] < 1.0


def test_a_short_last_block_keeps_the_rescored_cut_of_the_block_before():
    """A last block shorter than half a block has too few candidates for a plug-in choice of
    its own: it keeps the candidates rescored at or above the previous block's cut, so its
    octave ghosts go too (a posterior threshold of 0.5, the quiet notes', would admit them)."""
    rng = np.random.default_rng(4)
    rescorer = fit_rescorer([_ghost_block(rng) for _ in range(12)], FR)
    onset, frame, ref = _ghost_block(rng, n=400)
    dec = DecodeConfig(onset_threshold=0.5, rescorer=rescorer, adaptive_block_s=300 / FR)
    notes = decode_notes(onset, frame, None, FR, dec)  # blocks of 300 frames and 100 frames
    tail = [onset[round(n.onset_s * FR), n.pitch - 21] for n in notes if n.onset_s * FR >= 300]
    assert 0.5 in tail and 0.9 in tail and 0.7 not in tail
    assert transcription_metrics(ref, notes)["note/f1"] > 0.95


def _octave_block(
    rng: np.random.Generator, n: int = 400
) -> tuple[np.ndarray, np.ndarray, Notes, np.ndarray]:
    """Posteriors and log-CQT per key of one block: true notes (onset 0.9), each with a peak
    an octave above at 0.7 that is a played octave (true) for half of them and an overtone
    (false) for the other half. The posteriors of the two kinds are the same; in the sound a
    played octave rises as much as the note below it, an overtone a third as much."""
    onset, frame, spec = np.zeros((n, 88)), np.zeros((n, 88)), np.zeros((n, 88))
    truth = []
    for j, t in enumerate(range(8, n - 10, 9)):
        k = int(rng.integers(10, 60))
        played = j % 2 == 0
        onset[t, k], onset[t, k + 12] = 0.9, 0.7
        frame[t : t + 6, [k, k + 12]] = 0.8
        spec[t : t + 4, k] = 3.0  # silent again before the next onset (9 frames on)
        spec[t : t + 4, k + 12] = 3.0 if played else 1.0
        truth.append(Note(t / FR, (t + 6) / FR, k + 21, 64))
        if played:
            truth.append(Note(t / FR, (t + 6) / FR, k + 33, 64))
    return onset, frame, Notes.from_iterables(truth), spec


def test_spectral_features_measure_the_rise_at_the_onset():
    onset, frame, _, spec = _octave_block(np.random.default_rng(5))
    t, k, x = candidate_features(onset, frame, spec, spectral=True)
    assert x.shape == (len(t), N_FEATURES + N_SPECTRAL) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x[:, N_FEATURES:], spectral_features(spec, t, k))
    rise = x[:, N_FEATURES]  # the key's own rise: the largest of t..t+2 minus the mean before
    np.testing.assert_allclose(rise, spec[t, k])
    octave = x[:, -1]  # the key's rise minus the rise an octave below
    upper = onset[t, k] == 0.7
    assert set(np.round(octave[upper], 6)) == {0.0, -2.0}  # played octaves, overtones
    silent = candidate_features(onset, frame, None, spectral=True)[2]  # no audio: silence
    np.testing.assert_array_equal(silent[:, N_FEATURES:], 0.0)
    with pytest.raises(ValueError, match="key_cqt"):
        candidate_features(onset, frame, spec[:-1], spectral=True)


def test_a_rescorer_that_hears_tells_played_octaves_from_overtones():
    rng = np.random.default_rng(6)
    train = [_octave_block(rng) for _ in range(12)]
    blind = fit_rescorer([(o, f, ref) for o, f, ref, _ in train], FR)
    hearing = fit_rescorer(train, FR, spectral=True)
    assert hearing.spectral and not blind.spectral
    back = Rescorer.from_dict(json.loads(json.dumps(hearing.to_dict())))
    assert back == hearing and back.spectral
    for onset, frame, ref, spec in (_octave_block(rng) for _ in range(3)):  # fresh blocks
        f1 = _note_f1(ref, onset, frame, spec, blind=blind, hearing=hearing)
        assert f1["hearing"] == 1.0
        assert f1["blind"] <= 0.9  # the same posteriors: all upper peaks or none (0.86)
        # streaming, in uneven runs of frames, gives the batch decoder's notes
        dec = DecodeConfig(rescorer=hearing, adaptive_block_s=150 / FR)
        stream = StreamingDecoder(FR, dec)
        for lo, hi in ((0, 37), (37, 200), (200, 400)):
            stream.push(onset[lo:hi], frame[lo:hi], None, None, spec[lo:hi])
        assert stream.finish() == decode_notes(onset, frame, None, FR, dec, spec=spec)


def test_frame_cap_quantile_sets_the_block_threshold_from_the_kept_peaks():
    """With a rescorer, a block's onset threshold (the cap of its frame threshold) is a
    quantile of the onset posteriors of the peaks it keeps: the lowest by default, so one quiet
    kept note lowers it for the whole block; a higher quantile does not follow it down."""
    from avfusion.decoding import block_onsets

    rng = np.random.default_rng(7)
    rescorer = fit_rescorer([_ghost_block(rng) for _ in range(12)], FR)
    onset, frame, _ = _ghost_block(rng)  # kept: loud notes at 0.9, quiet ones at 0.5
    thresholds = {}
    for q in (0.0, 0.75):
        dec = DecodeConfig(rescorer=rescorer, frame_cap_quantile=q)
        admit, thresholds[q], _ = block_onsets(onset, frame, dec)
        assert set(onset[admit & (onset > 0)]) == {0.9, 0.5}  # the same peaks either way
        back = DecodeConfig.from_extra(json.loads(json.dumps({"decode": dec.to_dict()})), "m")
        assert back == dec
    assert thresholds == {0.0: 0.5, 0.75: 0.9}
    with pytest.raises(ValueError, match="frame_cap_quantile"):
        DecodeConfig(frame_cap_quantile=1.5)


def _repeat_block(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray, Notes]:
    """Posteriors of one block: each struck note (onset 0.9) is followed 5 frames later by a
    second peak of 0.5 on its key, over the same frame posterior. Every other one is a true
    re-strike (the onset posterior falls to 0 in between), the others are the ripple of one
    decaying note (it stays near 0.45): alike in the peak and its surroundings on other keys."""
    onset, frame = np.zeros((n, 88)), np.zeros((n, 88))
    truth = []
    for j, t in enumerate(range(8, n - 20, 14)):
        k = int(rng.integers(10, 70))
        onset[t, k], onset[t + 5, k] = 0.9, 0.5
        if j % 2:  # a ripple: no dip between the two peaks
            onset[t + 1 : t + 5, k] = (0.6, 0.45, 0.45, 0.48)
        frame[t : t + 11, k] = 0.8
        truth.append(Note(t / FR, (t + 5) / FR, k + 21, 64))
        if j % 2 == 0:
            truth.append(Note((t + 5) / FR, (t + 11) / FR, k + 21, 64))
    return onset, frame, Notes.from_iterables(truth)


def test_history_features_see_the_keys_own_past():
    onset, frame, _ = _repeat_block(np.random.default_rng(8))
    onset[300, 80] = 0.7  # a lone peak: no candidate on its key within the horizon
    t, k, x = candidate_features(onset, frame, history=True)
    assert x.shape == (len(t), N_FEATURES + N_HISTORY) and np.all(np.isfinite(x))
    h = x[:, N_FEATURES:]
    np.testing.assert_array_equal(h, history_features(onset, frame, t, k))
    p = onset[t, k]
    second, first = p == 0.5, p == 0.9
    gap = 5 / HISTORY_HORIZON
    # frame posterior 1 and 3 frames before: the key sounds already at a second peak
    np.testing.assert_allclose(h[second, :2], 0.8)
    np.testing.assert_allclose(h[first, :2], 0.0)
    # the dip before the peak: 0.5 after a re-strike's silence, 0.05 on a ripple
    np.testing.assert_allclose(np.unique(np.round(h[second, 2], 4)), [0.05, 0.5], atol=1e-6)
    np.testing.assert_allclose(h[second, 3:5], [[gap, 0.9]] * second.sum(), atol=1e-6)
    np.testing.assert_allclose(h[first, 5:7], [[gap, 0.5]] * first.sum(), atol=1e-6)
    lone = p == 0.7
    np.testing.assert_allclose(h[lone, 3:], [[1.0, 0.0, 1.0, 0.0]])


def test_a_rescorer_with_history_tells_re_strikes_from_ripples():
    rng = np.random.default_rng(9)
    train = [_repeat_block(rng) for _ in range(40)]  # fewer: the MLP stops early, unsure
    blind = fit_rescorer(train, FR)
    remembering = fit_rescorer(train, FR, history=True)
    assert remembering.history and not remembering.spectral and not blind.history
    back = Rescorer.from_dict(json.loads(json.dumps(remembering.to_dict())))
    assert back == remembering and back.history
    with pytest.raises(ValueError, match="weights do not fit"):
        Rescorer.from_dict({**remembering.to_dict(), "feature_set": "peaks-v1"})
    for onset, frame, ref in (_repeat_block(rng) for _ in range(3)):  # fresh blocks
        f1 = _note_f1(ref, onset, frame, blind=blind, remembering=remembering)
        assert f1["remembering"] == 1.0
        assert f1["blind"] <= 0.9  # the same peaks and context: all second peaks or none
        dec = DecodeConfig(rescorer=remembering, adaptive_block_s=150 / FR)
        stream = StreamingDecoder(FR, dec)
        for lo, hi in ((0, 37), (37, 200), (200, 400)):
            stream.push(onset[lo:hi], frame[lo:hi], None, None)
        assert stream.finish() == decode_notes(onset, frame, None, FR, dec)


def _fifth_block(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, ...]:
    """Isolated peaks of one posterior (0.7) whose truth only the sound two frames *before*
    them tells, five keys up (true notes: log-CQT 2 there, false: 0): an offset and a time that
    no summary feature reads (`RISE_KEYS`, `LEVEL_KEYS` look at the onset and after it), only
    the patch (`patch_features`)."""
    onset, frame, spec = np.zeros((n, 88)), np.zeros((n, 88)), np.zeros((n, 88))
    truth = []
    for j, t in enumerate(range(8, n - 10, 9)):
        k = int(rng.integers(10, 70))
        onset[t, k] = 0.7
        frame[t : t + 6, k] = 0.8
        spec[t : t + 4, k] = 3.0
        if j % 2 == 0:
            spec[t - 2, k + 5] = 2.0
            truth.append(Note(t / FR, (t + 6) / FR, k + 21, 64))
    return onset, frame, Notes.from_iterables(truth), spec


def test_patch_features_hold_the_raw_neighbourhood():
    from avfusion.rescore import (
        FEATURE_SETS,
        N_PATCH_LOG_CQT,
        N_PATCH_POSTERIORS,
        PATCH_KEYS,
        PATCH_LOG_CQT_FRAMES,
        PATCH_OWN_FRAMES,
        patch_features,
    )

    rng = np.random.default_rng(10)
    onset, frame, spec = rng.random((60, 88)) ** 6, rng.random((60, 88)), rng.random((60, 88))
    t, k = np.array([0, 30, 59, 30]), np.array([0, 40, 87, 87])
    p = patch_features(onset, frame, spec, t, k)
    assert p.shape == (4, N_PATCH_POSTERIORS + N_PATCH_LOG_CQT)
    n_own = len(PATCH_OWN_FRAMES)
    zero = PATCH_OWN_FRAMES.index(0)
    np.testing.assert_allclose(p[:, zero], onset[t, k], rtol=1e-6)  # own onset posterior
    np.testing.assert_allclose(p[:, n_own + zero], frame[t, k], rtol=1e-6)  # own frame one
    near = p[:, 2 * n_own : N_PATCH_POSTERIORS]
    centre = PATCH_KEYS.index(0)
    np.testing.assert_allclose(near[1, centre], onset[29:32, 40].max(), rtol=1e-6)
    assert np.all(near[0, :centre] == 0) and np.all(near[2, centre + 1 :] == 0)  # off the keys
    cqt = p[:, N_PATCH_POSTERIORS:].reshape(4, len(PATCH_LOG_CQT_FRAMES), len(PATCH_KEYS))
    after = PATCH_LOG_CQT_FRAMES.index(1)
    np.testing.assert_allclose(cqt[:, after, centre], 0.0, atol=1e-6)  # relative to itself
    np.testing.assert_allclose(cqt[1, after, centre + 5], spec[31, 45] - spec[31, 40], rtol=1e-5)
    silent = patch_features(onset, frame, None, t, k)[:, N_PATCH_POSTERIORS:]
    np.testing.assert_array_equal(silent, 0.0)
    blind = patch_features(onset, frame, spec, t, k, spectral=False)
    np.testing.assert_array_equal(blind, p[:, :N_PATCH_POSTERIORS])
    x = candidate_features(onset, frame, spec, spectral=True, history=True, patch=True)[2]
    assert x.shape[1] == FEATURE_SETS["peaks-cqt-hist-patch-v1"]
    with pytest.raises(ValueError, match="patch needs the history"):
        candidate_features(onset, frame, spec, spectral=True, patch=True)


def test_a_patch_rescorer_reads_cues_the_summary_features_miss():
    rng = np.random.default_rng(11)
    train = [_fifth_block(rng) for _ in range(16)]
    kw = {"hidden": 16, "spectral": True, "history": True, "fit": "torch"}
    summary = fit_rescorer(train, FR, **kw)
    patched = fit_rescorer(train, FR, patch=True, **kw)
    assert patched.patch and patched.feature_set == "peaks-cqt-hist-patch-v1"
    d = json.loads(json.dumps(patched.to_dict()))
    assert "w1_float32" in d and "w1" not in d  # torch weights: float32, stored compactly
    assert Rescorer.from_dict(d) == patched
    with pytest.raises(ValueError, match="malformed hidden weights"):
        Rescorer.from_dict({**d, "w1_float32": d["w1_float32"][:-8]})
    for onset, frame, ref, spec in (_fifth_block(rng) for _ in range(3)):  # fresh blocks
        f1 = _note_f1(ref, onset, frame, spec, summary=summary, patched=patched)
        assert f1["patched"] == 1.0
        assert f1["summary"] <= 0.75  # all peaks alike to it: all kept (0.67) or none
    with pytest.raises(ValueError, match="fit="):
        fit_rescorer(train, FR, fit="xgboost")


def test_rescorer_probe_swaps_only_the_rescorer(tmp_path):
    """eval.rescorer_probe scores a cached model's decoder with its own rescorer and with a
    patch rescorer fitted on the cached training clips; a missing cache exits 2."""
    import pickle

    from eval.rescorer_probe import fit_variant, main

    rng = np.random.default_rng(12)
    train = [_fifth_block(rng) for _ in range(16)]
    own = fit_rescorer(train, FR, hidden=16, spectral=True, history=True)
    val = [("clean", o, f, None, ref, s) for o, f, ref, s in (_fifth_block(rng) for _ in range(2))]
    doc = {"init": "toy", "seed": 0, "hidden": 16, "train": train, "val": val,
           "frame_rate_hz": FR,
           "model_extra": {"decode": DecodeConfig(rescorer=own).to_dict()}}  # fmt: skip
    own_f1 = fit_variant(doc, "bundled")["note_f1"]
    res = fit_variant(doc, "patch-torch")
    assert res["n_validation_performances"] == 2 and set(res["note_f1"]) == {"clean", "mean"}
    assert res["note_f1"]["clean"] == 1.0 > own_f1["clean"]
    cache = tmp_path / "toy.pkl"
    cache.write_bytes(pickle.dumps(doc))
    out = tmp_path / "scores.json"
    assert main(["fit", "--cache", str(cache), "--variant", "bundled", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["note_f1"]["clean"] == own_f1["clean"]
    assert main(["fit", "--cache", str(tmp_path / "none.pkl"), "--variant", "hgb"]) == 2
