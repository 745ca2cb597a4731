"""Attention-only microbenchmark for LiteFocus: full self-attention vs same-frequency + random
cross-frequency attention over the time-frequency tokens of one AudioLDM2 attention layer.

Geometry (AudioLDM2 at 16 kHz): 100 mel frames/s, VAE x4 -> 25 latent frames/s and 16 latent
frequency bins; LiteFocus' layers sit one level down: 12.5 frames/s x 8 frequency tokens = 100 tokens
per second of audio (80 s -> 8000 tokens). Cost per layer: full ~ N^2, LiteFocus ~ N (N/F + r N), so
the speedup tends to 1 / (1/F + r) = 4.44 for F = 8, r = 0.1 as N grows.

    python -m benchmarks.bench_litefocus --out /tmp/lf-bench            # JSON + PNG
    python -m benchmarks.bench_litefocus --heads 8 --head-dim 32        # AudioLDM2 level-1 widths

Timings use benchmarks.efficiency.measure_latency (one thread by default).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F


def run(lengths, heads: int = 2, head_dim: int = 32, freq: int = 8, ratio: float = 0.1,
        tokens_per_second: float = 100.0, reps: int = 3, threads: int = 1) -> list[dict]:
    from benchmarks.efficiency import measure_latency
    from methods.litefocus.processor import litefocus_attention

    torch.set_num_threads(threads)
    rows = []
    g = torch.Generator().manual_seed(0)
    for sec in lengths:
        t = max(1, int(round(sec * tokens_per_second / freq)))
        n = t * freq
        q, k, v = (torch.randn(1, heads, n, head_dim, generator=g) for _ in range(3))
        m = int(math.floor(ratio * n))
        idx = torch.randperm(n, generator=g)[:m]
        full = measure_latency(lambda: F.scaled_dot_product_attention(q, k, v), warmup=1, min_reps=reps)
        lite = measure_latency(lambda: litefocus_attention(q, k, v, freq, idx), warmup=1, min_reps=reps)
        macs_full = 2 * heads * n * n * head_dim
        macs_lite = 2 * heads * n * (t + m) * head_dim
        rows.append({"seconds": sec, "tokens": n, "full_s": full.mean, "litefocus_s": lite.mean,
                     "speedup": full.mean / lite.mean, "mac_ratio": macs_full / macs_lite,
                     "full_std": full.std, "litefocus_std": lite.std})
        print(f"{sec:6g} s  N={n:6d}  full {full.mean * 1e3:9.2f} ms  litefocus {lite.mean * 1e3:9.2f} ms  "
              f"speedup {full.mean / lite.mean:5.2f}x  (MAC ratio {macs_full / macs_lite:4.2f}x)", flush=True)
    return rows


def plot(rows: list[dict], path: Path, freq: int, ratio: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    x = [r["seconds"] for r in rows]
    ax[0].loglog(x, [r["full_s"] for r in rows], "o-", label="full attention")
    ax[0].loglog(x, [r["litefocus_s"] for r in rows], "s-", label=f"LiteFocus (F={freq}, r={ratio})")
    ax[0].set(xlabel="audio length (s)", ylabel="attention time (s)")
    ax[0].legend(fontsize=7)
    ax[1].semilogx(x, [r["speedup"] for r in rows], "o-", label="measured")
    ax[1].semilogx(x, [r["mac_ratio"] for r in rows], "--", label="MAC ratio")
    ax[1].axhline(1 / (1 / freq + ratio), color="grey", lw=0.8, label="asymptote 1/(1/F+r)")
    ax[1].set(xlabel="audio length (s)", ylabel="speedup")
    ax[1].legend(fontsize=7)
    for a in ax:
        a.minorticks_off()
        a.set_xticks(x)
        a.set_xticklabels([f"{v:g}" for v in x])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=float, nargs="+", default=[2.5, 5, 10, 20, 40, 80])
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--freq", type=int, default=8)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    rows = run(a.lengths, a.heads, a.head_dim, a.freq, a.ratio, reps=a.reps, threads=a.threads)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        meta = {"heads": a.heads, "head_dim": a.head_dim, "freq": a.freq, "ratio": a.ratio, "threads": a.threads,
                "tokens_per_second": 100.0, "torch": torch.__version__}
        (a.out / "bench_litefocus.json").write_text(json.dumps({"config": meta, "rows": rows}, indent=2))
        plot(rows, a.out / "bench_litefocus.png", a.freq, a.ratio)
        print(f"wrote {a.out / 'bench_litefocus.json'} and bench_litefocus.png")


if __name__ == "__main__":
    main()
