"""Shared structural-pruning pipeline on Torch-Pruning (DepGraph, Isomorphic Pruning and their baselines).

One function, `prune(model, example_inputs, spec, calib)`, serves every pruning variant so that methods and
baselines differ only in their `PruneSpec` (importance criterion, ranking scope, target):

- importance: random, l1/l2 magnitude (classic per-layer: `group_reduction="first"`; DepGraph's group
  norm: `"mean"` over every coupled parameter), BN scaling (network slimming), first-order Taylor, Hessian
  (OBD diagonal);
- ranking scope: local (uniform ratio per layer), global (one threshold), isomorphic (one threshold per
  class of structurally identical groups; Torch-Pruning `isomorphic=True` with `global_pruning=True`);
- target: a channel ratio, or a MAC / parameter reduction reached by fine iterative steps (DepGraph's
  `progressive_pruning`: step until base/pruned >= target);
- attention heads: timm `Attention` head counts are passed to the pruner and written back afterwards
  (`num_heads`, `head_dim`, `attn_dim`, `scale`);
- optional group-sparsity training before pruning (`GroupNormPruner(reg, alpha)`, DepGraph Sec. 3.3).

Pruned models are saved as their dense architecture spec + the pruning plan (Torch-Pruning history and
head counts) + a safetensors state dict; `load_pruned` rebuilds the dense model, replays the plan and
loads the weights, so no pickle is involved.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError

IMPORTANCES = ("random", "l1", "l2", "bn_scale", "taylor", "hessian", "lamp", "fpgm")
SCOPES = ("local", "global", "isomorphic")
TARGETS = ("ratio", "macs", "params")


# ---------------------------------------------------------------------------------------------
# architectures (the dense models a pruning plan is replayed on)

class _BasicBlock(nn.Module):
    """CIFAR ResNet basic block (He et al. 2016, Sec. 4.2) with a 1x1-conv projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: 3 stages of n basic blocks, widths w, 2w, 4w.
    reconstruction: the DepGraph benchmark's ResNet-56 (0.86M params, 127.12M MACs with Torch-Pruning's
    counter) uses projection shortcuts; our counts are checked against those numbers in the paper track."""

    def __init__(self, depth: int = 56, num_classes: int = 10, width: int = 16, in_chans: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, w in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(n):
                blocks.append(_BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


_VGG_CFG = {19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]}


class CifarVGG(nn.Module):
    """VGG-BN for CIFAR: conv stages with max-pooling, global average pooling, one linear classifier.
    reconstruction: the layout of the DepGraph CIFAR benchmark's VGG-19 (single Linear(512, classes))."""

    def __init__(self, depth: int = 19, num_classes: int = 100, in_chans: int = 3):
        super().__init__()
        layers, cin = [], in_chans
        for v in _VGG_CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def _timm_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**kw)


def _timm_convnext(**kw):
    from timm.models.convnext import ConvNeXt

    if "depths" in kw:
        kw["depths"] = tuple(kw["depths"])
    if "dims" in kw:
        kw["dims"] = tuple(kw["dims"])
    return ConvNeXt(**kw)


def _timm_named(name: str, **kw):
    import timm

    return timm.create_model(name, pretrained=False, **kw)   # never downloads


ARCHS: dict[str, Callable[..., nn.Module]] = {
    "cifar_resnet": lambda **kw: CifarResNet(**kw),
    "cifar_vgg": lambda **kw: CifarVGG(**kw),
    "timm_vit": _timm_vit,
    "timm_convnext": _timm_convnext,
    "timm": _timm_named,
}


def build_arch(arch: Mapping[str, Any]) -> nn.Module:
    """`{"kind": "cifar_resnet", "kwargs": {...}}` -> a freshly initialised dense model."""
    kind = arch.get("kind")
    if kind not in ARCHS:
        raise ConfigError(f"unknown architecture kind {kind!r}; valid: {', '.join(sorted(ARCHS))}")
    return ARCHS[kind](**dict(arch.get("kwargs", {})))


# ---------------------------------------------------------------------------------------------
# the pruning specification

