"""Compare note-candidate rescorers on a model's own posteriors, without re-exporting it: fit
each variant on the posteriors of the rescorer's training clips (training split only) and
decode the validation split with the model's exported decoder, only the rescorer swapped.

    python -m eval.rescorer_probe dump --config experiments/configs/cpu-small-rescore-hist.yaml \\
        --init audio --out runs/probe-patch/audio.pkl            # ~8 min for audio-only, 2 threads
    python -m eval.rescorer_probe fit --cache runs/probe-patch/audio.pkl --variant patch-torch \\
        --out experiments/runs/cpu-small-rescore-patch/probe-audio-patch-torch.json

``dump`` computes the posteriors once (`avfusion.train.rescorer_training_clips` for the
config's training clips; the first 30 s of every validation performance under ``--conditions``,
noise from the bank's train half) and caches them with pickle in a file this tool writes
itself (load only caches you made). ``fit`` fits one variant and reports the mean note onset F1
per condition over the validation clips (mir_eval, 50 ms), and their mean:

- ``bundled``: the model's exported rescorer, as it is;
- ``mlp-sklearn``: its feature set refitted with scikit-learn's ``MLPClassifier``;
- ``mlp-torch``: the same features, fitted with `avfusion.rescore._fit_torch`;
- ``hgb``: the same features, scikit-learn's ``HistGradientBoostingClassifier`` (300 trees);
- ``patch-torch``: the same features plus `avfusion.rescore.patch_features`, fitted in torch.

Test-split performances are never read. The machine is recorded (`eval.machine`).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.fileio import atomic_path, write_json

VARIANTS = ("bundled", "mlp-sklearn", "mlp-torch", "hgb", "patch-torch")
"""The rescorers `fit` can compare (see the module docstring)."""

VALIDATION_CONDITIONS = (
    "clean", "pink@0db", "babble@0db", "music@0db", "dropout@30%", "pink@-10db", "pink@-20db",
    "babble@-10db", "music@-10db", "telephone",
)  # fmt: skip
"""Stage 8b's selection conditions (experiments/runs/cpu-small-rescore-cqt2/README.md)."""


