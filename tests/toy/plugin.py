"""A toy method + task (registered through EFFBENCH_PLUGINS) for fast harness tests: runner, records,
resume, sweeps and faults. Its 'model' is a fixed random matrix; `scale` shrinks it (cheaper, worse)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from benchmarks import efficiency as eff
from benchmarks.api import Method, Metric, Outcome, RunContext, Task, Variant, register_method, register_task
from benchmarks.config import BaseConfig, check_positive


@dataclass(frozen=True)
class ToyConfig(BaseConfig):
    task: str = "toy"
    size: int = 64
    scales: tuple[float, ...] = (0.5,)
    crash_scale: float = -1.0        # the variant with this scale raises (fault injection)
    sleep: float = 0.0               # seconds each variant sleeps (kill-in-flight tests)
    marker_dir: str = ""             # if set, each variant touches <marker_dir>/<pid>-<variant> when it starts

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "size", "scales")


@register_task("toy")
class ToyTask(Task):
    version = 1

    def __init__(self, cfg: ToyConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        g = torch.Generator().manual_seed(ctx.seed)
        self.w = torch.randn(cfg.size, cfg.size, generator=g)
        self.x = torch.randn(8, cfg.size, generator=g)

    @property
    def model_id(self) -> str:
        return f"toy{self.cfg.size}"

    def subject(self) -> dict:
        return {"w": self.w.clone()}

    def evaluate(self, subject: dict, variant: Variant, ctx: RunContext) -> Outcome:
        cfg = self.cfg
        if cfg.marker_dir:
            Path(cfg.marker_dir).mkdir(parents=True, exist_ok=True)
            (Path(cfg.marker_dir) / f"{os.getpid()}-{variant.name}").touch()
        if cfg.sleep:
            time.sleep(cfg.sleep)
        w = subject["w"]
        y = self.x @ w
        err = float((y - self.x @ self.w).pow(2).mean())
        lat, mem = eff.timed(lambda: self.x @ w, ctx.latency, ctx.device)
        if ctx.artifact_dir is not None:
            (ctx.artifact_dir / "out.txt").write_text(f"{err}\n")
        return Outcome(metrics={"mse": Metric(err, False, "toy/mse", 1)},
                       efficiency={"params": int((w != 0).sum()), "macs": int((w != 0).sum()) * 8, "macs_per": "call",
                                   "mac_counter": "analytic", "latency": lat.to_dict(), "peak_memory": mem})


@register_method("toy")
class Toy(Method):
    version = 1
    Config = ToyConfig
    paper = {"title": "Toy method (tests only)", "arxiv": "0000.00000", "code": ""}

    @classmethod
    def config_path(cls) -> Path:
        return Path(__file__).with_name("config.yaml")

    @classmethod
    def folder(cls) -> Path:
        return Path(__file__).parent

    def variants(self, cfg: ToyConfig) -> list[Variant]:
        self.crash_scale = cfg.crash_scale
        return [Variant("dense", {}, "baseline")] + [Variant("toy", {"scale": s}) for s in cfg.scales]

    def apply(self, subject: dict, params: Mapping[str, Any], ctx: RunContext) -> dict:
        scale = params["scale"]
        if scale == self.crash_scale:
            raise RuntimeError(f"injected crash at scale={scale}")
        k = max(1, int(subject["w"].shape[1] * scale))
        subject["w"][:, k:] = 0
        return subject

    crash_scale = -1.0
