"""Dataset adapters (avfusion.datasets) on tiny fixtures in each published layout: the notes
and corners they yield, the checker's problems, eval.run and fine-tuning on a dataset, and
pickled labels refused without --allow-pickle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avfusion.cli import main as cli_main
from avfusion.datasets import DatasetError, load_dataset, scan_dataset
from avfusion.datasets.base import notes_from_roll
from avfusion.datasets.check import check_dataset
from avfusion.midi import read_midi, write_midi
from tests import dataset_fixtures as fx
from tests.conftest import make_notes


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Path:
    """One 2.6 s performance, 320 x 180, rendered once."""
    from avfusion.synth.performance import PerformanceSpec, render_performance

    root = tmp_path_factory.mktemp("rendered")
    midi = root / "phrase.mid"
    write_midi(make_notes(duration_s=2.5), midi)
    spec = PerformanceSpec("phrase", "test", "midi", str(midi), seed=0, target_s=0,
                           camera="train", soundfont="timgm6mb", hands=False)  # fmt: skip
    render_performance(spec, root / "perf", size_px=(320, 180))
    return root / "perf"


def _layout(tmp_path_factory, rendered, name, writer):
    root = tmp_path_factory.mktemp(name)
    return root, writer(root, rendered)


@pytest.fixture(scope="session")
def pianovam(tmp_path_factory, rendered):
    return _layout(tmp_path_factory, rendered, "pianovam", fx.write_pianovam)


@pytest.fixture(scope="session")
def audeo(tmp_path_factory, rendered):
    return _layout(tmp_path_factory, rendered, "audeo", fx.write_audeo)


def _notes_equal(a, b, tol_s=1e-3, velocity=True):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.pitch == y.pitch and (x.velocity == y.velocity or not velocity)
        assert abs(x.onset_s - y.onset_s) < tol_s and abs(x.offset_s - y.offset_s) < tol_s


def _kinds(report):
    return sorted({p.kind for p in report.problems})


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return dst


# ------------------------------------------------------------------------------ PianoVAM


def test_pianovam_notes_corners_splits(pianovam, rendered, monkeypatch):
    root, expected = pianovam
    perfs = load_dataset(root, "pianovam")
    assert [p.split for p in perfs] == ["train", "validation", "test"]
    for p in perfs:
        split, notes, corners = expected[p.id]
        assert p.split == {"valid": "validation"}.get(split, split)
        np.testing.assert_allclose(p.corners_px, corners)
        got = p.notes()
        _notes_equal(got, notes)
        assert got.pedal == notes.pedal  # pedal from MIDI/<record_time>.mid
        assert p.fps == pytest.approx(json.loads((rendered / "meta.json").read_text())["fps"])
        assert 2.4 < p.duration_s < 3.5 and p.audio_path == p.video_path
    test = load_dataset(root, "pianovam", "test")
    assert [p.id for p in test] == ["2024-02-16_08-30-00"]
    import avfusion.datasets.check

    def no_second_probe(path):
        raise AssertionError(f"{path}: probed again by the checker")

    # the checker takes the frame size from the adapter's probe, not from the file again
    monkeypatch.setattr(avfusion.datasets.check, "probe_media", no_second_probe)
    assert check_dataset(root, "pianovam").ok


def test_pianovam_checker_finds_each_planted_problem(pianovam, tmp_path, capsys):
    root = _copy(pianovam[0], tmp_path)
    meta = json.loads((root / "metadata.json").read_text())
    meta["0"]["Point_RB"] = "5000, 170"  # corners outside the 320x180 frame
    meta["3"] = {**meta["1"], "record_time": "2024-03-01_00-00-00"}  # no video
    meta["4"] = {**meta["1"], "record_time": "2024-03-02_00-00-00", "split": "dev"}
    meta["5"] = {**meta["2"], "record_time": "2024-03-03_00-00-00", "split": "train"}
    shutil.copy(
        root / "Video" / "2024-02-16_08-30-00.mp4", root / "Video" / "2024-03-03_00-00-00.mp4"
    )
    shutil.copy(root / "TSV" / "2024-02-16_08-30-00.tsv", root / "TSV" / "2024-03-03_00-00-00.tsv")
    (root / "TSV" / "2024-03-01_00-00-00.tsv").write_text(
        "onset\tkey_offset\tframe_offset\tnote\tvelocity\n"
    )
    (root / "metadata.json").write_text(json.dumps(meta))
    tsv = root / "TSV" / "2024-02-15_10-00-00.tsv"
    tsv.write_text(tsv.read_text() + "40.0\t41.0\t41.5\t60\t64\n")  # beyond the 2.6 s video
    report = check_dataset(root, "pianovam")
    assert _kinds(report) == ["corners-outside-frame", "duplicate-across-splits",
                              "labels-beyond-media", "missing", "unknown-split"]  # fmt: skip
    rc = cli_main(["datasets", "check", str(root), "--format", "pianovam"])
    out = capsys.readouterr().out
    assert rc == 1 and "corners-outside-frame" in out and "validation" in out and "hours" in out
    with pytest.raises(DatasetError, match="video not found"):
        load_dataset(root, "pianovam")


def test_malformed_metadata_names_the_file(tmp_path, capsys):
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"metadata\.json: not valid JSON"):
        load_dataset(tmp_path, "pianovam")
    assert cli_main(["datasets", "check", str(tmp_path / "nope"), "--format", "pianovam"]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    assert cli_main(["datasets", "check", str(tmp_path), "--format", "nosuch"]) == 2


# ------------------------------------------------------------------------------ OMAPS


def test_omaps_notes_and_detected_corners(tmp_path_factory, rendered, tmp_path):
    from avfusion.data import keyboard_corners, rectified_frames

    root, expected = _layout(tmp_path_factory, rendered, "omaps", fx.write_omaps)
    perfs = load_dataset(root, "omaps")
    assert {(p.id, p.split) for p in perfs} == {("bach_prelude", "train"), ("chopin_waltz", "test")}
    for p in perfs:
        assert p.corners_px is None and p.audio_path.suffix == ".wav" and not p.has_velocity
        _notes_equal(p.notes(), expected[p.id], tol_s=1e-4, velocity=False)
    true = np.asarray(json.loads((rendered / "meta.json").read_text())["keyboard_corners_px"])
    found = keyboard_corners(perfs[0])  # detected, then cached
    assert np.abs(found - true).max() < 4.0
    assert (root / ".avfusion-cache" / "corners" / "train" / "bach_prelude.json").is_file()
    frames, times = rectified_frames(perfs[0], 208, 20)
    assert frames.shape[1:] == (20, 208) and len(times) == len(frames)
    assert check_dataset(root, "omaps").ok

    bad = _copy(root, tmp_path)
    (bad / "test" / "chopin_waltz.mp4").unlink()
    with open(bad / "train" / "bach_prelude.txt", "a") as f:
        f.write("1.0\tx\t60\n")
    assert _kinds(check_dataset(bad, "omaps")) == ["missing", "unreadable"]


# ------------------------------------------------------------------------------ PianoYT


def test_pianoyt_crlf_csv_crop_corners_and_duplicates(tmp_path_factory, rendered, tmp_path):
    root, expected = _layout(tmp_path_factory, rendered, "pianoyt", fx.write_pianoyt)
    assert b"\r\n" in (root / "pianoyt.csv").read_bytes()
    perfs = load_dataset(root, "pianoyt")
    assert [(p.id, p.split) for p in perfs] == [("1", "train"), ("7", "test")]
    for p in perfs:
        min_y, max_y, min_x, max_x = expected[p.id][1]
        np.testing.assert_allclose(
            p.corners_px, [[min_x, min_y], [max_x, min_y], [max_x, max_y], [min_x, max_y]]
        )
        _notes_equal(p.notes(), read_midi(rendered / "notes.mid"))
    assert perfs[0].source_key == "youtube:AAAAAAAAAAA"
    assert check_dataset(root, "pianoyt").ok
    renamed = _copy(root, tmp_path / "renamed")  # the release's own name for the list
    (renamed / "pianoyt.csv").rename(renamed / "pianoyt_videos.csv")
    assert [p.id for p in load_dataset(renamed, "pianoyt")] == ["1", "7"]

    bad = _copy(root, tmp_path)
    rows = (bad / "pianoyt.csv").read_bytes().decode()
    rows += (
        "9,'https://www.youtube.com/watch?v=AAAAAAAAAAA',3,60,150,10,310\r\n"  # train video in test
    )
    rows += "10,'https://youtu.be/x',2,1,2,3,4\r\n11,'u',1,a,b,c,d\r\n"
    (bad / "pianoyt.csv").write_bytes(rows.encode())
    shutil.copy(bad / "videos" / "7.mp4", bad / "videos" / "9.mp4")
    shutil.copy(bad / "pianoyt_MIDI" / "audio_7.0.midi", bad / "pianoyt_MIDI" / "audio_9.0.midi")
    assert _kinds(check_dataset(bad, "pianoyt")) == [
        "duplicate-across-splits",
        "malformed",
        "unknown-split",
    ]
    with pytest.raises(DatasetError, match=r"pianoyt\.csv:4: split code '2'"):
        load_dataset(bad, "pianoyt")


# ------------------------------------------------------------------------------ Audeo


def test_audeo_rolls_become_notes_and_pickles_are_refused(audeo, capsys):
    root, rolls = audeo
    with pytest.raises(DatasetError, match="allow-pickle"):
        load_dataset(root, "audeo")
    report = check_dataset(root, "audeo")
    assert _kinds(report) == ["pickle-refused"]
    assert cli_main(["datasets", "check", str(root), "--format", "audeo"]) == 1
    assert "pickle-refused" in capsys.readouterr().out
    train = scan_dataset(root, "audeo", lenient=True).performances
    assert sorted(p.id for p in train) == ["vidA", "vidB"]
    for p in train:
        assert p.audio_path is None and p.fps == 25.0 and p.video_path.is_dir()
        np.testing.assert_allclose(p.corners_px[0], [-0.5, -0.5])
        got = p.notes()
        _notes_equal(got, notes_from_roll(rolls[p.id], 25.0))
        assert len(got) > 0 and all(n.velocity > 1 for n in got)
    with pytest.warns(UserWarning, match="unpickling"):
        test = load_dataset(root, "audeo", "test", allow_pickle=True)[0].notes()
    _notes_equal(test, notes_from_roll(rolls["vidC"], 25.0))


def test_notes_from_roll_by_hand():
    roll = np.zeros((10, 88))
    roll[2:5, 39] = 1  # C4 frames 2..4
    roll[7:10, 39] = 80
    notes = notes_from_roll(roll, 25.0)
    assert [(n.onset_s, n.offset_s, n.pitch, n.velocity) for n in notes] == [
        (0.08, 0.2, 60, 64), (0.28, 0.4, 60, 80)]  # fmt: skip


# ------------------------------------------------------------------------------ MAESTRO, MAPS


def test_maestro_and_maps_audio_only(tmp_path_factory, rendered, tmp_path):
    root, _ = _layout(tmp_path_factory, rendered, "maestro", fx.write_maestro)
    perfs = load_dataset(root, "maestro")
    assert [p.split for p in perfs] == ["train", "validation", "test"]
    assert all(p.video_path is None and p.corners_px is None for p in perfs)
    _notes_equal(perfs[0].notes(), read_midi(rendered / "notes.mid"))
    assert check_dataset(root, "maestro").ok
    bad = _copy(root, tmp_path / "m")
    text = (bad / "maestro-v3.0.0.csv").read_text().replace(",validation,", ",dev,")
    (bad / "maestro-v3.0.0.csv").write_text(text)
    next((bad / "2004").glob("*_00_*.wav")).unlink()
    assert _kinds(check_dataset(bad, "maestro")) == ["missing", "unknown-split"]

    root, _ = _layout(tmp_path_factory, rendered, "maps", fx.write_maps)
    perfs = load_dataset(root, "maps")
    assert [(p.id, p.split) for p in perfs] == [
        ("MAPS_MUS-alb_se3_AkPnBcht", "train"), ("MAPS_MUS-chpn_op25_e4_ENSTDkCl", "test")]  # fmt: skip
    ref = read_midi(rendered / "notes.mid")
    _notes_equal(perfs[1].notes(), ref, tol_s=1e-4, velocity=False)  # from .txt
    assert check_dataset(root, "maps").ok
    bad = _copy(root, tmp_path / "p")
    next(bad.rglob("MAPS_MUS-alb_se3_AkPnBcht.mid")).unlink()
    next(bad.rglob("MAPS_MUS-alb_se3_AkPnBcht.txt")).unlink()
    assert _kinds(check_dataset(bad, "maps")) == ["missing"]


# ------------------------------------------------------------------------------ eval.run, train


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    import torch

    from avfusion.model import AVTranscriber
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.model.config import preset

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    extra = {"train_config": {"data": {"window_s": 1.0}}}
    for mode in ("audio", "fusion", "video"):
        save_checkpoint(AVTranscriber(preset("tiny", mode=mode)), root / mode, extra)
    return root


def test_eval_run_quick_suite_on_a_dataset(pianovam, tiny_models, tmp_path, audeo, capsys):
    from eval import run as bench

    root, _ = pianovam
    out = tmp_path / "bench"
    systems = ["--systems", json.dumps({"name": "tiny-audio", "checkpoint": str(tiny_models / "audio")}),
               json.dumps({"name": "tiny-fusion", "checkpoint": str(tiny_models / "fusion")})]  # fmt: skip
    suite = tmp_path / "quick.yaml"  # the quick suite without its bank conditions
    suite.write_text(_quick_without_bank())
    rc = bench.main([str(suite), "--out", str(out), "--dataset", str(root), "--format", "pianovam",
                     "--split", "test", "--no-progress", "--no-report", "--device", "cpu", *systems])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    rows = (out / "results.csv").read_text().splitlines()
    assert any(r.startswith("tiny-fusion,2024-02-16_08-30-00,video:occlusion,") for r in rows)
    settings = json.loads((out / "cache" / "settings.json").read_text())
    assert settings["dataset"].startswith("pianovam:") and settings["split"] == "test"
    video = ["--systems", json.dumps({"name": "tiny-video", "checkpoint": str(tiny_models / "video")}),
             systems[1]]  # fmt: skip
    audeo_args = ["--dataset", str(audeo[0]), "--format", "audeo", "--split", "train",
                  "--no-progress", "--no-report", "--device", "cpu", *video]  # fmt: skip
    # another dataset into the same cache is refused
    assert bench.main([str(suite), "--out", str(out), *audeo_args]) == 2
    assert "other settings" in capsys.readouterr().err
    # an audio-less dataset skips the systems that need audio
    assert bench.main([str(suite), "--out", str(tmp_path / "b2"), *audeo_args]) == 0
    assert "audeo has no audio: skipping tiny-audio" in capsys.readouterr().err
    assert "tiny-video,vidA,clean," in (tmp_path / "b2" / "results.csv").read_text()


def _quick_without_bank() -> str:
    import yaml

    quick = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "eval" / "suites" / "quick.yaml").read_text()
    )
    quick["conditions"] = ["clean", "pink@0db", "dropout@30%", "silence", "video:occlusion"]
    quick.pop("bank", None)
    quick["test_set"]["seconds"] = 2
    return yaml.safe_dump(quick)


def test_fine_tune_from_a_checkpoint_on_a_dataset(
    tmp_path_factory, rendered, tiny_models, tmp_path
):
    from avfusion.model.checkpoint import load_checkpoint
    from avfusion.train import fine_tune_config, train

    root, _ = _layout(tmp_path_factory, rendered, "maestro-ft", fx.write_maestro)
    with pytest.raises(ValueError, match="maestro has only audio"):
        from avfusion.train import split_performances

        split_performances(fine_tune_config(None, init=str(tiny_models / "fusion"), dataset=root,
                                            dataset_format="maestro"), "train")  # fmt: skip
    cfg = fine_tune_config(
        None, init=str(tiny_models / "audio"), dataset=root, dataset_format="maestro"
    )
    from dataclasses import replace

    cfg = replace(cfg, max_steps=2, batch_size=2, num_workers=0, val_every_n_steps=2, val_performances=1,
                  val_seconds=2.0, val_conditions=("clean",), noise_bank=None,
                  data={**cfg.data, "window_s": 1.0, "windows_per_epoch": 4})  # fmt: skip
    export = train(cfg, tmp_path / "run", accelerator="cpu", progress=False)
    model, meta = load_checkpoint(export)
    assert model.config.mode == "audio" and meta["train_config"]["dataset_format"] == "maestro"


def test_check_against_another_dataset_finds_a_shared_video(
    tmp_path_factory, rendered, audeo, tmp_path
):
    """PianoYT's test split holds a video that Audeo trains on: found by its YouTube id."""
    yt, _ = _layout(tmp_path_factory, rendered, "pianoyt-against", fx.write_pianoyt)
    au = _copy(audeo[0], tmp_path)
    for sub in ("input_images", "midi"):
        (au / sub / "training" / "vidA").rename(au / sub / "training" / "BBBBBBBBBBB")
    assert check_dataset(yt, "pianoyt").ok and check_dataset(au, "audeo", allow_pickle=True).ok
    report = check_dataset(yt, "pianoyt", against=(au, "audeo"), allow_pickle=True)
    assert _kinds(report) == ["duplicate-across-splits"]
    assert (
        "pianoyt:test/7" in report.problems[0].detail
        and "audeo:train/BBBBBBBBBBB" in report.problems[0].detail
    )


def test_fine_tune_config_from_a_bundled_model(pianovam):
    from avfusion.train import fine_tune_config, split_performances

    cfg = fine_tune_config(
        None, init="fusion", dataset=pianovam[0], dataset_format="pianovam", max_steps=5
    )
    assert (cfg.mode, cfg.init_from, cfg.max_steps, cfg.dataset_format) == (
        "fusion",
        "fusion",
        5,
        "pianovam",
    )
    assert cfg.data["rect_width_px"] == 416 and cfg.name.endswith("-pianovam")
    assert [p.split for p in split_performances(cfg, "train")] == ["train"]
    assert [p.split for p in split_performances(cfg, "validation")] == ["validation"]
    with pytest.raises(FileNotFoundError, match="not a bundled model"):
        fine_tune_config(None, init="nosuch", dataset=pianovam[0], dataset_format="pianovam")
