"""Isomorphic Pruning: grouping by structural signature, equal ratio per isomorphic class, attention
head handling, variants, and the DeiT-T 0.6G golden row (random weights, params/MACs only)."""
from __future__ import annotations

import pytest
import torch

from benchmarks.pruning import PruneSpec, build_arch, build_pruner, isomorphic_scopes, prune

VIT = {"kind": "timm_vit", "kwargs": {"img_size": 16, "patch_size": 4, "in_chans": 1, "num_classes": 10,
                                       "embed_dim": 32, "depth": 3, "num_heads": 4, "mlp_ratio": 2.0}}
CONVNEXT = {"kind": "timm_convnext", "kwargs": {"in_chans": 1, "num_classes": 10, "depths": [1, 1, 2, 1],
                                                 "dims": [8, 16, 24, 32], "patch_size": 1}}
X = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _model(arch):
    torch.manual_seed(0)
    return build_arch(arch).eval()


def _calib():
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g))]
    return lambda: batches


def _prunes_out(pruner, groups, module):
    return any(d.target.module is module and pruner.DG.is_out_channel_pruning_fn(d.handler) for g in groups for d, _ in g)


def _signature(pruner, group):
    DG = pruner.DG
    return [(type(d.source.module), type(d.target.module), DG.is_out_channel_pruning_fn(d.handler)) for d, _ in group]


@pytest.mark.timeout(120)
def test_isomorphic_classes_hold_only_structurally_identical_groups():
    m = _model(VIT)
    pruner = build_pruner(m, X, PruneSpec(scope="isomorphic"), 10)
    classes = isomorphic_scopes(pruner)
    # ViT: one embedding-dim group, one head-dim (qkv) group per block, one MLP-hidden group per block
    assert sorted(len(v) for v in classes.values()) == [1, 3, 3]
    for groups in classes.values():
        sigs = [_signature(pruner, g) for g in groups]
        assert all(s == sigs[0] for s in sigs)                 # node-for-node identical dependency graphs
    fc1_class = [v for v in classes.values() if _prunes_out(pruner, v, m.blocks[0].mlp.fc1)]
    assert len(fc1_class) == 1 and len(fc1_class[0]) == 3
    # ConvNeXt: the pointwise MLPs of all stages are isomorphic despite different widths
    c = _model(CONVNEXT)
    cp = build_pruner(c, X, PruneSpec(scope="isomorphic"), 10)
    cls = isomorphic_scopes(cp)
    mlp = [v for v in cls.values() if _prunes_out(cp, v, c.stages[0].blocks[0].mlp.fc1)]
    assert len(mlp) == 1 and len(mlp[0]) == 5                 # 1 + 1 + 2 + 1 blocks
    widths = {len(g[0][1]) for g in mlp[0]}                    # channels per group: 32, 64, 96, 96, 128
    assert len(widths) > 1


@pytest.mark.timeout(120)
def test_every_isomorphic_class_is_pruned_to_the_same_ratio():
    m = _model(VIT)
    hidden0 = sum(b.mlp.fc1.out_features for b in m.blocks)
    dim0 = m.embed_dim
    res = prune(m, X, PruneSpec(importance="taylor", scope="isomorphic", ratio=0.5, calib_batches=1), 10, calib=_calib())
    hidden = sum(b.mlp.fc1.out_features for b in m.blocks)
    assert hidden == hidden0 // 2                              # class total exactly halved ...
    assert m.blocks[0].norm1.weight.numel() == dim0 // 2        # ... and so is the embedding class
    assert m(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    assert res.scopes and sum(res.scopes.values()) == 7


@pytest.mark.timeout(120)
def test_attention_heads_are_removed_and_attributes_fixed():
    m = _model(VIT)
    res = prune(m, X, PruneSpec(importance="taylor", scope="isomorphic", ratio=0.25, head_ratio=0.5,
                                head_dim_ratio=0.25, round_to=2, calib_batches=1), 10, calib=_calib())
    heads = [b.attn.num_heads for b in m.blocks]
    assert sum(heads) == 6 and min(heads) >= 1                  # half of 12 heads, at least one kept per block
    for b in m.blocks:
        a = b.attn
        assert a.qkv.out_features == 3 * a.num_heads * a.head_dim and a.attn_dim == a.num_heads * a.head_dim
        assert abs(a.scale - a.head_dim ** -0.5) < 1e-12
    assert res.heads == {f"blocks.{i}.attn": h for i, h in enumerate(heads)}
    assert m(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_variants_use_the_official_settings():
    from benchmarks.api import METHODS
    from benchmarks.config import resolve

    cls = METHODS.get("isomorphic")
    _, cfg = resolve(cls.Config, cls.config_path(), "paper_arch", [], "isomorphic")
    names = [v.name for v in cls().variants(cfg)]
    assert names == ["dense", "isomorphic[head_dim_ratio=0.25,head_ratio=0.5,ratio=0.5]",
                     "isomorphic[head_dim_ratio=0.3,head_ratio=0.6,ratio=0.6]"]
    spec = cls().spec(cfg, cfg.prune_defaults(), dict(cls().variants(cfg)[1].params))
    assert (spec.target, spec.iterative_steps, spec.ratio, spec.head_dim_ratio) == ("ratio", 1, 0.5, 0.25)
    _, cfg = resolve(cls.Config, cls.config_path(), "mini_scopes", [], "isomorphic")
    names = [v.name for v in cls().variants(cfg)]
    assert "isomorphic[scope=global,speedup=2]" in names and "isomorphic[scope=local,speedup=3]" in names


@pytest.mark.timeout(240)
def test_deit_tiny_0_6G_row_matches_the_paper_within_2_percent():
    """Paper: DeiT-T distilled -> 0.6G: 3.08M params, 0.62 GMACs (r=0.25, heads 0.3, head dims 0.3)."""
    m = build_arch({"kind": "timm", "kwargs": {"name": "deit_tiny_distilled_patch16_224"}}).eval()
    x = torch.randn(1, 3, 224, 224)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(2, 3, 224, 224, generator=g), torch.randint(0, 1000, (2,), generator=g))]
    res = prune(m, x, PruneSpec(importance="taylor", scope="isomorphic", ratio=0.25, head_ratio=0.3,
                                head_dim_ratio=0.3, round_to=2, calib_batches=1), 1000, calib=lambda: batches)
    assert abs(res.base_params / 5.91e6 - 1) < 0.02 and abs(res.base_macs / 1.27e9 - 1) < 0.02
    assert abs(res.params / 3.08e6 - 1) < 0.02 and abs(res.macs / 0.62e9 - 1) < 0.02


