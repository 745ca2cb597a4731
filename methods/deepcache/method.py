"""DeepCache (Ma, Fang, Wang; CVPR 2024, arXiv 2312.00858; https://github.com/horseee/DeepCache).

Adjacent denoising steps produce nearly identical high-level features. On a full step the U-Net runs
entirely and the outputs of every layer deeper than the chosen skip branch are cached; on the next
N-1 steps only the shallow layers down to the branch run, and the deep path is replayed from the cache
(paper Sec. 3.2, Fig. 3). Full steps are every N-th step (uniform, Sec. 3.3) or follow the non-uniform
centre/power schedule (Sec. 3.3, Eq. 7). The sampler is unchanged.

Implementation: diffusers hooks on the live U-Net (benchmarks/hooks.py), no forked pipeline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.hooks import CachePolicy, CacheHandle, attach_replay, named
from benchmarks.tasks.diffusion import DiffusionConfig, DiffusionSubject

SCHEDULES = ("uniform", "nonuniform")


# ----------------------------------------------------------------------------------------------
# Which steps are full steps

def uniform_steps(total: int, interval: int) -> list[int]:
    """Full steps at 0, N, 2N, ... (step 0 is the noisiest)."""
    return list(range(0, total, interval))


def nonuniform_steps(total: int, interval: int, center: int, power: float) -> list[int]:
    """The paper's non-uniform schedule (Sec. 3.3): k = ceil(T/N) full steps, denser around `center`:
    idx = unique(int(linspace((-c)^(1/p), (T-c)^(1/p), k+1)^p))[1:-1] + c, with step 0 forced.
    official: (-c)^(1/p) is complex; the int cast keeps the truncated real part, then c is added; if the
    unique indices are fewer than k, p is lowered by 0.02 until k indices come out."""
    k = math.ceil(total / interval)
    p = power
    while p > 1:
        pts = np.linspace(complex(-center) ** (1 / p), (total - center) ** (1 / p), k + 1) ** p
        idx = [0] + [int(i) + center for i in np.unique(pts.real.astype(np.int64))[1:-1]]
        if len(idx) == k:
            return idx
        p -= 0.02
    raise ConfigError(f"no non-uniform schedule with {k} full steps for T={total}, center={center}: lower center or interval")


class DeepCachePolicy(CachePolicy):
    """Full or cached, per U-Net call.

    official (sd/pipeline_stable_diffusion.py): the full-step indices are drawn from
    range(num_inference_steps) and compared with the index of the U-Net call in `scheduler.timesteps`.
    Samplers with more timesteps than inference steps (PLMS/PNDM: 51 timesteps for 50 steps, its first
    timestep repeats) therefore cache their trailing calls: PLMS 50, N=5 has full calls 0, 5, ..., 45
    (10) and 41 cached calls. With N=1 nothing is cached (official: `quick_replicate = cache_interval > 1`).
    `scheduler` (optional) supplies `num_inference_steps`; without it the call count is the step count."""

    def __init__(self, interval: int, schedule: str, center: int, power: float, scheduler: Any = None):
        self.interval, self.schedule, self.center, self.power = interval, schedule, center, power
        self.scheduler = scheduler
        self._memo: dict[tuple[int, int], frozenset[int]] = {}

    def nominal_steps(self, total: int) -> int:
        """Inference steps the schedule is drawn over: the scheduler's `num_inference_steps`, at most `total`."""
        n = getattr(self.scheduler, "num_inference_steps", None)
        return min(int(n), total) if n else total

    def full_steps(self, total: int) -> frozenset[int]:
        """Indices (among `total` U-Net calls) of the full calls."""
        steps = self.nominal_steps(total)
        key = (total, steps)
        if key not in self._memo:
            if self.interval == 1:
                full = range(total)
            elif self.schedule == "uniform":
                full = uniform_steps(steps, self.interval)
            else:
                full = nonuniform_steps(steps, self.interval, self.center, self.power)
            self._memo[key] = frozenset(full)
        return self._memo[key]

    def compute(self, step: int, total: int, name: str) -> bool:
        return step in self.full_steps(total)


# ----------------------------------------------------------------------------------------------
# Which layers are replayed for a skip branch

def _down_producers(unet: torch.nn.Module) -> list[tuple[int, list[torch.nn.Module]]]:
    """Modules producing each down-path skip feature after conv_in, in order: (block, [modules])."""
    out = []
    for i, block in enumerate(unet.down_blocks):
        attns = getattr(block, "attentions", None)
        for j, res in enumerate(block.resnets):
            mods = [res] + ([attns[j]] if attns is not None and j < len(attns) else [])
            out.append((i, mods))
        for ds in (getattr(block, "downsamplers", None) or []):
            out.append((i, [ds]))
    return out


