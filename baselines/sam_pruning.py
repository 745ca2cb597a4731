"""Pruning baselines for SAM's image encoder (SlimSAM's Table of criteria, arXiv 2312.05284).

`sam_prune[importance=..., ratio=..., recover=...]`: SlimSAM's alternate two-step structure and the same
distillation recovery, with another importance criterion (`magnitude`, `random`), or SlimSAM's own
criterion without any recovery (`recover=False`). Settings other than these come from the method
config carried by the subject (`subject.cfg`)."""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("sam_prune")
class SamPrune(Baseline):
    version = 1

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.slimsam.method import settings, slim_subject

        s = settings(subject.cfg, params.get("ratio", 0.0), importance=params.get("importance"),
                     recover=bool(params.get("recover", True)), seed=ctx.seed)
        return slim_subject(subject, s)
