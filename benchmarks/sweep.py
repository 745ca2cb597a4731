"""Sweeps: a YAML spec -> a grid of runs, each written as run records, resumable.

```yaml
method: deepcache
preset: smoke
set: [num_samples=50]          # fixed overrides for every point (optional)
grid:                           # cross product of --set values (a list value marks a sweep axis)
  branch: [0, 1]
  intervals: [[2], [5]]
seeds: [0, 1]                   # optional, default [0]
workers: 2                      # local process pool size (optional, default 1)
```
A point is one `effbench run` (method, preset, overrides, seed). Points whose variants all have ok
records are skipped, so re-running a killed sweep runs only what is missing; records are appended
under a file lock, so parallel workers never interleave or duplicate lines.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import read_yaml
from .errors import ConfigError

SPEC_KEYS = {"method", "preset", "set", "grid", "seeds", "workers", "executor", "resources", "slurm", "ray", "name"}


@dataclass
class SweepSpec:
    method: str
    preset: str | None = None
    fixed: list[str] = field(default_factory=list)
    grid: dict[str, list] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    workers: int = 1
    executor: str = "local"
    extra: dict[str, Any] = field(default_factory=dict)   # executor options (resources, slurm, ray)
    name: str = ""


@dataclass(frozen=True)
class Point:
    method: str
    preset: str | None
    overrides: tuple[str, ...]
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method}[{','.join(self.overrides)}]seed={self.seed}"


def _yaml_value(v: Any) -> str:
    import json

    return json.dumps(v) if not isinstance(v, str) else v


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sweep spec {path} does not exist")
    data = read_yaml(path)
    return parse_spec(data, where=str(path))


def parse_spec(data: Any, where: str = "sweep spec") -> SweepSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'method'")
    bad = set(data) - SPEC_KEYS
    if bad:
        raise ConfigError(f"{where}: unknown key {sorted(bad)[0]!r}; valid: {', '.join(sorted(SPEC_KEYS))}")
    if not isinstance(data.get("method"), str):
        raise ConfigError(f"{where}: 'method' must be a method name")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(k, str) for k in grid):
        raise ConfigError(f"{where}: 'grid' must map config keys to lists of values")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}: grid key {k!r} must be a non-empty list of values")
    fixed = data.get("set") or []
    if not isinstance(fixed, list) or not all(isinstance(s, str) and "=" in s for s in fixed):
        raise ConfigError(f"{where}: 'set' must be a list of key=value strings")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{where}: 'seeds' must be a non-empty list of integers")
    workers = data.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"{where}: 'workers' must be a positive integer")
    preset = data.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"{where}: 'preset' must be a string")
    executor = data.get("executor", "local")
    if not isinstance(executor, str):
        raise ConfigError(f"{where}: 'executor' must be a string")
    extra = {k: data[k] for k in ("resources", "slurm", "ray") if k in data}
    for k, v in extra.items():
        if not isinstance(v, dict):
            raise ConfigError(f"{where}: {k!r} must be a mapping")
    return SweepSpec(data["method"], preset, list(fixed), {k: list(v) for k, v in grid.items()}, list(seeds),
                     workers, executor, extra, str(data.get("name", "")))


def points(spec: SweepSpec) -> list[Point]:
    keys = sorted(spec.grid)
    out = []
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        ov = tuple(spec.fixed) + tuple(f"{k}={_yaml_value(v)}" for k, v in zip(keys, combo))
        for seed in spec.seeds:
            out.append(Point(spec.method, spec.preset, ov, seed))
    return out


def validate(spec: SweepSpec) -> list[Point]:
    """Resolve every point's config before running anything (bad keys fail the whole sweep up front)."""
    from .runner import plan

    pts = points(spec)
    for p in pts:
        plan(p.method, p.preset, p.overrides, p.seed)
    return pts


def pending(pts: list[Point], out: str | Path) -> list[Point]:
    """Points with at least one variant that has no ok record yet."""
    from .record import RecordStore
    from .runner import plan

    done = RecordStore(out).done_hashes()
    return [p for p in pts if any(h not in done for h in plan(p.method, p.preset, p.overrides, p.seed).hashes.values())]


def run_point(point: Point, out: str, tracker: str, force: bool = False) -> dict:
    """Worker entry point (picklable): one run in a fresh process, one thread."""
    import torch

    torch.set_num_threads(int(os.environ.get("EFFBENCH_WORKER_THREADS", "1")))
    from .runner import run

    summary = run(point.method, point.preset, point.overrides, point.seed, out=out, force=force, tracker=tracker,
                  progress=False, log=lambda s: None)
    return {"point": point.label, "written": len(summary.written), "errors": len(summary.errors),
            "skipped": len(summary.skipped)}


EXECUTORS: dict[str, Callable[..., list[dict]]] = {}


def register_executor(name: str):
    def deco(fn):
        EXECUTORS[name] = fn
        return fn
    return deco


@register_executor("local")
def run_local(pts: list[Point], spec: SweepSpec, out: str, tracker: str, progress: bool = True,
              log: Callable[[str], None] = print) -> list[dict]:
    """A process pool of `spec.workers` spawned workers (one thread each)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    results = []
    bar = tqdm(total=len(pts), desc=f"sweep {spec.method}", disable=not progress, dynamic_ncols=True)
    if spec.workers == 1:
        for p in pts:
            results.append(_guard(run_point, p, out, tracker, log))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=spec.workers, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(run_point, p, out, tracker): p for p in pts}
            for f in as_completed(futs):
                try:
                    results.append(f.result())
                except Exception as e:
                    results.append({"point": futs[f].label, "failed": f"{type(e).__name__}: {e}"})
                    log(f"[sweep] point {futs[f].label} failed: {type(e).__name__}: {e}")
                bar.update()
    bar.close()
    return results


def _guard(fn, p: Point, out: str, tracker: str, log) -> dict:
    try:
        return fn(p, out, tracker)
    except Exception as e:
        log(f"[sweep] point {p.label} failed: {type(e).__name__}: {e}")
        return {"point": p.label, "failed": f"{type(e).__name__}: {e}"}


def run_sweep(spec_path: str | Path, out: str | Path = "results", tracker: str = "wandb", executor: str | None = None,
              workers: int | None = None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    spec = load_spec(spec_path)
    if workers is not None:
        spec.workers = workers
    name = executor or spec.executor
    if name not in EXECUTORS:
        _load_executors()
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(sorted(EXECUTORS))}")
    pts = validate(spec)
    todo = pending(pts, out)
    log(f"[sweep] {spec.method}: {len(pts)} points, {len(pts) - len(todo)} already done, {len(todo)} to run ({name})")
    results = EXECUTORS[name](todo, spec, str(out), tracker, progress=progress, log=log) if todo else []
    left = pending(pts, out)
    return {"points": len(pts), "ran": len(todo), "still_missing": len(left), "results": results}


def _load_executors() -> None:
    import importlib

    for mod in ("benchmarks.executors",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
