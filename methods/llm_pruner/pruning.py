"""LLM-Pruner's structural pruning of Llama models (Ma, Fang, Wang, NeurIPS'23, arXiv 2305.11627).

Three steps (paper Sec. 3): discover the coupled structures, estimate group importance, prune.

1. **Discovery** (Sec. 3.1). Structures in a Llama decoder layer are fixed by the architecture, so they
   are written down here instead of traced (official: Torch-Pruning's dependency graph, which hangs on
   grouped-query attention and on the KV cache, papers.md 0/9; the groups below are the ones it finds):
   - attention: one group per KV head = its k/v rows, the rows of the query heads that read it and the
     matching o_proj columns. With MHA (1 query head per KV head) this is LLM-Pruner's head group
     (root q_proj, `consecutive_groups=head_dim`); with GQA it is the official llama3.py rule (root
     k_proj, whole KV heads removed with their query heads).
   - MLP: one group per intermediate channel = gate_proj row, up_proj row, down_proj column.
   - hidden channel (the "channel" strategy): one group per hidden dimension across embeddings, every
     projection's input/output, every RMSNorm and lm_head.
2. **Importance** (Sec. 3.2, Eq. 2-5), from gradients of the LM loss on a few calibration samples:
   `element1` (official `param_first`): s = w*g, channel score sum|s|;
   `element2` (`param_mix`): s = w*g - 1/2 w*F*w, F = mean of per-sample squared gradients (Fisher
   approximation of the Hessian diagonal), channel score sum|s|;
   `vector` (`vectorize`): channel score |sum(w*g)|;
   plus the baselines `l2` (sum w^2, Torch-Pruning MagnitudeImportance p=2) and `random`.
   Group scores are aggregated over the group's members with `sum` (paper default), `mean`, `max`,
   `prod`, `first` (root only) or `last` (last member only, the paper's "last-only").
3. **Pruning**: block-wise, local per layer: in layers [layer_start, layer_end) remove
   `n - int(n * (1 - ratio))` lowest-scored head groups and MLP channels (Torch-Pruning's count), with
   Torch-Pruning's low-level prune functions. The channel strategy removes hidden dimensions from every
   layer. The config is updated so the model saves and reloads (see model.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch_pruning as tp
from torch import nn

CRITERIA = ("element1", "element2", "vector", "l2", "random", "structure")
AGGREGATIONS = ("sum", "mean", "max", "prod", "first", "last")
STRATEGIES = ("block", "channel")


@dataclass
class Member:
    """One weight in a coupled group: `axis` = "out" (rows of a Linear weight) or "in" (columns)."""

    module: nn.Module
    axis: Literal["out", "in"]
    name: str = ""


# ---------------------------------------------------------------------------------------------
# calibration: gradients (and the Fisher diagonal for element2)

def calibrate(model: nn.Module, samples: torch.Tensor, criterion: str) -> dict:
    """Gradients of the LM loss on `samples` [N, L] (paper Sec. 3.2). For `element2`, also the mean of
    per-sample squared gradients (official hf_prune.py: acc_grad += g_j^2 / N over single samples).
    Returns {"grad": {param: g}, "fisher": {param: F}} for the Linear weights."""
    if criterion not in ("element1", "element2", "vector"):
        return {}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weights = [m.weight for m in linears]
    was_training = model.training
    model.eval()   # official: dropout-free Llama, eval mode is identical in forward
    req = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
    fisher = {}
    try:
        with torch.enable_grad():
            if criterion == "element2":
                n = len(samples)
                for j in range(n):
                    x = samples[j:j + 1]
                    model.zero_grad(set_to_none=True)
                    model(input_ids=x, labels=x, use_cache=False).loss.backward()
                    for w in weights:
                        g2 = w.grad.detach() ** 2 / n
                        fisher[w] = fisher[w] + g2 if w in fisher else g2
            model.zero_grad(set_to_none=True)
            model(input_ids=samples, labels=samples, use_cache=False).loss.backward()
            grads = {w: w.grad.detach().clone() for w in weights}
    finally:
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(req[id(p)])
        model.train(was_training)
    return {"grad": grads, "fisher": fisher}


def _channel_scores(m: Member, criterion: str, calib: dict) -> torch.Tensor:
    """Per-channel local importance of one member (official TaylorImportance.__call__)."""
    w = m.module.weight.detach().float()
    red = 1 if m.axis == "out" else 0            # Linear weight is [out, in]
    if isinstance(m.module, nn.Embedding):       # embedding weight is [vocab, hidden]; channel = column
        red = 0
    if criterion == "l2":
        return (w ** 2).sum(red)
    g = calib["grad"][m.module.weight].float()
    s = w * g
    if criterion == "element2":
        s = s - 0.5 * w * calib["fisher"][m.module.weight].float() * w
    if criterion == "vector":
        return s.sum(red).abs()
    return s.abs().sum(red)


def _reduce(stack: torch.Tensor, how: str) -> torch.Tensor:
    """stack: [members, groups] -> [groups] (official TaylorImportance._reduce + paper's last-only)."""
    if how == "sum":
        return stack.sum(0)
    if how == "mean":
        return stack.mean(0)
    if how == "max":
        return stack.max(0).values
    if how == "prod":
        return stack.prod(0)
    if how == "first":
        return stack[0]
    if how == "last":
        return stack[-1]
    raise ValueError(f"unknown aggregation {how!r}; allowed: {AGGREGATIONS}")


def group_importance(members: list[tuple[Member, list[list[int]]]], criterion: str, aggregation: str,
                     calib: dict, n_groups: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """members: (member, channel indices of each group). Score of a group = aggregation over members of
    the member's summed channel scores in that group.
    reconstruction: with several channels per group (heads) the official code reduces across members per
    channel and then sums the head's channels; for `sum` (the paper's setting) the two are identical."""
    if criterion == "random":
        return torch.rand(n_groups, generator=gen)
    if criterion == "structure":   # no weights (meta device): keep the first groups; counts are exact
        return -torch.arange(n_groups, dtype=torch.float)
    rows = []
    for m, idx_per_group in members:
        ch = _channel_scores(m, criterion, calib)
        rows.append(torch.stack([ch[torch.as_tensor(ix)].sum() for ix in idx_per_group]))
    return _reduce(torch.stack(rows), aggregation)


# ---------------------------------------------------------------------------------------------
# structures

def attention_groups(layer, head_dim: int) -> tuple[list[tuple[Member, list[list[int]]]], int]:
    att = layer.self_attn
    n_kv = att.k_proj.out_features // head_dim
    n_q = att.q_proj.out_features // head_dim
    rep = n_q // n_kv
    kv_idx = [list(range(g * head_dim, (g + 1) * head_dim)) for g in range(n_kv)]
    q_idx = [list(range(g * rep * head_dim, (g + 1) * rep * head_dim)) for g in range(n_kv)]
    q, k, v, o = (Member(att.q_proj, "out", "q_proj"), Member(att.k_proj, "out", "k_proj"),
                  Member(att.v_proj, "out", "v_proj"), Member(att.o_proj, "in", "o_proj"))
    # root first: q_proj for MHA (official hf_prune.py), k_proj for GQA (official llama3.py)
    order = [(q, q_idx), (k, kv_idx), (v, kv_idx)] if rep == 1 else [(k, kv_idx), (q, q_idx), (v, kv_idx)]
    return order + [(o, q_idx)], n_kv


def mlp_groups(layer) -> tuple[list[tuple[Member, list[list[int]]]], int]:
    mlp = layer.mlp
    n = mlp.gate_proj.out_features
    idx = [[c] for c in range(n)]
    return [(Member(mlp.gate_proj, "out", "gate_proj"), idx), (Member(mlp.up_proj, "out", "up_proj"), idx),
            (Member(mlp.down_proj, "in", "down_proj"), idx)], n


def hidden_members(model) -> list[Member]:
    out = []
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        out += [Member(a.q_proj, "in"), Member(a.k_proj, "in"), Member(a.v_proj, "in"), Member(a.o_proj, "out"),
                Member(m.gate_proj, "in"), Member(m.up_proj, "in"), Member(m.down_proj, "out")]
    out.append(Member(model.lm_head, "in"))
    return out


def _n_prune(n: int, ratio: float) -> int:
    return n - int(n * (1 - ratio))    # Torch-Pruning: keep int(n * (1 - ratio))


def _prune_attention(layer, head_dim: int, groups: list[int]) -> None:
    att = layer.self_attn
    n_kv = att.k_proj.out_features // head_dim
    rep = (att.q_proj.out_features // head_dim) // n_kv
    kv = [c for g in groups for c in range(g * head_dim, (g + 1) * head_dim)]
    qo = [c for g in groups for c in range(g * rep * head_dim, (g + 1) * rep * head_dim)]
    tp.prune_linear_out_channels(att.q_proj, qo)
    tp.prune_linear_out_channels(att.k_proj, kv)
    tp.prune_linear_out_channels(att.v_proj, kv)
    tp.prune_linear_in_channels(att.o_proj, qo)
    # whole KV groups go with their query heads, so num_key_value_groups (query heads per KV head) is
    # unchanged; transformers reshapes with -1 heads, so no head count is stored on the module


def _prune_mlp(layer, channels: list[int]) -> None:
    mlp = layer.mlp
    tp.prune_linear_out_channels(mlp.gate_proj, channels)
    tp.prune_linear_out_channels(mlp.up_proj, channels)
    tp.prune_linear_in_channels(mlp.down_proj, channels)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = mlp.gate_proj.out_features


def _prune_norm(norm: nn.Module, channels: list[int]) -> None:
    keep = sorted(set(range(norm.weight.shape[0])) - set(channels))
    norm.weight = nn.Parameter(norm.weight.detach()[torch.as_tensor(keep, device=norm.weight.device)])
    if hasattr(norm, "hidden_size"):
        norm.hidden_size = len(keep)


def _prune_hidden(model, channels: list[int]) -> None:
    tp.prune_embedding_out_channels(model.model.embed_tokens, channels)
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        for lin in (a.q_proj, a.k_proj, a.v_proj, m.gate_proj, m.up_proj):
            tp.prune_linear_in_channels(lin, channels)
        for lin in (a.o_proj, m.down_proj):
            tp.prune_linear_out_channels(lin, channels)
        _prune_norm(layer.input_layernorm, channels)
        _prune_norm(layer.post_attention_layernorm, channels)
    _prune_norm(model.model.norm, channels)
    tp.prune_linear_in_channels(model.lm_head, channels)
    model.config.hidden_size = model.model.embed_tokens.weight.shape[1]


def prune_llama(model, *, strategy: str = "block", criterion: str = "element1", aggregation: str = "sum",
                ratio: float = 0.25, layer_start: int = 4, layer_end: int = 30, prune_attention: bool = True,
                prune_mlp: bool = True, calib_samples: torch.Tensor | None = None, seed: int = 0) -> dict:
    """Prune `model` (a LlamaForCausalLM) in place; returns a summary (widths, removed groups).
    Afterwards the model is a PrunedLlamaForCausalLM (model.py) whose config records each layer's width."""
    from .model import layer_widths, to_pruned_class

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; allowed: {STRATEGIES}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; allowed: {CRITERIA}")
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    cfg.head_dim = head_dim      # pinned: a hidden-size change must not change it
    before = layer_widths(model)
    calib = {}
    if criterion in ("element1", "element2", "vector"):
        if calib_samples is None:
            raise ValueError(f"criterion {criterion!r} needs calibration samples")
        calib = calibrate(model, calib_samples, criterion)
    gen = torch.Generator().manual_seed(seed)
    removed: dict = {}
    with torch.no_grad():
        if strategy == "block":
            layers = model.model.layers
            lo, hi = max(0, layer_start), min(len(layers), layer_end)
            # scores of every layer are computed before any layer is pruned (official: one pruner.step())
            plans = []
            for i in range(lo, hi):
                layer = layers[i]
                plan = {}
                if prune_attention:
                    members, n = attention_groups(layer, head_dim)
                    imp = group_importance(members, criterion, aggregation, calib, n, gen)
                    plan["attn"] = sorted(torch.argsort(imp)[:_n_prune(n, ratio)].tolist())
                if prune_mlp:
                    members, n = mlp_groups(layer)
                    imp = group_importance(members, criterion, aggregation, calib, n, gen)
                    plan["mlp"] = sorted(torch.argsort(imp)[:_n_prune(n, ratio)].tolist())
                plans.append((i, plan))
            for i, plan in plans:
                if plan.get("attn"):
                    _prune_attention(layers[i], head_dim, plan["attn"])
                if plan.get("mlp"):
                    _prune_mlp(layers[i], plan["mlp"])
                removed[i] = {"kv_groups": len(plan.get("attn", [])), "mlp_channels": len(plan.get("mlp", []))}
        else:
            H = model.model.embed_tokens.weight.shape[1]
            members = [(m, [[c] for c in range(H)]) for m in hidden_members(model)]
            imp = group_importance(members, criterion, aggregation, calib, H, gen)
            # reconstruction: the kept hidden size is rounded to a multiple of the head count (transformers'
            # config validation requires hidden_size % num_attention_heads == 0; Torch-Pruning's round_to)
            heads = cfg.num_attention_heads
            keep = max(heads, int(round(H * (1 - ratio) / heads)) * heads)
            chans = sorted(torch.argsort(imp)[:H - keep].tolist())
            _prune_hidden(model, chans)
            removed["hidden"] = len(chans)
    model.zero_grad(set_to_none=True)
    to_pruned_class(model)
    return {"strategy": strategy, "criterion": criterion, "aggregation": aggregation, "ratio": ratio,
            "layers": [layer_start, layer_end] if strategy == "block" else "all",
            "widths_before": before, "widths_after": layer_widths(model), "removed": removed,
            "hidden_size": model.config.hidden_size}
