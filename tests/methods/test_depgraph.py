"""DepGraph on the shared pruning pipeline: runnable pruned models, MAC targets, group-sparse
regularisation, plan save/load, variants and the ResNet-56 golden counts. Tiny random models only
(mechanics); accuracy lives in the slow task test."""
from __future__ import annotations

import pytest
import torch

from benchmarks.errors import ConfigError
from benchmarks.pruning import (PruneSpec, build_arch, build_pruner, count, load_pruned, prune, save_pruned)

TINY = {
    "resnet": {"kind": "cifar_resnet", "kwargs": {"depth": 8, "width": 8, "in_chans": 1, "num_classes": 10}},
    "vit": {"kind": "timm_vit", "kwargs": {"img_size": 16, "patch_size": 4, "in_chans": 1, "num_classes": 10,
                                            "embed_dim": 32, "depth": 2, "num_heads": 4}},
    "convnext": {"kind": "timm_convnext", "kwargs": {"in_chans": 1, "num_classes": 10, "depths": [1, 1, 1, 1],
                                                      "dims": [8, 16, 24, 32], "patch_size": 1}},
}
X = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _model(name):
    torch.manual_seed(0)
    return build_arch(TINY[name]).eval()


def _calib():
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(2)]
    return lambda: batches


@pytest.mark.timeout(120)
@pytest.mark.parametrize("arch", ["resnet", "vit", "convnext"])
@pytest.mark.parametrize("importance,scope", [("l2", "global"), ("taylor", "local"), ("hessian", "global")])
def test_pruned_model_runs_with_consistent_shapes(arch, importance, scope):
    m = _model(arch)
    spec = PruneSpec(importance=importance, scope=scope, ratio=0.5, normalizer="max", calib_batches=2,
                     head_ratio=0.5 if arch == "vit" else 0.0)
    res = prune(m, X, spec, 10, calib=_calib())
    assert res.params < res.base_params and res.macs < res.base_macs
    y = m(torch.randn(3, 1, 16, 16))
    assert y.shape == (3, 10)                                  # classifier never pruned
    for mod in m.modules():                                    # BN / LN widths follow their convs
        if isinstance(mod, torch.nn.BatchNorm2d):
            assert mod.running_mean.numel() == mod.weight.numel() == mod.num_features
    if arch == "vit":
        for blk in m.blocks:
            a = blk.attn
            assert a.qkv.out_features == 3 * a.num_heads * a.head_dim == 3 * a.attn_dim
            assert a.proj.in_features == a.attn_dim
    assert all(p.grad is None for p in m.parameters())        # no stale gradients left behind


@pytest.mark.timeout(120)
def test_mac_target_is_reached_with_at_most_one_step_overshoot():
    m = _model("resnet")
    res = prune(m, X, PruneSpec(importance="l2", scope="global", target="macs", speedup=2.0, iterative_steps=100), 10)
    ratio = res.base_macs / res.macs
    assert 2.0 <= ratio < 2.3
    assert res.steps < 100
    assert count(m, X) == (res.macs, res.params)


@pytest.mark.timeout(120)
def test_group_sparse_regulariser_adds_scaled_weight_decay_per_group():
    """DepGraph Eq. 6: grad += reg * gamma_k * w_k with gamma_k in [1, alpha], alpha for the least
    important group and 1 for the most important one."""
    import torch_pruning as tp

    m = _model("resnet")
    spec = PruneSpec(importance="l2", sparse_reg=1e-2, sparse_alpha=16.0)
    pruner = build_pruner(m, X, spec, 10, importance=tp.importance.GroupMagnitudeImportance(p=2, normalizer=None),
                          regularised=True)
    conv = m.conv1            # stem: only its output channels belong to a group (the residual one)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    pruner.regularize(m, alpha=16.0)
    w = conv.weight.detach()
    ratio = (conv.weight.grad / (1e-2 * w)).flatten(1)        # gamma per output channel (where w != 0)
    gamma = ratio.median(dim=1).values
    assert torch.all(gamma >= 1 - 1e-4) and torch.all(gamma <= 16 + 1e-3)
    assert gamma.max() > 15.9 and gamma.min() < 1.01          # extremes map to alpha and 1
    assert any(p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.timeout(120)
def test_sparse_training_runs_before_pruning():
    m = _model("resnet")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    spec = PruneSpec(importance="l2", scope="global", ratio=0.3, sparse_steps=3, sparse_reg=1e-3)
    res = prune(m, X, spec, 10, calib=_calib())
    assert res.sparse_steps == 3
    assert res.params < res.base_params
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items() if k in before and before[k].shape == v.shape)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("arch", ["resnet", "vit", "convnext"])
def test_pruned_model_round_trips_through_plan_save_load(arch, tmp_path):
    m = _model(arch)
    spec = PruneSpec(importance="l2", scope="global", ratio=0.4, iterative_steps=2,
                     head_ratio=0.5 if arch == "vit" else 0.0)
    res = prune(m, X, spec, 10)
    path = save_pruned(m, tmp_path / "p.safetensors", TINY[arch], [1, 1, 16, 16], res)
    loaded = load_pruned(path)
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), loaded(x))
    assert count(loaded, X) == (res.macs, res.params)
    assert open(path, "rb").read(8)  # a safetensors file, no pickle involved


def test_spec_validation():
    with pytest.raises(ConfigError, match="importance"):
        PruneSpec(importance="magic")
    with pytest.raises(ConfigError, match="scope"):
        PruneSpec(scope="everywhere")
    with pytest.raises(ConfigError, match="ratio"):
        PruneSpec(ratio=1.0)


def _cfg(method, preset, **over):
    from benchmarks.api import METHODS
    from benchmarks.config import resolve

    cls = METHODS.get(method)
    return resolve(cls.Config, cls.config_path(), preset, [f"{k}={v}" for k, v in over.items()], method)[1]


def test_variants_compare_at_the_same_targets():
    from benchmarks.api import METHODS

    m = METHODS.get("depgraph")()
    cfg = _cfg("depgraph", "smoke")
    vs = m.variants(cfg)
    assert vs[0].name == "dense"
    names = [v.name for v in vs]
    assert "depgraph[speedup=2]" in names and "depgraph[sl=True,speedup=2]" in names
    for b in ("vision_random", "vision_l1", "vision_l2", "vision_bn_scale", "vision_taylor", "vision_hessian"):
        assert f"{b}[speedup=3]" in names
    vit = m.variants(_cfg("depgraph", "mini_vit"))
    assert not any(v.impl == "vision_bn_scale" for v in vit)          # no BatchNorm in a ViT
    with pytest.raises(ConfigError):
        _cfg("depgraph", "smoke", scope="sideways")
    with pytest.raises(ConfigError):
        _cfg("depgraph", "smoke", speedups="[]")


@pytest.mark.timeout(120)
def test_resnet56_and_vgg19_dense_counts_match_the_papers():
    """Golden counts with Torch-Pruning's counter: ResNet-56 0.86M / 127.12M MACs (DepGraph logs)."""
    m = build_arch({"kind": "cifar_resnet", "kwargs": {"depth": 56, "num_classes": 10}})
    macs, params = count(m, torch.randn(1, 3, 32, 32))
    assert abs(params / 0.86e6 - 1) < 0.02 and abs(macs / 127.12e6 - 1) < 0.02
    vgg = build_arch({"kind": "cifar_vgg", "kwargs": {"depth": 19, "num_classes": 100}})
    macs, params = count(vgg, torch.randn(1, 3, 32, 32))
    assert 19.5e6 < params < 20.5e6 and 390e6 < macs < 410e6
