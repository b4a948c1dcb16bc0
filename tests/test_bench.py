"""The benchmark harness (eval/run.py, eval/report.py): suites, seeded cells, the cache and
resuming, the tidy CSV, bootstrap intervals and paired tests, video conditions."""

from __future__ import annotations

import csv
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from avfusion.metrics import METRIC_KEYS
from avfusion.midi import write_midi
from avfusion.notes import Notes
from eval import run as bench
from eval.conditions import BenchCondition, SuiteError, degrade_video, parse_bench_condition
from eval.report import bootstrap_interval, paired_wilcoxon, read_results, write_report
from eval.run import load_suite, run_suite
from tests.conftest import make_notes

QUICK = Path(__file__).resolve().parent.parent / "eval" / "suites" / "quick.yaml"
SWEEP = QUICK.parent / "snr-sweep.yaml"
PIECES = ("piece-a", "piece-b")

# A transcriber stand-in (standard library only, so that each cell costs milliseconds): if the
# audio is audible it "transcribes" by copying the piece's reference MIDI, else writes an empty
# one; it logs each call; it fails on a piece named in the file FAIL_ON when that file exists.
FAKE = textwrap.dedent(
    """
    import array, os, shutil, sys, wave
    wav, out, refs = sys.argv[1:4]
    here = os.path.basename(os.getcwd())
    piece = next(p for p in sorted(os.listdir(refs)) if p.startswith("piece") and p in here)
    with open(os.path.join(refs, "calls.log"), "a") as f:
        f.write(here.split("-", 1)[1].rsplit("-", 1)[0] + "\\n")
    marker = os.path.join(refs, "FAIL_ON")
    if os.path.exists(marker) and open(marker).read().strip() == piece:
        sys.exit("failing on purpose on " + piece)
    with wave.open(wav) as w:
        x = array.array("h", w.readframes(w.getnframes()))
    loud = sum(v * v for v in x[::8]) / max(1, len(x[::8])) > 300.0 ** 2
    src = os.path.join(refs, piece, "notes.mid") if loud else os.path.join(refs, "empty.mid")
    shutil.copy(src, out)
    """
)


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two 3.3 s test performances (a phrase, twice transposed), 320 × 180 video."""
    from avfusion.synth.corpus import write_manifest
    from avfusion.synth.performance import PerformanceSpec, render_performance

    root = tmp_path_factory.mktemp("corpus")
    specs = []
    for i, piece in enumerate(PIECES):
        midi = root / f"{piece}.mid"
        write_midi(make_notes(offset_pitch=3 * i), midi)
        spec = PerformanceSpec(piece, "test", "midi", str(midi), seed=i, target_s=0,
                               camera="test", soundfont="timgm6mb", hands=False)  # fmt: skip
        render_performance(spec, root / "test" / piece, size_px=(320, 180))
        specs.append(spec)
    write_manifest(root, specs)
    return root


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    from avfusion.noise import build_noise_bank

    root = tmp_path_factory.mktemp("bank")
    build_noise_bank(root, seed=0, size="tiny", progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """Random tiny avfusion checkpoints: audio/ and fusion/ (1 s windows)."""
    import torch

    from avfusion.model import AVTranscriber
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.model.config import preset

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    extra = {"train_config": {"data": {"window_s": 1.0}}}
    save_checkpoint(AVTranscriber(preset("tiny", mode="audio")), root / "audio", extra)
    save_checkpoint(AVTranscriber(preset("tiny", mode="fusion")), root / "fusion", extra)
    return root


@pytest.fixture(scope="module")
def refs(tmp_path_factory, corpus) -> Path:
    """The fake transcriber's folder: its script, each piece's reference MIDI, empty.mid."""
    import shutil

    root = tmp_path_factory.mktemp("fake")
    (root / "fake.py").write_text(FAKE)
    for piece in PIECES:
        (root / piece).mkdir()
        shutil.copy(corpus / "test" / piece / "notes.mid", root / piece / "notes.mid")
    write_midi(Notes(), root / "empty.mid")
    return root


def _fake(refs: Path, name: str = "fake") -> dict:
    return {"name": name, "command": f"'{sys.executable}' '{refs / 'fake.py'}' {{audio}} {{midi}} '{refs}'"}  # fmt: skip


def _calls(refs: Path) -> list[str]:
    log = refs / "calls.log"
    out = log.read_text().split() if log.is_file() else []
    log.unlink(missing_ok=True)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(body))
    return path


# ------------------------------------------------------------------------------------ the runs


def test_quick_suite_end_to_end_and_twice_identical(tmp_path, corpus, bank, checkpoints, refs):
    systems = [
        _fake(refs),
        {"name": "tiny-audio", "checkpoint": str(checkpoints / "audio")},
        {"name": "tiny-fusion", "checkpoint": str(checkpoints / "fusion")},
    ]
    kw = {"corpus": corpus, "bank": bank, "systems": systems, "device": "cpu", "progress": False}
    first = run_suite(QUICK, tmp_path / "a", **kw)
    suite = load_suite(QUICK)
    n_cond = len(suite.conditions)
    assert first.n_cells == 3 * n_cond * len(PIECES) and not first.failures
    # audio-only systems under video:occlusion, the fusion system never: reused, not rerun
    assert first.computed == first.n_cells - 2 * len(PIECES)
    calls = _calls(refs)
    assert len(calls) == (n_cond - 1) * len(PIECES)
    assert not any("video" in c for c in calls)
    cache = tmp_path / "a" / "cache"
    assert (cache / "tiny-fusion" / "video:occlusion" / "piece-a.mid").is_file()
    assert not (cache / "tiny-audio" / "video:occlusion").exists()
    assert (cache / "_degradations" / "music@-10db" / "piece-b.json").is_file()

    rows = _rows(first.results_csv)
    assert list(rows[0]) == ["system", "piece", "condition", "seed", "metric", "value"]
    assert len(rows) == first.n_cells * len(METRIC_KEYS)
    f1 = {(r["system"], r["piece"], r["condition"]): float(r["value"])
          for r in rows if r["metric"] == "note/f1"}  # fmt: skip
    for piece in PIECES:  # the harness scores exactly what the command wrote
        assert f1["fake", piece, "clean"] == 1.0
        assert f1["fake", piece, "video:occlusion"] == 1.0
        assert f1["fake", piece, "silence"] == 0.0
        assert f1["tiny-audio", piece, "video:occlusion"] == f1["tiny-audio", piece, "clean"]
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "tiny-fusion" in summary and "Wilcoxon" in summary and "sha256" in summary
    assert (tmp_path / "a" / "f1_vs_snr.png").stat().st_size > 1000
    assert (tmp_path / "a" / "f1_other_conditions.png").stat().st_size > 1000

    second = run_suite(QUICK, tmp_path / "b", **kw, report=False)  # from scratch
    assert second.computed == first.computed and sorted(_calls(refs)) == sorted(calls)
    assert second.results_csv.read_bytes() == first.results_csv.read_bytes()
    again = run_suite(QUICK, tmp_path / "a", **kw, report=False)  # all cached
    assert again.computed == 0 and again.cached == again.n_cells
    assert again.results_csv.read_bytes() == first.results_csv.read_bytes()
    assert _calls(refs) == []  # the rerun into "a" transcribed nothing


CONDS = ["clean", "pink@0db", "pink@0db", "dropout@30%", "dropout@30%"]  # 2 seeds, 1 for clean


def _scratch_names(pieces: list[str], conds: list[str]) -> list[str]:
    """What the fake logs: the clip ids "piece/condition" as Clip.scratch names its folder."""
    safe = ["".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{p}/{c}") for p in pieces for c in conds]  # fmt: skip
    return sorted(safe)


def test_a_failed_cell_is_retried_and_only_missing_cells_run(tmp_path, corpus, bank, refs):
    suite = _suite(tmp_path, f"""
        name: resume
        test_set: {{corpus: {corpus}, split: test, seconds: 3}}
        conditions: [clean, pink@0db, dropout@30%]
        systems:
          - {{name: fake, command: "'{sys.executable}' '{refs / "fake.py"}' {{audio}} {{midi}} '{refs}'"}}
        seeds: [0, 1]
    """)  # fmt: skip
    out = tmp_path / "out"
    (refs / "FAIL_ON").write_text("piece-b")
    try:
        code = bench.main([str(suite), "--out", str(out), "--no-progress"])
    finally:
        (refs / "FAIL_ON").unlink()
    assert code == 1  # cells failed; the rest is written
    # clean is seed-independent: 1 + 2 + 2 transcriptions per piece
    assert sorted(_calls(refs)) == _scratch_names(["piece-a", "piece-b"], CONDS)
    assert "failing on purpose on piece-b" in (out / "errors.log").read_text()
    assert {r["piece"] for r in _rows(out / "results.csv")} == {"piece-a"}

    assert bench.main([str(suite), "--out", str(out), "--no-progress"]) == 0
    assert sorted(_calls(refs)) == _scratch_names(["piece-b"], CONDS)
    assert not (out / "errors.log").exists()
    rows = _rows(out / "results.csv")
    assert len(rows) == 2 * 3 * 2 * len(METRIC_KEYS)  # pieces × conditions × seeds × metrics
    seeds = {(r["condition"], r["seed"]) for r in rows}
    assert ("pink@0db", "1") in seeds and ("clean", "1") in seeds

    (out / "cache" / "fake" / "pink@0db" / "piece-a.seed1.mid").unlink()
    before = (out / "results.csv").read_bytes()
    assert bench.main([str(suite), "--out", str(out), "--no-progress", "--no-report"]) == 0
    assert _calls(refs) == _scratch_names(["piece-a"], ["pink@0db"])
    assert (out / "results.csv").read_bytes() == before


def test_a_system_restricted_to_some_conditions_runs_only_those(tmp_path, corpus, refs):
    fake = f"'{sys.executable}' '{refs / 'fake.py'}' {{audio}} {{midi}} '{refs}'"
    suite = _suite(tmp_path, f"""
        test_set: {{corpus: {corpus}, split: test, seconds: 3}}
        conditions: [clean, pink@0db, dropout@30%]
        systems:
          - {{name: fake, command: "{fake}"}}
          - {{name: slow, command: "{fake}", conditions: [clean, {{noise: [pink], snr_db: [0]}}]}}
    """)  # fmt: skip
    out = tmp_path / "out"
    assert bench.main([str(suite), "--out", str(out), "--no-progress", "--no-report"]) == 0
    rows = _rows(out / "results.csv")
    got = {(r["system"], r["condition"]) for r in rows}
    assert got == {("fake", c) for c in set(CONDS)} | {("slow", "clean"), ("slow", "pink@0db")}
    assert not (out / "cache" / "slow" / "dropout@30%").exists()
    _calls(refs)
    # a restriction to a condition the suite does not run is refused, naming the system
    bad = _suite(tmp_path, f"""
        test_set: {{corpus: {corpus}, split: test, seconds: 3}}
        conditions: [clean]
        systems: [{{name: slow, command: "{fake}", conditions: [pink@-10db]}}]
    """)  # fmt: skip
    with pytest.raises(SuiteError, match=r"'slow'.*pink@-10db"):
        run_suite(bad, tmp_path / "out2", progress=False, report=False)
    entry = bench.system_entry({"system": "transkun", "conditions": ["clean"]}, "here")
    assert (entry.name, entry.spec, entry.conditions) == ("transkun", "transkun", ("clean",))


def test_keep_others_reruns_some_systems_and_keeps_the_rest(tmp_path, corpus, refs):
    import json
    import shutil

    body = """
        name: keep
        test_set: {corpus: %s, split: test, seconds: 3}
        conditions: %s
        systems: [%s, %s]
    """
    fake = json.dumps(_fake(refs, "fake"))
    other = json.dumps(_fake(refs, "other"))
    suite = _suite(tmp_path, body % (corpus, "[clean, pink@0db]", fake, other))
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, report=False)
    first = json.loads((out / "run.json").read_text())
    before = _rows(out / "results.csv")
    _calls(refs)

    # re-run one system (its cache gone, as after a new checkpoint), keep the other's results
    shutil.rmtree(out / "cache" / "fake")
    code = bench.main([str(suite), "--out", str(out), "--systems", "fake", "--keep-others",
                       "--no-progress"])  # fmt: skip
    assert code == 0
    assert sorted(_calls(refs)) == _scratch_names(list(PIECES), ["clean", "pink@0db"])
    assert _rows(out / "results.csv") == before  # same order, the kept rows as they were
    run = json.loads((out / "run.json").read_text())
    assert list(run["systems"]) == ["fake", "other"]
    assert "from_run" not in run["systems"]["fake"]
    assert run["systems"]["other"]["from_run"] == {
        "commit": first["machine"]["commit"], "cpu": first["machine"]["cpu"],
        "finished_utc": first["finished_utc"],
    }  # fmt: skip
    assert run["cells"]["total"] == 2 * 2  # this run's cells only
    assert "kept from an earlier run" in (out / "summary.md").read_text()

    # without the flag a run writes only what it ran
    assert bench.main([str(suite), "--out", str(out), "--systems", "fake", "--no-progress",
                       "--no-report"]) == 0  # fmt: skip
    assert {r["system"] for r in _rows(out / "results.csv")} == {"fake"}
    _calls(refs)
    # results of another test set are never mixed in
    run_suite(suite, out, progress=False, report=False)
    suite = _suite(tmp_path, body % (corpus, "[clean]", fake, other))
    with pytest.raises(SuiteError, match="same conditions"):
        run_suite(suite, out, systems=["fake"], progress=False, report=False, keep_others=True)
    (out / "run.json").unlink()
    with pytest.raises(SuiteError, match=r"no run\.json"):
        run_suite(suite, out, systems=["fake"], progress=False, report=False, keep_others=True)
    _calls(refs)


def test_cells_are_seeded_by_piece_condition_and_seed():
    assert bench.draw_seed("p", "pink@0db", 0) == bench.draw_seed("p", "pink@0db", 0)
    seeds = {
        bench.draw_seed(p, c, s) for p in "ab" for c in ("pink@0db", "music@0db") for s in (0, 1)
    }
    assert len(seeds) == 8
    import zlib

    assert bench.draw_seed("p", "pink@0db", 0) == zlib.crc32(b"p|pink@0db")  # measure_models'


def test_a_resumed_run_with_other_settings_is_refused(tmp_path, corpus, refs):
    body = f"""
        test_set: {{corpus: {corpus}, seconds: %s}}
        conditions: [clean]
        systems: [{{name: fake, command: "'{sys.executable}' '{refs / "fake.py"}' {{audio}} {{midi}} '{refs}'"}}]
    """
    suite = _suite(tmp_path, body % 2)
    run_suite(suite, tmp_path / "out", progress=False, report=False)
    _calls(refs)
    suite = _suite(tmp_path, body % 3)
    with pytest.raises(SuiteError, match="other settings"):
        run_suite(suite, tmp_path / "out", progress=False, report=False)


def test_noise_is_drawn_from_the_test_half_only_on_the_test_split(
    tmp_path, corpus, bank, refs, monkeypatch
):
    """A choice made on validation must never hear the test noise: the bank's train half there,
    its test half on the test split; a cache drawn before the half was recorded (every split
    drew test noise) is not resumed for another half."""
    import json

    import avfusion.noise

    root = tmp_path / "corpus"  # the same two performances, listed as test and as validation
    root.mkdir()
    for split in ("test", "validation"):
        (root / split).symlink_to(corpus / "test")
    recs = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    recs += [{**r, "split": "validation"} for r in recs]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    halves: list[str] = []
    real = avfusion.noise.degrade

    def spy(*args, **kwargs):
        halves.append(kwargs["half"])
        return real(*args, **kwargs)

    monkeypatch.setattr(avfusion.noise, "degrade", spy)
    suite = _suite(tmp_path, f"""
        test_set: {{corpus: {root}, split: test, seconds: 2}}
        bank: {bank}
        conditions: [babble@0db]
        systems: [{{name: fake, command: "'{sys.executable}' '{refs / "fake.py"}' {{audio}} {{midi}} '{refs}'"}}]
    """)  # fmt: skip
    for split, half in (("test", "test"), ("validation", "train")):
        out = tmp_path / split
        run_suite(suite, out, split=split, progress=False, report=False)
        assert halves == [half] * len(PIECES)
        assert json.loads((out / "run.json").read_text())["bank_half"] == half
        halves.clear()
    _calls(refs)
    for split in ("test", "validation"):  # caches as written before the half was recorded
        settings = tmp_path / split / "cache" / "settings.json"
        old = {k: v for k, v in json.loads(settings.read_text()).items() if k != "bank_half"}
        settings.write_text(json.dumps(old))
    with pytest.raises(SuiteError, match="bank_half"):
        run_suite(suite, tmp_path / "validation", split="validation", progress=False, report=False)
    run_suite(suite, tmp_path / "test", progress=False, report=False)  # test noise: resumed
    assert halves == [] and _calls(refs) == []


def test_a_checkpoint_with_other_thresholds_is_refused_by_the_cache(tmp_path, corpus, checkpoints):
    import json
    import shutil

    ck = tmp_path / "audio"
    shutil.copytree(checkpoints / "audio", ck)
    body = f"""
        test_set: {{corpus: {corpus}, seconds: 1}}
        conditions: [clean]
        systems: [{{name: tiny-audio, checkpoint: {ck}}}]
    """
    run_suite(_suite(tmp_path, body), tmp_path / "out", device="cpu", progress=False, report=False)
    # the same weights with other decoder thresholds give other notes: not the cached ones
    doc = json.loads((ck / "config.json").read_text())
    doc.setdefault("extra", {})["decode"] = {"onset_threshold": 0.9}
    (ck / "config.json").write_text(json.dumps(doc))
    with pytest.raises(SuiteError, match="cached outputs of 'tiny-audio'"):
        run_suite(_suite(tmp_path, body), tmp_path / "out", device="cpu", progress=False,
                  report=False)  # fmt: skip


def test_each_avfusion_model_reads_frames_rectified_at_its_own_size(
    tmp_path, corpus, checkpoints, monkeypatch
):
    """A suite with two fusion models of different rectified sizes hands each its own frames
    (not one size resized), degraded by the same video condition."""
    import torch

    from avfusion.model import AVTranscriber
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.model.config import preset
    from eval.systems import AvfusionSystem

    torch.manual_seed(0)
    taller = preset("tiny", mode="fusion", rect_height_px=32, video_stem_stride=16)
    save_checkpoint(AVTranscriber(taller), tmp_path / "taller",
                    {"train_config": {"data": {"window_s": 1.0}}})  # fmt: skip
    shapes: dict[str, set[tuple[int, ...]]] = {}
    real = AvfusionSystem.transcribe

    def spy(self, clip):
        shapes.setdefault(self.name, set()).add(clip.frames.shape[1:])
        return real(self, clip)

    monkeypatch.setattr(AvfusionSystem, "transcribe", spy)
    body = f"""
        test_set: {{corpus: {corpus}, seconds: 1}}
        conditions: [clean, video:blur]
        systems: [{{name: small, checkpoint: {checkpoints / "fusion"}}},
                  {{name: taller, checkpoint: {tmp_path / "taller"}}}]
    """
    run_suite(_suite(tmp_path, body), tmp_path / "out", device="cpu", progress=False, report=False)
    assert shapes == {"small": {(16, 176)}, "taller": {(32, 176)}}


# ------------------------------------------------------------------------------------ suites


def test_shipped_suites_parse():
    sweep = load_suite(SWEEP)
    texts = [c.text for c in sweep.conditions]
    for noise in ("white", "pink", "babble", "music"):
        assert [t for t in texts if t.startswith(noise + "@")] == [
            f"{noise}@{s}db" for s in (20, 10, 5, 0, -5, -10, -15, -20)
        ]
    for t in ("silence", "telephone", "clip@0.3", "mp3@32kbps", "reverb@rt60=0.8", "dropout@10%",
              "dropout@50%", "video:blur", "video:lowlight", "video:occlusion", "video:dropped-frames"):  # fmt: skip
        assert t in texts
    assert [s.name for s in sweep.systems] == [
        "avfusion-fusion", "avfusion-audio", "avfusion-video", "basic-pitch",
        "denoise+avfusion-audio", "avfusion-concat", "transkun", "denoise+transkun",
    ]  # fmt: skip
    restricted = {s.name: s.conditions for s in sweep.systems if s.conditions is not None}
    assert set(restricted) == {"avfusion-concat", "transkun", "denoise+transkun"}
    assert {"clean", "pink@-10db", "pink@-20db", "music@0db"} <= set(restricted["transkun"])
    assert set(restricted["transkun"]) <= set(texts)
    assert sweep.test_set.split == "test" and load_suite(QUICK).test_set.max_performances == 2


@pytest.mark.parametrize(
    ("entry", "bad"),
    [
        ("conditions: [clean, pinkk@0db]", "pinkk@0db"),
        ("conditions: [clean, 'video:smear']", "video:smear"),
        ("conditions: [{noise: [pink], snr: [0]}]", "snr"),
        ("systems: [avfusion-fusion, transkunn]", "transkunn"),
        ("systems: [{command: 'x {midi}'}]", "name"),
    ],
)
def test_an_unknown_condition_or_system_names_the_file_and_the_entry(tmp_path, entry, bad):
    base = {"conditions": "conditions: [clean]", "systems": "systems: [avfusion-audio]"}
    base[entry.split(":")[0]] = entry
    path = _suite(tmp_path, f"test_set: {{corpus: data/corpus}}\n{base['conditions']}\n{base['systems']}\n")  # fmt: skip
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(path) in str(err.value) and bad in str(err.value)


def test_unknown_suite_keys_and_cli_errors(tmp_path, capsys):
    path = _suite(
        tmp_path, "test_set: {corpus: x}\nconditions: [clean]\nsystems: [transkun]\nseed: 1\n"
    )
    with pytest.raises(SuiteError, match="seed"):
        load_suite(path)
    assert bench.main([str(path), "--out", str(tmp_path / "o")]) == 2
    assert str(path) in capsys.readouterr().err


def test_condition_parsing_splits_audio_and_video():
    c = parse_bench_condition("Pink@-10dB+video:blur")
    assert c == BenchCondition("pink@-10db", "video:blur") and c.text == "pink@-10db+video:blur"
    assert c.seen_by(frozenset({"audio"})).text == "pink@-10db"
    assert c.seen_by(frozenset({"video"})).text == "video:blur"
    assert parse_bench_condition("clean").text == "clean"
    assert parse_bench_condition("video:occlusion@50%").video == "video:occlusion@50%"
    with pytest.raises(ValueError, match="outside"):
        parse_bench_condition("video:dropped-frames@99%")


# ------------------------------------------------------------------------------------ video


def test_video_conditions_do_what_they_say():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(50, 40, 416), dtype=np.uint8)  # (T, H, W)
    for cond in ("video:blur", "video:lowlight", "video:occlusion", "video:dropped-frames"):
        a, rec_a = degrade_video(frames, cond, np.random.default_rng(1))
        b, _ = degrade_video(frames, cond, np.random.default_rng(1))
        assert a.shape == frames.shape and a.dtype == np.uint8 and np.array_equal(a, b)
        assert not np.array_equal(a, frames) and rec_a[0]["condition"] == cond
    blur, _ = degrade_video(frames, "video:blur@2px", rng)
    assert blur.std() < 0.3 * frames.std()  # white noise loses most of its variance
    # the blur is written in pixels of the 416 x 40 frame: on a frame twice as large it blurs
    # an edge twice as wide, so it is the same on the keyboard
    def edge_sd(profile):  # a blurred step edge is a Gaussian CDF: 16 % to 84 % is 2 sd
        level = profile.astype(float) / 255
        return (np.interp(0.84, level, np.arange(len(level)))
                - np.interp(0.16, level, np.arange(len(level)))) / 2  # fmt: skip

    for h, w in ((40, 416), (80, 832)):
        step_x = np.zeros((1, h, w), np.uint8)
        step_x[..., w // 2 :] = 255
        step_y = np.zeros((1, h, w), np.uint8)
        step_y[:, h // 2 :] = 255
        sd_x = edge_sd(degrade_video(step_x, "video:blur@3px", rng)[0][0, h // 2])
        sd_y = edge_sd(degrade_video(step_y, "video:blur@3px", rng)[0][0, :, w // 2])
        assert sd_x == pytest.approx(3.0 * w / 416, rel=0.05)
        assert sd_y == pytest.approx(3.0 * h / 40, rel=0.05)
    dark, rec = degrade_video(frames, "video:lowlight@0.25", rng)
    assert abs(dark.mean() - 0.25 * frames.mean()) < 1.0 and rec[0]["noise_sd"] > 0
    occ, rec = degrade_video(frames, "video:occlusion@25%", rng)
    (x0, x1), (t0, t1) = rec[0]["x_px"], rec[0]["frames"]
    assert x1 - x0 == 104 and t1 - t0 == 25
    assert (occ[t0:t1, :, x0:x1] == rec[0]["fill"]).all()
    changed = np.any(occ != frames, axis=(1, 2))
    assert not changed[:t0].any() and not changed[t1:].any()
    dropped, rec = degrade_video(frames, "video:dropped-frames@30%", rng)
    idx = rec[0]["dropped"]
    assert 5 < len(idx) < 25 and 0 not in idx
    assert all(np.array_equal(dropped[j], dropped[j - 1]) for j in idx)
    kept = [j for j in range(50) if j not in idx]
    assert all(np.array_equal(dropped[j], frames[j]) for j in kept)


# ------------------------------------------------------------------------------------ statistics


def test_wilcoxon_exact_p_values_by_hand():
    # n = 5 differences, all positive: ranks 1..5, W- = 0; under H0 each of the 2^5 sign
    # patterns is equally likely and only one has W- = 0: two-sided p = 2 / 32
    t = paired_wilcoxon([0.6, 0.7, 0.8, 0.9, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5])
    assert t.p_value == pytest.approx(2 / 32) and t.statistic == 0 and t.n_nonzero == 5
    assert t.mean_diff == pytest.approx(0.3)
    # one negative difference of rank 2: W- = 2; sign patterns with W- <= 2 are {}, {1}, {2}
    t = paired_wilcoxon([0.1, -0.2, 0.3, 0.4, 0.5], np.zeros(5))
    assert t.statistic == 2 and t.p_value == pytest.approx(2 * 3 / 32)
    # zeros are dropped (Wilcoxon's rule): four positive differences, p = 2 / 16
    t = paired_wilcoxon([0.1, 0.0, 0.3, 0.4, 0.5], np.zeros(5))
    assert t.n == 5 and t.n_nonzero == 4 and t.p_value == pytest.approx(2 / 16)
    # all differences zero: no evidence of a difference, and no warning or error
    t = paired_wilcoxon([0.5, 0.7, 0.9], [0.5, 0.7, 0.9])
    assert (t.p_value, t.statistic, t.n_nonzero, t.mean_diff) == (1.0, 0.0, 0, 0.0)
    with pytest.raises(ValueError, match="pair"):
        paired_wilcoxon([1.0, 2.0], [1.0])


def test_bootstrap_interval_by_hand():
    # two values {0, 1}: resample means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so
    # the 2.5 % and 97.5 % quantiles are 0 and 1
    assert bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_interval([0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert bootstrap_interval([0.4]) == (0.4, 0.4)
    # 0..99: the mean's standard error is 28.87 / sqrt(100) = 2.887, so the 95 % interval is
    # 49.5 ± 1.96 · 2.887 = [43.84, 55.16] (to Monte-Carlo error)
    lo, hi = bootstrap_interval(np.arange(100.0), n_resamples=4000)
    assert lo == pytest.approx(43.84, abs=0.6) and hi == pytest.approx(55.16, abs=0.6)
    assert bootstrap_interval(np.arange(100.0), seed=3) == bootstrap_interval(
        np.arange(100.0), seed=3
    )


def test_report_of_a_hand_made_csv(tmp_path):
    lines = ["system,piece,condition,seed,metric,value"]
    fusion = [0.9, 0.8, 0.7, 0.95, 0.85]
    audio = [0.5, 0.6, 0.65, 0.7, 0.75]
    for k in range(5):
        for cond, shift in (("clean", 0.0), ("pink@-10db", -0.2), ("video:blur", -0.1)):
            for name, vals in (("avfusion-fusion", fusion), ("avfusion-audio", audio)):
                v = vals[k] + (shift if name == "avfusion-fusion" or cond != "video:blur" else 0)
                lines += [f"{name},p{k},{cond},0,note/{m},{v!r}" for m in ("f1", "precision", "recall")]  # fmt: skip
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    res = read_results(tmp_path / "results.csv")
    assert res.systems == ("avfusion-fusion", "avfusion-audio") and len(res.pieces) == 5
    text = write_report(tmp_path).read_text()
    assert f"| clean | {np.mean(fusion):.3f} [" in text
    assert "+0.200 (p 0.062)" in text  # every piece better: exact p = 2/32
    assert (tmp_path / "f1_vs_snr.png").is_file() and (
        tmp_path / "f1_other_conditions.png"
    ).is_file()


def test_workers_give_the_same_csv(tmp_path, corpus, refs):
    suite = _suite(tmp_path, f"""
        test_set: {{corpus: {corpus}, seconds: 3}}
        conditions: [clean, pink@0db, dropout@30%]
        systems:
          - {{name: fake, command: "'{sys.executable}' '{refs / "fake.py"}' {{audio}} {{midi}} '{refs}'"}}
    """)  # fmt: skip
    one = run_suite(suite, tmp_path / "one", progress=False, report=False)
    two = run_suite(suite, tmp_path / "two", workers=2, progress=False, report=False)
    assert one.computed == two.computed == 6 and not two.failures
    assert one.results_csv.read_bytes() == two.results_csv.read_bytes()
    _calls(refs)


def test_a_command_reading_the_video_file_gets_the_degraded_audio(tmp_path, corpus, refs):
    from avfusion.audio import load_audio

    src = corpus / "test" / "piece-a" / "video.mp4"
    clean = load_audio(src)
    noise = (0.1 * np.random.default_rng(0).standard_normal(len(clean))).astype(np.float32)
    got = load_audio(bench._video_with_audio(src, noise, tmp_path / "v.mp4"))
    assert len(got) == len(clean)
    assert np.corrcoef(got, noise)[0, 1] > 0.9  # AAC at 64 kbit/s keeps the waveform
    suite = _suite(tmp_path, f"""
        test_set: {{corpus: {corpus}}}
        conditions: [clean, video:blur]
        systems: [{{name: vid, command: "cp {{video}} {{midi}}"}}]
    """)  # fmt: skip
    with pytest.raises(SuiteError, match="reads the video file"):
        run_suite(suite, tmp_path / "out", progress=False, report=False)


def test_error_breakdown_classes_each_false_positive(tmp_path, corpus, capsys):
    import json

    from avfusion.data import list_performances
    from avfusion.notes import Note
    from eval import errors

    perf = next(p for p in list_performances(corpus, "test") if p.id == "piece-a")
    ref = sorted(perf.notes(), key=lambda n: (n.onset_s, n.pitch))
    low = min(ref, key=lambda n: n.pitch)  # the bass note, 1.2 s to 2.3 s
    high = max(ref, key=lambda n: n.pitch)  # the last melody note, alone at its onset
    extra = [
        Note(low.onset_s + 0.01, low.onset_s + 0.3, low.pitch + 19, 64),  # its third partial
        Note(high.onset_s + 0.02, high.onset_s + 0.3, high.pitch - 12, 64),  # an octave below
        Note(low.onset_s + 0.7, low.onset_s + 0.9, low.pitch, 64),  # again, while it sounds
        Note(0.9, 1.0, 105, 64),  # nowhere near anything
    ]
    missing = ref[1]
    # and the last melody note: a miss with nothing below it and no repeat before it
    est = Notes.from_iterables([n for n in ref if n is not missing and n is not high] + extra)
    run = tmp_path / "run"
    (run / "cache" / "sys" / "clean").mkdir(parents=True)
    write_midi(est, run / "cache" / "sys" / "clean" / "piece-a.mid")
    (run / "run.json").write_text(json.dumps({"test_set": {"corpus": str(corpus), "split": "test", "seconds": None}}))  # fmt: skip

    errors.main([str(run)])
    got = {r["class"]: r["count"] for r in csv.DictReader(open(run / "errors.csv"))}
    near = [n.pitch - missing.pitch for n in ref
            if n is not missing and abs(n.onset_s - missing.onset_s) <= 0.05]  # fmt: skip
    over_partial = any(-d in errors.HARMONIC_INTERVALS for d in near)
    assert got == {"harmonic": "1", "subharmonic": "1", "neighbour": "0", "repeat": "1",
                   "timing": "0", "other": "1", "matched": str(len(ref) - 2), "missed": "2",
                   "missed:over-partial": str(int(over_partial)), "missed:fast-repeat": "0",
                   "missed:other": str(2 - int(over_partial))}  # fmt: skip
    assert "harmonic" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        errors.main([str(tmp_path)])  # not a run folder
    assert info.value.code == 2 and "run.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        errors.main([str(run), "--conditions", "clean", "pink@0db"])  # nothing under pink@0db
    assert info.value.code == 2 and "pink@0db" in capsys.readouterr().err

    # --keep-others: an earlier system's rows survive a re-read of only the others; without it
    # the file holds only what was read; a file that is not an errors.csv is refused
    table = run / "errors.csv"
    earlier = table.read_text().replace("\nsys,", "\nold,")
    table.write_text(earlier)
    errors.main([str(run), "--keep-others"])
    rows = list(csv.DictReader(open(table)))
    assert {r["system"] for r in rows} == {"sys", "old"}
    assert [r for r in rows if r["system"] == "old"] == [
        r for r in csv.DictReader(earlier.splitlines()) if r["system"] == "old"
    ]
    errors.main([str(run), "--keep-others"])  # again: sys replaced, not doubled
    assert len(list(csv.DictReader(open(table)))) == len(rows)
    errors.main([str(run)])
    assert {r["system"] for r in csv.DictReader(open(table))} == {"sys"}
    capsys.readouterr()
    table.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as info:
        errors.main([str(run), "--keep-others"])
    assert info.value.code == 2 and "errors.csv: columns" in capsys.readouterr().err
    assert table.read_text() == "a,b\n1,2\n"  # left as it was


def test_coverage_breakdown_counts_each_reference_note_once(tmp_path, corpus, capsys):
    """eval.errors --coverage: every reference note lands in one bin, the bins' matched notes
    add up to the breakdown's, and the table, CSV and PNG are written (the fixture corpus has
    no hands, so every key is fully visible: the renderer-side measure is tested in
    tests/test_corpus.py)."""
    import json

    from avfusion.data import list_performances
    from eval import errors

    perf = next(p for p in list_performances(corpus, "test") if p.id == "piece-a")
    ref = sorted(perf.notes(), key=lambda n: (n.onset_s, n.pitch))
    run = tmp_path / "run"
    (run / "cache" / "sys" / "clean").mkdir(parents=True)
    write_midi(Notes.from_iterables(ref[2:]), run / "cache" / "sys" / "clean" / "piece-a.mid")
    (run / "run.json").write_text(json.dumps({"test_set": {"corpus": str(corpus), "split": "test", "seconds": None}}))  # fmt: skip
    rows = errors.coverage_breakdown(run, n_bins=1)
    assert [r["keys"] for r in rows] == ["all", "white", "black"]
    assert rows[0]["coverage_to"] == 0.0  # no hands: nothing hidden
    assert (rows[0]["notes"], rows[0]["matched"]) == (len(ref), len(ref) - 2)
    assert rows[1]["notes"] + rows[2]["notes"] == len(ref)
    assert rows[2]["notes"] == sum(n.pitch % 12 in (1, 3, 6, 8, 10) for n in ref)
    errors.main([str(run), "--coverage", "2", "--out", str(tmp_path / "out")])
    got = list(csv.DictReader(open(tmp_path / "out" / "coverage.csv")))
    got = [r for r in got if r["keys"] == "all"]
    assert [r["bin"] for r in got] == ["1", "2"]
    assert sum(int(r["notes"]) for r in got) == len(ref)
    assert sum(int(r["matched"]) for r in got) == len(ref) - 2
    assert (tmp_path / "out" / "coverage.png").stat().st_size > 0
    assert "hidden by the hands" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        errors.main([str(run), "--coverage", "--conditions", "pink@0db"])
    assert info.value.code == 2 and "pink@0db" in capsys.readouterr().err
    with pytest.raises(ValueError, match="n_bins"):
        errors.coverage_breakdown(run, n_bins=0)


def test_overlap_breakdown_groups_notes_by_the_branch_that_found_them(tmp_path, corpus, capsys):
    """eval.errors --overlap: each reference note lands in the group of the branches that
    found it (the video-only system read from its clean output), fusion's recall is counted
    per group, and bad arguments are refused with nothing written."""
    import json

    from avfusion.data import list_performances
    from eval import errors

    perf = next(p for p in list_performances(corpus, "test") if p.id == "piece-a")
    ref = sorted(perf.notes(), key=lambda n: (n.onset_s, n.pitch))
    assert len(ref) >= 5
    run = tmp_path / "run"
    found = {  # (system, condition): the reference notes it finds
        ("a", "pink@0db"): ref[2:],  # audio-only misses notes 0 and 1
        ("v", "clean"): ref[:1] + ref[3:],  # video-only misses notes 1 and 2
        ("f", "pink@0db"): ref[:2] + ref[3:],  # fusion misses note 2 only
    }
    for (system, cond), notes in found.items():
        (run / "cache" / system / cond).mkdir(parents=True)
        write_midi(Notes.from_iterables(notes), run / "cache" / system / cond / "piece-a.mid")
    (run / "run.json").write_text(json.dumps({"test_set": {"corpus": str(corpus), "split": "test", "seconds": None}}))  # fmt: skip

    errors.main([str(run), "--overlap", "--systems", "a", "v", "f"])
    rows = list(csv.DictReader(open(run / "overlap.csv")))
    got = [(r["condition"], r["audio_found"], r["video_found"], int(r["notes"]),
            int(r["fusion_matched"])) for r in rows]  # fmt: skip
    n = len(ref)
    assert got == [("pink@0db", "True", "True", n - 3, n - 3),
                   ("pink@0db", "True", "False", 1, 0),  # note 2
                   ("pink@0db", "False", "True", 1, 1),  # note 0
                   ("pink@0db", "False", "False", 1, 1)]  # note 1: fusion alone  # fmt: skip
    assert abs(sum(float(r["share"]) for r in rows) - 1.0) < 1e-9
    assert "union" in capsys.readouterr().out
    before = (run / "overlap.csv").read_text()
    for bad in (["--systems", "a", "v"], ["--coverage"]):
        with pytest.raises(SystemExit) as info:
            errors.main([str(run), "--overlap", *bad])
        assert info.value.code == 2
    with pytest.raises(SystemExit) as info:  # no fusion output under clean
        errors.main([str(run), "--overlap", "--systems", "a", "v", "f", "--conditions", "clean"])
    assert info.value.code == 2 and "clean" in capsys.readouterr().err
    assert (run / "overlap.csv").read_text() == before


def test_misses_are_classed_by_what_was_played_with_them():
    from avfusion.notes import Note
    from eval.errors import classify_misses

    c4, c5 = Note(1.0, 1.5, 60, 64), Note(1.01, 1.5, 72, 64)  # an octave played together
    d4, d4_again = Note(2.0, 2.1, 62, 64), Note(2.15, 2.3, 62, 64)  # a fast repeat
    e4 = Note(3.0, 3.5, 64, 64)
    ref = Notes.from_iterables([c4, c5, d4, d4_again, e4])
    got = classify_misses(ref, Notes.from_iterables([c4, d4]))
    assert got == {"missed:over-partial": 1, "missed:fast-repeat": 1, "missed:other": 1}
    assert sum(classify_misses(ref, ref).values()) == 0


def test_measure_models_routes_audio_and_video_conditions(
    tmp_path, corpus, bank, monkeypatch, capsys
):
    """eval.measure_models: an audio condition reaches the audio and leaves the frames alone
    (the video-only model's clean result is reused), a ``video:`` condition darkens the frames
    that every model with video sees, each model reads frames rectified at its own size, and
    a bad condition is refused before any work."""
    import json

    import numpy as np
    import torch

    from avfusion.model import AVTranscriber
    from avfusion.model.checkpoint import save_checkpoint
    from avfusion.model.config import preset
    from eval import measure_models
    from eval.systems import AvfusionSystem

    torch.manual_seed(0)
    extra = {"train_config": {"data": {"window_s": 1.0}}}
    save_checkpoint(AVTranscriber(preset("tiny", mode="fusion")), tmp_path / "fusion" / "model",
                    extra)  # fmt: skip
    taller = preset("tiny", mode="video", rect_height_px=32, video_stem_stride=16)
    save_checkpoint(AVTranscriber(taller), tmp_path / "video" / "model", extra)
    seen: list[tuple[str, str, float]] = []
    shapes: dict[str, set[tuple[int, ...]]] = {"fusion": set(), "video": set()}
    real = AvfusionSystem.transcribe

    def spy(self, clip):
        seen.append((self.mode, clip.clip_id.split("|")[1], float(np.mean(clip.frames))))
        shapes[self.mode].add(clip.frames.shape[1:])
        assert len(clip.frames) == len(clip.times_s)
        return real(self, clip)

    monkeypatch.setattr(AvfusionSystem, "transcribe", spy)
    halves: list[str] = []
    real_degrade = measure_models.degrade

    def degrade_spy(*args, **kwargs):
        halves.append(kwargs["half"])
        return real_degrade(*args, **kwargs)

    monkeypatch.setattr(measure_models, "degrade", degrade_spy)
    conds = ["clean", "pink@0db", "video:lowlight@0.2"]
    out = tmp_path / "out"
    measure_models.main(["--runs", str(tmp_path / "fusion"), str(tmp_path / "video"),
                         "--corpus", str(corpus), "--bank", str(bank), "--seconds", "2",
                         "--out", str(out), "--conditions", *conds])  # fmt: skip
    n = len(PIECES)
    assert sorted(c for m, c, _ in seen if m == "fusion") == sorted(conds * n)
    assert sorted(c for m, c, _ in seen if m == "video") == sorted(["clean", conds[2]] * n)
    assert shapes == {"fusion": {(16, 176)}, "video": {(32, 176)}}
    bright = {c: b for m, c, b in seen if m == "fusion"}
    assert bright["video:lowlight@0.2"] < 0.3 * bright["clean"]
    assert bright["pink@0db"] == bright["clean"]
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["summary"]["avfusion-video"]["pink@0db"] == doc["summary"]["avfusion-video"]["clean"]
    assert set(doc["summary"]["avfusion-fusion"]) == set(conds)
    assert set(halves) == {"test"} and doc["noise_bank_half"] == "test"  # the test split's noise
    with pytest.raises(SystemExit):
        measure_models.main(["--runs", str(tmp_path / "video"), "--corpus", str(corpus),
                             "--out", str(tmp_path / "bad"), "--conditions", "video:dark"])  # fmt: skip
    assert not (tmp_path / "bad").exists()
    # two models of one mode would share the table's column: refused, naming both
    with pytest.raises(SystemExit):
        measure_models.main(["--runs", str(tmp_path / "video"), str(tmp_path / "video"),
                             "--corpus", str(corpus), "--bank", str(bank),
                             "--out", str(tmp_path / "bad")])  # fmt: skip
    assert "are both video models" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_measurement_programs_name_what_is_missing_and_write_nothing(tmp_path, capsys):
    """The eval programs refuse a missing run, checkpoint or corpus with exit code 2 and a
    message naming the path, before any output is written."""
    from eval import measure_models, measure_transcribe, posterior_stats

    nope = tmp_path / "nope"
    cases = [
        (measure_models.main, ["--runs", str(nope), "--out", str(tmp_path / "m")], "nope/model"),
        (posterior_stats.main, [str(nope), "--out", str(tmp_path / "p.json")], "nope"),
        (measure_transcribe.main, ["--corpus", str(nope), "--out", str(tmp_path / "t.json")],
         "nope/manifest.jsonl"),
    ]  # fmt: skip
    for main, args, named in cases:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2 and named in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ key probe


def test_key_probe_features_see_a_darker_key_and_labels_follow_the_midi():
    """eval.probe_keys: the three input channels (standardised frame, frame difference,
    background reference), per-key features that single out a key drawn darker, key-down
    labels from the notes' onset and offset, and sizes parsed or refused."""
    import argparse

    from avfusion.keyboard import key_x_spans_px
    from avfusion.notes import Note
    from eval.probe_keys import key_down, key_features, parse_size, video_channels

    w, h, n = 416, 40, 6
    frames = np.full((n, h, w), 200, np.uint8)
    times = np.arange(n) / 30.0
    lo, hi = key_x_spans_px(w)[39]  # C4 (MIDI 60), a white key
    frames[3:, :, int(np.ceil(lo)) + 1 : int(np.floor(hi)) - 1] = 150  # pressed from frame 3
    ch = video_channels(frames, times)
    assert ch.shape == (3, n, h, w)
    assert not ch[1, 0].any() and ch[1, 3].min() < 0  # the difference shows the change
    feats, black = key_features(ch)
    assert feats.shape == (n, 88, 3 * (h // 4 + 6)) and black.sum() == 36
    frame_mean = feats[:, :, : h // 4].mean(axis=-1)  # channel 0, the bands
    assert frame_mean[4].argmin() == 39 and frame_mean[0, 39] > frame_mean[4, 39]
    ref_mean = feats[:, :, 2 * (h // 4 + 6) : 2 * (h // 4 + 6) + h // 4].mean(axis=-1)
    # against the background (the median frame) the pressed key stands out, its neighbour not
    assert ref_mean[4, 39] < -1.0 and abs(ref_mean[4, 38]) < 0.1
    down = key_down(Notes.from_iterables([Note(0.05, 0.12, 60, 64)]), times)
    assert down[:, 39].tolist() == [False, False, True, True, False, False]
    assert down.sum() == 2
    assert parse_size("624x80") == (624, 80)
    for bad in ("624", "axb", "40x4"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)
