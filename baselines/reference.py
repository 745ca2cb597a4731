"""The reference every speedup and quality delta is relative to: the unmodified model."""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("dense")
class Dense(Baseline):
    """The unmodified model (the uncompressed reference of pruning and distillation methods)."""

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        return subject


@register_baseline("uncached")
class Uncached(Dense):
    """The unaccelerated pipeline (the reference of caching and parallel-sampling methods)."""
