"""Labels, decoding, metrics, windowed inference and the window dataset."""

import numpy as np
import pytest
import torch

from avfusion.data import DataConfig, WindowDataset, augment_video, labels_to_notes, make_labels
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
