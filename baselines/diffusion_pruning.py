"""Baselines for structural pruning of diffusion U-Nets (Diff-Pruning, Table 1 rows).

- `unet_channel_pruning[importance=random|magnitude|taylor, ratio, ft_steps]`: the same one-shot local
  channel pruning and fine-tuning as Diff-Pruning with another channel score; `taylor` is the standard
  first-order Taylor score |sum w*g| with gradients accumulated over *all* visited timesteps (no threshold).
- `unet_scratch[ratio, ft_steps]`: the pruned architecture re-initialised and trained from scratch for the
  same number of steps (official: the `reinit` pruner).
"""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("unet_channel_pruning")
class UNetChannelPruning(Baseline):
    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.diff_pruning.method import prune_subject

        kind = str(params["importance"])
        if kind not in ("random", "magnitude", "taylor"):
            raise ValueError(f"unknown importance {kind!r}; allowed: random, magnitude, taylor")
        prune_subject(subject, params, ctx, kind)
        return subject


@register_baseline("unet_scratch")
class UNetScratch(Baseline):
    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.diff_pruning.method import prune_subject

        prune_subject(subject, params, ctx, "scratch")   # structure from magnitude pruning, then re-initialised
        return subject


# ------------------------------------------------------------------ operator removal (LD-Pruner comparisons)

@register_baseline("unet_random_removal")
class UNetRandomRemoval(Baseline):
    """Random operators of the LD-Pruner operator set removed up to the same parameter budget, then the
    same distillation fine-tuning."""

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.ld_pruner.method import prune_subject

        prune_subject(subject, params, ctx, "random")
        return subject


@register_baseline("bk_sdm")
class BKSDM(Baseline):
    """BK-SDM-style block removal (Kim et al. 2023): `variant` base (R-A pairs) or small (+ mid-block),
    then the same distillation fine-tuning (BK-SDM: output KD + feature KD; here output KD only)."""

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.ld_pruner.method import prune_subject

        v = str(params.get("variant", "base"))
        if v not in ("base", "small"):
            raise ValueError(f"unknown BK-SDM variant {v!r}; allowed: base, small")
        prune_subject(subject, params, ctx, f"bk_sdm_{v}")
        return subject
