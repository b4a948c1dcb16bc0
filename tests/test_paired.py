"""eval.paired: per-condition paired comparison of two measure_models outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.paired import compare, main, per_piece


def _write(folder: Path, rows: list[tuple[str, str, float]], system: str = "avfusion-fusion") -> Path:
    folder.mkdir(parents=True)
    doc = {"per_piece": [{"system": system, "condition": c, "piece": p, "note/f1": f,
                          "note/precision": f, "note/recall": f} for c, p, f in rows]}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(doc))
    return folder


def test_paired_compares_shared_pieces_per_condition(tmp_path, capsys):
    """Means, difference and pieces higher come from the pieces both sides hold; files of one
    side are merged; a (condition, piece) twice is refused; a clear CLI error on a missing
    folder."""
    pieces = [f"p{i}" for i in range(8)]
    old = _write(tmp_path / "old", [("clean", p, 0.5) for p in pieces]
                 + [("silence", p, 0.2) for p in pieces])  # fmt: skip
    new_a = _write(tmp_path / "a", [("clean", p, 0.5 + 0.01 * (i + 1)) for i, p in enumerate(pieces)])
    new_b = _write(tmp_path / "b", [("silence", p, 0.2) for p in pieces[:5]] + [("other", "p0", 1.0)])
    res = compare(per_piece([new_a, new_b], "avfusion-fusion"), per_piece([old], "avfusion-fusion"))
    assert set(res) == {"clean", "silence"}
    assert res["clean"]["n"] == 8 and res["clean"]["pieces_higher"] == 8
    assert res["clean"]["difference"] == pytest.approx(0.045)
    assert res["clean"]["wilcoxon_p"] < 0.05
    assert res["silence"]["n"] == 5 and res["silence"]["wilcoxon_p"] == 1.0
    with pytest.raises(ValueError, match="also in an earlier file"):
        per_piece([new_a, new_a], "avfusion-fusion")
    with pytest.raises(ValueError, match="no rows of system"):
        per_piece([old], "avfusion-audio")
    out = tmp_path / "cmp.json"
    assert main(["--new", str(new_a), "--old", str(old), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["conditions"]["clean"]["pieces_higher"] == 8
    assert main(["--new", str(tmp_path / "nowhere"), "--old", str(old)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
