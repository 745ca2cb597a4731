"""Fixtures for the metric and zoo tests (issue 4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tmp_home(tmp_path, monkeypatch):
    """An empty $EFFBENCH_HOME (metric reference caches land here)."""
    monkeypatch.setenv("EFFBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def feature_pair():
    """Two correlated, full-rank float64 feature sets [N, D] with different means and covariances."""
    rng = np.random.default_rng(0)
    d = 16
    a_mix, b_mix = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    a = rng.normal(size=(400, d)) @ a_mix + 0.3
    b = rng.normal(size=(300, d)) @ (0.7 * a_mix + 0.4 * b_mix) - 0.2
    return a, b


class FeatureModule(torch.nn.Module):
    """Identity "extractor" for torchmetrics: images [N, 1, 1, D] -> features [N, D]."""

    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x.flatten(1)


@pytest.fixture
def feature_module():
    return FeatureModule
