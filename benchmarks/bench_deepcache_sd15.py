"""Benchmark: DeepCache on the SD-1.5 U-Net architecture (random weights), PLMS 50, N = 2..10.

Runs `effbench run deepcache --preset paper_arch` (records go to the results store like any run) and
prints the MAC-ratio speedup beside the measured wall-clock speedup and the paper's figures, with the
hardware named. Wall-clock: full and cached U-Net calls are timed separately (warm-up + repetitions, in
one process) and composed over each schedule.

    effbench bench deepcache_sd15 [--device cpu|cuda|auto] [--out results] [--intervals 2,3,5]
"""
from __future__ import annotations

import argparse

PAPER = {5: {"macs": 130.45, "speedup": 2.15}}     # Table 3 (Parti column); other N: MACs not reported


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="effbench bench deepcache_sd15")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="results")
    ap.add_argument("--intervals", default="2,3,4,5,6,7,8,9,10")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv or [])
    from benchmarks.record import RecordStore
    from benchmarks.runner import plan, run

    overrides = [f"device={args.device}", f"intervals=[{args.intervals}]", f"latency_min_reps={args.reps}"]
    run("deepcache", "paper_arch", overrides, out=args.out, tracker="none")
    hashes = set(plan("deepcache", "paper_arch", overrides).hashes.values())
    recs = [r for r in RecordStore(args.out).read()[0] if r.config_hash in hashes and r.status == "ok"]
    hw = recs[0].provenance["hardware"] if recs else {}
    print(f"\nDeepCache, SD-1.5 U-Net architecture (random weights), PLMS 50, batch 1, fp32; "
          f"hardware: {hw.get('gpu') or hw.get('cpu')} ({recs[0].provenance['threads'] if recs else '?'} threads)\n")
    print("| variant | MACs/step (G) | MAC speedup | measured speedup | paper MACs | paper speedup |")
    print("|---|---|---|---|---|---|")
    for r in sorted(recs, key=lambda r: (r.variant_kind != "baseline", r.variant_params.get("interval", 0))):
        e = r.efficiency
        n = r.variant_params.get("interval")
        p = PAPER.get(n, {}) if r.variant_kind == "method" else {}
        print(f"| {r.variant} | {e['macs_per_base_step'] / 1e9:.2f} | {e['mac_speedup']['value']:.2f}x | "
              f"{e['speedup']['value']:.2f}x | {p.get('macs', '-')} | {p.get('speedup', '-')} |")
    return 0
