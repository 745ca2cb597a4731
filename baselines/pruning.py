"""Classic structural-pruning criteria, run through the same Torch-Pruning pipeline as DepGraph and
Isomorphic Pruning (benchmarks.pruning.prune_subject), so a comparison differs only in the criterion.

Each baseline ranks channels by its criterion on the pruned layer itself (`group_reduction="first"`: the
classic layer-wise criterion, not DepGraph's group score) within the scope `cfg.baseline_scope` (local =
a uniform ratio per layer, as in the original papers). Variant params: `ratio` or `speedup`.
- vision_random:   uniform random channels
- vision_l1:       L1 norm of filters (Li et al., ICLR 2017, "Pruning Filters for Efficient ConvNets")
- vision_l2:       L2 norm of filters
- vision_bn_scale: |gamma| of BatchNorm (Liu et al., ICCV 2017, "Network Slimming"); BN models only
- vision_taylor:   first-order Taylor |w * dL/dw| (Molchanov et al., CVPR 2019)
- vision_hessian:  diagonal Hessian / OBD (LeCun et al., NeurIPS 1989), empirical Fisher
"""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline
from benchmarks.pruning import PruneSpec, prune_subject


class _CriterionBaseline(Baseline):
    importance = "l2"

    def spec(self, subject: Any, params: Mapping[str, Any]) -> PruneSpec:
        cfg = subject.cfg
        values = dict(subject.defaults)
        values.update(importance=self.importance, group_reduction="first", normalizer="mean",
                      scope=getattr(cfg, "baseline_scope", "local"))
        return PruneSpec.from_params(params, **values)

    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        return prune_subject(subject, self.spec(subject, params))


@register_baseline("vision_random")
class RandomChannels(_CriterionBaseline):
    importance = "random"


@register_baseline("vision_l1")
class L1Filters(_CriterionBaseline):
    importance = "l1"


@register_baseline("vision_l2")
class L2Filters(_CriterionBaseline):
    importance = "l2"


@register_baseline("vision_bn_scale")
class BNScaling(_CriterionBaseline):
    importance = "bn_scale"


@register_baseline("vision_taylor")
class Taylor(_CriterionBaseline):
    importance = "taylor"


@register_baseline("vision_hessian")
class Hessian(_CriterionBaseline):
    importance = "hessian"


BASELINE_NAMES = {"random": "vision_random", "l1": "vision_l1", "l2": "vision_l2", "bn_scale": "vision_bn_scale",
                  "taylor": "vision_taylor", "hessian": "vision_hessian"}
