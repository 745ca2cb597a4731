"""The classification task: config validation, missing paper assets, the random-weight paper track
(efficiency only, no accuracy), and (slow) the zoo track with recovery and a saved pruned model."""
from __future__ import annotations

import pytest
import torch

from benchmarks.api import METHODS, RunContext, Variant
from benchmarks.config import resolve
from benchmarks.errors import ConfigError, MissingAssetError
from benchmarks.tasks.classification import ClassificationConfig, ClassificationTask


def _cfg(method, preset, *over):
    cls = METHODS.get(method)
    return resolve(cls.Config, cls.config_path(), preset, list(over), method)[1]


def test_config_validation():
    with pytest.raises(ConfigError, match="model"):
        ClassificationConfig(model="alexnet")
    with pytest.raises(ConfigError, match="speedups"):
        ClassificationConfig(target="macs", speedups=())
    with pytest.raises(ConfigError, match="random_weights"):
        ClassificationConfig(model="resnet_digits", random_weights=True)
    with pytest.raises(ConfigError, match="ratios"):
        ClassificationConfig(ratios=(1.5,))
    assert ClassificationConfig(target="macs", speedups=(2.0,)).amounts() == [{"speedup": 2.0}]


def test_paper_track_without_assets_fails_fast(monkeypatch):
    monkeypatch.delenv("EFFBENCH_CLS_WEIGHTS", raising=False)
    for method in ("depgraph", "isomorphic"):
        cfg = _cfg(method, "paper")
        with pytest.raises(MissingAssetError, match="weights"):
            ClassificationTask(cfg, RunContext(progress=False))


@pytest.mark.timeout(240)
def test_random_weight_track_reports_efficiency_only(tmp_path):
    from benchmarks.pruning import load_pruned

    cfg = _cfg("depgraph", "paper_arch", "speedups=[2.0]", "iterative_steps=60", "latency_batch=2")
    ctx = RunContext(progress=False, latency={"warmup": 0, "min_reps": 1}, artifact_dir=tmp_path)
    task = ClassificationTask(cfg, ctx)
    assert task.model_id == "arch:resnet56_cifar10(random)"
    method = METHODS.get("depgraph")()
    ref = task.evaluate(task.subject(), Variant("dense", kind="baseline"), ctx)
    ctx.reference = ref
    subject = method.apply(task.subject(), {"speedup": 2.0}, ctx)
    out = task.evaluate(subject, Variant("depgraph", {"speedup": 2.0}), ctx)
    assert out.metrics == {}                                  # random weights: no accuracy is reported
    eff = out.efficiency
    assert {"params", "macs", "macs_per", "mac_counter", "latency", "peak_memory"} <= set(eff)
    assert eff["mac_counter"] == "torch_pruning" and eff["macs_per"] == "image"
    assert ref.efficiency["macs"] / eff["macs"] >= 2.0
    assert out.notes["mac_ratio"] >= 2.0 and "latency_speedup" in out.notes
    loaded = load_pruned(tmp_path / "pruned.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), subject.model(x))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_zoo_resnet_pruning_and_recovery():
    """Trained zoo ResNet: a 2x-MAC DepGraph prune hurts accuracy, the shared recovery stage restores it."""
    cfg = _cfg("depgraph", "smoke", "recover_steps=30", "latency_min_reps=1", "latency_min_seconds=0")
    ctx = RunContext(progress=False, latency={"warmup": 0, "min_reps": 1})
    task = ClassificationTask(cfg, ctx)
    assert task.dense_top1 > 0.95
    subject = METHODS.get("depgraph")().apply(task.subject(), {"speedup": 2.0}, ctx)
    out = task.evaluate(subject, Variant("depgraph", {"speedup": 2.0}), ctx)
    m = out.metrics
    assert m["top1_dense"].value > 95
    assert m["top1"].value > m["top1_pruned"].value
    assert m["top1"].value > 90
    assert out.notes["mac_ratio"] >= 2.0
