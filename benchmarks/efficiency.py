"""The shared efficiency meter: params, MACs, latency, peak memory.

Latency follows optimum-benchmark's protocol: synchronise, discard `warmup` runs, then repeat until
BOTH `min_reps` and `min_seconds` are reached (capped by `max_reps`); keep the raw values and report
mean, p50, p90, p99, std, n. CUDA work is timed with CUDA events, CPU work with perf_counter.
Speedups are ratios of two measurements taken in the same process.
"""
from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


def count_params(model: torch.nn.Module) -> int:
    """Unique parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def macs_torch_pruning(model: torch.nn.Module, example_inputs: Any) -> int:
    """MACs as Torch-Pruning counts them (conv/linear/norm/elementwise; attention matmuls only for
    nn.MultiheadAttention and timm Attention). The papers' MAC columns use this convention."""
    import torch_pruning as tp

    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs)


def countable_attention():
    """Fused CPU attention kernels have no FLOP formula in torch's counter (they count as 0): count
    under the math backend, which decomposes attention into matmuls the counter sees."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def macs_aten(fn: Callable[[], Any]) -> int:
    """MACs of everything `fn` runs, counted at the aten level (torch.utils.flop_counter): includes
    attention matmuls and any module, hooks respected. MACs = FLOPs / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), countable_attention(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops() // 2)


MAC_COUNTERS = ("torch_pruning", "aten")


@dataclass
class LatencyStats:
    values: list[float]          # seconds, one per repetition
    unit: str = "s"
    per: str = "call"            # what one value times: "call", "image", "step", "token", ...
    warmup: int = 0
    timer: str = "perf_counter"

    def _pct(self, q: float) -> float:
        v = sorted(self.values)
        if len(v) == 1:
            return v[0]
        k = (len(v) - 1) * q
        lo, hi = int(k), min(int(k) + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (k - lo)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def scaled(self, factor: float, per: str) -> "LatencyStats":
        return LatencyStats([v * factor for v in self.values], self.unit, per, self.warmup, self.timer)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "p50": self._pct(0.5), "p90": self._pct(0.9), "p99": self._pct(0.99),
                "std": self.std, "std_pct": 100 * self.std / self.mean if self.mean else 0.0,
                "n": len(self.values), "unit": self.unit, "per": self.per, "warmup": self.warmup,
                "timer": self.timer, "values": [round(v, 9) for v in self.values]}


def _is_cuda(device: Any) -> bool:
    return str(device).startswith("cuda") and torch.cuda.is_available()


def measure_latency(fn: Callable[[], Any], *, warmup: int = 1, min_reps: int = 3, min_seconds: float = 0.0,
                    max_reps: int = 1000, device: Any = "cpu", per: str = "call") -> LatencyStats:
    cuda = _is_cuda(device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        sync()
        values: list[float] = []
        start = time.perf_counter()
        while len(values) < max_reps and (len(values) < min_reps or time.perf_counter() - start < min_seconds):
            if cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                sync()
                values.append(a.elapsed_time(b) / 1000.0)
            else:
                t0 = time.perf_counter()
                fn()
                values.append(time.perf_counter() - t0)
    return LatencyStats(values, per=per, warmup=warmup, timer="cuda_event" if cuda else "perf_counter")


@dataclass
class PeakMemory:
    """Peak host RSS (sampled in a thread) and CUDA max allocated/reserved, in MiB, over a block."""

    interval: float = 0.005
    rss_mib: float = 0.0
    rss_start_mib: float = 0.0
    cuda_allocated_mib: float | None = None
    cuda_reserved_mib: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def __enter__(self) -> "PeakMemory":
        import psutil

        self._proc = psutil.Process()
        self.rss_start_mib = self.rss_mib = self._proc.memory_info().rss / 2**20
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._stop.clear()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.rss_mib = max(self.rss_mib, self._proc.memory_info().rss / 2**20)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.rss_mib = max(self.rss_mib, self._proc.memory_info().rss / 2**20)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.cuda_allocated_mib = torch.cuda.max_memory_allocated() / 2**20
            self.cuda_reserved_mib = torch.cuda.max_memory_reserved() / 2**20

    def to_dict(self) -> dict:
        d = {"rss_peak_mib": round(self.rss_mib, 1), "rss_delta_mib": round(self.rss_mib - self.rss_start_mib, 1)}
        if self.cuda_allocated_mib is not None:
            d["cuda_max_allocated_mib"] = round(self.cuda_allocated_mib, 1)
            d["cuda_max_reserved_mib"] = round(self.cuda_reserved_mib, 1)
        return d


def timed(fn: Callable[[], Any], ctx_latency: dict, device: Any = "cpu", per: str = "call") -> tuple[LatencyStats, dict]:
    """Latency (runner's protocol from RunContext.latency) and peak memory of `fn` in one go."""
    with PeakMemory() as mem:
        lat = measure_latency(fn, device=device, per=per, **ctx_latency)
    return lat, mem.to_dict()


@contextlib.contextmanager
def threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _register() -> None:
    from .api import register_metric

    register_metric("speedup", True, "x", "reference latency / variant latency, same process (efficiency.speedup)")
    register_metric("mac_speedup", True, "x", "reference MACs / variant MACs (efficiency.mac_speedup)")
    register_metric("params", False, "", "unique parameters of the (transformed) model")
    register_metric("macs", False, "MAC", "multiply-accumulates per `macs_per` unit, counter in `mac_counter`")
    register_metric("latency", False, "s", "mean latency per `latency.per` unit (p50/p90/p99/std kept)")
    register_metric("peak_memory", False, "MiB", "peak host RSS (and CUDA max allocated) during timing")


_register()
