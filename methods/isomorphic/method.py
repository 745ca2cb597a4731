"""Isomorphic Pruning (Fang, Ma, Mi, Wang; ECCV 2024, arXiv 2407.04616; https://github.com/VainF/Isomorphic-Pruning).

Global ranking across heterogeneous sub-structures is biased: importance distributions differ between,
e.g., attention heads, MLP hidden channels and the embedding dimension. The paper partitions DepGraph's
groups into classes of *isomorphic* sub-structures (identical dependency graphs node-for-node: same layer
types and pruning sides in the same order, Sec. 3.2) and ranks channels only within a class; every class
is pruned to the same ratio (Sec. 3.3). Attention heads are ranked globally among heads. Criterion:
first-order Taylor on ImageNet batches (Sec. 4.1). In Torch-Pruning: `isomorphic=True` with
`global_pruning=True`; head-dim pruning gets its own ratio per attention (official prune.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice
from benchmarks.errors import ConfigError
from benchmarks.pruning import SCOPES, PruneSpec, prune_subject
from benchmarks.tasks.classification import WITH_BATCHNORM, ClassificationConfig

# official scripts/pruning/*.sh (pruning ratio / head ratio / head-dim ratio / removed stage-3 blocks)
SETTINGS: dict[str, dict] = {
    "deit_4.2G": {"ratio": 0.5, "head_ratio": 0.5, "head_dim_ratio": 0.25},
    "deit_2.6G": {"ratio": 0.6, "head_ratio": 0.6, "head_dim_ratio": 0.3},
    "deit_1.2G": {"ratio": 0.5, "head_ratio": 0.5, "head_dim_ratio": 0.1},
    "deit_0.6G": {"ratio": 0.25, "head_ratio": 0.3, "head_dim_ratio": 0.3},
    "convnext_8.5G": {"ratio": 0.26},
    "convnext_4.2G": {"ratio": 0.25, "drop_blocks": 18},
}


@dataclass(frozen=True)
class IsomorphicConfig(ClassificationConfig):
    importance: str = "taylor"       # paper Sec. 4.1: Taylor (official prune.py --pruning-type taylor)
    normalizer: str = "mean"         # official prune.py default
    scopes: tuple[str, ...] = ("isomorphic",)   # add "global" / "local" for the paper's ranking ablation
    settings: tuple[str, ...] = ()   # named official settings (SETTINGS); empty -> ratios/head_* keys
    include_baselines: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "importance", ("l1", "l2", "taylor", "hessian", "random", "lamp", "fpgm"))
        check_choice(self, "normalizer", ("mean", "max", "sum", "standarization", "gaussian"))
        check_choice(self, "scopes", SCOPES)
        check_choice(self, "settings", SETTINGS)
        if not self.scopes:
            raise ConfigError("scopes must name at least one ranking scope")


@register_method("isomorphic")
class Isomorphic(Method):
    version = 2
    Config = IsomorphicConfig
    paper = {"title": "Isomorphic Pruning for Vision Models", "arxiv": "2407.04616",
             "code": "https://github.com/VainF/Isomorphic-Pruning"}

    def variants(self, cfg: IsomorphicConfig) -> list[Variant]:
        from baselines.pruning import BASELINE_NAMES

        out = [Variant("dense", kind="baseline")]
        amounts = [dict(SETTINGS[s]) for s in cfg.settings] if cfg.settings else cfg.amounts()
        for amount in amounts:
            for scope in cfg.scopes:
                out.append(Variant(self.name, {**amount, **({} if scope == "isomorphic" else {"scope": scope})}))
        if cfg.include_baselines:
            for b in cfg.baselines:
                if b == "bn_scale" and cfg.model not in WITH_BATCHNORM:
                    continue
                for amount in amounts:
                    out.append(Variant(BASELINE_NAMES[b], dict(amount), kind="baseline"))
        return out

    def spec(self, cfg: IsomorphicConfig, defaults: Mapping[str, Any], params: Mapping[str, Any]) -> PruneSpec:
        values = dict(defaults)
        values.update(importance=cfg.importance, normalizer=cfg.normalizer, group_reduction="mean",
                      scope="isomorphic")
        if "ratio" in params and "speedup" not in params:
            values["target"] = "ratio"       # named official settings are channel ratios, one shot
        return PruneSpec.from_params(params, **values)

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        return prune_subject(subject, self.spec(subject.cfg, subject.defaults, params))
