"""avfusion.fileio: atomic writes leave the final name whole or absent."""

from __future__ import annotations

import json

import pytest

from avfusion.fileio import write_json


def test_write_json_makes_the_folder_and_leaves_nothing_on_failure(tmp_path):
    out = write_json(tmp_path / "a" / "b" / "doc.json", {"f1": 0.5, "pieces": ["p0"]})
    assert json.loads(out.read_text()) == {"f1": 0.5, "pieces": ["p0"]}
    assert out.read_text().endswith("\n")
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no bad.json, no temporary file
    write_json(out, [1])  # replaces the old file whole
    assert json.loads(out.read_text()) == [1]
