"""Baselines for diffusion acceleration: fewer sampling steps (the uncached pipeline is in reference.py)."""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("fewer_steps")
class FewerSteps(Baseline):
    """The same sampler with fewer denoising steps (the papers' matched-cost comparison, e.g. PLMS 25)."""

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        subject.steps = int(params["steps"])
        return subject
