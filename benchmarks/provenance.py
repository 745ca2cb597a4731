"""Where a number came from: code version, packages, hardware, threads, seed, times."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from functools import lru_cache
from pathlib import Path

PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "torch-pruning", "lm-eval", "torchmetrics",
            "clean-fid", "timm", "peft", "numpy", "wandb")
REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def git_state() -> dict:
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except Exception:
            return None

    sha = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


@lru_cache(maxsize=1)
def packages() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


@lru_cache(maxsize=1)
def hardware() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    hw = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version(), "gpu": None}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
        hw["cuda"] = torch.version.cuda
    return hw


def provenance(seed: int, started: float, method_version: int, task_version: int | None = None) -> dict:
    import torch

    from effbench import __version__

    return {"effbench": __version__, "git": git_state(), "packages": packages(), "hardware": hardware(),
            "threads": torch.get_num_threads(), "seed": seed, "method_version": method_version,
            "task_version": task_version,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": round(time.time() - started, 3)}
