"""Diff-Pruning core (Fang et al., NeurIPS'23, arXiv 2305.10924): timestep-thresholded Taylor importance
and channel pruning of a diffusers `UNet2DModel` through Torch-Pruning, plus a shape-driven save/load of
pruned UNets (safetensors; no pickles).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

IMPORTANCES = ("diff_pruning", "taylor", "magnitude", "random")


# ------------------------------------------------------------------ the threshold rule (paper Sec. 4.2, Eq. 10)

def threshold_steps(losses: Sequence[float], threshold: float) -> list[int]:
    """Indices of the timesteps whose gradients Diff-Pruning accumulates, given the per-step losses in
    the order they are visited (t = 0, 1, 2, ...: the official loop starts at the least noisy step).

    official: the gradient of step k is accumulated *before* the check, and the loop stops at the first
    k with L_k < T * max_{j<=k} L_j; that step is therefore included. T = 0 keeps every step.
    """
    kept, lmax = [], float("-inf")
    for k, loss in enumerate(losses):
        kept.append(k)
        lmax = max(lmax, float(loss))
        if threshold > 0 and loss < threshold * lmax:
            break
    return kept


def accumulate_gradients(unet: torch.nn.Module, scheduler: Any, x0: torch.Tensor, *, threshold: float | None,
                         timesteps: Sequence[int], seed: int = 0, bar: Callable | None = None) -> dict:
    """Accumulate d L_t / d theta over `timesteps` (in order) on one fixed batch `x0` and one fixed noise
    (paper Alg. 1). `threshold` None visits every step (the "Taylor over all steps" baseline); otherwise
    the loop stops by `threshold_steps`. Gradients are left in `p.grad`. Returns the visited steps/losses.
    """
    from benchmarks.diffusion_train import _target, train_scheduler

    sched = train_scheduler(scheduler)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen)
    unet.zero_grad(set_to_none=True)
    losses, used = [], []
    lmax = float("-inf")
    it = bar(timesteps, desc="taylor") if bar is not None else timesteps
    for t in it:
        tt = torch.full((len(x0),), int(t), dtype=torch.long)
        noisy = sched.add_noise(x0, noise, tt)
        loss = F.mse_loss(unet(noisy, tt).sample, _target(sched, x0, noise, tt))
        loss.backward()
        value = float(loss.detach())
        losses.append(value)
        used.append(int(t))
        lmax = max(lmax, value)
        if threshold is not None and threshold > 0 and value < threshold * lmax:
            break
    return {"timesteps": used, "losses": losses}


# ------------------------------------------------------------------ pruning

def example_inputs(unet: torch.nn.Module, batch: int = 1) -> dict:
    c, s = unet.config.in_channels, unet.config.sample_size
    s = s if isinstance(s, int) else s[0]
    return {"sample": torch.randn(batch, c, s, s), "timestep": torch.ones((batch,), dtype=torch.long)}


def importance(kind: str):
    import torch_pruning as tp

    if kind == "diff_pruning":
        return tp.importance.GroupTaylorImportance(multivariable=False)   # paper: sum_i |w_i g_i|
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance(multivariable=True)    # |sum_i w_i g_i|
    if kind == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "random":
        return tp.importance.RandomImportance()
    raise ValueError(f"unknown importance {kind!r}; allowed: {', '.join(IMPORTANCES)}")


def attention_modules(unet: torch.nn.Module):
    from diffusers.models.attention_processor import Attention

    return [m for m in unet.modules() if isinstance(m, Attention)]


def prune_unet(unet: torch.nn.Module, ratio: float, kind: str, inputs: dict | None = None) -> torch.nn.Module:
    """One-shot local channel pruning of a UNet2DModel in place (gradients must already be in p.grad for
    the Taylor importances). Attention keeps its head count (head_dim shrinks); GroupNorm groups stay
    consistent (Torch-Pruning prunes whole groups); `conv_out` is ignored so the output keeps its channels.
    """
    import torch_pruning as tp

    inputs = inputs or example_inputs(unet)
    num_heads = {}
    for a in attention_modules(unet):
        for lin in (a.to_q, a.to_k, a.to_v):
            num_heads[lin] = a.heads
    pruner = tp.pruner.BasePruner(
        unet, inputs, importance=importance(kind), pruning_ratio=ratio, ignored_layers=[unet.conv_out],
        num_heads=num_heads, prune_num_heads=False, prune_head_dims=True, global_pruning=False,
    )
    for g in pruner.step(interactive=True):
        g.prune()
    fix_attributes(unet)
    unet.zero_grad(set_to_none=True)
    return unet


def fix_attributes(unet: torch.nn.Module) -> None:
    """Static attributes Torch-Pruning does not know about (paper code: Upsample2D/Downsample2D.channels)."""
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

    for m in unet.modules():
        if isinstance(m, (Upsample2D, Downsample2D)):
            conv = getattr(m, "conv", None)
            if isinstance(conv, torch.nn.Conv2d):
                m.channels, m.out_channels = conv.in_channels, conv.out_channels
            elif isinstance(m, Downsample2D) and not m.use_conv:
                pass   # avg-pool downsampler: channel-agnostic
        elif isinstance(m, ResnetBlock2D):
            m.in_channels, m.out_channels = m.conv1.in_channels, m.conv2.out_channels
    for a in attention_modules(unet):
        a.inner_dim = a.to_q.out_features
        a.inner_kv_dim = a.to_k.out_features
        a.query_dim = a.to_q.in_features
        a.out_dim = a.to_out[0].out_features


# ------------------------------------------------------------------ save / load pruned models

def _shrink_to(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give every parameter/buffer of `model` the shape it has in `state`, then fix layer attributes."""
    for name, tensor in state.items():
        mod_name, _, attr = name.rpartition(".")
        mod = model.get_submodule(mod_name) if mod_name else model
        old = getattr(mod, attr, None)
        if old is None or old.shape == tensor.shape:
            continue
        new = torch.empty_like(tensor)
        if isinstance(old, torch.nn.Parameter):
            setattr(mod, attr, torch.nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            mod._buffers[attr] = new
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.out_channels, m.in_channels = m.weight.shape[0], m.weight.shape[1] * m.groups
        elif isinstance(m, torch.nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, torch.nn.GroupNorm) and m.weight is not None:
            m.num_channels = m.weight.shape[0]
        elif isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
            m.normalized_shape = tuple(m.weight.shape)
    fix_attributes(model)


def save_pruned(unet: torch.nn.Module, path: Path, extra: dict | None = None) -> Path:
    """state_dict -> safetensors with the unpruned architecture's config in the metadata."""
    from benchmarks.safeio import save_module

    path = Path(path)
    save_module(unet, path, config={"class": type(unet).__name__, "config": dict(unet.config), **(extra or {})})
    return path


def load_pruned(path: Path) -> torch.nn.Module:
    """Rebuild a pruned diffusers model saved by `save_pretrained`-incompatible pruning: build the original
    architecture from the stored config, shrink every tensor to its stored shape, load the weights."""
    import diffusers

    from benchmarks.safeio import load_tensors, read_metadata

    meta = read_metadata(path)["config"]
    cls = getattr(diffusers, meta["class"])
    cfg = {k: v for k, v in meta["config"].items() if not k.startswith("_")}
    model = cls.from_config(cfg)
    state = load_tensors(path)
    _shrink_to(model, state)
    model.load_state_dict(state, strict=True)
    return model.eval()
