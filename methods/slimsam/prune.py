"""Structural surgery on SAM's ViT image encoder (transformers `SamVisionEncoder`), written by hand.

Torch-Pruning's dependency graph does not terminate on this encoder (harness.md 4.2), so the coupled
channel groups are spelled out here and pruned with index selection:

* **embedding group** (one per encoder; SlimSAM step 1): patch-embedding conv outputs, the absolute
  positional embedding's last dim, both LayerNorms of every block, the inputs of q/k/v and MLP `lin1`,
  the outputs of attention `proj` and MLP `lin2`, and the inputs of the neck's first 1x1 conv.
* **qk group** (per block; step 2): the rows of q and k of every head (same dims in both, the
  dot product needs them) and the matching columns of the relative-position tables `rel_pos_h/w`
  (they multiply the query). All heads are kept; every head keeps the same number of dims.
* **v group** (per block; step 2): the rows of v of every head and the matching `proj` columns.
* **mlp group** (per block; step 2): `lin1` rows and `lin2` columns.

Like SlimSAM (official: "fused qkv split into q/k/v"), the fused `qkv` linear is split into three
linears first (`split_qkv`, numerically the same model), so q/k and v can shrink independently.
The softmax scale stays the original one (official: the scale is fixed at construction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import torch
import torch.nn as nn
import torch.nn.functional as F

from transformers.models.sam.modeling_sam import SamVisionAttention


class SplitQKVAttention(nn.Module):
    """SAM's windowed/global attention with decomposed relative positions, with separate q, k, v
    linears whose per-head dims may differ (qk_dim for q and k, v_dim for v)."""

    get_rel_pos = SamVisionAttention.get_rel_pos
    get_decomposed_rel_pos = SamVisionAttention.get_decomposed_rel_pos

    def __init__(self, src: SamVisionAttention):
        super().__init__()
        dim_in = src.qkv.in_features
        inner = src.qkv.out_features // 3
        self.num_attention_heads = src.num_attention_heads
        self.scale = src.scale
        self.dropout = src.dropout
        self.use_rel_pos = src.use_rel_pos
        bias = src.qkv.bias is not None
        self.q, self.k, self.v = (nn.Linear(dim_in, inner, bias=bias) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.q, self.k, self.v)):
                lin.weight.copy_(src.qkv.weight[i * inner:(i + 1) * inner])
                if bias:
                    lin.bias.copy_(src.qkv.bias[i * inner:(i + 1) * inner])
        self.proj = src.proj
        if self.use_rel_pos:
            self.rel_pos_h, self.rel_pos_w = src.rel_pos_h, src.rel_pos_w

    @property
    def qk_dim(self) -> int:
        return self.q.out_features // self.num_attention_heads

    @property
    def v_dim(self) -> int:
        return self.v.out_features // self.num_attention_heads

    def forward(self, hidden_states: torch.Tensor, output_attentions=None):
        b, h, w, _ = hidden_states.shape
        nh = self.num_attention_heads

        def heads(x):   # (b, h, w, nh*d) -> (b*nh, h*w, d)
            return x.reshape(b, h * w, nh, -1).permute(0, 2, 1, 3).reshape(b * nh, h * w, -1)

        q, k, v = heads(self.q(hidden_states)), heads(self.k(hidden_states)), heads(self.v(hidden_states))
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            rel = self.get_decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w))
            attn = attn + rel.reshape_as(attn)
        attn = torch.softmax(attn, dim=-1, dtype=torch.float32).to(q.dtype)
        attn = F.dropout(attn, p=self.dropout, training=self.training)
        out = (attn @ v).reshape(b, nh, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out), None


def split_qkv(encoder: nn.Module) -> nn.Module:
    """Replace every fused-qkv attention of `encoder` by `SplitQKVAttention` (idempotent, exact)."""
    for layer in encoder.layers:
        if not isinstance(layer.attn, SplitQKVAttention):
            layer.attn = SplitQKVAttention(layer.attn)
    return encoder


# ---------------------------------------------------------------------------------------------
# coupled groups

@dataclass
class Member:
    """One tensor slice of a channel group: `owner.name` is a parameter, `dim` its channel axis.
    `scored` marks Conv/Linear weights (the members importance is computed on)."""

    owner: nn.Module
    name: str
    dim: int
    scored: bool = False
    per_head: int = 0      # >0: the channel axis is heads*per_head, flattened head-major
    heads: int = 1

    @property
    def param(self) -> torch.Tensor:
        return getattr(self.owner, self.name)


@dataclass
class Group:
    kind: str              # "embed", "qk", "v", "mlp"
    layer: int             # -1 for the embedding group
    members: list[Member]
    heads: int = 1         # channels = heads * per-head dims for qk / v; 1 otherwise

    @property
    def size(self) -> int:
        m = self.members[0]
        return m.param.shape[m.dim]


def _lin(owner: nn.Linear, axis: str, scored: bool = True) -> list[Member]:
    """Members of a Linear along its output rows ("out") or input columns ("in")."""
    if axis == "out":
        out = [Member(owner, "weight", 0, scored)]
        if owner.bias is not None:
            out.append(Member(owner, "bias", 0))
        return out
    return [Member(owner, "weight", 1, scored)]


def embed_group(encoder: nn.Module) -> Group:
    pe = encoder.patch_embed.projection
    ms = [Member(pe, "weight", 0, True)] + ([Member(pe, "bias", 0)] if pe.bias is not None else [])
    if encoder.pos_embed is not None:
        ms.append(Member(encoder, "pos_embed", 3))
    for layer in encoder.layers:
        a = layer.attn
        ms += [Member(layer.layer_norm1, "weight", 0), Member(layer.layer_norm1, "bias", 0)]
        ms += _lin(a.q, "in") + _lin(a.k, "in") + _lin(a.v, "in") + _lin(a.proj, "out")
        ms += [Member(layer.layer_norm2, "weight", 0), Member(layer.layer_norm2, "bias", 0)]
        ms += _lin(layer.mlp.lin1, "in") + _lin(layer.mlp.lin2, "out")
    ms.append(Member(encoder.neck.conv1, "weight", 1, True))
    return Group("embed", -1, ms)


def block_groups(encoder: nn.Module) -> list[Group]:
    out = []
    for i, layer in enumerate(encoder.layers):
        a = layer.attn
        qk = _lin(a.q, "out") + _lin(a.k, "out")
        if a.use_rel_pos:
            qk += [Member(a, "rel_pos_h", 1), Member(a, "rel_pos_w", 1)]
        out.append(Group("qk", i, qk, heads=a.num_attention_heads))
        out.append(Group("v", i, _lin(a.v, "out") + _lin(a.proj, "in"), heads=a.num_attention_heads))
        out.append(Group("mlp", i, _lin(layer.mlp.lin1, "out") + _lin(layer.mlp.lin2, "in")))
    return out


def _head_cols(m: Member, group: Group) -> bool:
    """rel_pos tables hold one head's dims (shared by all heads): their channel axis is per-head."""
    return group.kind == "qk" and m.name.startswith("rel_pos")


