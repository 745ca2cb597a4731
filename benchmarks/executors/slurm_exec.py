"""`--executor slurm`: the sweep's points as one SLURM job array, submitted through submitit.

```yaml
executor: slurm
slurm:
  partition: gpu          # slurm_partition
  time: 120               # minutes per point (timeout_min); "HH:MM:SS" also accepted
  gpus_per_node: 1
  cpus_per_task: 4
  mem_gb: 16
  array_parallelism: 32   # at most this many points at once
  account: proj123        # optional: account, qos, constraint
  qos: normal
  constraint: a100
  setup: ["module load cuda/12.4", "source ~/venvs/effbench/bin/activate"]
  folder: /shared/effbench/slurm-logs   # submitit's job folder (default: <out>/slurm)
  wait: true              # false: submit and return; records land as jobs finish
  cluster: slurm          # "local" runs the array as local processes (submitit's LocalExecutor; tests)
resources: {num_cpus: 4, num_gpus: 1, memory_gb: 16}   # per point; used where slurm: does not say
```
Results (`--out`) must be on the shared filesystem. A failed, cancelled or timed-out job leaves no ok
record for its variants, so running the sweep again resubmits exactly the missing points.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..sweep import Point, SweepSpec, register_executor
from .common import forward_env, options, resources, run_point_once

SLURM_KEYS = {"partition": (str,), "time": (int, str), "gpus_per_node": (int,), "cpus_per_task": (int,),
              "mem_gb": (int, float), "array_parallelism": (int,), "account": (str,), "qos": (str,),
              "constraint": (str,), "setup": (list,), "folder": (str,), "wait": (bool,), "cluster": (str,),
              "additional_parameters": (dict,)}


def _minutes(t: int | str) -> int:
    if isinstance(t, int):
        if t <= 0:
            raise ConfigError(f"slurm.time must be > 0 minutes, got {t}")
        return t
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?", t.strip())
    if not m:
        raise ConfigError(f"slurm.time {t!r}: give minutes (int) or [D-]HH:MM[:SS]")
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return max(1, d * 1440 + h * 60 + mi + (1 if s else 0))


def executor_parameters(spec: SweepSpec) -> tuple[str, dict]:
    """(cluster, submitit AutoExecutor parameters) from the spec's slurm: and resources: mappings."""
    opts = options(spec.extra, "slurm", SLURM_KEYS)
    res = resources(spec.extra)
    cluster = opts.get("cluster", "slurm")
    if cluster not in ("slurm", "local", "debug"):
        raise ConfigError(f"slurm.cluster {cluster!r}: expected 'slurm', 'local' or 'debug'")
    params: dict = {"timeout_min": _minutes(opts.get("time", 60)),
                    "gpus_per_node": opts.get("gpus_per_node", int(res.get("num_gpus", 0))),
                    "cpus_per_task": opts.get("cpus_per_task", int(res.get("num_cpus", 1)) or 1),
                    "slurm_array_parallelism": opts.get("array_parallelism", max(1, spec.workers)),
                    "name": f"effbench-{spec.name or spec.method}"}
    mem = opts.get("mem_gb", res.get("memory_gb"))
    if mem:
        params["mem_gb"] = mem
    for k in ("partition", "account", "qos", "constraint", "additional_parameters"):
        if k in opts:
            params[f"slurm_{k}"] = opts[k]
    if "setup" in opts:
        if not all(isinstance(x, str) for x in opts["setup"]):
            raise ConfigError("slurm.setup must be a list of shell lines")
        params["slurm_setup"] = list(opts["setup"])
    return cluster, params


@register_executor("slurm")
def run_slurm(pts: list[Point], spec: SweepSpec, out: str, tracker: str, progress: bool = True,
              log: Callable[[str], None] = print) -> list[dict]:
    cluster, params = executor_parameters(spec)
    opts = dict(spec.extra.get("slurm") or {})
    try:
        import submitit
    except ImportError:
        raise ConfigError("executor 'slurm' needs submitit: pip install submitit (or effbench[dev])") from None
    from tqdm.auto import tqdm

    out = os.path.abspath(out)
    folder = Path(opts.get("folder") or Path(out) / "slurm")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    if cluster != "slurm":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_") and k != "mem_gb"}
    ex.update_parameters(**params)
    env = forward_env()
    jobs = ex.map_array(run_point_once, pts, [out] * len(pts), [tracker] * len(pts), [env] * len(pts))
    log(f"[slurm] submitted {len(jobs)} job(s) ({cluster}): {jobs[0].job_id.split('_')[0] if jobs else '-'}; logs in {folder}")
    if not opts.get("wait", True):
        return [{"point": p.label, "submitted": j.job_id} for p, j in zip(pts, jobs)]
    results: list[dict] = []
    bar = tqdm(total=len(jobs), desc=f"sweep {spec.method} (slurm)", disable=not progress, dynamic_ncols=True)
    for p, job in zip(pts, jobs):
        try:
            results.append(job.result())
        except Exception as e:    # FailedJobError, UncompletedJobError (timeout, cancelled, node failure)
            text = str(e).strip().splitlines()
            msg = f"{type(e).__name__}: {text[-1] if text else ''}"[:500]
            results.append({"point": p.label, "failed": msg, "job_id": job.job_id})
            log(f"[sweep] point {p.label} (job {job.job_id}) failed: {msg}")
        bar.update()
    bar.close()
    return results
