"""Baselines for parallel / multi-device diffusion (AsyncDiff, Sec. 4 comparisons)."""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("deepcache")
class DeepCacheBaseline(Baseline):
    """DeepCache (methods/deepcache) on one device, uniform schedule: a single-device acceleration
    compared with AsyncDiff's multi-device one (AsyncDiff Table 5 compares with DeepCache-style reuse)."""

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.deepcache.method import DeepCache

        return DeepCache().apply(subject, {"interval": int(params["interval"]), "branch": int(params.get("branch", 0))}, ctx)
