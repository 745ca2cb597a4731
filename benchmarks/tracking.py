"""Experiment trackers. Local JSON records are the source of truth; W&B is a sink.

`wandb` (default) logs offline into results/wandb/ (sync later with `wandb sync`), never touching the
network; `none` disables tracking. WANDB_MODE=disabled in the environment also disables it.
"""
from __future__ import annotations

import os
from pathlib import Path

TRACKERS = ("wandb", "none")


def _flat(prefix: str, d: dict, out: dict) -> dict:
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            if "value" in v and not isinstance(v["value"], dict):
                out[key] = v["value"]
            else:
                _flat(key, v, out)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


def log_record(record, tracker: str, out_dir: Path) -> dict:
    """Log one run record; returns {"name": ..., "run_id": ..., "dir": ...} to store in the record."""
    if tracker == "none" or os.environ.get("WANDB_MODE") == "disabled":
        return {}
    import wandb

    wdir = Path(out_dir) / "wandb"
    wdir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "effbench"), mode=os.environ.get("WANDB_MODE", "offline"),
                     dir=str(wdir.parent), group=record.method, job_type=record.preset, name=record.run_id,
                     config={"method": record.method, "variant": record.variant, "preset": record.preset,
                             "model": record.model, "task": record.task, "seed": record.seed, **record.config},
                     reinit="create_new", settings=wandb.Settings(silent=True, console="off"))
    try:
        summary = _flat("metrics", record.metrics, {})
        eff = {k: v for k, v in record.efficiency.items() if k != "latency"}
        _flat("efficiency", eff, summary)
        lat = record.efficiency.get("latency") or {}
        for k in ("mean", "p50", "p90", "p99", "std"):
            if k in lat:
                summary[f"efficiency/latency/{k}"] = lat[k]
        for k, v in summary.items():
            run.summary[k] = v
        run.summary["status"] = record.status
        rows = [[record.variant, name, m.get("value"), m.get("protocol", ""), m.get("higher_is_better")]
                for name, m in record.metrics.items()]
        if rows:
            run.log({"metrics_table": wandb.Table(columns=["variant", "metric", "value", "protocol", "higher_is_better"], data=rows)})
        return {"name": "wandb", "run_id": run.id, "dir": str(Path(run.dir).parent)}
    finally:
        run.finish()          # wandb >= 0.19 has no `quiet` argument (silent via Settings above)
