"""The shared efficiency meter: latency protocol, statistics, MAC counters, peak memory."""
from __future__ import annotations

import time

import pytest
import torch

from benchmarks.efficiency import LatencyStats, PeakMemory, count_params, macs_aten, macs_torch_pruning, measure_latency


def test_latency_runs_until_min_reps_and_min_seconds():
    calls = []
    lat = measure_latency(lambda: calls.append(1), warmup=3, min_reps=5, min_seconds=0.0)
    assert len(calls) == 8 and lat.to_dict()["n"] == 5 and lat.warmup == 3
    lat = measure_latency(lambda: time.sleep(0.01), warmup=0, min_reps=2, min_seconds=0.1)
    assert len(lat.values) >= 9                     # the duration floor, not the count, ends it
    lat = measure_latency(lambda: None, warmup=0, min_reps=1, min_seconds=10.0, max_reps=7)
    assert len(lat.values) == 7                     # max_reps caps both


def test_latency_stats():
    s = LatencyStats([1.0, 2.0, 3.0, 4.0]).to_dict()
    assert s["mean"] == 2.5 and s["p50"] == 2.5 and s["p90"] == pytest.approx(3.7)
    assert s["std"] == pytest.approx(1.2909944) and s["n"] == 4
    assert LatencyStats([2.0, 4.0]).scaled(0.5, per="image").to_dict()["mean"] == 1.5


def test_mac_counters_agree_on_a_convnet_and_aten_counts_attention():
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 10))
    x = torch.randn(1, 1, 16, 16)
    conv, lin = 8 * 14 * 14 * 9, 8 * 14 * 14 * 10
    assert macs_aten(lambda: m(x)) == conv + lin
    assert macs_torch_pruning(m, x) >= conv + lin       # Torch-Pruning also counts the bias adds
    assert count_params(m) == 8 * 9 + 8 + 8 * 14 * 14 * 10 + 10
    q = torch.randn(1, 4, 64, 16)
    # fused CPU attention counts 0 in torch's counter unless decomposed: QK^T and AV = 2 * 64*64*16 per head
    assert macs_aten(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == 4 * 2 * 64 * 64 * 16


def test_peak_memory_sees_an_allocation():
    with PeakMemory() as mem:
        x = torch.ones(64, 1024, 1024)     # 256 MiB
        time.sleep(0.05)
        del x
    assert mem.to_dict()["rss_delta_mib"] > 200
