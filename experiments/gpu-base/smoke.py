"""A quick check that the gpu-base model trains and infers on this machine's accelerator:
one bf16-autocast training step in each mode on random inputs, then a whole-clip inference.
The model is the one `experiments/configs/gpu-base-short.yaml` trains (preset and overrides).
Prints the loss, the peak GPU memory and the time of each mode, and exits non-zero on any
error or when the three modes' peaks together exceed 90 % of the GPU's memory (the train call
runs them at once).

    python experiments/gpu-base/smoke.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from avfusion.inference import predict_posteriors
from avfusion.model import AVTranscriber, n_frames
from avfusion.train import TrainConfig, model_config_for

CONFIG = "experiments/configs/gpu-base-short.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    dev = torch.device(a.device)
    n = 8 * 16000
    peaks = []
    for mode in ("fusion", "audio", "video"):
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        model = AVTranscriber(model_config_for(TrainConfig.from_yaml(CONFIG, mode=mode))).to(dev)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        audio = torch.randn(a.batch, n, device=dev) * 0.1
        video = torch.randint(0, 255, (a.batch, 242, 40, 416), device=dev, dtype=torch.uint8)
        times = torch.arange(242, device=dev, dtype=torch.float32).expand(a.batch, -1) / 30 - 1 / 30
        t0 = time.time()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model(audio if mode != "video" else None, video if mode != "audio" else None,
                        times if mode != "audio" else None, n_frames=n_frames(n))  # fmt: skip
            loss = sum(v.float().square().mean() for v in out.values())
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        n_par = sum(p.numel() for p in model.parameters())
        peaks.append(torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0.0)
        print(f"{mode}: {n_par} parameters, step {time.time() - t0:.2f} s, loss {loss.item():.4f}, "
              f"peak {peaks[-1]:.2f} GiB")  # fmt: skip
        rng = np.random.default_rng(0)
        post = predict_posteriors(model, rng.standard_normal(20 * 16000, np.float32) * 0.1,
                                  rng.integers(0, 255, (600, 40, 416), np.uint8),
                                  np.arange(600) / 30.0, device=dev)  # fmt: skip
        assert post["onset"].shape[1] == 88 and np.isfinite(post["onset"]).all(), mode
    if dev.type == "cuda":  # the train call runs the three modes at once on this GPU
        total = torch.cuda.get_device_properties(dev).total_memory / 2**30
        print(f"three modes at once: {sum(peaks):.1f} GiB of {total:.1f} GiB at batch {a.batch}")
        if sum(peaks) > 0.9 * total:
            raise SystemExit("the three training runs would not fit on this GPU together")
    print("smoke ok")


if __name__ == "__main__":
    main()
