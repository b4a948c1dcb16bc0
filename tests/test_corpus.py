"""Performances and corpora on disk: the data contract, determinism, resuming, skipping."""

import json
from pathlib import Path

import av
import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from avfusion.cli import main
from avfusion.fileio import sha256_file
from avfusion.midi import read_midi
from avfusion.synth.corpus import CorpusConfig, build_corpus
from avfusion.synth.performance import (
    PERFORMANCE_FILES,
    PerformanceSpec,
    load_renderer,
    render_performance,
)

SMALL = (320, 180)


def _video_facts(path: Path) -> tuple[int, float, float]:
    """(frames, fps, audio-track seconds) of an mp4, by decoding it."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        fps = float(vs.average_rate)
        n_frames = sum(1 for _ in c.decode(vs))
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
        rate = c.streams.audio[0].rate
    return n_frames, fps, samples / rate


def test_three_second_performance_durations_agree(tmp_path, midi_file):
    spec = PerformanceSpec(
        "p", "train", "midi", str(midi_file), seed=1, target_s=0, soundfont="timgm6mb"
    )
    meta = render_performance(spec, tmp_path / "p", size_px=SMALL)
    folder = tmp_path / "p"
    assert sorted(p.name for p in folder.iterdir()) == sorted(PERFORMANCE_FILES)
    fps = meta["fps"]
    duration = meta["duration_s"]
    assert 2.5 < duration < 4.5
    n_frames, vfps, audio_track_s = _video_facts(folder / "video.mp4")
    assert vfps == fps
    audio, sr = sf.read(folder / "audio.flac")
    midi_end = pretty_midi.PrettyMIDI(str(folder / "notes.mid")).get_end_time()
    frame = 1 / fps
    assert abs(n_frames / fps - duration) <= frame
    assert abs(len(audio) / sr - duration) <= frame and sr == 16000 and audio.ndim == 1
    assert abs(midi_end - duration) <= frame
    assert abs(audio_track_s - duration) <= frame
    corners = np.array(meta["keyboard_corners_px"])
    assert corners.shape == (4, 2)
    assert (
        corners[0, 0] < corners[1, 0] and corners[3, 1] > corners[0, 1]
    )  # clockwise from top-left
    for key in ("source", "licence", "soundfont", "seed", "fps", "duration_s", "av_offset_s"):
        assert key in meta


def test_rebuilt_renderer_draws_the_video_and_knows_what_the_hands_hide(tmp_path, midi_file):
    spec = PerformanceSpec("p", "train", "midi", str(midi_file), seed=3, target_s=0,
                           soundfont="timgm6mb")  # fmt: skip
    meta = render_performance(spec, tmp_path / "p", size_px=SMALL)
    renderer, notes = load_renderer(tmp_path / "p")
    fps = meta["fps"]
    with av.open(str(tmp_path / "p" / "video.mp4")) as c:
        decoded = [
            f.to_ndarray(format="rgb24") for _, f in zip(range(40), c.decode(video=0), strict=False)
        ]
    i = 30  # 1 s in: the hands are on the keys
    hands = renderer.hand_mask(i / fps)
    assert hands.any()
    own = np.abs(renderer.render_frame(i / fps, i).astype(int) - decoded[i]).mean(axis=-1)
    renderer.hands = False  # the same picture without the hands differs where they are
    bare = np.abs(renderer.render_frame(i / fps, i).astype(int) - decoded[i]).mean(axis=-1)
    assert own[hands].mean() < 8 < 4 * 8 < bare[hands].mean()
    renderer.hands = True
    cover = renderer.hand_coverage(notes)
    assert cover.shape == (len(notes),) and np.all((cover >= 0) & (cover <= 1))
    assert cover.max() > 0.05  # some pressed key is partly under a finger
    renderer.hands = False
    assert not renderer.hand_coverage(notes).any()
    # a folder that is not a rendered performance is refused with its name
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        load_renderer(tmp_path)
    (tmp_path / "p" / "meta.json").write_text(json.dumps({"seed": 3}))
    with pytest.raises(ValueError, match="no video parameters"):
        load_renderer(tmp_path / "p")


def test_from_midi_keeps_the_notes(tmp_path, midi_file):
    out = tmp_path / "mine"
    assert (
        main(["synth", "--from-midi", str(midi_file), "--out", str(out), "--soundfont", "timgm6mb"])
        == 0
    )
    want = read_midi(midi_file)
    got = read_midi(out / "notes.mid")
    assert [(n.pitch, n.velocity) for n in got] == [(n.pitch, n.velocity) for n in want]
    for a, b in zip(got, want, strict=True):
        assert a.onset_s == pytest.approx(b.onset_s, abs=1e-3)
        assert a.offset_s == pytest.approx(b.offset_s, abs=1e-3)
    assert [p.value for p in got.pedal] == [p.value for p in want.pedal]
    # a second run into the same folder is refused, and leaves it as it was
    before = {f: sha256_file(out / f) for f in PERFORMANCE_FILES}
    assert main(["synth", "--from-midi", str(midi_file), "--out", str(out)]) == 2
    assert {f: sha256_file(out / f) for f in PERFORMANCE_FILES} == before


def _config(midi_dir: Path, seed: int = 0) -> CorpusConfig:
    return CorpusConfig(
        hours=0.0035,
        seed=seed,
        min_excerpt_s=3,
        max_excerpt_s=4,
        size_px=SMALL,
        midi_dir=str(midi_dir),
    )


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_corpus(tmp_path, midi_dir):
    a = build_corpus(tmp_path / "a", _config(midi_dir), progress=False)
    build_corpus(tmp_path / "b", _config(midi_dir), progress=False)
    assert a.written >= 3
    ha, hb = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert ha == hb
    lines = [json.loads(x) for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == a.written
    for rec in lines:
        for kind, rel in rec["paths"].items():
            assert sha256_file(tmp_path / "a" / rel) == rec["sha256"][kind]
    build_corpus(tmp_path / "c", _config(midi_dir, seed=1), progress=False)
    assert _hashes(tmp_path / "c") != ha


def test_interrupted_run_resumes_without_corrupt_performance(tmp_path, midi_dir, monkeypatch):
    root = tmp_path / "corpus"
    real_write = sf.write
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):  # dies half-way through the second performance
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr("avfusion.synth.performance.sf.write", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(root, _config(midi_dir), progress=False)
    monkeypatch.undo()
    done = [
        d
        for s in ("train", "validation", "test")
        if (root / s).is_dir()
        for d in (root / s).iterdir()
    ]
    complete = [d for d in done if not d.name.startswith(".")]
    assert len(complete) == 1  # the first; the second never reached its final name
    assert all((complete[0] / f).is_file() for f in PERFORMANCE_FILES)
    stale = root / complete[0].parent.name / ".tmp-00099-killed"  # what a SIGKILL leaves behind
    stale.mkdir()
    (stale / "video.mp4").write_bytes(b"half")
    report = build_corpus(root, _config(midi_dir), progress=False)
    assert report.already_done == 1 and report.written >= 2
    assert not list(root.glob("*/.tmp-*"))
    build_corpus(tmp_path / "clean", _config(midi_dir), progress=False)
    assert _hashes(root) == _hashes(tmp_path / "clean")


def test_unreadable_midi_is_reported_and_skipped(tmp_path, midi_dir, capsys):
    (midi_dir / "broken.mid").write_bytes(b"this is not a MIDI file")
    out = tmp_path / "corpus"
    code = main(["synth", "--out", str(out), "--seed", "3", "--midi-dir", str(midi_dir),
                 "--width", "320", "--height", "180", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "broken.mid" in captured.err or "broken.mid" in captured.out
    skipped_line = [x for x in captured.out.splitlines() if x.startswith("skipped pieces:")]
    n_skipped = int(skipped_line[0].split(":")[1])
    assert n_skipped == 1
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 3 and all("broken" not in line for line in manifest)


def test_resume_with_other_arguments_is_refused(tmp_path, midi_dir):
    build_corpus(tmp_path / "x", _config(midi_dir), progress=False)
    with pytest.raises(ValueError, match="other arguments"):
        build_corpus(tmp_path / "x", _config(midi_dir, seed=9), progress=False)


def test_music21_corpus_performance(tmp_path):
    spec = PerformanceSpec(
        "00000-bach", "test", "corpus", "bach/bwv269.mxl", seed=4, target_s=3.0, camera="test"
    )
    meta = render_performance(spec, tmp_path / "perf", size_px=SMALL)
    assert meta["soundfont"] == "musescore" and meta["camera"] == "test"
    assert meta["composition"] == "bach/bwv269.mxl" and "humanise" in meta
    notes = read_midi(tmp_path / "perf" / "notes.mid")
    assert len(notes) > 5 and notes.pedal is not None
    lo, hi = meta["pitch_range"]
    assert 21 <= lo <= hi <= 108
