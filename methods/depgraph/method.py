"""DepGraph (Fang, Ma, Song, Mi, Wang; CVPR 2023, arXiv 2301.12900; https://github.com/VainF/Torch-Pruning).

Structural pruning of any architecture: a dependency graph links the input/output pruning operations of
every layer (inter-layer edges between connected layers, intra-layer edges between both sides of layers
sharing a pruning scheme such as BN or element-wise ops); the transitive closure gives the *groups* of
coupled parameters that must be pruned at identical indices (Sec. 3.2, Alg. 1). A group is scored by
aggregating the per-parameter norms over all coupled layers (Sec. 3.3, mean reduction, normalised), then
ranked locally or globally. Optional group-sparse learning before pruning (Sec. 3.3, Eq. 6) pushes whole
groups to zero: reg * gamma_k * w_k with gamma_k = alpha^((I_max - I_k)/(I_max - I_min)).

The graph, grouping and pruning are Torch-Pruning's; the pipeline (targets, attention heads, recovery)
is effbench's shared one (benchmarks/pruning.py), used unchanged by the baselines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.pruning import PruneSpec, SCOPES, prune_subject
from benchmarks.tasks.classification import WITH_BATCHNORM, ClassificationConfig


@dataclass(frozen=True)
class DepGraphConfig(ClassificationConfig):
    importance: str = "l2"           # paper: group L2 magnitude (GroupMagnitudeImportance(p=2))
    normalizer: str = "max"          # official CIFAR recipe: normalizer 'max' ('mean' on ImageNet)
    group_reduction: str = "mean"    # Sec. 3.3: average over the coupled parameters of a group
    scope: str = "global"            # official benchmark: --global-pruning
    sl: tuple[bool, ...] = (False, True)   # variants without / with group-sparse learning
    sparse_steps: int = 40           # paper: 100 epochs; here mini-batches (budget)
    sparse_reg: float = 5e-4         # paper CIFAR: reg 5e-4 (ImageNet 1e-4)
    sparse_alpha: float = 16.0       # paper: alpha = 16 (gamma in [1, 16])
    sparse_lr: float = 0.01          # paper: SGD lr 0.01, wd 0
    include_baselines: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "importance", ("l1", "l2", "taylor", "hessian", "random", "bn_scale", "lamp", "fpgm"))
        check_choice(self, "normalizer", ("mean", "max", "sum", "standarization", "gaussian", "lamp"))
        check_choice(self, "group_reduction", ("mean", "sum", "max", "prod", "first"))
        check_choice(self, "scope", SCOPES)
        check_positive(self, "sparse_reg", "sparse_alpha", "sparse_lr")
        if any(self.sl) and self.sparse_steps <= 0:
            raise ConfigError("sl=true needs sparse_steps > 0")


@register_method("depgraph")
class DepGraph(Method):
    version = 1
    Config = DepGraphConfig
    paper = {"title": "DepGraph: Towards Any Structural Pruning", "arxiv": "2301.12900",
             "code": "https://github.com/VainF/Torch-Pruning"}

    def variants(self, cfg: DepGraphConfig) -> list[Variant]:
        from baselines.pruning import BASELINE_NAMES

        out = [Variant("dense", kind="baseline")]
        for amount in cfg.amounts():
            for sl in cfg.sl:
                out.append(Variant(self.name, {**amount, **({"sl": True} if sl else {})}))
        if cfg.include_baselines:
            for b in cfg.baselines:
                if b == "bn_scale" and cfg.model not in WITH_BATCHNORM:
                    continue   # network slimming needs BatchNorm layers
                for amount in cfg.amounts():
                    out.append(Variant(BASELINE_NAMES[b], dict(amount), kind="baseline"))
        return out

    def spec(self, cfg: DepGraphConfig, defaults: Mapping[str, Any], params: Mapping[str, Any]) -> PruneSpec:
        values = dict(defaults)
        values.update(importance=cfg.importance, normalizer=cfg.normalizer, group_reduction=cfg.group_reduction,
                      scope=cfg.scope, sparse_reg=cfg.sparse_reg, sparse_alpha=cfg.sparse_alpha,
                      sparse_lr=cfg.sparse_lr, sparse_steps=cfg.sparse_steps if params.get("sl") else 0)
        if cfg.target != "ratio" and cfg.iterative_steps < 50:
            # official progressive pruning: fine steps of a linear schedule up to ratio 1.0 (paper: 400)
            raise ConfigError("target macs/params needs iterative_steps >= 50 (the paper uses 400)")
        return PruneSpec.from_params({k: v for k, v in params.items() if k != "sl"}, **values)

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        return prune_subject(subject, self.spec(subject.cfg, subject.defaults, params))
