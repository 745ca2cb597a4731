"""What the ray and slurm executors share: the exactly-once guard around one sweep point, the
`resources:` mapping, and the environment forwarded to remote workers."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..sweep import Point, run_point

# resources: {num_cpus: 1, num_gpus: 0, memory_gb: 4}  (per sweep point)
RESOURCE_KEYS = {"num_cpus", "num_gpus", "memory_gb"}
# environment a remote worker needs to behave like a local one (plugins, threads, tracker, offline mode)
FORWARD_ENV_PREFIXES = ("EFFBENCH_", "WANDB_", "HF_", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "TOKENIZERS_PARALLELISM")


def point_lock_path(point: Point, out: str | Path) -> Path:
    key = hashlib.sha256(repr((point.method, point.preset, point.overrides, point.seed)).encode()).hexdigest()[:24]
    return Path(out) / ".locks" / f"point-{key}.lock"


def run_point_once(point: Point, out: str, tracker: str, env: dict[str, str] | None = None) -> dict:
    """Run one point while holding a per-point lock in the results folder.

    A retried task (Ray re-executes a task whose node died; SLURM requeues) may start while a worker of the
    first attempt is still alive on a half-dead node. The lock (fcntl, released by the kernel when its holder
    dies) makes the second attempt wait; it then skips every variant the first attempt already recorded, so
    a point never lands twice. The lock files are empty and may be deleted when no sweep runs.
    """
    from filelock import FileLock

    for k, v in (env or {}).items():
        os.environ.setdefault(k, v)
    path = point_lock_path(point, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        return run_point(point, out, tracker)


def forward_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV_PREFIXES)}


def resources(spec_extra: dict[str, Any], where: str = "sweep spec") -> dict[str, float]:
    res = dict(spec_extra.get("resources") or {})
    bad = set(res) - RESOURCE_KEYS
    if bad:
        raise ConfigError(f"{where}: unknown key {sorted(bad)[0]!r} in 'resources'; valid: {', '.join(sorted(RESOURCE_KEYS))}")
    for k, v in res.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{where}: resources.{k} must be a number >= 0, got {v!r}")
    return res


def options(spec_extra: dict[str, Any], section: str, allowed: dict[str, tuple[type, ...]], where: str = "sweep spec") -> dict:
    opts = dict(spec_extra.get(section) or {})
    bad = set(opts) - set(allowed)
    if bad:
        raise ConfigError(f"{where}: unknown key {sorted(bad)[0]!r} in {section!r}; valid: {', '.join(sorted(allowed))}")
    for k, v in opts.items():
        types = allowed[k]
        if (isinstance(v, bool) and bool not in types) or not isinstance(v, types):
            raise ConfigError(f"{where}: {section}.{k} has type {type(v).__name__}, expected "
                              f"{'/'.join(t.__name__ for t in types)}")
    return opts