# ---------------------------------------------------------------------------------------------
# importance

def channel_scores(group: Group, criterion: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-channel importance of a group, group reduction = mean over its scored members.

    - `taylor`: sum |w * dL/dw| over each channel's slice (first-order Taylor; with SlimSAM's
      disturbed loss this is the *disturbed Taylor importance*, paper Sec. 3.3, Eq. 5-6).
    - `magnitude`: sum w^2 (L2 magnitude, Torch-Pruning's GroupMagnitudeImportance p=2).
    - `random`: uniform noise from `generator`.
    """
    n = group.size
    if criterion == "random":
        return torch.rand(n, generator=generator, dtype=torch.float64)
    scores, count = torch.zeros(n, dtype=torch.float64), 0
    for m in group.members:
        if not m.scored:
            continue
        w = m.param.detach()
        if criterion == "taylor":
            if m.param.grad is None:
                raise RuntimeError("taylor importance needs gradients: run the disturbed loss backward first")
            s = (w * m.param.grad.detach()).abs()
        elif criterion == "magnitude":
            s = w.pow(2)
        else:
            raise ValueError(f"unknown criterion {criterion!r}")
        dims = [d for d in range(s.dim()) if d != m.dim]
        scores += s.sum(dim=dims).double() if dims else s.double()
        count += 1
    return scores / max(count, 1)


# ---------------------------------------------------------------------------------------------
# slicing

def _slice_member(m: Member, group: Group, idx: torch.Tensor, per_head_idx: torch.Tensor | None) -> None:
    p = m.param
    use = per_head_idx if (per_head_idx is not None and _head_cols(m, group)) else idx
    new = p.detach().index_select(m.dim, use.to(p.device)).clone()
    setattr(m.owner, m.name, nn.Parameter(new, requires_grad=p.requires_grad))


def _fix_shapes(module: nn.Module) -> None:
    for mod in module.modules():
        if isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = mod.weight.shape
        elif isinstance(mod, nn.Conv2d):
            mod.out_channels, mod.in_channels = mod.weight.shape[:2]
        elif isinstance(mod, nn.LayerNorm) and mod.weight is not None:
            mod.normalized_shape = (mod.weight.shape[0],)


def prune_group(group: Group, keep: torch.Tensor, per_head_keep: torch.Tensor | None = None) -> None:
    """Keep channels `keep` (sorted, flattened head-major for attention) of every member. For qk
    groups `per_head_keep` holds the kept dims of one head: the rel-pos tables are shared by all
    heads, so qk groups keep the same dims in every head and the tables keep those columns.
    (official: SlimSAM re-creates the tables as zeros after pruning; we slice them, which keeps the
    learned positions.)"""
    for m in group.members:
        _slice_member(m, group, keep, per_head_keep)


def keep_count(n: int, ratio: float, round_to: int = 1) -> int:
    """Channels kept when pruning `ratio` of `n`, rounded down to a multiple of `round_to` (at least
    `round_to`, at most n). 768 -> 384 at 0.5 and 168 at 0.77 (round_to=12), as SlimSAM's releases."""
    k = int(math.floor(n * (1.0 - ratio) / round_to + 1e-9)) * round_to
    return max(min(k, n), min(round_to, n))


def prune_embedding(encoder: nn.Module, scores: torch.Tensor, ratio: float, round_to: int) -> int:
    """SlimSAM step 1: drop the least important embedding channels everywhere they appear (local)."""
    g = embed_group(encoder)
    k = keep_count(g.size, ratio, round_to)
    keep = torch.topk(scores, k).indices.sort().values
    prune_group(g, keep)
    _fix_shapes(encoder)
    return k


def _zscore(s: torch.Tensor) -> torch.Tensor:
    return (s - s.mean()) / (s.std(unbiased=False) + 1e-12)


def plan_block_pruning(groups: list[Group], scores: list[torch.Tensor], ratio: float, scope: str,
                       round_to: int) -> list[int]:
    """Number of channels each block group keeps (per head for qk / v groups).

    `local`: every group keeps keep_count(size, ratio) (uniform). `global` (SlimSAM step 2): scores
    z-normalised within each group, one threshold over all groups such that `ratio` of all channels
    fall below it; counts then rounded (per head for attention, to `round_to` for MLP)."""
    if scope == "local":
        out = []
        for g in groups:
            if g.kind in ("qk", "v"):
                out.append(keep_count(g.size // g.heads, ratio, 1))
            else:
                out.append(keep_count(g.size, ratio, round_to))
        return out
    z = [_zscore(s) for s in scores]
    allz = torch.cat(z)
    n_prune = int(math.floor(ratio * allz.numel() + 1e-9))
    thr = torch.sort(allz).values[n_prune - 1] if n_prune > 0 else -math.inf
    out = []
    for g, zz in zip(groups, z):
        n_keep = int((zz > thr).sum())
        if g.kind in ("qk", "v"):
            out.append(max(1, min(g.size // g.heads, int(round(n_keep / g.heads)))))
        else:
            out.append(max(min(round_to, g.size), min(g.size, int(round(n_keep / round_to)) * round_to)))
    return out


def prune_blocks(encoder: nn.Module, scores: list[torch.Tensor], counts: list[int]) -> None:
    """SlimSAM step 2: shrink q/k dims, v dims (all heads kept) and MLP hidden channels."""
    groups = block_groups(encoder)
    for g, s, k in zip(groups, scores, counts):
        if g.kind in ("qk", "v"):
            d = g.size // g.heads
            per = s.reshape(g.heads, d)
            if g.kind == "qk":
                # the relative-position tables are shared by all heads and multiply the query, so the
                # q/k dims kept must be the same in every head: rank dims by their mean over heads
                dims = torch.topk(per.mean(0), k).indices.sort().values
                keep = (torch.arange(g.heads)[:, None] * d + dims[None]).reshape(-1)
                prune_group(g, keep, dims)
            else:
                top = torch.topk(per, k, dim=1).indices.sort(dim=1).values
                keep = (torch.arange(g.heads)[:, None] * d + top).reshape(-1)
                prune_group(g, keep)
        else:
            prune_group(g, torch.topk(s, k).indices.sort().values)
    _fix_shapes(encoder)
