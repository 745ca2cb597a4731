"""Learning-to-Cache (Ma, Fang, Bi, Wang; NeurIPS 2024, arXiv 2406.01733; https://github.com/horseee/learning-to-cache).

A diffusion transformer's sub-layers (attention, FFN) change little between adjacent steps for many
(step, layer) pairs. A router (one learnable logit per sub-layer per step, sigmoid-relaxed, input
invariant) is trained to interpolate between recomputing and replaying each sub-layer so that the output
matches the uncached model, with a sparsity penalty on the recompute weights (Sec. 3.2). A threshold turns
it into a static schedule (Sec. 3.3), applied here through the shared replay hooks on `attn1`/`ff` of a
diffusers `DiTTransformer2DModel` (no diffusers code copied).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.tasks.diffusion import DiffusionConfig, DiffusionSubject

from . import archs  # noqa: F401  (registers arch:dit_xl2_256 / dit_xl2_512 / dit_l2_256 if absent)
from .router import Schedule, attach_schedule, cache_units, heuristic_schedule, schedule_from_scores, train_router

POLICIES = ("random", "bottom_up", "top_down", "uniform", "all")
DEFAULTS = {"iters": 200, "bs": 8, "lr": 0.2, "lam": 1e-3}


@dataclass(frozen=True)
class L2CConfig(DiffusionConfig):
    model: str = "zoo:dit_digits"
    quality: tuple[str, ...] = ("fid", "kid", "accuracy", "psnr", "ssim")
    guidance_scale: float = 1.5                   # paper: DiT cfg 1.5
    thresholds: tuple[float, ...] = (0.1,)        # paper rule: recompute iff sigmoid(score) > threshold
    fractions: tuple[float, ...] = (0.5,)         # cost-matched variants: replay this share of cache-step slots
    lam: float = 1e-3                             # sparsity weight lambda (paper DiT-XL/2-256: 1e-6 .. 5e-6)
    router_lr: float = 0.2                        # paper: 1e-3 (AdamW, weight decay 0; 8 GPUs, many more steps)
    router_iters: int = 200
    router_batch: int = 8                         # paper: 64 on 8 GPUs
    policies: tuple[str, ...] = ("random", "bottom_up", "top_down", "uniform")   # layer-choice baselines
    fewer_steps: tuple[int, ...] = ()             # baseline: uncached with fewer steps (matched cost)
    schedule_only: bool = False                   # paper_arch: no router training (random weights)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "policies", POLICIES)
        check_positive(self, "router_lr", "router_batch")
        if any(not 0 <= f <= 1 for f in self.fractions) or any(not 0 < t < 1 for t in self.thresholds):
            raise ConfigError("fractions must lie in [0, 1] and thresholds in (0, 1)")
        if any(not 0 < s < self.steps for s in self.fewer_steps):
            raise ConfigError(f"fewer_steps {self.fewer_steps} must lie in 1..steps-1 (steps={self.steps})")


def knobs(cfg: L2CConfig) -> dict:
    vals = {"iters": cfg.router_iters, "bs": cfg.router_batch, "lr": cfg.router_lr, "lam": cfg.lam}
    return {k: v for k, v in vals.items() if v != DEFAULTS[k]}


def install(subject: DiffusionSubject, schedule: Schedule) -> DiffusionSubject:
    handle = attach_schedule(subject.denoiser, subject.pipe.scheduler, schedule)
    subject.undo.append(handle.disable)
    subject.force = handle.force
    subject.plan = handle.plan
    return subject


_ROUTERS: dict[tuple, torch.Tensor] = {}   # trained routers per (model, knobs) within one process


@register_method("learning_to_cache")
class LearningToCache(Method):
    version = 1
    Config = L2CConfig
    paper = {"title": "Learning-to-Cache: Accelerating Diffusion Transformer via Layer Caching", "arxiv": "2406.01733",
             "code": "https://github.com/horseee/learning-to-cache", "venue": "NeurIPS 2024"}

    def variants(self, cfg: L2CConfig) -> list[Variant]:
        self.cfg = cfg
        k = knobs(cfg)
        out = [Variant("uncached", {}, "baseline")]
        if not cfg.schedule_only:
            out += [Variant("learning_to_cache", {"thr": t, **k}) for t in cfg.thresholds]
            out += [Variant("learning_to_cache", {"fraction": f, **k}) for f in cfg.fractions]
        for f in cfg.fractions:
            out += [Variant("layer_cache", {"policy": p, "fraction": f}, "baseline") for p in cfg.policies]
        out += [Variant("fewer_steps", {"steps": s}, "baseline") for s in cfg.fewer_steps]
        return out

    def router(self, subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext) -> torch.Tensor:
        p = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS}}
        den = subject.denoiser
        key = (id(den), subject.steps, subject.guidance_scale, ctx.seed, tuple(sorted(p.items())))
        if key not in _ROUTERS:
            r, info = train_router(den, subject.pipe.scheduler, steps=subject.steps, guidance=subject.guidance_scale,
                                   iters=int(p["iters"]), batch=int(p["bs"]), lam=float(p["lam"]), lr=float(p["lr"]),
                                   seed=ctx.seed, bar=ctx.bar)
            ctx.log(f"[learning_to_cache] router trained: {info}")
            _ROUTERS[key] = r
        return _ROUTERS[key]

    def apply(self, subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext) -> DiffusionSubject:
        scores = self.router(subject, params, ctx)
        units = list(cache_units(subject.denoiser))
        if "fraction" in params:
            sched = schedule_from_scores(scores, units, fraction=float(params["fraction"]))
        else:
            sched = schedule_from_scores(scores, units, threshold=float(params.get("thr", 0.1)))
        ctx.log(f"[learning_to_cache] {len(units)} units, {sched.n_cached()} replayed slots, share {sched.share():.3f}")
        if ctx.artifact_dir is not None:
            import json

            (ctx.artifact_dir / "schedule.json").write_text(json.dumps(
                {**sched.to_json(), "router_sigmoid": torch.sigmoid(scores).tolist()}, indent=1))
        return install(subject, sched)
