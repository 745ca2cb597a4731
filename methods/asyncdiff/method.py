"""AsyncDiff (Chen, Ma, Fang, Wang; NeurIPS 2024, arXiv 2406.06911; https://github.com/czg1225/AsyncDiff).

The denoiser is split into N components of about equal cost, one per device. After a few sequential
warm-up steps, component n at step t consumes component n-1's output from step t-1, so the N components
run in parallel (Sec. 3.2-3.3); with stride S=2 one round completes two steps, components 1..N-1 skip
every other step and the last component runs on two devices (Sec. 3.4). Devices = N + S - 1.

Here: one process per device (benchmarks.distributed: torch.multiprocessing spawn, gloo on CPU / NCCL on
CUDA, one thread per worker), launched by `effbench run asyncdiff` itself; `torchrun
--nproc_per_node=N+S-1 -m effbench.cli run asyncdiff ...` works too (ranks > 0 serve rank 0's variants).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.tasks.diffusion import DiffusionConfig, DiffusionSubject

from . import task as _task  # noqa: F401  (registers the "diffusion_parallel" task)


@dataclass(frozen=True)
class AsyncDiffConfig(DiffusionConfig):
    task: str = "diffusion_parallel"
    model: str = "zoo:t2i_digits"
    components: tuple[int, ...] = (2,)     # N for each AsyncDiff variant
    strides: tuple[int, ...] = (1,)        # S for each AsyncDiff variant (1 or 2)
    warmup: int = 2                        # sequential warm-up steps (paper Table 1 leaves it unstated)
    mode: str = "processes"                # processes: N+S-1 worker processes | simulate: one process
    threads_per_worker: int = 1            # torch threads in every worker (and rank 0 during sampling)
    fewer_steps: tuple[int, ...] = ()      # baseline: the sequential model with fewer steps
    deepcache_intervals: tuple[int, ...] = ()   # baseline: DeepCache (uniform, branch 0) at these intervals

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "components", "threads_per_worker", "warmup")
        check_choice(self, "strides", (1, 2))
        check_choice(self, "mode", ("processes", "simulate"))
        if self.warmup > self.steps:
            raise ConfigError(f"warmup {self.warmup} exceeds steps {self.steps}")
        if any(s >= self.steps or s <= 0 for s in self.fewer_steps):
            raise ConfigError(f"fewer_steps {self.fewer_steps} must lie in 1..steps-1 (steps={self.steps})")


@register_method("asyncdiff")
class AsyncDiff(Method):
    version = 1
    Config = AsyncDiffConfig
    paper = {"title": "AsyncDiff: Parallelizing Diffusion Models by Asynchronous Denoising", "arxiv": "2406.06911",
             "code": "https://github.com/czg1225/AsyncDiff", "venue": "NeurIPS 2024"}

    def variants(self, cfg: AsyncDiffConfig) -> list[Variant]:
        _maybe_serve_torchrun(cfg)
        out = [Variant("uncached", {}, "baseline")]
        for n in cfg.components:
            for s in cfg.strides:
                out.append(Variant("asyncdiff", {"n": n, "stride": s, "warmup": cfg.warmup, "mode": cfg.mode}))
        out += [Variant("fewer_steps", {"steps": s}, "baseline") for s in cfg.fewer_steps]
        out += [Variant("deepcache", {"interval": i, "branch": 0}, "baseline") for i in cfg.deepcache_intervals]
        return out

    def apply(self, subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext) -> DiffusionSubject:
        from .core import AsyncUNet, make_plan, unet_call_args

        n, stride, warmup = int(params["n"]), int(params["stride"]), int(params["warmup"])
        pipe = subject.pipe
        cfg_batch = subject.guidance_scale > 1.0
        if hasattr(subject, "arch_inputs") and subject.arch_inputs is not None and not hasattr(pipe, "vae"):
            # paper architecture: only the split (per-component MACs) is measured, nothing is installed
            from .core import Plan, profile_units, split_costs

            den = subject.denoiser
            if getattr(den, "_asyncdiff_profile", None) is None:      # same for every (N, S): profile once
                inp = dict(subject.arch_inputs(1, "cpu"))
                den._asyncdiff_profile = profile_units(den, (), inp, exclude_attention_matmul=True)
            units, costs = den._asyncdiff_profile
            subject.asyncdiff = {"plan": Plan(units, costs, split_costs(costs, n)), "stride": stride, "warmup": warmup}
            return subject
        args, kwargs = unet_call_args(pipe, 1, cfg_batch)
        plan = make_plan(subject.denoiser, n, args, kwargs)
        if params.get("mode", "processes") == "simulate" or n + stride - 1 == 1:
            au = AsyncUNet(subject.denoiser, plan, stride, warmup, pipe.scheduler).install()
            orig = pipe.scheduler.set_timesteps

            def set_timesteps(*a, **k):
                out = orig(*a, **k)
                au.reset()
                return out

            pipe.scheduler.set_timesteps = set_timesteps
            subject.undo.append(au.remove)
            subject.asyncdiff = {"plan": plan, "stride": stride, "warmup": warmup, "controller": au}
            return subject
        from .dist import Driver

        driver = Driver(pipe, plan, stride, warmup, device=str(ctx.device),
                        threads=int(params.get("threads", 1))).start()
        subject.undo.append(driver.close)
        subject.asyncdiff = {"plan": plan, "stride": stride, "warmup": warmup, "driver": driver}
        return subject


def _maybe_serve_torchrun(cfg: AsyncDiffConfig) -> None:
    """Under torchrun, ranks > 0 never run the benchmark loop: they serve rank 0's AsyncDiff variants."""
    from benchmarks.distributed import backend_for, init_from_env, torchrun_env

    env = torchrun_env()
    if env is None or env[0] == 0:
        return
    import torch

    from .dist import serve_torchrun

    torch.set_num_threads(cfg.threads_per_worker)
    init_from_env(backend_for(cfg.device if cfg.device != "auto" else "cpu"), timeout_s=7200)
    serve_torchrun(env[0])
    sys.exit(0)
