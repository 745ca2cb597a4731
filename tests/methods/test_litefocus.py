"""LiteFocus: the sparse pattern, exactness at full coverage, restore on disable, cross-attention untouched."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.litefocus.processor import enable_litefocus, litefocus_attention, target_transformers


def _qkv(b=2, h=2, t=6, f=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t * f, d, generator=g, dtype=torch.float64) for _ in range(3)]


def _dense_masked(q, k, v, freq, idx):
    """Reference: full attention restricted to {same frequency} U {random idx}, each key once."""
    n = q.shape[2]
    pos = torch.arange(n)
    allowed = (pos[:, None] % freq) == (pos[None, :] % freq)
    allowed[:, idx] = True
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return s.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


def test_random_set_covering_all_tokens_equals_full_attention():
    q, k, v = _qkv()
    idx = torch.randperm(q.shape[2], generator=torch.Generator().manual_seed(1))
    out = litefocus_attention(q, k, v, 4, idx)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-12)


@pytest.mark.parametrize("m", [0, 3, 10])
def test_sparse_pattern_matches_masked_dense_attention(m):
    q, k, v = _qkv(seed=m)
    idx = torch.randperm(q.shape[2], generator=torch.Generator().manual_seed(2))[:m]
    out = litefocus_attention(q, k, v, 4, idx if m else None)
    assert torch.allclose(out, _dense_masked(q, k, v, 4, idx), atol=1e-12)
    if m:   # and it really is sparse: differs from full attention
        assert not torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6)


@pytest.fixture(scope="module")
def pipe():
    from benchmarks.zoo.models.audio import build_audioldm

    return build_audioldm(seed=0)


def _run(pipe, seconds=0.64):
    from benchmarks.zoo.models.audio import generate_mels

    return generate_mels(pipe, ["a low tone", "a high chirp"], seconds, steps=3, guidance=2.0, seed=0)


def test_official_scope_is_first_attention_level(pipe):
    names = target_transformers(pipe.unet, "official")
    assert names and all(n.startswith(("down_blocks.1.", "up_blocks.1.")) for n in names)
    assert len(target_transformers(pipe.unet, "all")) > len(names)


def test_full_ratio_in_the_unet_equals_full_attention(pipe):
    g = torch.Generator().manual_seed(0)
    x, e = torch.randn(2, 8, 16, 8, generator=g), torch.randn(2, 32, generator=g)
    with torch.no_grad():
        ref = pipe.unet(x, 10, encoder_hidden_states=None, class_labels=e).sample
        h = enable_litefocus(pipe.unet, ratio=1.0, seed=0, scope="all")
        try:
            out = pipe.unet(x, 10, encoder_hidden_states=None, class_labels=e).sample
        finally:
            h.disable()
    assert torch.allclose(out, ref, atol=1e-5)


def test_enable_changes_and_disable_restores_bit_identical(pipe):
    ref = _run(pipe)
    h = enable_litefocus(pipe.unet, ratio=0.1, seed=0, scope="all")
    sparse = _run(pipe)
    assert sum(p.calls for p in h.processors) > 0
    h.disable()
    assert not torch.allclose(sparse, ref, atol=1e-4)
    assert torch.equal(_run(pipe), ref)                     # bit-identical after disable


def test_calls_with_context_fall_back_to_original(pipe):
    name = target_transformers(pipe.unet, "official")[0]
    attn = dict(pipe.unet.named_modules())[f"{name}.transformer_blocks.0.attn1"]
    x = torch.randn(1, 16, attn.to_q.in_features)
    ctx = torch.randn(1, 5, attn.to_k.in_features)
    ref = attn(x, encoder_hidden_states=ctx)
    h = enable_litefocus(pipe.unet, ratio=0.1)
    try:
        assert torch.equal(attn(x, encoder_hidden_states=ctx), ref)
    finally:
        h.disable()
