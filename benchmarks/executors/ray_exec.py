"""`--executor ray`: every sweep point is one Ray task on a Ray cluster.

```yaml
executor: ray
ray:
  address: "ray-head.example.org:6379"   # an existing cluster; "auto" = the one on this machine;
                                         # absent (and no RAY_ADDRESS): a local cluster started for you
  max_retries: 3          # re-executions of a point whose worker or node died (Ray's default is 3)
  num_cpus: 4             # only for the local cluster started for you (default: `workers`)
  namespace: effbench
resources:                # per point
  num_cpus: 1
  num_gpus: 1
  memory_gb: 8
```
The results folder (`--out`) must be on a disk every node sees (NFS, Lustre, ...): workers append to
`runs.jsonl` there under the store's file lock. An exception inside a point is a failed point (no retry:
the runner already wrote `status: error` rows); a dead worker or node is retried `max_retries` times and
otherwise reported as failed, and the rerun of the sweep picks it up (skip-if-done).
"""
from __future__ import annotations

import os
from typing import Callable

from ..errors import ConfigError
from ..sweep import Point, SweepSpec, register_executor
from .common import forward_env, options, resources, run_point_once

RAY_KEYS = {"address": (str,), "max_retries": (int,), "num_cpus": (int,), "namespace": (str,),
            "object_store_memory_mb": (int,)}


def _connect(opts: dict, spec: SweepSpec, log) -> bool:
    """Connect to (or start) a cluster; True if this call owns the connection and must shut it down."""
    import ray

    if ray.is_initialized():                       # the caller already connected (tests, notebooks)
        return False
    address = opts.get("address") or os.environ.get("RAY_ADDRESS")
    common = dict(namespace=opts.get("namespace", "effbench"), include_dashboard=False, log_to_driver=False,
                  configure_logging=False)
    if address:
        log(f"[ray] connecting to {address}")
        ray.init(address=address, **common)
    else:
        n = opts.get("num_cpus", spec.workers)
        log(f"[ray] starting a local cluster with {n} CPU(s)")
        mem = opts.get("object_store_memory_mb", 100) * 1024 * 1024
        ray.init(num_cpus=n, object_store_memory=mem, _node_ip_address="127.0.0.1", **common)   # loopback only
    return True


@register_executor("ray")
def run_ray(pts: list[Point], spec: SweepSpec, out: str, tracker: str, progress: bool = True,
            log: Callable[[str], None] = print) -> list[dict]:
    opts = options(spec.extra, "ray", RAY_KEYS)
    res = resources(spec.extra)
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: pip install 'ray[default]' (or effbench[dev])") from None
    from tqdm.auto import tqdm

    out = os.path.abspath(out)
    owns = _connect(opts, spec, log)
    try:
        task_opts = {"num_cpus": res.get("num_cpus", 1), "num_gpus": res.get("num_gpus", 0),
                     "max_retries": opts.get("max_retries", 3), "retry_exceptions": False}
        if res.get("memory_gb"):
            task_opts["memory"] = int(res["memory_gb"] * 1024 ** 3)
        remote = ray.remote(run_point_once).options(**task_opts)
        env = forward_env()
        refs = {remote.remote(p, out, tracker, env): p for p in pts}
        results: list[dict] = []
        bar = tqdm(total=len(pts), desc=f"sweep {spec.method} (ray)", disable=not progress, dynamic_ncols=True)
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            ref = ready[0]
            p = refs[ref]
            try:
                results.append(ray.get(ref))
            except Exception as e:   # RayTaskError (the point raised), WorkerCrashedError, NodeDiedError, ...
                msg = _short(e)
                results.append({"point": p.label, "failed": msg})
                log(f"[sweep] point {p.label} failed: {msg}")
            bar.update()
        bar.close()
        return results
    finally:
        if owns:
            ray.shutdown()


def _short(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    if cause is not None and not isinstance(cause, type(e)):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]