@dataclass(frozen=True)
class PruneSpec:
    importance: str = "l2"             # one of IMPORTANCES
    group_reduction: str = "mean"      # "first": classic layer-wise criterion; "mean"/"sum"/"max": DepGraph group score
    normalizer: str | None = "mean"    # per-group normalisation before global ranking ("max": DepGraph CIFAR)
    scope: str = "local"               # local | global | isomorphic
    target: str = "ratio"              # ratio | macs | params
    ratio: float = 0.5                 # channel pruning ratio (target == "ratio")
    speedup: float = 2.0               # base/pruned MACs or params (target == "macs" / "params")
    iterative_steps: int = 1           # ratio target: steps of the linear schedule; macs/params: step granularity
    max_pruning_ratio: float = 1.0
    round_to: int | None = None
    # attention (timm Attention modules)
    head_ratio: float = 0.0            # fraction of heads removed (prune_num_heads when > 0)
    head_dim_ratio: float | None = None  # own ratio for qkv head dims (one scope per attention); None = ratio
    prune_head_dims: bool = True
    # data-driven criteria / regularisation
    calib_batches: int = 4             # batches for Taylor / Hessian gradients
    sparse_steps: int = 0              # group-sparsity training steps before pruning (DepGraph SL); 0 = off
    sparse_reg: float = 5e-4
    sparse_alpha: float = 16.0
    sparse_lr: float = 0.01
    # depth pruning (Isomorphic Pruning ConvNext-4.2G: remove the least important blocks of stages[-2])
    drop_blocks: int = 0

    def __post_init__(self):
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"bad importance {self.importance!r}; allowed: {', '.join(IMPORTANCES)}")
        if self.scope not in SCOPES:
            raise ConfigError(f"bad scope {self.scope!r}; allowed: {', '.join(SCOPES)}")
        if self.target not in TARGETS:
            raise ConfigError(f"bad target {self.target!r}; allowed: {', '.join(TARGETS)}")
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"pruning ratio must be in [0, 1), got {self.ratio}")
        if self.target != "ratio" and self.speedup < 1.0:
            raise ConfigError(f"speedup target must be >= 1, got {self.speedup}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **defaults: Any) -> "PruneSpec":
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in defaults.items() if k in names}
        values.update({k: v for k, v in params.items() if k in names})
        return cls(**values)


class _HessianImportance:
    """Diagonal-Hessian (OBD, LeCun et al. 1989) group importance, 0.5 * H_ii * w_i^2 with the empirical
    Fisher sum of per-sample squared gradients. official: Torch-Pruning's GroupHessianImportance keys its
    accumulator by parameter but checks names, so it keeps only the last sample; we accumulate all.
    The accumulated squared gradients are parked in `param.grad`, which Torch-Pruning prunes together
    with the weights, so they stay aligned across iterative / progressive steps."""

    def __new__(cls, **kw):
        import torch_pruning as tp

        class _Fixed(tp.importance.GroupHessianImportance):
            model: nn.Module | None = None

            def accumulate_grad(self, model):
                for p in model.parameters():
                    if p.grad is not None:
                        g2 = p.grad.detach().pow(2)
                        if p in self._accu_grad:
                            self._accu_grad[p] += g2
                            self._counter[p] += 1
                        else:
                            self._accu_grad[p] = g2.clone()
                            self._counter[p] = 1

            def park(self, model):
                """Move the accumulators into .grad (pruned along with the weights)."""
                self.model = model
                counts = {p: self._counter.get(p, 1) for p in self._accu_grad}
                self._n = max(counts.values()) if counts else 1
                for p in model.parameters():
                    p.grad = self._accu_grad[p].clone() if p in self._accu_grad else None

            def __call__(self, group):
                if self.model is not None:
                    self._accu_grad = {p: p.grad for p in self.model.parameters() if p.grad is not None}
                    self._counter = {p: self._n for p in self._accu_grad}
                return super().__call__(group)

        return _Fixed(**kw)


