"""Labels, decoding, metrics, windowed inference and the window dataset."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from avfusion.data import (
    OCCLUDER_FILLS,
    DataConfig,
    WindowDataset,
    augment_video,
    labels_to_notes,
    make_labels,
    occlude,
)
from avfusion.decoding import DecodeConfig, decode_notes
from avfusion.inference import predict_posteriors, window_starts
from avfusion.keyboard import RECT_DEPTH_MM, WHITE_KEY_LENGTH_MM, key_x_spans_px, rectify_homography
from avfusion.metrics import METRIC_KEYS, transcription_metrics
from avfusion.notes import Note, Notes, PedalEvent
from avfusion.synth.corpus import CorpusConfig, build_corpus

FR = 16000 / 512  # 31.25 frames/s


def test_labels_align_with_the_midi():
    notes = Notes.from_iterables(
        [Note(1.00, 1.50, 60, 100)], [PedalEvent(0.40, 127), PedalEvent(2.0, 0)]
    )
    lab = make_labels(notes, 100, FR)
    k = 60 - 21
    assert np.flatnonzero(lab["onset"][:, k]).tolist() == [31]  # 1.00 s * 31.25 = 31.25 → frame 31
    assert lab["velocity"][31, k] == pytest.approx(100 / 127)
    assert np.flatnonzero(lab["frame"][:, k]).tolist() == list(
        range(31, 47)
    )  # until round(1.5*31.25)=47
    assert np.flatnonzero(lab["offset"][:, k]).tolist() == [47]
    assert lab["onset"].sum() == 1 and lab["frame"][:, :k].sum() == 0
    pedal = np.flatnonzero(lab["pedal"])
    assert pedal[0] == 13 and pedal[-1] == 62  # frames at 0.416 s … 1.984 s
    assert lab["pedal"][12] == 0  # 0.384 s: not yet pressed


def test_notes_rolls_notes_round_trip():
    rng = np.random.default_rng(0)
    notes = []
    for _ in range(40):
        on = round(float(rng.uniform(0, 8)) * FR) / FR
        notes.append(
            Note(
                on,
                on + float(rng.integers(3, 30)) / FR,
                int(rng.integers(21, 109)),
                int(rng.integers(1, 128)),
            )
        )
    ref = Notes.from_iterables(notes)
    lab = make_labels(ref, int(10 * FR), FR)
    for back in (
        labels_to_notes(lab, FR),
        decode_notes(lab["onset"], lab["frame"], lab["velocity"], FR),
    ):
        m = transcription_metrics(ref, back)
        assert m["note/f1"] > 0.97  # overlapping notes of one key merge into one run
        assert m["note_offset_velocity/f1"] > 0.9


def test_decoding_thresholds_and_velocity():
    onset = np.zeros((50, 88))
    frame = np.zeros((50, 88))
    onset[10, 39], onset[11, 39] = 0.9, 0.6  # one peak, not two
    frame[10:20, 39] = 0.8
    onset[30, 40] = 0.4  # below threshold
    vel = np.full((50, 88), 0.5)
    notes = decode_notes(onset, frame, vel, FR, DecodeConfig(onset_threshold=0.5))
    assert [
        (n.pitch, round(n.onset_s * FR), round(n.offset_s * FR), n.velocity) for n in notes
    ] == [(60, 10, 20, 64)]
    assert len(decode_notes(onset, frame, vel, FR, DecodeConfig(onset_threshold=0.3))) == 2


def _two_blocks(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[Note]]:
    """Onset and frame posteriors of a 'clean' block (frames 0..249: true onsets at 0.95, an
    octave ghost of each at 0.6) then a 'noisy' one (250..499: true onsets at 0.35, stray peaks
    at 0.1), and the true notes."""
    onset, frame = np.zeros((500, 88)), np.zeros((500, 88))
    truth = []
    for i, t in enumerate(range(10, 490, 12)):
        k = 20 + (i * 5) % 40
        clean = t < 250
        onset[t, k] = 0.95 if clean else 0.35
        frame[t : t + 6, k] = 0.9
        truth.append(Note(t / FR, (t + 6) / FR, k + 21, 64))
        if clean:
            onset[t, k + 12] = 0.6  # a ghost on the octave above
            frame[t : t + 6, k + 12] = 0.9
        else:
            onset[t + 5, (k + 30) % 88] = 0.1
    return onset, frame, truth


def test_adaptive_onset_threshold_per_block():
    from avfusion.decoding import onset_thresholds

    onset, frame, truth = _two_blocks(np.random.default_rng(0))
    # a calibration as if fitted on validation: 0.95 peaks are true, 0.6 rarely, 0.35 often
    # enough, 0.1 seldom (monotone, as isotonic regression gives)
    cal = {"onset_calibration_x": (0.0, 0.1, 0.35, 0.6, 0.95, 1.0),
           "onset_calibration_y": (0.0, 0.05, 0.3, 0.32, 0.97, 1.0)}  # fmt: skip
    adaptive = DecodeConfig(onset_threshold=0.5, frame_threshold=0.5, adaptive_block_s=8.0, **cal)
    thr = onset_thresholds(onset, adaptive, FR)
    assert thr[0] > 0.6 and thr[249] == thr[0]  # the clean block drops its ghosts
    assert 0.1 < thr[250] <= 0.35 and thr[499] == thr[250]  # the noisy block keeps 0.35
    f1 = {
        name: transcription_metrics(Notes.from_iterables(truth), decode_notes(onset, frame, None, FR, dec))["note/f1"]
        for name, dec in [("adaptive", adaptive), ("fixed 0.5", DecodeConfig(0.5, 0.5)),
                          ("fixed 0.3", DecodeConfig(0.3, 0.5))]
    }  # fmt: skip
    assert f1["adaptive"] == 1.0
    assert f1["fixed 0.5"] < 0.8 and f1["fixed 0.3"] < 0.9  # each fixed one fails a block
    # a block with too little expected music keeps the fixed threshold
    assert np.all(onset_thresholds(np.full((300, 88), 0.01), adaptive, FR) == 0.5)
    # a short last block (< half a block) takes the threshold of the block before it
    assert onset_thresholds(onset[:300], adaptive, FR)[299] == thr[0]


def test_adaptive_frame_threshold_is_capped_at_the_blocks_onset_threshold():
    """Where a block's notes start at a low posterior they also sound at a low one: with an
    adaptive onset threshold the frame threshold is capped at it, so notes of the noisy block
    keep their length; a fixed decoder keeps its frame threshold everywhere."""
    from avfusion.decoding import frame_thresholds, onset_thresholds

    onset, frame, truth = _two_blocks(np.random.default_rng(0))
    noisy = np.arange(500) >= 250
    frame[noisy] *= 0.4  # the noisy block's frame posteriors at 0.36, below frame_threshold
    cal = {"onset_calibration_x": (0.0, 0.1, 0.35, 0.6, 0.95, 1.0),
           "onset_calibration_y": (0.0, 0.05, 0.3, 0.32, 0.97, 1.0)}  # fmt: skip
    adaptive = DecodeConfig(onset_threshold=0.5, frame_threshold=0.5, adaptive_block_s=8.0, **cal)
    thr = onset_thresholds(onset, adaptive, FR)
    caps = frame_thresholds(thr, adaptive)
    assert np.all(caps[~noisy] == 0.5) and np.all(caps[noisy] == thr[noisy]) and thr[300] < 0.5
    ref = Notes.from_iterables(truth)
    assert (
        transcription_metrics(ref, decode_notes(onset, frame, None, FR, adaptive))["note_offset/f1"]
        == 1.0
    )
    fixed = DecodeConfig(onset_threshold=0.3, frame_threshold=0.5)
    assert np.all(frame_thresholds(onset_thresholds(onset, fixed, FR), fixed) == 0.5)
    lengths = [
        round((n.offset_s - n.onset_s) * FR)
        for n in decode_notes(onset, frame, None, FR, fixed)
        if n.onset_s * FR >= 250
    ]
    assert len(lengths) == 20 and set(lengths) == {1}  # cut to the shortest note, one frame


def test_onset_calibration_fit_and_config_round_trip():
    import json

    from avfusion.decoding import fit_onset_calibration

    onset, _, truth = _two_blocks(np.random.default_rng(0))
    x, y = fit_onset_calibration([(onset, Notes.from_iterables(truth))], FR)
    q = np.interp([0.1, 0.35, 0.6, 0.95], x, y)
    assert q[0] == 0.0 and q[3] == 1.0  # stray peaks are never true, 0.95 peaks always
    # 0.35 peaks are true, 0.6 ghosts are not: a monotone map pools them (20 and 20)
    assert q[1] == pytest.approx(0.5) and q[2] == pytest.approx(0.5)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
    dec = DecodeConfig(onset_threshold=0.4, onset_calibration_x=x, onset_calibration_y=y)
    back = DecodeConfig.from_extra(json.loads(json.dumps({"decode": dec.to_dict()})), "m.json")
    assert back == dec and back.adaptive and not DecodeConfig().adaptive
    with pytest.raises(ValueError, match="as many x as y"):
        DecodeConfig(onset_calibration_x=(0.0, 1.0), onset_calibration_y=(0.0,))
    with pytest.raises(ValueError, match="increasing"):
        DecodeConfig(onset_calibration_x=(0.5, 0.2), onset_calibration_y=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DecodeConfig(onset_calibration_x=(0.2, 0.5), onset_calibration_y=(0.0, 1.5))
    with pytest.raises(ValueError, match=r"bad extra\.decode"):
        DecodeConfig.from_extra({"decode": {"onset_calibration_x": [0.1, "a"]}}, "m.json")


def test_metrics_hand_computed():
    ref = Notes.from_iterables([Note(1.0, 1.5, 60, 80), Note(2.0, 2.5, 64, 80)])
    est = Notes.from_iterables(
        [Note(1.02, 1.5, 60, 80), Note(2.2, 2.5, 64, 80), Note(3.0, 3.5, 67, 80)]
    )
    m = transcription_metrics(ref, est)
    assert set(m) == set(METRIC_KEYS)
    assert m["note/precision"] == pytest.approx(1 / 3) and m["note/recall"] == pytest.approx(1 / 2)
    assert m["note/f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert transcription_metrics(Notes(), Notes())["note/f1"] == 1.0
    # velocity: the estimate's velocities are fitted to the reference's by one line per piece,
    # so a constant factor costs nothing, but a note whose loudness is out of order does
    ref = Notes.from_iterables([Note(t, t + 0.4, 60, v) for t, v in ((1, 40), (2, 60), (3, 80))])
    halved = Notes.from_iterables([Note(n.onset_s, 9.0, 60, n.velocity // 2) for n in ref])
    m = transcription_metrics(ref, halved)
    assert m["note_velocity/f1"] == 1.0 and m["note_offset_velocity/f1"] == 0.0  # offsets off
    shuffled = Notes.from_iterables(
        [Note(n.onset_s, n.offset_s, 60, v) for n, v in zip(ref, (60, 80, 40), strict=True)]
    )
    assert transcription_metrics(ref, shuffled)["note_velocity/f1"] < 0.5
    assert transcription_metrics(ref, Notes())["note/f1"] == 0.0


def test_rectification_maps_the_keyboard_to_the_image():
    import cv2

    corners = np.array([[40.0, 120.0], [600.0, 110.0], [605.0, 190.0], [35.0, 200.0]])
    h = rectify_homography(corners, 416, 40)
    mapped = cv2.perspectiveTransform(corners[None].astype(np.float64), h)[0]
    depth = 40 * WHITE_KEY_LENGTH_MM / RECT_DEPTH_MM
    np.testing.assert_allclose(mapped, [[0, 0], [416, 0], [416, depth], [0, depth]], atol=1e-6)
    spans = key_x_spans_px(416)
    assert spans[0, 0] == 0 and spans[-1, 1] == pytest.approx(416)


def test_augment_video_keeps_format_and_drops_frames():
    frames = (np.arange(20)[:, None, None] * 10 + np.zeros((20, 8, 32))).astype(np.uint8)
    cfg = DataConfig(p_video_aug=0.0, p_dropped_frame=0.5)
    out = augment_video(frames, cfg, np.random.default_rng(1))
    assert out.shape == frames.shape and out.dtype == np.uint8
    repeated = [i for i in range(1, 20) if np.array_equal(out[i], out[i - 1])]
    assert 3 <= len(repeated) <= 17


def test_augment_video_low_light_and_sensor_noise():
    """Low light scales a window's grey levels by one gain from its range; sensor noise adds
    Gaussian noise of a standard deviation from its range; probability 0 changes nothing and
    draws nothing (older configs augment as they did)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(100, 200, (12, 16, 64)).astype(np.uint8)
    base = DataConfig(p_video_aug=0.0, p_dropped_frame=0.0)
    dark = augment_video(frames, replace(base, p_low_light=1.0, low_light_gain=(0.2, 0.3)), rng)
    ratio = dark.astype(float).sum() / frames.astype(float).sum()
    assert 0.19 <= ratio <= 0.31
    assert np.corrcoef(dark.ravel(), frames.ravel())[0, 1] > 0.99  # one gain for the window
    noisy = augment_video(
        frames, replace(base, p_sensor_noise=1.0, sensor_noise_sd=(4.0, 6.0)), rng
    )
    sd = (noisy.astype(float) - frames).std()
    assert 3.5 <= sd <= 6.5
    off = replace(base, low_light_gain=(0.01, 0.02), sensor_noise_sd=(50.0, 60.0))
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(augment_video(frames, off, r1), frames)
    augment_video(frames, base, r2)
    assert r1.random() == r2.random()  # the ranges were never drawn from


