"""LLM-Pruner (Ma, Fang, Wang; NeurIPS'23, arXiv 2305.11627; github.com/horseee/LLM-Pruner).

Structural pruning of Llama with dependency-based groups, first-order Taylor group importance estimated on
a handful of calibration samples, and LoRA recovery. The algorithm is in pruning.py (discovery, importance,
pruning) and lora.py (recovery); this module wires them to the language_model task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.tasks.language_model import LanguageModelConfig, LMSubject

from .pruning import AGGREGATIONS, prune_llama

METHOD_CRITERIA = ("element1", "element2", "vector")   # paper Table 1: Element^1, Element^2, Vector
LLM_BASELINES = ("llm_random", "llm_l2", "llm_channel")


@dataclass(frozen=True)
class LLMPrunerConfig(LanguageModelConfig):
    criteria: tuple[str, ...] = METHOD_CRITERIA      # method variants (block-wise)
    baselines: tuple[str, ...] = LLM_BASELINES       # baseline variants
    lora: tuple[bool, ...] = (False, True)           # each variant without / with LoRA recovery
    aggregation: str = "sum"                         # paper default: summation over the group
    ratio: float = 0.25                              # block-wise ratio of heads and MLP channels per layer
    channel_ratio: float = 0.2                       # hidden-size ratio of the channel strategy
    layer_start: int = 4                             # paper: layers 4..29 of 32 pruned
    layer_end: int = 30
    prune_attention: bool = True
    prune_mlp: bool = True
    calib_samples: int = 10                          # paper: 10 BookCorpus windows x 64 tokens, seed 42
    calib_seq_len: int = 64
    calib_seed: int = 42
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_lr: float = 1e-4
    lora_epochs: float = 2.0
    lora_batch_size: int = 64
    lora_micro_batch: int = 4
    lora_cutoff: int = 256
    lora_warmup_steps: int = 100
    lora_max_steps: int = 0                          # 0: epochs decide

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "criteria", METHOD_CRITERIA)
        check_choice(self, "baselines", LLM_BASELINES)
        check_choice(self, "aggregation", AGGREGATIONS)
        check_positive(self, "ratio", "channel_ratio", "calib_samples", "calib_seq_len", "lora_r", "lora_alpha",
                       "lora_lr", "lora_epochs", "lora_batch_size", "lora_micro_batch", "lora_cutoff")
        if not (self.ratio < 1 and self.channel_ratio < 1):
            raise ConfigError("ratio and channel_ratio must be < 1")
        if not 0 <= self.layer_start < self.layer_end:
            raise ConfigError(f"need 0 <= layer_start < layer_end, got {self.layer_start}, {self.layer_end}")


def prune_and_recover(subject: LMSubject, *, criterion: str, strategy: str, lora: bool, ctx: RunContext) -> LMSubject:
    """Shared by the method and the baselines (baselines/llm.py): prune, then optionally LoRA-recover."""
    cfg = subject.cfg
    model = subject.model
    crit = "structure" if subject.arch_only else criterion
    calib = None
    if crit in METHOD_CRITERIA:
        calib = subject.calibration(cfg.calib_samples, cfg.calib_seq_len, cfg.calib_seed)
    info = prune_llama(model, strategy=strategy, criterion=crit, aggregation=cfg.aggregation,
                       ratio=cfg.ratio if strategy == "block" else cfg.channel_ratio,
                       layer_start=cfg.layer_start, layer_end=cfg.layer_end, prune_attention=cfg.prune_attention,
                       prune_mlp=cfg.prune_mlp, calib_samples=calib, seed=ctx.seed)
    subject.notes["pruning"] = {k: v for k, v in info.items() if k != "widths_before"}
    if subject.arch_only:
        subject.notes["pruning"]["note"] = "meta device: groups chosen by position, counts are exact"
    if lora:
        if subject.arch_only:
            raise ConfigError("LoRA recovery needs weights; the arch preset measures params/MACs only (lora: [false])")
        from .lora import lora_recover

        merged, linfo = lora_recover(model, subject.tokenizer, subject.recovery_texts(), r=cfg.lora_r,
                                     alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, lr=cfg.lora_lr,
                                     epochs=cfg.lora_epochs, batch_size=cfg.lora_batch_size,
                                     micro_batch=cfg.lora_micro_batch, cutoff=cfg.lora_cutoff,
                                     warmup_steps=cfg.lora_warmup_steps, max_steps=cfg.lora_max_steps,
                                     seed=ctx.seed, bar=ctx.bar)
        subject.model = merged
        subject.notes["lora"] = linfo
    return subject


@register_method("llm_pruner")
class LLMPruner(Method):
    version = 1
    Config = LLMPrunerConfig
    paper = {"title": "LLM-Pruner: On the Structural Pruning of Large Language Models", "arxiv": "2305.11627",
             "code": "https://github.com/horseee/LLM-Pruner"}

    def variants(self, cfg: LLMPrunerConfig) -> list[Variant]:
        out = [Variant("llm_dense", {}, kind="baseline")]
        for lora in cfg.lora:
            for c in cfg.criteria:
                out.append(Variant("llm_pruner", {"criterion": c, "lora": lora}))
            for b in cfg.baselines:
                out.append(Variant(b, {"lora": lora}, kind="baseline"))
        return out

    def apply(self, subject: LMSubject, params: Mapping[str, Any], ctx: RunContext) -> LMSubject:
        return prune_and_recover(subject, criterion=params["criterion"], strategy="block",
                                 lora=bool(params.get("lora", False)), ctx=ctx)