class _KeepOneHead:
    """official (Isomorphic Pruning's pruner): global head ranking keeps at least the most important head
    of every attention. Torch-Pruning 1.6 can remove all heads of a block (num_heads 0, broken reshape);
    we add a large constant to the channels of each attention's best head so it always ranks above the
    global head threshold. Within one attention the shift is uniform, so head-dim ranking is unchanged."""

    BOOST = 1e6

    def __init__(self, inner: Any, qkv_layers: set, num_heads: dict):
        self.inner, self.qkv_layers, self.num_heads = inner, qkv_layers, num_heads
        for name in ("zero_grad", "accumulate_grad", "park"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def __call__(self, group):
        imp = self.inner(group)
        if imp is None:
            return imp
        qkv = [dep.target.module for dep, _ in group if dep.target.module in self.qkv_layers]
        if not qkv:
            return imp
        heads = self.num_heads.get(qkv[0], 0)
        if heads <= 1 or len(imp) % heads:
            return imp
        per_head = imp.view(heads, -1)
        best = per_head.mean(1).argmax()
        per_head = per_head.clone()
        per_head[best] += self.BOOST
        return per_head.view(-1)


def make_importance(spec: PruneSpec):
    """Torch-Pruning importance object for `spec` (GroupMagnitudeImportance etc., never the removed
    GroupNormImportance name)."""
    import torch_pruning as tp

    imp, red, norm = spec.importance, spec.group_reduction, spec.normalizer
    if imp == "random":
        return tp.importance.RandomImportance()
    if imp in ("l1", "l2"):
        return tp.importance.GroupMagnitudeImportance(p=1 if imp == "l1" else 2, group_reduction=red, normalizer=norm)
    if imp == "bn_scale":   # Network Slimming (Liu et al. 2017): |gamma| of the BatchNorm layers only
        return tp.importance.BNScaleImportance(group_reduction=red, normalizer=norm)
    if imp == "taylor":     # Molchanov et al. 2019: sum |w * dL/dw| over the group
        return tp.importance.GroupTaylorImportance(group_reduction=red, normalizer=norm)
    if imp == "hessian":
        return _HessianImportance(group_reduction=red, normalizer=norm)
    if imp == "lamp":
        return tp.importance.LAMPImportance(p=2, group_reduction=red)
    if imp == "fpgm":
        return tp.importance.FPGMImportance(p=2, group_reduction=red, normalizer=norm)
    raise ConfigError(f"bad importance {imp!r}")


def needs_gradients(spec: PruneSpec) -> bool:
    return spec.importance in ("taylor", "hessian")


# ---------------------------------------------------------------------------------------------
# model introspection

def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm Attention-like modules (fused `qkv` Linear + `num_heads`)."""
    out = []
    for name, m in model.named_modules():
        if hasattr(m, "qkv") and isinstance(getattr(m, "qkv"), nn.Linear) and hasattr(m, "num_heads"):
            out.append((name, m))
    return out


def classifier_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """Layers whose outputs are class logits (never pruned): every Linear with out_features == classes
    whose name looks like a head (head, head_dist, fc, classifier)."""
    out = []
    for name, m in model.named_modules():
        last = name.split(".")[-1] if name else ""
        if isinstance(m, nn.Linear) and m.out_features == num_classes and (
                last in ("head", "head_dist", "fc", "classifier") or "head" in name or "classifier" in name):
            out.append(m)
    if not out:   # fall back to the last Linear
        lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
        out = lins[-1:]
    return out


def fix_attention_heads(model: nn.Module, num_heads: Mapping[nn.Module, int] | None = None) -> dict[str, int]:
    """After pruning, make each attention's static attributes match its pruned qkv: num_heads from the
    pruner (or unchanged), head_dim = qkv_out / (3 heads), attn_dim, scale (Isomorphic Pruning's prune.py
    does the same). Returns {module name: num_heads}."""
    heads = {}
    for name, m in attention_modules(model):
        if num_heads is not None and m.qkv in num_heads:
            m.num_heads = int(num_heads[m.qkv])
        out = m.qkv.out_features
        if out % (3 * m.num_heads):
            raise RuntimeError(f"{name}: qkv has {out} outputs, not divisible by 3 x {m.num_heads} heads")
        m.head_dim = out // (3 * m.num_heads)
        if hasattr(m, "attn_dim"):
            m.attn_dim = m.num_heads * m.head_dim
        m.scale = m.head_dim ** -0.5
        # q_norm / k_norm (when present) are pruned with the head dims by Torch-Pruning's LayerNorm pruner
        heads[name] = m.num_heads
    return heads


def count(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """(MACs, params) with Torch-Pruning's counter (the papers' convention)."""
    import torch_pruning as tp

    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs), int(params)


# ---------------------------------------------------------------------------------------------
# calibration: gradients for Taylor / Hessian, group-sparsity training

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def _forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, (tuple, list)):   # distilled DeiT in train mode returns (cls, dist)
        out = (out[0] + out[1]) / 2
    return out


def accumulate_gradients(model: nn.Module, importance: Any, batches: Batches, spec: PruneSpec) -> int:
    """Gradients the criterion needs. Taylor: batch gradients summed over `calib_batches` batches without
    zero_grad in between (Isomorphic Pruning prune.py). Hessian: per-sample squared gradients."""
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()
    if spec.importance == "hessian":
        importance.zero_grad()
    n = 0
    for k, (x, y) in enumerate(batches):
        if k >= spec.calib_batches:
            break
        logits = _forward_logits(model, x)
        if spec.importance == "hessian":
            losses = F.cross_entropy(logits, y, reduction="none")
            for i, l in enumerate(losses):
                model.zero_grad(set_to_none=True)
                l.backward(retain_graph=i < len(losses) - 1)
                importance.accumulate_grad(model)
        else:
            F.cross_entropy(logits, y).backward()
        n += 1
    if spec.importance == "hessian":
        importance.park(model)
    model.train(was_training)
    return n


def sparse_train(model: nn.Module, pruner: Any, batches: Callable[[], Batches], spec: PruneSpec,
                 log: Callable[[str], None] = lambda s: None) -> int:
    """DepGraph group-sparse learning (Sec. 3.3): SGD on the task loss while `pruner.regularize` adds
    reg * gamma_k * w_k to every coupled slice's gradient, gamma_k = alpha^((I_max - I_k)/(I_max - I_min)).
    paper: 100 epochs lr 0.01 wd 0; here `sparse_steps` mini-batches (budget set in the config)."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=spec.sparse_lr, momentum=0.9)
    model.train()
    step = 0
    while step < spec.sparse_steps:
        for x, y in batches():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(_forward_logits(model, x), y).backward()
            pruner.regularize(model, alpha=spec.sparse_alpha) if _regularize_takes_alpha(pruner) else pruner.regularize(model)
            opt.step()
            step += 1
            if step >= spec.sparse_steps:
                break
    model.eval()
    log(f"[prune] group-sparse training: {step} steps, reg={spec.sparse_reg}, alpha={spec.sparse_alpha}")
    return step


