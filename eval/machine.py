"""What a measurement ran on: CPU model, threads, GPU, library versions, commit. Every
figure that eval/ writes carries this record, so CPU and GPU numbers are never confused."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any


def machine() -> dict[str, Any]:
    """The machine record: ``cpu`` (model name from /proc/cpuinfo), ``cpu_count``,
    ``torch_threads``, ``device`` (``cuda: <name>`` or ``cpu``), ``python``, ``torch``,
    ``commit`` (short hash of HEAD, ``+dirty`` when the tree has changes)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    device = f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device, "python": platform.python_version(), "torch": torch.__version__,
            "commit": commit}  # fmt: skip
