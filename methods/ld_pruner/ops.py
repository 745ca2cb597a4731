"""LD-Pruner core (Castells et al., CVPR'24 EDGE workshop, arXiv 2404.11936; no official code).

reconstruction (the paper leaves the operator set, replacements and budget open):
- operators of a diffusers `UNet2DConditionModel`: every `ResnetBlock2D` (without built-in up/down
  sampling) and, inside every `BasicTransformerBlock`, `attn1` (self-attention), `attn2` (cross-attention)
  and `ff` (feed-forward);
- single-operator change = removal: a resnet becomes its shortcut path (identity, or its 1x1
  `conv_shortcut` where the channel count changes: the "cheaper replacement"), attn1/attn2/ff return zeros
  so their residual branch vanishes (the block's norms stay);
- score (paper Eq. 1-2): with the unchanged sampler, final latents of k fixed seeds/prompts;
  ||mean_k(L_orig) - mean_k(L_mod)||_2 + ||std_k(L_orig) - std_k(L_mod)||_2;
- budget: remove the lowest-scoring operators until the removed parameters reach `target` x U-Net params.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

KINDS = ("resnet", "attn1", "attn2", "ff", "transformer")


class ResnetShortcut(nn.Module):
    """A ResnetBlock2D reduced to its shortcut path: (shortcut(x)) / output_scale_factor."""

    def __init__(self, res: nn.Module):
        super().__init__()
        self.conv_shortcut = res.conv_shortcut if getattr(res, "conv_shortcut", None) is not None else None
        self.output_scale_factor = float(res.output_scale_factor)

    def forward(self, input_tensor, temb=None, *args, **kwargs):
        x = self.conv_shortcut(input_tensor) if self.conv_shortcut is not None else input_tensor
        return x / self.output_scale_factor if self.output_scale_factor != 1 else x


class ZeroBranch(nn.Module):
    """A removed residual branch (attention or feed-forward): contributes zeros."""

    def forward(self, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states)


class IdentityTransformer(nn.Module):
    """A removed Transformer2DModel (BK-SDM-style block removal): returns its input."""

    def forward(self, hidden_states, *args, return_dict: bool = True, **kwargs):
        if return_dict:
            from diffusers.models.modeling_outputs import Transformer2DModelOutput

            return Transformer2DModelOutput(sample=hidden_states)
        return (hidden_states,)


def operators(unet: nn.Module) -> list[tuple[str, str]]:
    """(module path, kind) of every prunable operator, in module order."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D

    out = []
    for name, m in unet.named_modules():
        if isinstance(m, ResnetBlock2D) and not (m.up or m.down):
            out.append((name, "resnet"))
        elif isinstance(m, BasicTransformerBlock):
            for sub in ("attn1", "attn2", "ff"):
                if getattr(m, sub, None) is not None:
                    out.append((f"{name}.{sub}", sub))
    return out


def replacement(module: nn.Module, kind: str) -> nn.Module:
    if kind == "resnet":
        return ResnetShortcut(module)
    if kind in ("attn1", "attn2", "ff"):
        return ZeroBranch()
    if kind == "transformer":
        return IdentityTransformer()
    raise ValueError(f"unknown operator kind {kind!r}")