def _regularize_takes_alpha(pruner: Any) -> bool:
    import inspect

    return "alpha" in inspect.signature(pruner.regularize).parameters


# ---------------------------------------------------------------------------------------------
# pruning

@dataclass
class PruneResult:
    history: list                      # Torch-Pruning pruning history (module name, out?, idxs)
    heads: dict[str, int]              # attention module -> num_heads after pruning
    base_macs: int
    base_params: int
    macs: int
    params: int
    steps: int
    scopes: dict[str, int] = field(default_factory=dict)   # ranking scope -> number of groups (isomorphic)
    sparse_steps: int = 0
    kept_blocks: dict[str, list[int]] = field(default_factory=dict)   # sequential path -> kept block indices

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("history")
        return d


def build_pruner(model: nn.Module, example_inputs: torch.Tensor, spec: PruneSpec, num_classes: int,
                 importance: Any = None, regularised: bool = False):
    """A Torch-Pruning pruner for `spec`. Graph tracing runs with autograd on (never under no_grad).
    Fresh dicts are passed for every mutable argument (Torch-Pruning shares default dicts)."""
    import torch_pruning as tp

    importance = importance if importance is not None else make_importance(spec)
    attns = attention_modules(model)
    num_heads = {m.qkv: int(m.num_heads) for _, m in attns}
    ratio_dict = {}
    head_dim_ratio = spec.head_dim_ratio
    prune_heads = spec.head_ratio > 0 and bool(attns)
    if prune_heads and head_dim_ratio is None and spec.scope != "local":
        # reconstruction: with global head ranking the kept-head guard below shifts each attention's
        # scores, so head dims get a per-attention scope (at the channel ratio / schedule) instead of
        # being ranked across attentions; the official DeiT scripts always give a head-dim ratio anyway
        head_dim_ratio = spec.ratio if spec.target == "ratio" else 1.0
    if prune_heads and spec.scope != "local":
        importance = _KeepOneHead(importance, {m.qkv for _, m in attns}, num_heads)
    if attns and head_dim_ratio is not None:
        # official (Isomorphic Pruning prune.py): one pruning_ratio_dict entry per attention (own scope). Keyed by
        # the qkv Linear, not the whole Attention: a key on the Attention would also capture proj, whose
        # output channels belong to the embedding group, and give the embedding dim the head-dim ratio
        for _, m in attns:
            ratio_dict[m.qkv] = head_dim_ratio
    by_ratio = spec.target == "ratio"
    kw = dict(
        importance=importance,
        global_pruning=spec.scope in ("global", "isomorphic"),
        isomorphic=spec.scope == "isomorphic",
        pruning_ratio=spec.ratio if by_ratio else 1.0,
        pruning_ratio_dict=ratio_dict or None,
        max_pruning_ratio=spec.max_pruning_ratio,
        iterative_steps=spec.iterative_steps,
        ignored_layers=classifier_layers(model, num_classes),
        round_to=spec.round_to,
        num_heads=num_heads,
        prune_num_heads=spec.head_ratio > 0,
        prune_head_dims=spec.prune_head_dims,
        head_pruning_ratio=spec.head_ratio,
        in_channel_groups={},
        out_channel_groups={},
        channel_groups={},
    )
    if regularised:
        return tp.pruner.GroupNormPruner(model, example_inputs, reg=spec.sparse_reg, alpha=spec.sparse_alpha, **kw)
    return tp.pruner.BasePruner(model, example_inputs, **kw)


