"""How fast one data-loading process makes training windows: the pace that sets how many
workers a GPU run needs (``--num-workers``), per mode, and what the time goes to.

    python -m eval.loader_speed --config experiments/configs/gpu-base-short.yaml \\
        --warmup 64 --windows 256 --out experiments/gpu-base/loader_speed.json

For each mode, a training `avfusion.data.WindowDataset` is built as ``avfusion train`` builds
it (the config's corpus, noise bank, data section), and ``--warmup`` windows, then ``--windows``
timed ones, are drawn in one process with one torch thread; the time is split into the
degradation sampler (`avfusion.noise.DegradationSampler`, timed around its call) and the rest
(reading audio and frames, video augmentation, labels). Reports windows per second, the seconds per batch of the
config's ``batch_size``, and the sampler's share; the machine is recorded (`eval.machine`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from avfusion.fileio import atomic_path


class _Timed:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def measure(config_path: Path, mode: str, n_windows: int, n_warmup: int = 32) -> dict[str, Any]:
    """Draw ``n_warmup`` then ``n_windows`` training windows of ``mode`` in this process; the
    timing of the latter.

    Raises:
        FileNotFoundError: the config, its corpus or its noise bank is missing.
    """
    import torch

    from avfusion.train import TrainConfig, _train_loaders

    torch.set_num_threads(1)
    cfg = TrainConfig.from_yaml(config_path, mode=mode, num_workers=0)
    if cfg.noise_bank and not Path(cfg.noise_bank, "manifest.json").is_file():
        raise FileNotFoundError(f"{cfg.noise_bank}: no noise bank (avfusion noisebank)")
    t0 = time.perf_counter()
    ds = _train_loaders(cfg)["train_dataloaders"].dataset
    setup_s = time.perf_counter() - t0
    sampler = _Timed(ds.sampler) if ds.sampler is not None else None
    ds.sampler = sampler
    for i in range(n_warmup):  # first-use costs (imports, noise files read once) not timed
        ds[i]
    if sampler is not None:
        sampler.seconds = 0.0
    t0 = time.perf_counter()
    for i in range(n_warmup, n_warmup + n_windows):
        ds[i]
    wall = time.perf_counter() - t0
    sampler_s = sampler.seconds if sampler is not None else 0.0
    return {
        "mode": mode,
        "windows": n_windows,
        "warmup_windows": n_warmup,
        "window_s": ds.cfg.window_s,
        "setup_s": round(setup_s, 1),
        "windows_per_s": round(n_windows / wall, 2),
        "s_per_batch": round(wall / n_windows * cfg.batch_size, 2),
        "batch_size": cfg.batch_size,
        "sampler_share": round(sampler_s / wall, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True, help="a training config (YAML)")
    ap.add_argument("--modes", nargs="+", default=["fusion", "audio", "video"])
    ap.add_argument("--windows", type=int, default=128, help="windows timed per mode")
    ap.add_argument("--warmup", type=int, default=32, help="windows drawn first, not timed")
    ap.add_argument("--out", type=Path, help="JSON to write (default: print only)")
    a = ap.parse_args(argv)
    from eval.machine import machine

    try:
        rows = [measure(a.config, m, a.windows, a.warmup) for m in a.modes]
    except (FileNotFoundError, ValueError) as exc:
        print(f"eval.loader_speed: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        print(f"{r['mode']:>6}: {r['windows_per_s']:.2f} windows/s per process "
              f"({r['window_s']:g} s windows; {r['s_per_batch']:.2f} s per batch of "
              f"{r['batch_size']}), sampler {100 * r['sampler_share']:.0f} %")  # fmt: skip
    if a.out is not None:
        doc = {"config": str(a.config), "machine": machine(), "modes": rows}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(a.out) as tmp:
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