def test_occlusion_covers_one_patch_for_one_interval():
    """An occluder changes exactly one full-depth column span over one run of frames, of a
    width and duration inside their ranges; every fill kind is drawn; bad ranges are refused;
    with ``p_occlusion`` 0 the augmentation is off."""
    rng = np.random.default_rng(3)
    frames = rng.integers(100, 200, (40, 16, 200)).astype(np.uint8)
    fills = set()
    for _ in range(30):
        x = frames.astype(np.float32)
        rec = occlude(x, (0.1, 0.3), (0.25, 0.5), rng)
        fills.add(rec["fill"])
        (x0, x1), (t0, t1) = rec["x_px"], rec["frames"]
        assert 20 <= x1 - x0 <= 60 and 10 <= t1 - t0 <= 20
        changed = x != frames
        cols = np.flatnonzero(changed.any(axis=(0, 1)))
        rows_t = np.flatnonzero(changed.any(axis=(1, 2)))
        assert cols.min() >= x0 and cols.max() < x1 and rows_t.min() >= t0 and rows_t.max() < t1
        # the patch holds still: every covered frame shows the same picture there
        assert np.array_equal(x[t0, :, x0:x1], x[t1 - 1, :, x0:x1])
    assert fills == set(OCCLUDER_FILLS)
    with pytest.raises(ValueError, match="occlusion_width"):
        occlude(frames.astype(np.float32), (0.5, 0.2), (0.2, 0.5), rng)
    with pytest.raises(ValueError, match="occlusion_time"):  # a config fails when it is loaded
        DataConfig(occlusion_time=(0.0, 0.5))
    from avfusion.train import TrainConfig

    with pytest.raises(ValueError, match="occlusion_width"):
        TrainConfig(data={"p_occlusion": 0.3, "occlusion_width": [0.2, 1.5]})
    base = DataConfig(p_video_aug=0.0, p_dropped_frame=0.0)
    assert np.array_equal(augment_video(frames, base, rng), frames)
    covered = augment_video(frames, replace(base, p_occlusion=1.0), rng)
    assert (covered != frames).any()