def isomorphic_scopes(pruner: Any) -> dict[str, list]:
    """The ranking scopes Torch-Pruning's isomorphic mode would form: signature -> list of groups.
    Signature = the sequence of (source type, target type, in/out) over the group's dependencies
    (Isomorphic Pruning Sec. 3.2: groups are isomorphic iff their dependency graphs match node-for-node)."""
    out: dict[str, list] = {}
    DG = pruner.DG
    for group in DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        is_attn, _ = pruner._is_atten_group(group)
        if is_attn:
            group = pruner._downstream_node_as_root_if_attention(group)
            if group is None:
                continue
        tag = []
        for dep, _ in group:
            side = "out" if DG.is_out_channel_pruning_fn(dep.handler) else "in"
            tag.append(f"{type(dep.source.module).__name__}_{side}->{type(dep.target.module).__name__}_{side}")
        out.setdefault("|".join(tag), []).append(group)
    return out


def _block_container(model: nn.Module) -> tuple[str, nn.Sequential]:
    stages = getattr(model, "stages", None)
    if stages is None or not hasattr(stages[-2], "blocks"):
        raise ConfigError("drop_blocks needs a timm ConvNeXt-style model (stages[-2].blocks)")
    return f"stages.{len(stages) - 2}.blocks", stages[-2].blocks


def block_scores(blocks: nn.Sequential) -> torch.Tensor:
    """official (Isomorphic Pruning prune.py, --remove-layers): a block's importance is the mean over its
    parameters of mean |w * grad|. The means run over the parameters as they are *after* width pruning:
    removing a block's low-|w*g| channels raises its score, so the surviving blocks tend to be the ones the
    width step narrowed most."""
    scores = []
    for b in blocks:
        vals = [(p.grad * p).abs().mean() for p in b.parameters() if p.grad is not None]
        scores.append(torch.stack(vals).mean() if vals else torch.tensor(0.0))
    return torch.stack(scores).detach()


def drop_blocks(model: nn.Module, spec: PruneSpec, calib: Callable[[], Batches] | None) -> dict[str, list[int]]:
    """official (Isomorphic Pruning prune.py, --remove-layers, ConvNext-4.2G): after width pruning, score each
    block of stages[-2] (`block_scores`) and keep the `n - drop_blocks` most important ones in their original
    order. official: the scores use the Taylor gradients accumulated on the dense model for the width step,
    which Torch-Pruning slices together with the weights; they are used as they are when every block
    parameter still carries one. reconstruction: otherwise (a non-Taylor width criterion, for which the
    official script has no gradients and fails) Taylor gradients are taken on the width-pruned model."""
    path, blocks = _block_container(model)
    n = len(blocks)
    if spec.drop_blocks >= n:
        raise ConfigError(f"cannot drop {spec.drop_blocks} of {n} blocks")
    params = [p for b in blocks for p in b.parameters()]
    reuse = spec.importance == "taylor" and all(p.grad is not None and p.grad.shape == p.shape for p in params)
    if not reuse:
        if calib is None:
            raise ConfigError("drop_blocks needs calibration batches (block importance is Taylor)")
        model.zero_grad(set_to_none=True)
        accumulate_gradients(model, None, calib(), PruneSpec(importance="taylor", calib_batches=spec.calib_batches))
    order = torch.argsort(block_scores(blocks), descending=True, stable=True)
    keep = sorted(order[: n - spec.drop_blocks].tolist())
    _set_blocks(model, path, keep)
    model.zero_grad(set_to_none=True)
    return {path: keep}


