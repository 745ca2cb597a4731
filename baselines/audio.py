"""Baselines for text-to-audio acceleration (LiteFocus comparisons)."""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("full_attention")
class FullAttention(Baseline):
    """The unmodified pipeline: full self-attention over all time-frequency tokens (the reference)."""

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        return subject
