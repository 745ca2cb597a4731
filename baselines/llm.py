"""Language-model pruning baselines of LLM-Pruner's Table 1 (arXiv 2305.11627), on the language_model task.

- `llm_dense`: the unpruned model (the reference variant).
- `llm_random`: block-wise groups as LLM-Pruner, random scores.
- `llm_l2`: block-wise groups, L2 magnitude scores (Torch-Pruning MagnitudeImportance p=2, summed).
- `llm_channel`: LLM-Pruner's channel strategy: prune the hidden size of every layer (element-wise
  first-order importance), `channel_ratio` of the hidden dimensions.
Each takes `lora` (bool) for LoRA recovery afterwards, with the method's recovery settings.
"""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("llm_dense")
class LLMDense(Baseline):
    def apply(self, subject, params: Mapping[str, Any], ctx: RunContext):
        return subject


def _run(subject, params, ctx, criterion: str, strategy: str):
    from methods.llm_pruner.method import prune_and_recover

    return prune_and_recover(subject, criterion=criterion, strategy=strategy, lora=bool(params.get("lora", False)),
                             ctx=ctx)


@register_baseline("llm_random")
class LLMRandom(Baseline):
    def apply(self, subject, params: Mapping[str, Any], ctx: RunContext):
        return _run(subject, params, ctx, "random", "block")


@register_baseline("llm_l2")
class LLML2(Baseline):
    def apply(self, subject, params: Mapping[str, Any], ctx: RunContext):
        return _run(subject, params, ctx, "l2", "block")


@register_baseline("llm_channel")
class LLMChannel(Baseline):
    def apply(self, subject, params: Mapping[str, Any], ctx: RunContext):
        return _run(subject, params, ctx, "element1", "channel")