def _set_blocks(model: nn.Module, path: str, keep: list[int]) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    blocks = getattr(parent, attr)
    setattr(parent, attr, nn.Sequential(*[blocks[i] for i in keep]))


def _as_json_history(history: list) -> list:
    out = []
    for name, is_out, idxs in history:
        idxs = idxs.tolist() if torch.is_tensor(idxs) else [int(i) for i in idxs]
        out.append([str(name), bool(is_out), idxs])
    return out


def prune(model: nn.Module, example_inputs: torch.Tensor, spec: PruneSpec, num_classes: int,
          calib: Callable[[], Batches] | None = None, log: Callable[[str], None] = lambda s: None,
          max_steps: int = 2000, sparse_batches: Callable[[], Batches] | None = None) -> PruneResult:
    """Prune `model` in place according to `spec`. `calib()` yields the (x, y) batches Taylor / Hessian
    gradients are taken on; `sparse_batches()` the training batches of group-sparse training (default calib)."""
    model.eval()
    base_macs, base_params = count(model, example_inputs)
    importance = make_importance(spec)
    sparse_done = 0
    if spec.sparse_steps > 0:
        sparse_batches = sparse_batches or calib
        if sparse_batches is None:
            raise ConfigError("group-sparse training needs training batches")
        reg_pruner = build_pruner(model, example_inputs, spec, num_classes, importance=make_importance(
            PruneSpec(importance="l2", group_reduction=spec.group_reduction, normalizer=None)), regularised=True)
        sparse_done = sparse_train(model, reg_pruner, sparse_batches, spec, log)
        del reg_pruner
    pruner = build_pruner(model, example_inputs, spec, num_classes, importance=importance)
    grads = needs_gradients(spec)
    if grads and calib is None:
        raise ConfigError(f"importance {spec.importance!r} needs calibration batches")

    if grads:
        # gradients once, on the dense model (Isomorphic Pruning prune.py); Torch-Pruning prunes .grad with
        # the weights, so iterative / progressive steps keep using aligned gradients
        accumulate_gradients(model, importance, calib(), spec)

    head_schedule = list(pruner.per_step_head_pruning_ratio)
    qkv_layers = [m.qkv for _, m in attention_modules(model)]
    init_heads = {q: pruner.num_heads[q] for q in qkv_layers}

    def one_step():
        if spec.head_ratio > 0 and spec.scope != "local" and qkv_layers:
            # official: Torch-Pruning 1.6 crashes (unbound head threshold) on a global step whose head
            # schedule removes no head; such steps get head ratio 0 (heads are removed on later steps)
            nxt = pruner.current_step + 1
            if nxt < len(head_schedule):
                now = sum(pruner.num_heads[q] for q in qkv_layers)
                n_removed = now - int(pruner.initial_total_heads * (1 - head_schedule[nxt]))
                pruner.per_step_head_pruning_ratio[nxt] = head_schedule[nxt] if n_removed > 0 else 0.0
        if spec.head_ratio > 0 and spec.scope == "local" and qkv_layers:
            # official: Torch-Pruning 1.6's local head pruning removes ceil(r_step * current heads) on every
            # step, i.e. at least one head per step (all heads after a few iterative steps). We give each
            # attention the per-step ratio that removes exactly floor(r_step * initial) heads in total,
            # never the last head.
            nxt = pruner.current_step + 1
            if nxt < len(head_schedule):
                for q in qkv_layers:
                    init, cur = init_heads[q], pruner.num_heads[q]
                    k = min(int(head_schedule[nxt] * init + 1e-9) - (init - cur), cur - 1)
                    sched = pruner.head_pruning_ratio_dict.setdefault(q, list(head_schedule))
                    sched[nxt] = (k - 0.5) / cur if k > 0 else 0.0
        for g in pruner.step(interactive=True) or ():
            g.prune()
        fix_attention_heads(model, pruner.num_heads)   # keep the model runnable between steps

    steps = 0
    if spec.target == "ratio":
        for _ in range(spec.iterative_steps):
            one_step()
            steps += 1
    else:
        # DepGraph benchmark's progressive pruning: fine steps of a linear schedule up to ratio 1.0,
        # stop as soon as base/pruned >= target (paper: 400 steps; overshoot is one step at most)
        while steps < min(spec.iterative_steps, max_steps):
            one_step()
            steps += 1
            macs, params = count(model, example_inputs)
            cur = base_macs / macs if spec.target == "macs" else base_params / params
            if cur >= spec.speedup:
                break
        else:
            log(f"[prune] target {spec.target} x{spec.speedup} not reached after {steps} steps")
    heads = fix_attention_heads(model, pruner.num_heads)
    dropped = {}
    if spec.drop_blocks > 0:
        # official: before the gradients are cleared (the depth step reuses the width step's Taylor gradients)
        dropped = drop_blocks(model, spec, calib)
    if grads:
        model.zero_grad(set_to_none=True)
    scopes = {}
    if spec.scope == "isomorphic":
        # signatures are long and share prefixes (one residual class per stage): shortened + a digest, so
        # distinct classes never collapse into one key of the record
        scopes = {f"{k[:64]}#{hashlib.sha1(k.encode()).hexdigest()[:8]}": len(v)
                  for k, v in isomorphic_scopes(pruner).items()}
    history = _as_json_history(pruner.pruning_history())
    del pruner
    model.zero_grad(set_to_none=True)
    macs, params = count(model, example_inputs)
    return PruneResult(history, heads, base_macs, base_params, macs, params, steps, scopes, sparse_done, dropped)


