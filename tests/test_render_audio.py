"""FluidSynth rendering: length, level, alignment with the notes, determinism, soundfont rule."""

import numpy as np
import pytest

from avfusion.config import SAMPLE_RATE_HZ, SOUNDFONTS
from avfusion.notes import Note, Notes
from avfusion.synth.render_audio import draw_audio_params, render_audio


def test_test_split_never_draws_a_training_soundfont():
    rng = np.random.default_rng(0)
    train = {draw_audio_params(rng, "train").soundfont for _ in range(40)}
    val = {draw_audio_params(rng, "validation").soundfont for _ in range(40)}
    test = {draw_audio_params(rng, "test").soundfont for _ in range(10)}
    assert test == {"musescore"}
    assert train == val == {"fluidr3", "timgm6mb"}
    with pytest.raises(ValueError, match="split"):
        draw_audio_params(rng, "dev")
    with pytest.raises(FileNotFoundError, match=r"nonexistent\.sf2"):
        draw_audio_params(rng, "train", soundfont="/nonexistent.sf2")


@pytest.mark.skipif(not SOUNDFONTS["timgm6mb"].is_file(), reason="Debian soundfonts not installed")
def test_rendered_notes_start_where_the_midi_says():
    notes = Notes.from_iterables([Note(0.50, 0.9, 60, 100), Note(1.30, 1.7, 72, 100)])
    params = draw_audio_params(np.random.default_rng(1), "train", soundfont="timgm6mb")
    audio = render_audio(notes, 2.0, params)
    assert audio.dtype == np.float32 and audio.shape == (2 * SAMPLE_RATE_HZ,)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 0.98
    rms_db = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(params.rms_dbfs, abs=0.5)
    env = np.abs(audio)
    first = np.argmax(env > 0.05 * env.max()) / SAMPLE_RATE_HZ
    assert first == pytest.approx(0.50, abs=0.015)
    assert env[: int(0.45 * SAMPLE_RATE_HZ)].max() < 1e-3  # silence before the first note
    # the second note: energy rises again after 1.30 s
    frame = 160
    e = np.sqrt(np.convolve(audio**2, np.ones(frame) / frame, mode="same"))
    rise = np.argmax(np.diff(e[int(1.2 * SAMPLE_RATE_HZ) :]) > 0.002) / SAMPLE_RATE_HZ + 1.2
    assert rise == pytest.approx(1.30, abs=0.02)
    again = render_audio(notes, 2.0, params)
    assert np.array_equal(audio, again)


@pytest.mark.skipif(not SOUNDFONTS["timgm6mb"].is_file(), reason="Debian soundfonts not installed")
def test_a_soundfont_is_found_by_name_in_any_case_or_by_path(tmp_path):
    from avfusion.config import find_soundfont

    assert find_soundfont("TimGM6mb") == ("timgm6mb", SOUNDFONTS["timgm6mb"])
    assert find_soundfont(SOUNDFONTS["timgm6mb"]) == ("TimGM6mb", SOUNDFONTS["timgm6mb"])
    params = draw_audio_params(np.random.default_rng(0), "train", soundfont="FLUIDR3")
    assert params.soundfont == "fluidr3"
    with pytest.raises(FileNotFoundError, match="csound-gm, fluidr3, merlin, musescore, timgm6mb"):
        find_soundfont("steinway")