def _up_consumers(unet: torch.nn.Module, n_res: int) -> list[tuple[int, int, list[torch.nn.Module]]]:
    """(block, skip index consumed, [modules]) for each up layer in execution order."""
    out, ptr = [], n_res
    for k, block in enumerate(unet.up_blocks):
        attns = getattr(block, "attentions", None)
        for j, res in enumerate(block.resnets):
            ptr -= 1
            mods = [res] + ([attns[j]] if attns is not None and j < len(attns) else [])
            out.append((k, ptr, mods))
    return out


def replayed_modules(unet: torch.nn.Module, branch: int) -> list[torch.nn.Module]:
    """Modules whose outputs are replayed on cached steps for skip branch `branch`.

    Skip features are numbered as the U-Net produces them: 0 = conv_in, then every down layer
    (resnet [+ attention]) and downsampler. Branch b keeps skips 0..b+1 live (official: branch id
    = 3*block + layer for SD, 0 = shallowest); every deeper layer, the mid block, and the up layers that
    consume deeper skips are replayed. Whole blocks are hooked where all their layers are replayed."""
    if not hasattr(unet, "down_blocks") or not hasattr(unet, "up_blocks"):
        raise ConfigError(f"DeepCache needs a U-Net with down/up blocks, got {type(unet).__name__}")
    producers = _down_producers(unet)
    n_res = 1 + len(producers)
    if not 0 <= branch < len(producers) - 1:
        raise ConfigError(f"branch {branch} out of range for this U-Net: 0..{len(producers) - 2}")
    keep = branch + 1                     # highest live skip index
    replay: list[torch.nn.Module] = []
    for i, block in enumerate(unet.down_blocks):
        idx = [1 + n for n, (b, _) in enumerate(producers) if b == i]
        if all(x > keep for x in idx):
            replay.append(block)
        else:
            replay += [m for n, (b, mods) in enumerate(producers) if b == i and 1 + n > keep for m in mods]
    replay.append(unet.mid_block)
    consumers = _up_consumers(unet, n_res)
    for k, block in enumerate(unet.up_blocks):
        layers = [(r, mods) for b, r, mods in consumers if b == k]
        if all(r > keep for r, _ in layers):
            replay.append(block)
            continue
        replay += [m for r, mods in layers if r > keep for m in mods]
        # an upsampler after a live layer is live
    return [m for m in replay if m is not None]


def enable_deepcache(pipe: Any, interval: int, branch: int = 0, schedule: str = "uniform",
                     center: int = 15, power: float = 1.4) -> CacheHandle:
    """Attach DeepCache to a live diffusers pipeline (its `unet` and `scheduler`). Returns a handle;
    `handle.disable()` restores the original pipeline exactly."""
    unet = pipe.unet
    policy = DeepCachePolicy(interval, schedule, center, power, scheduler=pipe.scheduler)
    return attach_replay(unet, pipe.scheduler, named(unet, replayed_modules(unet, branch)), policy)


# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeepCacheConfig(DiffusionConfig):
    intervals: tuple[int, ...] = (2, 3, 5)     # cache interval N for each DeepCache variant
    schedules: tuple[str, ...] = ("uniform",)   # uniform and/or nonuniform
    branch: int = 0                              # skip branch (official numbering, 0 = shallowest)
    center: int = 15                             # non-uniform schedule centre c
    power: float = 1.4                           # non-uniform schedule power p
    fewer_steps: tuple[int, ...] = ()            # baseline: the uncached model with fewer steps

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "intervals", "power")
        check_choice(self, "schedules", SCHEDULES)
        if self.branch < 0:
            raise ConfigError("branch must be >= 0")
        if any(s >= self.steps for s in self.fewer_steps) or any(s <= 0 for s in self.fewer_steps):
            raise ConfigError(f"fewer_steps {self.fewer_steps} must lie in 1..steps-1 (steps={self.steps})")


@register_method("deepcache")
class DeepCache(Method):
    version = 2
    Config = DeepCacheConfig
    paper = {"title": "DeepCache: Accelerating Diffusion Models for Free", "arxiv": "2312.00858",
             "code": "https://github.com/horseee/DeepCache", "venue": "CVPR 2024"}

    def variants(self, cfg: DeepCacheConfig) -> list[Variant]:
        out = [Variant("uncached", {}, "baseline")]
        for sched in cfg.schedules:
            for n in cfg.intervals:
                params: dict = {"interval": n, "branch": cfg.branch}
                if sched != "uniform":
                    params.update(schedule=sched, center=cfg.center, power=cfg.power)
                out.append(Variant("deepcache", params))
        out += [Variant("fewer_steps", {"steps": s}, "baseline") for s in cfg.fewer_steps]
        return out

    def apply(self, subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext) -> DiffusionSubject:
        handle = enable_deepcache(subject.pipe, **params)
        subject.undo.append(handle.disable)
        subject.force = handle.force
        subject.replayed = lambda kind: [] if kind == "full" else list(handle.modules.values())
        sched = subject.pipe.scheduler
        sched.set_timesteps(subject.steps)
        full = handle.policy.full_steps(len(sched.timesteps))
        subject.plan = ["full" if i in full else "cached" for i in range(len(sched.timesteps))]
        return subject