def _parent(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent, _, attr = path.rpartition(".")
    return (root.get_submodule(parent) if parent else root), attr


def swap(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put `new` at `path` (ModuleList indices included); return the old module."""
    parent, attr = _parent(root, path)
    old = parent.get_submodule(attr) if not attr.isdigit() else parent[int(attr)]
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)
    return old


def removed_params(module: nn.Module, kind: str) -> int:
    rep = replacement(module, kind)
    kept = {id(p) for p in rep.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in kept)


def remove(unet: nn.Module, plan: Iterable[tuple[str, str]]) -> nn.Module:
    """Apply a removal plan in place."""
    for path, kind in plan:
        swap(unet, path, replacement(unet.get_submodule(path), kind))
    return unet


# ------------------------------------------------------------------ the score

def latent_score(ref: torch.Tensor, mod: torch.Tensor) -> float:
    """||mean_k(ref) - mean_k(mod)||_2 + ||std_k(ref) - std_k(mod)||_2 over the k sampled latents (dim 0)."""
    ref, mod = ref.double(), mod.double()
    d_mean = torch.linalg.vector_norm(ref.mean(0) - mod.mean(0))
    d_std = torch.linalg.vector_norm(ref.std(0) - mod.std(0))
    return float(d_mean + d_std)


def score_operators(unet: nn.Module, sample_latents: Callable[[], torch.Tensor], ops: list[tuple[str, str]],
                    bar: Callable | None = None) -> dict[str, float]:
    """Score each operator by swapping it out alone (in place, restored after), sampling, comparing latents."""
    with torch.inference_mode():
        ref = sample_latents()
    scores = {}
    it = bar(ops, desc="ld-score") if bar is not None else ops
    for path, kind in it:
        old = swap(unet, path, replacement(unet.get_submodule(path), kind))
        try:
            with torch.inference_mode():
                scores[path] = latent_score(ref, sample_latents())
        finally:
            swap(unet, path, old)
    return scores


def select(unet: nn.Module, scores: dict[str, float], ops: list[tuple[str, str]], target: float,
           order: list[str] | None = None) -> list[tuple[str, str]]:
    """Remove operators in `order` (default: ascending score) until removed params >= target * params."""
    total = sum(p.numel() for p in unet.parameters())
    kind = dict(ops)
    order = order if order is not None else sorted(scores, key=lambda k: (scores[k], k))
    plan, removed = [], 0
    for path in order:
        if removed >= target * total:
            break
        plan.append((path, kind[path]))
        removed += removed_params(unet.get_submodule(path), kind[path])
    return plan


# ------------------------------------------------------------------ BK-SDM-style block removal (baseline)

def bk_sdm_plan(unet: nn.Module, variant: str = "base") -> list[tuple[str, str]]:
    """BK-SDM (Kim et al. 2023) block removal transposed to any SD-like U-Net: remove the last
    (resnet, attention) pair of every down stage with >= 2 pairs and the middle pair of every up stage (the
    second where an up stage has only 2 pairs) ('base'); 'small' also removes the mid-block. Removed resnets become their shortcut, removed
    attentions (Transformer2DModel) the identity. reconstruction: BK-SDM deletes the layers and drops
    the matching skip tensors; here the skip count is kept (identity/shortcut in place)."""
    plan: list[tuple[str, str]] = []

    def pair(prefix: str, block: nn.Module, j: int):
        plan.append((f"{prefix}.resnets.{j}", "resnet"))
        attns = getattr(block, "attentions", None)
        if attns is not None and j < len(attns):
            plan.append((f"{prefix}.attentions.{j}", "transformer"))

    for i, b in enumerate(unet.down_blocks):
        if len(b.resnets) >= 2:
            pair(f"down_blocks.{i}", b, len(b.resnets) - 1)
    for i, b in enumerate(unet.up_blocks):
        if len(b.resnets) >= 2:          # SD: 3 pairs -> the middle one; 1-layer U-Nets (2 up pairs): the second
            pair(f"up_blocks.{i}", b, 1)
    if variant == "small" and unet.mid_block is not None:
        for j in range(len(unet.mid_block.resnets)):
            plan.append((f"mid_block.resnets.{j}", "resnet"))
        for j in range(len(getattr(unet.mid_block, "attentions", []) or [])):
            plan.append((f"mid_block.attentions.{j}", "transformer"))
    return plan


# ------------------------------------------------------------------ save / load

def save_removed(unet: nn.Module, plan: list[tuple[str, str]], path: Path) -> Path:
    from benchmarks.safeio import save_module

    save_module(unet, Path(path), config={"class": type(unet).__name__, "config": dict(unet.config),
                                          "plan": [list(p) for p in plan]})
    return Path(path)


def load_removed(path: Path) -> nn.Module:
    import diffusers

    from benchmarks.safeio import load_tensors, read_metadata

    meta = read_metadata(path)["config"]
    cls = getattr(diffusers, meta["class"])
    model = cls.from_config({k: v for k, v in meta["config"].items() if not k.startswith("_")})
    remove(model, [tuple(p) for p in meta["plan"]])
    model.load_state_dict(load_tensors(path), strict=True)
    return model.eval()
