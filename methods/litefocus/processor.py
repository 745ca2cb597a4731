"""LiteFocus attention for AudioLDM / AudioLDM2 UNets in diffusers (arXiv 2407.10468, Sec. 2).

A UNet transformer flattens its [B, C, time, freq] input time-major, so token i has frequency index
i mod F (F = frequency width at that resolution). LiteFocus replaces full self-attention by
- same-frequency focus: query i attends to every key j with j mod F == i mod F (the whole time axis
  at its own frequency), and
- cross-frequency compensation: a random subset R of floor(r * N) key tokens (one draw per call,
  shared by all queries, heads and batch items; seeded),
under one joint softmax. Cost ~ N(N/F + rN) instead of N^2. Cross-attention (calls with a context)
is unchanged.

official: f_n = 8 is hard-coded and the random draw is `randperm` per call without a seed; duplicates
between R and the same-frequency set are kept. here: F is read from each transformer's input shape;
the draw comes from a seeded generator; a random key that is already a same-frequency key of a query
is masked for that query (reconstruction: the paper's wording "cross-frequency compensation"; it also
makes r = 1 exactly full attention, which the tests check).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


class _Width:
    """The frequency width of the transformer's current input, written by a forward pre-hook."""

    def __init__(self) -> None:
        self.value: int | None = None


