"""A copy of a corpus split whose audio another piano plays: a diagnosis of what makes a split
hard, its pieces or its piano (no model is trained or tuned on the result).

    python -m eval.swap_piano --corpus data/corpus --split test --soundfont fluidr3 \\
        --out data/diag-test-fluidr3
    python -m eval.measure_models --runs runs/bundled-audio --corpus data/diag-test-fluidr3 \\
        --conditions clean --out runs/diag-test-fluidr3

Each performance's notes and pedal are rendered again with ``--soundfont`` (GM program 0) and
the rest of its drawn sound (reverb, EQ, stereo mix, level), as
:func:`avfusion.data.timbre_audio` does; its video, labels and ``meta.json`` are linked, not
copied. The new corpus has its own manifest, so :mod:`eval.measure_models` reads it as it
reads the original. The test split's own piano (MuseScore General) may be swapped for a
training piano, not the other way round (``timbre_audio`` refuses to render with it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from avfusion.config import SAMPLE_RATE_HZ
from avfusion.data import list_performances, timbre_audio
from avfusion.fileio import atomic_path

LINKED_FILES: tuple[str, ...] = ("video.mp4", "notes.mid", "meta.json")


def swap_piano(corpus: Path, split: str, soundfont: str, out: Path) -> int:
    """Write ``out/<split>/<id>/`` (audio.flac re-rendered, the other files linked) and
    ``out/manifest.jsonl`` for every performance of ``corpus``'s ``split``.

    Returns:
        the number of performances written.
    Raises:
        FileExistsError: ``out`` is the corpus itself.
        FileNotFoundError / ValueError: see :func:`avfusion.data.list_performances` and
            :func:`avfusion.data.timbre_audio` (unknown soundfont, the test split's piano).
    """
    if out.resolve() == corpus.resolve():
        raise FileExistsError(f"{out}: is the corpus itself; give another folder")
    perfs = list_performances(corpus, split)
    lines = []
    for perf in tqdm(perfs, desc=f"{split} with {soundfont}", unit="perf"):
        folder = out / split / perf.id
        folder.mkdir(parents=True, exist_ok=True)
        for name in LINKED_FILES:
            link = folder / name
            if not link.exists():
                os.symlink((perf.folder / name).resolve(), link)
        audio = timbre_audio(perf, soundfont, len(perf.load_audio()))
        with atomic_path(folder / "audio.flac") as tmp:
            sf.write(tmp, audio, SAMPLE_RATE_HZ, format="FLAC", subtype="PCM_16")
        lines.append(json.dumps({"id": perf.id, "split": split, "soundfont": soundfont}))
    with atomic_path(out / "manifest.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--soundfont", required=True, help="fluidr3, timgm6mb, merlin, csound-gm or a path")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        n = swap_piano(args.corpus, args.split, args.soundfont, args.out)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {n} performances of {args.split} played by {args.soundfont}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
