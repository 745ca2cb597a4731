"""Leaderboard: rank variants on a task by a quality metric, beside their cost; Pareto front + plot.

Only records with the same `task` id (same model, sampler, sample count) and the same metric protocol
are ranked together. A variant's latest ok record (per method, variant, preset) stands for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .record import RecordStore, RunRecord

DEFAULT_METRICS = ("fid", "accuracy", "top1", "avg_acc", "miou", "fad", "ppl", "clip_score", "psnr")


@dataclass
class Entry:
    method: str
    variant: str
    preset: str
    value: float
    higher_is_better: bool
    protocol: str
    speedup: float | None
    mac_speedup: float | None
    params: float | None
    run_id: str
    pareto: bool = False


def _latest(records: list[RunRecord]) -> list[RunRecord]:
    keep: dict[tuple, RunRecord] = {}
    for r in records:
        if r.status == "ok":
            keep[(r.method, r.variant, r.preset, r.task)] = r
    return list(keep.values())


def tasks(records: list[RunRecord]) -> list[str]:
    return sorted({r.task for r in records if r.status == "ok"})


def pick_metric(records: list[RunRecord]) -> str | None:
    names = {m for r in records for m in r.metrics}
    for m in DEFAULT_METRICS:
        if m in names:
            return m
    return sorted(names)[0] if names else None


def rank(records: list[RunRecord], task: str, metric: str | None = None, cost: str = "speedup") -> tuple[str | None, list[Entry]]:
    recs = [r for r in _latest(records) if r.task == task]
    metric = metric or pick_metric(recs)
    if metric is None:
        return None, []
    entries = []
    protocols = {r.metrics[metric].get("protocol", "") for r in recs if metric in r.metrics}
    for r in recs:
        m = r.metrics.get(metric)
        if not m:
            continue
        sp = (r.efficiency.get("speedup") or {}).get("value")
        ms = (r.efficiency.get("mac_speedup") or {}).get("value")
        entries.append(Entry(r.method, r.variant, r.preset, float(m["value"]), bool(m.get("higher_is_better", True)),
                             m.get("protocol", ""), sp, ms, r.efficiency.get("params"), r.run_id))
    if len(protocols) > 1:
        entries = [e for e in entries if e.protocol == sorted(protocols)[0]]
    hib = entries[0].higher_is_better if entries else True
    entries.sort(key=lambda e: -e.value if hib else e.value)
    _mark_pareto(entries, cost)
    return metric, entries


def _mark_pareto(entries: list[Entry], cost: str) -> None:
    """Pareto-optimal: no other entry is at least as good in quality and at least as fast, and better in one."""
    def speed(e: Entry) -> float:
        v = e.speedup if cost == "speedup" else e.mac_speedup
        return v if v is not None else float("-inf")

    for e in entries:
        q = e.value if e.higher_is_better else -e.value
        e.pareto = not any(
            ((o.value if o.higher_is_better else -o.value) >= q and speed(o) >= speed(e)) and
            ((o.value if o.higher_is_better else -o.value) > q or speed(o) > speed(e))
            for o in entries if o is not e)


def _f(v: float | None, fmt: str = "{:.3g}") -> str:
    return "-" if v is None else fmt.format(v)


def to_markdown(task: str, metric: str, entries: list[Entry]) -> str:
    arrow = "higher is better" if (entries and entries[0].higher_is_better) else "lower is better"
    lines = [f"## {task}", "", f"Ranked by `{metric}` ({arrow}); protocol: `{entries[0].protocol if entries else ''}`. "
             "Speedup = reference latency / variant latency in the same process; * = on the quality/speed Pareto front.", "",
             f"| rank | method | variant | preset | {metric} | speedup | MAC speedup | params | pareto |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, e in enumerate(entries, 1):
        lines.append(f"| {i} | {e.method} | {e.variant} | {e.preset} | {e.value:.4g} | {_f(e.speedup, '{:.2f}x')} | "
                     f"{_f(e.mac_speedup, '{:.2f}x')} | {_f(e.params, '{:.3g}')} | {'*' if e.pareto else ''} |")
    return "\n".join(lines) + "\n"


def plot(task: str, metric: str, entries: list[Entry], path: Path, cost: str = "speedup") -> Path | None:
    pts = [e for e in entries if (e.speedup if cost == "speedup" else e.mac_speedup) is not None]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    methods = sorted({e.method for e in pts})
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        es = [e for e in pts if e.method == m]
        ax.scatter([e.speedup if cost == "speedup" else e.mac_speedup for e in es], [e.value for e in es],
                   label=m, color=cmap(i % 10), s=28)
        for e in es:
            ax.annotate(e.variant, (e.speedup if cost == "speedup" else e.mac_speedup, e.value), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    front = sorted([e for e in pts if e.pareto], key=lambda e: e.speedup if cost == "speedup" else e.mac_speedup)
    if len(front) > 1:
        ax.plot([e.speedup if cost == "speedup" else e.mac_speedup for e in front], [e.value for e in front],
                "--", color="gray", lw=1, label="Pareto front")
    ax.set_xlabel("speedup (x, measured)" if cost == "speedup" else "MAC speedup (x)")
    ax.set_ylabel(f"{metric} ({'higher' if pts[0].higher_is_better else 'lower'} is better)")
    ax.set_title(task, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def safe_name(task: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", task).strip("_")


def write(results: str | Path = "results", task: str | None = None, metric: str | None = None,
          out: str | Path | None = None, report=print) -> list[Path]:
    store = RecordStore(results)
    records = store.records(report=report)
    all_tasks = tasks(records)
    if task is not None and task not in all_tasks:
        raise ConfigError(f"unknown task {task!r}; tasks with records: {', '.join(all_tasks) or '(none)'}")
    chosen = [task] if task else all_tasks
    out_dir = Path(out) if out else Path(results)
    parts, files = ["# effbench leaderboard", "", "Generated by `effbench leaderboard` from results/runs.jsonl.", ""], []
    for t in chosen:
        m, entries = rank(records, t, metric)
        if not entries:
            continue
        parts.append(to_markdown(t, m, entries))
        png = plot(t, m, entries, out_dir / f"pareto_{safe_name(t)}.png")
        if png:
            parts.append(f"![Pareto {t}](pareto_{safe_name(t)}.png)\n")
            files.append(png)
    md = out_dir / "leaderboard.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(parts))
    return [md] + files
