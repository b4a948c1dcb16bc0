"""The demo: the bundled models transcribe the bundled input (a test-split performance with
other instruments at 0 dB) and the outputs a user opens are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avfusion.demo import DEMO_VIDEO, run_demo
from avfusion.midi import read_midi
from avfusion.model import load_checkpoint


@pytest.mark.parametrize("mode", ["fusion", "audio", "video"])
def test_bundled_models_load_with_their_mode(mode: str) -> None:
    folder = Path(DEMO_VIDEO).parents[2] / "models" / mode
    model, extra = load_checkpoint(folder)
    assert model.config.mode == mode
    assert {"onset_threshold", "frame_threshold"} <= set(extra["decode"])


def test_demo_writes_midi_png_and_scores(tmp_path: Path) -> None:
    scores = run_demo(tmp_path, device="cpu")
    assert set(scores) == {"fusion", "audio"}
    for mode in ("fusion", "audio"):
        notes = read_midi(tmp_path / f"demo-{mode}.mid")
        assert len(notes) > 20
        # a model that learnt nothing scores 0; both find most of the 111 notes
        assert scores[mode]["note/f1"] > 0.5
    png = (tmp_path / "demo-rolls.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "demo-metrics.json").read_text())
    assert saved["metrics"]["fusion"]["note/f1"] == pytest.approx(scores["fusion"]["note/f1"])
