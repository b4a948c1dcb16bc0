"""Scores, generated passages and humanisation."""

import itertools

import numpy as np
import pytest

from avfusion.midi import TICK_S, read_midi, write_midi
from avfusion.notes import Note, Notes
from avfusion.synth.humanise import HumaniseParams, draw_humanise_params, humanise
from avfusion.synth.passages import PASSAGES, generate_etude
from avfusion.synth.scores import ScoreNote, load_corpus_score, piece_split, score_from_notes_q


def _chorale_like() -> "object":
    notes = []
    for beat in range(16):
        for k, p in enumerate((48, 55, 64, 72)):
            notes.append(ScoreNote(float(beat), 1.0, p + (beat % 3), k))
    return score_from_notes_q(notes, source="test:chorale")


def test_humanise_jitters_onsets_within_bounds_and_keeps_notes():
    score = _chorale_like()
    rng = np.random.default_rng(3)
    params = draw_humanise_params(rng, score)
    perf = humanise(score, params, rng)
    assert len(perf) == len(score.notes)
    onsets = np.array([n.onset_s for n in perf])
    assert onsets.min() == pytest.approx(params.lead_in_s, abs=0.01)
    # chords are not struck together: notes of one score onset spread over a few ms, not more
    by_q: dict[float, list[float]] = {}
    beat_s = 60 / params.tempo_qpm
    for n in perf:
        by_q.setdefault(round((n.onset_s - params.lead_in_s) / beat_s), []).append(n.onset_s)
    spreads = [max(v) - min(v) for v in by_q.values() if len(v) == 4]
    assert max(spreads) > 0.002
    assert np.median(spreads) < 0.15
    # times sit on the MIDI tick grid
    assert all(abs(n.onset_s / TICK_S - round(n.onset_s / TICK_S)) < 1e-6 for n in perf)
    velocities = np.array([n.velocity for n in perf])
    assert velocities.min() >= 12 and velocities.max() <= 122 and velocities.std() > 2


def test_humanise_same_seed_same_performance():
    score = _chorale_like()
    a = humanise(
        score, draw_humanise_params(np.random.default_rng(1), score), np.random.default_rng(2)
    )
    b = humanise(
        score, draw_humanise_params(np.random.default_rng(1), score), np.random.default_rng(2)
    )
    c = humanise(
        score, draw_humanise_params(np.random.default_rng(1), score), np.random.default_rng(5)
    )
    assert a == b
    assert a != c


def test_pedal_alternates_and_is_released():
    score = _chorale_like()
    base = draw_humanise_params(np.random.default_rng(0), score)
    for style in ("bar", "harmony"):
        params = HumaniseParams(**{**base.__dict__, "pedal_style": style})
        perf = humanise(score, params, np.random.default_rng(0))
        values = [p.value for p in perf.pedal]
        assert values[0] == 127 and values[-1] == 0
        assert all(a != b for a, b in itertools.pairwise(values))
        assert len(perf.pedal) >= 4  # changed at least once
        assert perf.pedal[-1].time_s > max(n.offset_s for n in perf) - 1e-9


def test_no_overlapping_notes_on_one_key():
    score = score_from_notes_q([ScoreNote(i * 0.25, 0.25, 60) for i in range(32)], "test:repeated")
    perf = humanise(
        score, draw_humanise_params(np.random.default_rng(0), score), np.random.default_rng(0)
    )
    ns = sorted(perf.notes)
    assert all(a.offset_s <= b.onset_s for a, b in itertools.pairwise(ns))


@pytest.mark.parametrize("name", sorted(PASSAGES))
def test_passages_stay_on_the_keyboard(name):
    rng = np.random.default_rng(0)
    for centre in (27, 60, 102):
        notes = PASSAGES[name](rng, 0.0, centre)
        assert notes
        assert all(21 <= n.pitch <= 108 and n.duration_q > 0 for n in notes)


def test_etudes_reach_every_key():
    played = set()
    for seed in range(150):
        score, used = generate_etude(np.random.default_rng(seed), 48.0)
        assert used and score.end_q >= 48.0 - 4.0  # ends within the last bar
        played |= {n.pitch for n in score.notes}
    assert played == set(range(21, 109))


def test_corpus_chorale_loads_and_transposes():
    score = load_corpus_score("bach/bwv269.mxl")
    lo, hi = score.pitch_range()
    assert 30 < lo < hi < 90 and len(score.notes) > 100
    up = score.transposed(108 - hi)
    assert up.pitch_range()[1] == 108
    with pytest.raises(ValueError, match="range"):
        score.transposed(108 - hi + 1)
    excerpt = score.excerpt(2, 3)
    assert excerpt.notes[0].onset_q >= 0 and len(excerpt.bar_starts_q) == 3


def test_split_is_by_composition_and_stable():
    assert piece_split("bach/bwv269.mxl") == piece_split("bach/bwv269.mxl")
    splits = {piece_split(f"x/piece{i}.mxl") for i in range(200)}
    assert splits == {"train", "validation", "test"}


def test_midi_round_trip(tmp_path):
    notes = Notes.from_iterables([Note(0.5, 1.0, 60, 90), Note(0.75, 2.0, 21, 10)])
    write_midi(notes, tmp_path / "a.mid", end_s=3.0)
    back = read_midi(tmp_path / "a.mid")
    assert [(n.pitch, n.velocity) for n in back] == [(60, 90), (21, 10)]
    assert back.notes[0].onset_s == pytest.approx(0.5, abs=1e-3)


def test_unreadable_midi_names_the_file(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00garbage")
    with pytest.raises(ValueError, match=r"bad\.mid"):
        read_midi(bad)