def dump(
    config: Path, init: str, out: Path, conditions: tuple[str, ...], seconds: float = 30.0
) -> dict[str, Any]:
    """Posteriors of the model ``init`` (bundled name or folder) on the rescorer training
    clips of ``config`` and on the validation split; written to ``out`` (pickle).

    Raises:
        FileNotFoundError: the config, the model, the corpus or the noise bank is missing.
    """
    import torch

    from avfusion.train import (
        TranscriptionSystem,
        _clip_notes,
        fine_tune_config,
        load_performance,
        rescorer_training_clips,
        split_performances,
    )

    cfg = fine_tune_config(config, init=init, dataset=None, dataset_format=None)
    if cfg.noise_bank and not Path(cfg.noise_bank, "manifest.json").is_file():
        raise FileNotFoundError(f"{cfg.noise_bank}: no noise bank (avfusion noisebank)")
    system = TranscriptionSystem(asdict(cfg))
    system.model.to("cpu")
    t0 = time.perf_counter()
    with torch.no_grad():
        train_items, _, _ = rescorer_training_clips(system)
        val = []
        dc = cfg.data_config()
        for perf in split_performances(cfg, "validation"):
            it = load_performance(perf, dc, video=cfg.mode != "audio")
            ref = _clip_notes(perf.notes(), seconds)
            for cond, post in system._posteriors(it, conditions, seconds):
                val.append((cond, post["onset"], post["frame"], post["velocity"], ref,
                            post.get("key_cqt")))  # fmt: skip
    doc = {"init": init, "config": str(config), "mode": cfg.mode, "seed": cfg.seed,
           "hidden": cfg.rescorer_hidden, "train": train_items,
           "val": val, "frame_rate_hz": system.model.config.frame_rate_hz,
           "model_extra": system.init_extra, "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        pickle.dump(doc, f, protocol=pickle.HIGHEST_PROTOCOL)
    return doc


class _SklearnRescorer:
    """A scikit-learn classifier in a `avfusion.rescore.Rescorer`'s place (probe only)."""

    def __init__(self, clf: Any, spectral: bool, history: bool) -> None:
        self.clf, self.spectral, self.history, self.patch = clf, spectral, history, False

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.clf.predict_proba(features)[:, 1]


def fit_variant(doc: dict[str, Any], variant: str) -> dict[str, Any]:
    """Fit ``variant`` on the cached training clips; mean validation note F1 per condition.

    Raises:
        ValueError: an unknown variant, or a model exported without a rescorer.
    """
    from avfusion.decoding import DecodeConfig, decode_notes
    from avfusion.metrics import transcription_metrics
    from avfusion.rescore import fit_rescorer, labelled_candidates

    if variant not in VARIANTS:
        raise ValueError(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    base = DecodeConfig.from_extra(doc["model_extra"], doc["init"])
    if base.rescorer is None:
        raise ValueError(f"{doc['init']}: exported without a rescorer; nothing to swap")
    spectral, history = base.rescorer.spectral, base.rescorer.history
    fr, t0 = doc["frame_rate_hz"], time.perf_counter()
    rescorer: Any = base.rescorer
    if variant in ("mlp-sklearn", "mlp-torch", "patch-torch"):
        rescorer = fit_rescorer(doc["train"], fr, doc["hidden"], doc["seed"], spectral, history,
                                patch=variant == "patch-torch",
                                fit="sklearn" if variant == "mlp-sklearn" else "torch")  # fmt: skip
    elif variant == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        clf = HistGradientBoostingClassifier(max_iter=300, early_stopping=True,
                                             random_state=doc["seed"])  # fmt: skip
        clf.fit(*labelled_candidates(doc["train"], fr, spectral, history))
        rescorer = _SklearnRescorer(clf, spectral, history)
    fit_s = time.perf_counter() - t0
    dec = replace(base, rescorer=rescorer)
    per: dict[str, list[float]] = {}
    for cond, onset, frame, velocity, ref, spec in doc["val"]:
        notes = decode_notes(onset, frame, velocity, fr, dec, spec=spec)
        per.setdefault(cond, []).append(transcription_metrics(ref, notes)["note/f1"])
    means = {c: float(np.mean(v)) for c, v in per.items()}
    return {"variant": variant, "init": doc["init"], "fit_s": round(fit_s, 1),
            "n_validation_performances": len(next(iter(per.values()))),
            "note_f1": {**means, "mean": float(np.mean(list(means.values())))},
            "per_performance": per}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from eval.machine import machine

    ap = argparse.ArgumentParser(prog="python -m eval.rescorer_probe", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="cache a model's training-clip and validation posteriors")
    d.add_argument("--config", type=Path, required=True)
    d.add_argument("--init", required=True, help="bundled model name or exported model folder")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--conditions", nargs="+", default=list(VALIDATION_CONDITIONS))
    f = sub.add_parser("fit", help="fit one rescorer variant, score it on validation")
    f.add_argument("--cache", type=Path, required=True)
    f.add_argument("--variant", choices=VARIANTS, required=True)
    f.add_argument("--out", type=Path, help="JSON with the scores (default: print only)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "dump":
            doc = dump(args.config, args.init, args.out, tuple(args.conditions))
            print(f"wrote {args.out}: {len(doc['train'])} training clips, "
                  f"{len(doc['val'])} validation clips in {doc['wall_s']} s")  # fmt: skip
            return 0
        if not args.cache.is_file():
            raise FileNotFoundError(f"{args.cache}: no cache (run `dump` first)")
        with open(args.cache, "rb") as fh:
            res = fit_variant(pickle.load(fh), args.variant)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    f1 = res["note_f1"]
    print(args.variant, " ".join(f"{c}={v:.4f}" for c, v in f1.items()))
    if args.out:
        res["machine"] = machine()
        write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