class _ImpulseModel(torch.nn.Module):
    """A stand-in model: onset logits high on frames whose audio has an impulse."""

    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"hop_length": 512, "sample_rate_hz": 16000})()

    def forward(self, audio, video=None, video_times_s=None, n_frames=None):
        b = audio.shape[0]
        padded = torch.nn.functional.pad(audio, (0, n_frames * 512 - audio.shape[1] + 512))
        energy = padded[:, : n_frames * 512].reshape(b, n_frames, 512).abs().amax(-1)
        # centred frames: frame i sits at sample i*512; look half a hop either side
        onset = torch.where(energy > 0.5, 10.0, -10.0)[..., None].expand(b, n_frames, 88).clone()
        z = torch.full((b, n_frames, 88), -10.0)
        return {"onset": onset, "frame": onset, "offset": z, "velocity": z, "pedal": z[..., 0]}


@pytest.mark.parametrize("impulse_s", [2.0, 2.5, 5.0, 7.49, 11.9])
def test_windowed_inference_gives_a_note_across_a_boundary_once(impulse_s):
    audio = np.zeros(12 * 16000, np.float32)
    audio[int(impulse_s * 16000)] = 1.0
    post = predict_posteriors(_ImpulseModel(), audio, None, None, window_s=5.0)
    assert post["onset"].shape == (12 * 16000 // 512 + 1, 88)
    notes = decode_notes(post["onset"], post["frame"], None, FR)
    per_key = [n for n in notes if n.pitch == 60]
    assert len(per_key) == 1 and per_key[0].onset_s == pytest.approx(impulse_s, abs=1.5 / FR)
    win = 2 * 78 * 512  # what predict_posteriors makes of 5 s: a whole, even number of hops
    starts = window_starts(len(audio), win, 512)
    assert all(s % 512 == 0 for s in starts) and starts[-1] + win >= len(audio)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from avfusion.midi import write_midi
    from tests.conftest import make_notes

    root = tmp_path_factory.mktemp("c")
    mids = root / "midis"
    mids.mkdir()
    for i in range(4):
        write_midi(make_notes(offset_pitch=i), mids / f"p{i}.mid")
    build_corpus(
        root / "corpus",
        CorpusConfig(hours=0, seed=0, size_px=(320, 180), midi_dir=str(mids)),
        progress=False,
    )
    return root / "corpus"


def test_window_dataset_items(tiny_corpus):
    import json

    split = json.loads((tiny_corpus / "manifest.jsonl").read_text().splitlines()[0])["split"]
    cfg = DataConfig(window_s=2.0, rect_width_px=208, rect_height_px=20, windows_per_epoch=4)
    ds = WindowDataset(tiny_corpus, split, cfg, train=True, seed=0)
    item = ds[0]
    assert item["audio"].shape == (32000,) and item["audio"].dtype == torch.float32
    assert item["video"].dtype == torch.uint8 and item["video"].shape[1:] == (20, 208)
    assert item["video"].shape[0] == item["video_times_s"].shape[0] == ds.n_video
    assert item["onset"].shape == (cfg.n_frames(32000), 88) and item["pedal"].shape == (
        cfg.n_frames(32000),
    )
    assert torch.all(item["video_times_s"][1:] >= item["video_times_s"][:-1])
    again = WindowDataset(tiny_corpus, split, cfg, train=True, seed=0)[0]
    assert torch.equal(item["audio"], again["audio"]) and torch.equal(item["video"], again["video"])
    # audio-only training reads no frames, and draws the same degraded audio and labels
    audio_only = WindowDataset(tiny_corpus, split, cfg, train=True, seed=0, video=False)[0]
    assert audio_only["video"].shape == (1, 20, 208) and not audio_only["video"].any()
    assert torch.equal(audio_only["audio"], item["audio"])
    assert torch.equal(audio_only["onset"], item["onset"])
    val = WindowDataset(tiny_corpus, split, cfg, train=False)
    first = val[0]
    assert first["onset"].sum() > 0 and first["frame"].sum() >= first["onset"].sum()


def test_timbre_augmentation_renders_the_same_notes_with_another_piano(tiny_corpus):
    import json

    from avfusion.config import TIMBRE_SOUNDFONTS
    from avfusion.data import list_performances, timbre_audio

    if not TIMBRE_SOUNDFONTS["csound-gm"].is_file():
        pytest.skip("csound-soundfont not installed (make setup installs it)")
    split = json.loads((tiny_corpus / "manifest.jsonl").read_text().splitlines()[0])["split"]
    perf = list_performances(tiny_corpus, split)[0]
    clean = perf.load_audio()
    other = timbre_audio(perf, "csound-gm", len(clean))
    assert other.shape == clean.shape and other.dtype == np.float32
    assert not np.allclose(other, clean, atol=1e-3)  # another piano
    # the same level (the synthesiser's drawn loudness) and the same notes at the same times:
    # the 50 ms energy envelopes rise and fall together
    def rms_db(x):
        return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))

    assert abs(rms_db(other) - rms_db(clean)) < 1.5
    hop = 800
    env = [np.log(np.add.reduceat(np.asarray(x, np.float64) ** 2, np.arange(0, len(x), hop)) + 1e-9)
           for x in (clean, other)]  # fmt: skip
    assert np.corrcoef(env[0], env[1])[0, 1] > 0.8
    cached = perf.cache_root / "timbre" / "csound-gm" / perf.split / f"{perf.id}.npy"
    assert cached.is_file() and np.array_equal(timbre_audio(perf, "csound-gm"), other)
    with pytest.raises(ValueError, match="test split"):
        timbre_audio(perf, "musescore")

    # training windows: p_timbre 1 takes every clean window from the other piano, same labels
    cfg = DataConfig(window_s=2.0, rect_width_px=208, rect_height_px=20, windows_per_epoch=4,
                     degradation={"p_clean": 1.0, "p_no_audio": 0.0})  # fmt: skip
    plain = WindowDataset(tiny_corpus, split, cfg, train=True, seed=0, video=False)
    swapped = WindowDataset(tiny_corpus, split, replace(cfg, timbre_soundfonts=("csound-gm",),
                                                        p_timbre=1.0),
                            train=True, seed=0, video=False)  # fmt: skip
    renders = [np.asarray(it.timbres[0]) for it in swapped.items]

    def cut_from_a_render(x: np.ndarray) -> bool:
        return any(np.array_equal(r[s : s + len(x)], x)
                   for r in renders for s in np.flatnonzero(r == x[0]))  # fmt: skip

    for k in range(4):
        a, b = plain[k], swapped[k]
        assert torch.equal(a["onset"], b["onset"])
        assert cut_from_a_render(b["audio"].numpy()) and not cut_from_a_render(a["audio"].numpy())
    with pytest.raises(ValueError, match="p_timbre"):
        WindowDataset(tiny_corpus, split, replace(cfg, p_timbre=0.5), train=True, video=False)


