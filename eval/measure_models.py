"""Score trained models on the test split under named conditions (note onset P/R/F1 and the
other mir_eval metrics), and record the result with its config, learning curves and machine.

    python -m eval.measure_models --runs runs/cpu-small-fusion runs/cpu-small-audio runs/cpu-small-video \\
        --corpus data/corpus --bank data/noise --out experiments/runs/cpu-small

Each (performance, condition) is degraded with a seed derived from both, drawing noise from the
bank's test half (its train half with ``--split validation``, so that a choice made there never
hears the test noise); a ``video:…`` part of a condition degrades the rectified frames
(:mod:`avfusion.noise.video`), rectified at each model's own frame size. Thresholds are those
tuned on validation and stored with each model. When the split's performances come from more than one soundfont (validation: the two
training soundfonts), the record also gives each soundfont's mean (``by_soundfont``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from avfusion.data import DataConfig, list_performances, load_performance, rectified_frames
from avfusion.fileio import atomic_path
from avfusion.metrics import METRIC_KEYS, transcription_metrics
from avfusion.midi import read_midi
from avfusion.noise import NoiseBank, degrade
from avfusion.notes import Notes
from eval.conditions import degrade_video, noise_half, parse_bench_condition
from eval.machine import machine
from eval.systems import AvfusionSystem, Clip

CONDITIONS = (
    "clean",
    "pink@0db",
    "babble@0db",
    "music@0db",
    "dropout@30%",
    "pink@-10db",
    "pink@-20db",
)


def targets(summary: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, object]]:
    """The model issue's targets on note onset F1, each with the measured value and whether
    it is met: clean >= 0.90 for fusion and audio; fusion - audio >= 0.10 at music@0db and
    dropout@30%, >= 0.25 at pink@-10db and pink@-20db; fusion never more than 0.01 below the
    better single modality."""
    f1 = {
        s.removeprefix("avfusion-"): {c: v["note/f1"] for c, v in d.items()}
        for s, d in summary.items()
    }
    out: list[dict[str, object]] = []
    if not {"fusion", "audio"} <= set(f1):
        return out
    fu, au, vi = f1["fusion"], f1["audio"], f1.get("video", {})
    for mode in ("fusion", "audio"):
        if "clean" in f1[mode]:
            out.append(
                {
                    "target": f"{mode} clean >= 0.90",
                    "value": f1[mode]["clean"],
                    "met": f1[mode]["clean"] >= 0.90,
                }
            )
    for cond, gap in (
        ("music@0db", 0.10),
        ("dropout@30%", 0.10),
        ("pink@-10db", 0.25),
        ("pink@-20db", 0.25),
    ):
        if cond in fu and cond in au:
            d = fu[cond] - au[cond]
            out.append(
                {"target": f"fusion - audio at {cond} >= {gap:.2f}", "value": d, "met": d >= gap}
            )
    for cond in fu:
        best = max(au.get(cond, 0.0), vi.get(cond, 0.0))
        out.append(
            {
                "target": f"fusion >= best single modality - 0.01 at {cond}",
                "value": fu[cond] - best,
                "met": fu[cond] >= best - 0.01,
            }
        )
    return out  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--runs", nargs="+", type=Path, required=True, help="run folders with model/ exported"
    )
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--bank", type=Path, default=Path("data/noise"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument(
        "--seconds", type=float, default=30.0, help="score the first S seconds of each performance"
    )
    ap.add_argument("--max-performances", type=int, default=None)
    ap.add_argument(
        "--conditions", nargs="+", default=list(CONDITIONS),
        help="audio conditions (avfusion.noise), video ones (video:lowlight, video:blur@2px, ...) "
        "or both joined with + (default: the model issue's seven)",
    )  # fmt: skip
    args = ap.parse_args(argv)

    try:
        parsed = {c: parse_bench_condition(c) for c in args.conditions}
    except ValueError as e:
        ap.error(str(e))
    half = noise_half(args.split)
    models = {}
    for run in args.runs:
        try:
            system = AvfusionSystem(run / "model", device="cpu")
        except (FileNotFoundError, ValueError) as e:  # no export there, or a corrupt one
            ap.error(f"--runs: {e}")
        if system.mode in models:
            ap.error(
                f"--runs: {models[system.mode][2]} and {run} are both {system.mode} models; the "
                "table has one model per mode (measure the other in a second call)"
            )
        models[system.mode] = (system, system.extra, run)
    try:
        bank = NoiseBank(args.bank)
    except (FileNotFoundError, ValueError) as e:
        ap.error(f"--bank: {e}")
    any_cfg = next(iter(models.values()))[0].model.config
    dc = DataConfig(
        hop_length=any_cfg.hop_length,
        rect_width_px=any_cfg.rect_width_px,
        rect_height_px=any_cfg.rect_height_px,
    )
    try:
        perfs = list_performances(args.corpus, args.split)[: args.max_performances]
    except (FileNotFoundError, ValueError) as e:  # no corpus there, or an empty split
        ap.error(f"--corpus: {e}")
    sizes = {system.rect_size_px for system, _, _ in models.values()}
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="avfusion-measure-"))
    t0 = time.perf_counter()
    for perf in perfs:
        meta_path = perf.folder / "meta.json"
        soundfont = (
            json.loads(meta_path.read_text()).get("soundfont") if meta_path.is_file() else None
        )
        it = load_performance(perf, dc)
        n = min(len(it.audio), round(args.seconds * dc.sample_rate_hz))
        ref = Notes.from_iterables(
            [
                x
                for x in read_midi(perf.folder / "notes.mid").notes
                if x.onset_s < n / dc.sample_rate_hz - 0.05
            ]
        )
        # each model reads the video rectified at its own size (the same frame times)
        video_by_size = {}
        for size in sizes:
            f, t = rectified_frames(perf, *size)  # cached: load_performance made dc's size
            keep = t < n / dc.sample_rate_hz + 0.5
            video_by_size[size] = (np.asarray(f[keep]), t[keep])
        video_rows: dict[str | None, dict[str, object]] = {}  # video part → video-only row
        for cond in args.conditions:
            seed = zlib.crc32(f"{perf.id}|{cond}".encode())
            bc = parsed[cond]
            audio = degrade(
                it.audio[:n], bc.audio or "clean", np.random.default_rng(seed), bank=bank,
                half=half,
            ).audio  # fmt: skip
            seen = {}
            for size, (frames, _) in video_by_size.items():
                seen[size] = frames
                if bc.video is not None:
                    rng = np.random.default_rng([seed, 1])
                    seen[size] = degrade_video(frames, bc.video, rng)[0]
            for mode, (system, _, _) in models.items():
                if mode == "video" and bc.video in video_rows:  # the video model never hears
                    rows.append({**video_rows[bc.video], "condition": cond})  # the audio
                    continue
                size = system.rect_size_px
                clip = Clip(audio=audio, frames=seen[size], times_s=video_by_size[size][1],
                            work_dir=scratch, clip_id=f"{perf.id}|{cond}")  # fmt: skip
                est = system.transcribe(clip)
                m = transcription_metrics(ref, est, system.model.config.frame_rate_hz)
                rows.append(
                    {"piece": perf.id, "condition": cond, "system": f"avfusion-{mode}",
                     "soundfont": soundfont, **m}
                )  # fmt: skip
                if mode == "video":
                    video_rows[bc.video] = rows[-1]
        print(f"{perf.id}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for system in sorted({r["system"] for r in rows}):
        summary[system] = {}
        for cond in args.conditions:
            sel = [r for r in rows if r["system"] == system and r["condition"] == cond]
            summary[system][cond] = {k: float(np.mean([r[k] for r in sel])) for k in METRIC_KEYS}
    soundfonts = sorted({str(r["soundfont"]) for r in rows if r.get("soundfont")})
    by_soundfont: dict[str, dict[str, dict[str, float]]] = {}
    if len(soundfonts) > 1:
        for system in summary:
            for cond in args.conditions:
                for sf in soundfonts:
                    sel = [r for r in rows if (r["system"], r["condition"], r.get("soundfont"))
                           == (system, cond, sf)]  # fmt: skip
                    by_soundfont.setdefault(system, {}).setdefault(cond, {})[sf] = float(
                        np.mean([r["note/f1"] for r in sel])
                    )
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "targets": targets(summary),
        "split": args.split, "seconds_per_performance": args.seconds, "n_performances": len(perfs),
        "conditions": args.conditions, "noise_bank_half": half, "machine": machine(),
        "eval_wall_s": round(time.perf_counter() - t0, 1),
        "models": {m: {"run": str(r), "decode": meta.get("decode"), "validation": meta.get("validation"),
                       "train_wall_s": meta.get("train_wall_s"), "global_step": meta.get("global_step"),
                       "train_config": meta.get("train_config")} for m, (_, meta, r) in models.items()},
        "summary": summary, "by_soundfont": by_soundfont, "per_piece": rows,
    }  # fmt: skip
    with atomic_path(args.out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    for mode, (_, _, run) in models.items():
        for f in ("learning_curves.png", "train_config.json"):
            if (run / f).is_file():
                shutil.copy(run / f, args.out / f"{mode}-{f}")
    print(f"{'condition':<14}" + "".join(f"{s:>28}" for s in summary))
    for cond in args.conditions:
        cells = "".join(
            f"{summary[s][cond]['note/f1']:>10.3f} (P {summary[s][cond]['note/precision']:.2f} R {summary[s][cond]['note/recall']:.2f})"
            for s in summary
        )
        print(f"{cond:<14}{cells}")
    for system, conds in by_soundfont.items():
        for cond, per in conds.items():
            print(f"{system} {cond} note F1 by soundfont: "
                  + ", ".join(f"{sf} {v:.3f}" for sf, v in per.items()))  # fmt: skip
    for t in record["targets"]:
        print(f"{'met' if t['met'] else 'NOT met':>8}  {t['target']}: {t['value']:+.3f}")


if __name__ == "__main__":
    main()