@pytest.mark.timeout(120)
def test_block_dropping_is_part_of_the_saved_plan(tmp_path):
    """ConvNext-4.2G-style depth step: least important stage[-2] blocks removed, replayed on load."""
    from benchmarks.pruning import count, load_pruned, save_pruned

    arch = {"kind": "timm_convnext", "kwargs": {"in_chans": 1, "num_classes": 10, "depths": [1, 1, 3, 1],
                                                 "dims": [8, 16, 24, 32], "patch_size": 1}}
    m = _model(arch)
    res = prune(m, X, PruneSpec(importance="taylor", scope="isomorphic", ratio=0.25, round_to=2, drop_blocks=2,
                                calib_batches=1), 10, calib=_calib())
    assert len(m.stages[2].blocks) == 1 and len(res.kept_blocks["stages.2.blocks"]) == 1
    loaded = load_pruned(save_pruned(m, tmp_path / "c.safetensors", arch, [1, 1, 16, 16], res))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), loaded(x))
    assert count(loaded, X) == (res.macs, res.params)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scope", ["isomorphic", "local"])
def test_iterative_head_pruning_keeps_every_attention_alive(scope):
    m = _model(VIT)
    res = prune(m, X, PruneSpec(importance="taylor", scope=scope, target="macs", speedup=3.0,
                                iterative_steps=50, head_ratio=0.5, calib_batches=1), 10, calib=_calib())
    assert res.base_macs / res.macs >= 3.0
    assert all(1 <= b.attn.num_heads <= 4 for b in m.blocks)
    assert m(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    m = _model(VIT)                                             # ratio target, 5 iterative steps
    prune(m, X, PruneSpec(importance="l2", scope=scope, ratio=0.3, iterative_steps=5, head_ratio=0.5), 10)
    heads = [b.attn.num_heads for b in m.blocks]
    assert all(h >= 1 for h in heads) and sum(heads) == 6      # half of 12 heads in the end, not all


@pytest.mark.timeout(120)
def test_block_dropping_reuses_the_width_steps_taylor_gradients():
    """official prune.py: --remove-layers scores blocks with the gradients accumulated for the width step
    (sliced with the weights by Torch-Pruning), so calibration data is read once, and the score is the mean
    over the *pruned* parameters of mean |w * grad|."""
    from benchmarks.pruning import block_scores, drop_blocks

    arch = {"kind": "timm_convnext", "kwargs": {"in_chans": 1, "num_classes": 10, "depths": [1, 1, 4, 1],
                                                 "dims": [8, 16, 24, 32], "patch_size": 1}}
    calls = []
    batches = _calib()()

    def calib():
        calls.append(1)
        return batches

    m = _model(arch)
    prune(m, X, PruneSpec(importance="taylor", scope="isomorphic", ratio=0.25, round_to=2, drop_blocks=2,
                          calib_batches=1), 10, calib=calib)
    assert len(calls) == 1 and len(m.stages[2].blocks) == 2
    assert all(p.grad is None for p in m.parameters())        # cleared once the depth step is done
    # the score itself: mean over parameters of mean |w * g| (hand-set gradients, no calibration needed)
    m = _model(arch)
    blocks = m.stages[2].blocks
    with torch.no_grad():
        for i, b in enumerate(blocks):
            for p in b.parameters():
                p.fill_(-1.0)
                p.grad = torch.full_like(p, float(i + 1))      # |w * g| = i + 1 everywhere in block i
    assert torch.allclose(block_scores(blocks), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    spec = PruneSpec(importance="taylor", drop_blocks=3)
    kept = drop_blocks(m, spec, calib=None)                    # no calibration: the gradients present are used
    assert kept == {"stages.2.blocks": [3]} and len(m.stages[2].blocks) == 1
    with pytest.raises(Exception, match="calibration"):       # a non-Taylor criterion leaves no Taylor gradients
        drop_blocks(_model(arch), PruneSpec(importance="l2", drop_blocks=1), calib=None)
