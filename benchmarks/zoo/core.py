"""The mini-world model zoo: deterministic recipes, trained on first use, cached by content.

An entry registers a recipe (a dict of hyper-parameters), a `train(recipe, out_dir, ctx) -> info`
function that writes files into `out_dir` and returns {"quality": {...}} and a `load(dir) -> object`
function. The cache key hashes the entry name, its version, the recipe, the recipes of the entries it
depends on and the versions of torch/diffusers/transformers, so a changed recipe never reuses a stale
model. Files are safetensors/JSON (see benchmarks.safeio); builds are atomic (tmp dir + rename) and
guarded by a file lock, so concurrent workers build once.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import stable_hash
from ..registry import Registry


def _load_entries() -> None:
    import benchmarks.zoo.models  # noqa: F401


@dataclass
class ZooEntry:
    name: str
    recipe: dict
    train: Callable[[dict, Path, "ZooContext"], dict]
    load: Callable[[Path], Any]
    describe: str = ""
    depends: tuple[str, ...] = ()
    version: int = 1
    cost: float = 60.0        # rough single-core training seconds, to schedule a cold build_many


@dataclass
class ZooContext:
    progress: bool = True
    log: Callable[[str], None] = print
    deps: dict[str, Path] = field(default_factory=dict)   # dependency name -> its built folder

    def bar(self, iterable=None, total=None, desc=""):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, disable=not self.progress, leave=False, dynamic_ncols=True)


ZOO: Registry[ZooEntry] = Registry("zoo model", _load_entries)


def register_zoo(name: str, recipe: dict, load: Callable[[Path], Any], describe: str = "",
                 depends: tuple[str, ...] = (), version: int = 1, cost: float = 60.0):
    """Decorator for a train function: `@register_zoo("ddpm_digits", RECIPE, load=load_ddpm)`.
    `cost` is a rough single-core training time in seconds; `build_many` uses it to start the longest
    dependency chains first when nothing has been built yet."""

    def deco(train_fn):
        ZOO.register(name)(ZooEntry(name, dict(recipe), train_fn, load, describe, tuple(depends), version, cost))
        return train_fn

    return deco


def home() -> Path:
    env = os.environ.get("EFFBENCH_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("effbench"))


def _versions() -> dict:
    from importlib.metadata import version

    out = {}
    for pkg in ("torch", "diffusers", "transformers"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = None
    return out


def key(name: str) -> str:
    e = ZOO.get(name)
    blob = {"name": e.name, "version": e.version, "recipe": e.recipe, "versions": _versions(),
            "deps": {d: key(d) for d in e.depends}}
    return stable_hash(blob)[:12]


def path(name: str) -> Path:
    e = ZOO.get(name)
    return home() / "zoo" / f"{e.name}-{key(e.name)}"


def model_id(name: str) -> str:
    """Record identity of a zoo model: `zoo:<name>@<cache key>` (the key changes with the recipe)."""
    return f"zoo:{name}@{key(name)}"


def is_built(name: str) -> bool:
    return (path(name) / "manifest.json").exists()


def manifest(name: str) -> dict | None:
    p = path(name) / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else None


def build(name: str, force: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train `name` (and its dependencies) unless a finished build with the same key exists."""
    from filelock import FileLock

    import torch

    e = ZOO.get(name)
    deps = {d: build(d, progress=progress, log=log) for d in e.depends}
    final = path(e.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "manifest.json").exists() and not force:
            return final
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log(f"[zoo] training {e.name} ({e.describe}) ...")
        threads = torch.get_num_threads()
        t0 = time.perf_counter()
        try:
            info = e.train(dict(e.recipe), tmp, ZooContext(progress=progress, log=log, deps=deps)) or {}
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            torch.set_num_threads(threads)
        seconds = time.perf_counter() - t0
        man = {"name": e.name, "key": key(e.name), "version": e.version, "recipe": e.recipe,
               "describe": e.describe, "train_seconds": round(seconds, 2), "threads": threads,
               "versions": _versions(), "quality": info.get("quality", {}), "info": {k: v for k, v in info.items() if k != "quality"},
               "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / "manifest.json").write_text(json.dumps(man, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        q = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in man["quality"].items())
        log(f"[zoo] {e.name}: {seconds:.1f}s  {q}")
        return final


def _build_one(name: str, force: bool) -> tuple[str, str]:
    import torch

    torch.set_num_threads(1)
    return name, str(build(name, force=force, progress=False))


def build_plan(names: list[str]) -> list[str]:
    """The unbuilt entries `names` need (their unbuilt dependencies included), most urgent first: by
    the longest chain of training time that still has to follow each one (critical path), in the
    entries' `cost` hints (an unbuilt entry has no measured time)."""
    todo: list[str] = []

    def visit(n: str) -> None:
        if n in todo or is_built(n):
            return
        for d in ZOO.get(n).depends:
            visit(d)
        todo.append(n)

    for n in names:
        visit(n)
    seconds = {n: float(ZOO.get(n).cost) for n in todo}
    tail: dict[str, float] = {}

    def chain(n: str) -> float:          # n's own time + the longest chain of entries waiting on n
        if n not in tail:
            tail[n] = seconds[n] + max((chain(m) for m in todo if n in ZOO.get(m).depends), default=0.0)
        return tail[n]

    return sorted(todo, key=lambda n: (-chain(n), n))


def build_many(names: list[str], jobs: int = 2, force: bool = False, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Build several entries (and their dependencies) in `jobs` spawned processes, one thread each.
    An entry starts only once its dependencies are built, so no worker sits waiting on a lock; among
    the ready ones the longest remaining chain goes first (`build_plan`)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    plan = build_plan(names)
    if force:   # forced entries rebuild even if built; their missing dependencies are built first
        plan += [n for n in dict.fromkeys(names) if n not in plan]
    out: dict[str, Path] = {n: path(n) for n in names if n not in plan}
    pending, running = list(plan), {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        while pending or running:
            for n in [n for n in pending if not any(d in pending or d in running.values() for d in ZOO.get(n).depends)]:
                if len(running) >= jobs:
                    break
                pending.remove(n)
                running[pool.submit(_build_one, n, force and n in names)] = n
            if not running:
                raise RuntimeError(f"zoo entries {pending} wait on dependencies that are not being built")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                running.pop(f)
                name, p = f.result()
                m = manifest(name) or {}
                q = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.get("quality", {}).items())
                log(f"[zoo] {name}: ready ({m.get('train_seconds', '?')} s to train)  {q}")
                out[name] = Path(p)
    return out


_LOADED: dict[tuple[str, str], Any] = {}


def load(name: str, progress: bool = True, cache: bool = True) -> Any:
    """Build if needed, then load. Loaded objects are cached per process; callers that mutate a model
    must deep-copy it (or pass cache=False)."""
    p = build(name, progress=progress)
    k = (name, str(p))
    if cache and k in _LOADED:
        return _LOADED[k]
    obj = ZOO.get(name).load(p)
    if cache:
        _LOADED[k] = obj
    return obj


def list_models() -> list[dict]:
    rows = []
    for n in ZOO.names():
        e = ZOO.get(n)
        m = manifest(n)
        rows.append({"name": n, "describe": e.describe, "built": m is not None,
                     "train_seconds": m["train_seconds"] if m else None,
                     "quality": m["quality"] if m else {}, "path": str(path(n))})
    return rows