# ---------------------------------------------------------------------------------------------
# save / load (dense arch + plan + safetensors; no pickle)

PLAN_VERSION = 1


def replay(model: nn.Module, example_inputs: torch.Tensor, history: list, heads: Mapping[str, int],
           kept_blocks: Mapping[str, list[int]] | None = None) -> nn.Module:
    """Apply a recorded pruning plan to a dense model of the same architecture."""
    import torch_pruning as tp

    DG = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    DG.load_pruning_history([(n, o, list(i)) for n, o, i in history])
    mods = dict(model.named_modules())
    for name, h in heads.items():
        mods[name].num_heads = int(h)
    fix_attention_heads(model)
    for path, keep in (kept_blocks or {}).items():
        _set_blocks(model, path, list(keep))
    return model


def save_pruned(model: nn.Module, path: str | Path, arch: Mapping[str, Any], input_shape: list[int],
                result: PruneResult, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `<path>` (safetensors state dict) with the plan in its metadata."""
    from .safeio import save_tensors

    path = Path(path)
    plan = {"plan_version": PLAN_VERSION, "arch": dict(arch), "input_shape": list(input_shape),
            "history": result.history, "heads": result.heads,
            "kept_blocks": result.kept_blocks}
    meta = {"plan": plan, "extra": dict(extra or {})}
    save_tensors(model.state_dict(), path, meta)
    return path


def load_pruned(path: str | Path) -> nn.Module:
    """Rebuild a model saved by `save_pruned`: dense architecture, replayed plan, saved weights."""
    from .safeio import load_tensors, read_metadata

    meta = read_metadata(Path(path))
    plan = meta["plan"]
    if plan.get("plan_version") != PLAN_VERSION:
        raise ConfigError(f"{path}: unsupported pruning plan version {plan.get('plan_version')}")
    model = build_arch(plan["arch"]).eval()
    replay(model, torch.randn(*plan["input_shape"]), plan["history"], plan["heads"], plan.get("kept_blocks"))
    state = load_tensors(Path(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise RuntimeError(f"{path}: state dict does not match the replayed plan (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    return model.eval()


def prune_subject(subject: Any, spec: PruneSpec) -> Any:
    """Prune a task subject (benchmarks.tasks.classification.PruneSubject) in place; the one code path
    shared by every pruning method and baseline."""
    sparse = None
    if spec.sparse_steps > 0:
        batches = subject.train_batches(spec.sparse_steps)
        sparse = lambda: batches  # noqa: E731
    subject.result = prune(subject.model, subject.example_inputs, spec, subject.num_classes,
                           calib=subject.calib, log=subject.log, sparse_batches=sparse)
    return subject