def test_swap_piano_writes_a_corpus_of_the_same_performances_with_another_piano(
    tiny_corpus, tmp_path
):
    import json

    from avfusion.data import list_performances
    from eval.swap_piano import main, swap_piano

    split = json.loads((tiny_corpus / "manifest.jsonl").read_text().splitlines()[0])["split"]
    before = list_performances(tiny_corpus, split)
    meta = json.loads((before[0].folder / "meta.json").read_text())
    other = "fluidr3" if meta["soundfont"] != "fluidr3" else "timgm6mb"
    assert swap_piano(tiny_corpus, split, other, tmp_path / "swapped") == len(before)
    after = list_performances(tmp_path / "swapped", split)
    assert [p.id for p in after] == [p.id for p in before]
    a, b = before[0], after[0]
    assert b.notes() == a.notes() and b.duration_s == a.duration_s
    assert len(b.load_audio()) == len(a.load_audio())
    assert not np.allclose(b.load_audio(), a.load_audio(), atol=1e-3)
    # the test split's piano is refused, and so is writing over the corpus
    assert main(["--corpus", str(tiny_corpus), "--split", split, "--soundfont", "musescore",
                 "--out", str(tmp_path / "x")]) == 1  # fmt: skip
    with pytest.raises(FileExistsError):
        swap_piano(tiny_corpus, split, other, tiny_corpus)