class LiteFocusProcessor:
    """Processor for a transformer's attention module. Falls back to `fallback` for calls with an
    encoder context, an attention mask, 4-D inputs, or when the width is unknown."""

    def __init__(self, fallback: Any, width: _Width, ratio: float = 0.1, generator: torch.Generator | None = None):
        self.fallback, self.width, self.ratio = fallback, width, ratio
        self.generator = generator or torch.Generator().manual_seed(0)
        self.calls = 0

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs):
        fw = self.width.value
        if (encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3
                or attn.spatial_norm is not None or attn.group_norm is not None or not fw
                or hidden_states.shape[1] % fw != 0 or hidden_states.shape[1] // fw < 1):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        self.calls += 1
        residual = hidden_states
        b, n, _ = hidden_states.shape
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        h = attn.heads
        d = k.shape[-1] // h
        q, k, v = (x.view(b, n, h, d).transpose(1, 2) for x in (q, k, v))          # [B, h, N, d]
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        m = int(math.floor(self.ratio * n))
        idx = torch.randperm(n, generator=self.generator)[:m].to(q.device) if m > 0 else None
        out = litefocus_attention(q, k, v, fw, idx, attn.scale)
        out = out.transpose(1, 2).reshape(b, n, h * d).to(q.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def litefocus_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, freq: int,
                        random_idx: torch.Tensor | None, scale: float | None = None) -> torch.Tensor:
    """Same-frequency + random cross-frequency attention, one joint softmax.

    q, k, v: [B, h, N, d] with N = T * freq tokens in time-major order; random_idx: [M] key indices
    (or None). Returns [B, h, N, d]. Work: one [F, T, T] block product for the same-frequency keys and one
    [N, M] product for the random keys, softmax merged in place (no [N, N] matrix)."""
    b, h, n, d = q.shape
    t = n // freq
    scale = scale if scale is not None else d ** -0.5
    # group tokens by frequency: [B, h, F, T, d]
    qf = q.view(b, h, t, freq, d).transpose(2, 3)
    kf = k.view(b, h, t, freq, d).transpose(2, 3)
    vf = v.view(b, h, t, freq, d).transpose(2, 3)
    s1 = torch.matmul(qf * scale, kf.transpose(-1, -2))                          # [B, h, F, T, T]
    if random_idx is None or random_idx.numel() == 0:
        return torch.matmul(s1.softmax(-1), vf).transpose(2, 3).reshape(b, h, n, d)
    m = random_idx.numel()
    kr, vr = k[:, :, random_idx], v[:, :, random_idx]                             # [B, h, M, d]
    q2 = (qf * scale).reshape(b, h, freq * t, d)
    s2 = torch.matmul(q2, kr.transpose(-1, -2)).view(b, h, freq, t, m)            # [B, h, F, T, M]
    # a random key of the query's own frequency is already a same-frequency key: drop the duplicate
    same = (random_idx % freq).view(1, -1) == torch.arange(freq, device=q.device).view(-1, 1)   # [F, M]
    s2.masked_fill_(same.view(1, 1, freq, 1, m), float("-inf"))
    mx = torch.maximum(s1.amax(-1, keepdim=True), s2.amax(-1, keepdim=True))      # joint softmax
    s1.sub_(mx).exp_()
    s2.sub_(mx).exp_()
    denom = s1.sum(-1, keepdim=True) + s2.sum(-1, keepdim=True)
    out = torch.matmul(s1, vf) + torch.matmul(s2.view(b, h, freq * t, m), vr).view(b, h, freq, t, d)
    out = out / denom
    return out.transpose(2, 3).reshape(b, h, n, d)


def full_attention(q, k, v, scale=None):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


# ---------------------------------------------------------------------------------------------

SCOPES = ("official", "all")


def target_transformers(unet: torch.nn.Module, scope: str = "official") -> list[str]:
    """Names of the Transformer2DModel modules whose self-attention LiteFocus replaces.

    official: input_blocks[4,5] and output_blocks[6,7,8] of the LDM UNet, i.e. the attention layers of the
    highest-resolution level that has attention (diffusers: the first down block with attentions and the
    up block at the same resolution). all: every transformer of the UNet."""
    names = [n for n, m in unet.named_modules() if type(m).__name__ == "Transformer2DModel"]
    if scope == "all":
        return names
    if scope != "official":
        raise ValueError(f"scope must be one of {SCOPES}")
    downs = [i for i, blk in enumerate(unet.down_blocks) if getattr(blk, "attentions", None)]
    if not downs:
        return []
    level = downs[0]
    up = len(unet.up_blocks) - 1 - level
    keep = (f"down_blocks.{level}.", f"up_blocks.{up}.")
    return [n for n in names if n.startswith(keep)]


@dataclass
class LiteFocusHandle:
    unet: torch.nn.Module
    originals: dict = field(default_factory=dict)     # attn module name -> original processor object
    hooks: list = field(default_factory=list)
    processors: list = field(default_factory=list)

    def disable(self) -> None:
        """Restore the original processor objects (outputs bit-identical to before enable)."""
        mods = dict(self.unet.named_modules())
        for name, proc in self.originals.items():
            mods[name].processor = proc
        for hk in self.hooks:
            hk.remove()
        self.originals.clear()
        self.hooks.clear()
        self.processors.clear()

    def reseed(self, seed: int) -> None:
        for p in self.processors:
            p.generator.manual_seed(seed)


def enable_litefocus(unet: torch.nn.Module, ratio: float = 0.1, seed: int = 0, scope: str = "official") -> LiteFocusHandle:
    """Install LiteFocus on the self-attention of the chosen transformers (one call); `handle.disable()`
    puts the original processor objects back."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError("ratio must lie in [0, 1]")
    handle = LiteFocusHandle(unet)
    mods = dict(unet.named_modules())
    for i, tname in enumerate(target_transformers(unet, scope)):
        width = _Width()

        def pre(_m, args, kwargs, width=width):
            x = args[0] if args else kwargs["hidden_states"]
            width.value = int(x.shape[-1]) if x.ndim == 4 else None

        handle.hooks.append(mods[tname].register_forward_pre_hook(pre, with_kwargs=True))
        for aname, attn in mods[tname].named_modules():
            # attn1 always is self-attention; attn2 is cross-attention when the pipeline passes a context
            # (AudioLDM2) and self-attention over the same tokens when it passes none (AudioLDM): the
            # processor handles the latter and falls back to the original for the former.
            if aname.endswith(("attn1", "attn2")) and hasattr(attn, "processor"):
                full = f"{tname}.{aname}"
                handle.originals[full] = attn.processor
                gen = torch.Generator().manual_seed(seed * 1000 + i)
                proc = LiteFocusProcessor(attn.processor, width, ratio, gen)
                attn.processor = proc                         # set directly: keeps the module's other state
                handle.processors.append(proc)
    return handle
