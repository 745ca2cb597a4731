"""Distillation baselines for data-free KD of classifiers (PromptDFD, arXiv 2205.07523): the same
student and T^2*KL distillation as PromptDFD, on other inputs.

- `dfd_unconditioned`: texts sampled from the generative LM with no prompt (data-free).
- `dfd_random_tokens`: uniformly random token sequences (data-free).
- `kd_real_data`: the real training texts, teacher outputs as targets (the data-driven upper bound).
"""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


class _Source(Baseline):
    source = ""

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.promptdfd.method import distill_subject

        return distill_subject(subject, self.source, ctx)


@register_baseline("dfd_unconditioned")
class Unconditioned(_Source):
    source = "unconditioned"


@register_baseline("dfd_random_tokens")
class RandomTokens(_Source):
    source = "random_tokens"


@register_baseline("kd_real_data")
class RealDataKD(_Source):
    source = "real"
