"""The run loop: one method, one preset -> one record per variant (see CONTRIBUTING.md).

The runner owns: config validation, skip-if-done, seeding, the reference measurement (always taken in
this process so speedups are same-process ratios), speedups, provenance, artifacts, tracking and the
record append. Tasks own the protocol, methods the algorithm.
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .api import BASELINES, METHODS, TASKS, Method, Outcome, RunContext, Task, Variant, seed_everything
from .config import resolve, stable_hash, to_dict
from .errors import ConfigError, EffbenchError
from .record import RecordStore, RunRecord, new_run_id
from .tracking import TRACKERS, log_record


@dataclass
class RunSummary:
    method: str
    preset: str
    written: list[RunRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[RunRecord]:
        return [r for r in self.written if r.status != "ok"]


@dataclass
class Plan:
    """Everything resolved and validated before any work starts."""

    method: Method
    preset: str
    cfg: object
    task_cls: type[Task]
    variants: list[Variant]
    hashes: dict[str, str]


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use device=cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"bad value {name!r} for key 'device'; allowed: 'cpu', 'cuda', 'cuda:N', 'auto'")
    return name


def config_hash(method: Method, task_cls: type[Task], variant: Variant, cfg: object, seed: int) -> str:
    return stable_hash({"method": method.name, "method_version": method.version, "task": task_cls.name,
                        "task_version": task_cls.version, "variant": variant.name,
                        "variant_kind": variant.kind, "config": to_dict(cfg), "seed": seed})


def plan(method_name: str, preset: str | None = None, overrides: Sequence[str] = (), seed: int = 0) -> Plan:
    cls = METHODS.get(method_name)
    method = cls()
    preset, cfg = resolve(cls.Config, cls.config_path(), preset, overrides, method=cls.name)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"bad seed {seed!r}: must be an integer")
    resolve_device(cfg.device)            # a bad or unavailable device fails here, before any work
    task_cls = TASKS.get(cfg.task)
    variants = method.variants(cfg)
    if not variants:
        raise ConfigError(f"{cls.name} preset {preset!r} selects no variant")
    names = [v.name for v in variants]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{cls.name} preset {preset!r} lists variant(s) twice: {', '.join(sorted(dup))}")
    for v in variants:
        if v.kind == "baseline":
            BASELINES.get(v.impl)
    return Plan(method, preset, cfg, task_cls, variants, {v.name: config_hash(method, task_cls, v, cfg, seed) for v in variants})


def _impl(method: Method, variant: Variant):
    return method if variant.kind == "method" else BASELINES.get(variant.impl)()


def _speedups(eff: dict, ref: Outcome | None, ref_name: str) -> None:
    if ref is None:
        lat = eff.get("latency")
        if lat:
            eff["speedup"] = {"value": 1.0, "reference": ref_name, "basis": "latency.mean"}
        if eff.get("macs"):
            eff["mac_speedup"] = {"value": 1.0, "reference": ref_name, "basis": "macs"}
        return
    r_lat, v_lat = (ref.efficiency.get("latency") or {}), (eff.get("latency") or {})
    if r_lat.get("mean") and v_lat.get("mean"):
        eff["speedup"] = {"value": r_lat["mean"] / v_lat["mean"], "reference": ref_name, "basis": "latency.mean",
                          "per": v_lat.get("per")}
    if ref.efficiency.get("macs") and eff.get("macs"):
        eff["mac_speedup"] = {"value": ref.efficiency["macs"] / eff["macs"], "reference": ref_name, "basis": "macs"}
    if ref.efficiency.get("params") and eff.get("params"):
        eff["param_ratio"] = eff["params"] / ref.efficiency["params"]


def run(method_name: str, preset: str | None = None, overrides: Sequence[str] = (), seed: int = 0,
        out: str | Path = "results", force: bool = False, tracker: str = "wandb", progress: bool = True,
        log: Callable[[str], None] = print) -> RunSummary:
    if tracker not in TRACKERS:
        raise ConfigError(f"unknown tracker {tracker!r}; valid: {', '.join(TRACKERS)}")
    p = plan(method_name, preset, overrides, seed)
    method, cfg = p.method, p.cfg
    store = RecordStore(out)
    for orphan in store.remove_orphans():
        log(f"[clean] removed {orphan}: artifacts of a run that was killed before writing its record")
    summary = RunSummary(method.name, p.preset)
    done = set() if force else store.done_hashes()
    todo = [v for v in p.variants if p.hashes[v.name] not in done]
    summary.skipped = [v.name for v in p.variants if v not in todo]
    for name in summary.skipped:
        log(f"[skip] {method.name} {name}: ok record exists (use --force to rerun)")
    if not todo:
        return summary
    skip, why = method.skip(cfg)
    if skip:
        raise ConfigError(f"{method.name} cannot run preset {p.preset!r}: {why}")

    device = resolve_device(cfg.device)
    lat = {"warmup": cfg.latency_warmup, "min_reps": cfg.latency_min_reps,
           "min_seconds": cfg.latency_min_seconds, "max_reps": cfg.latency_max_reps}
    ctx = RunContext(seed=seed, device=device, out_dir=Path(out), progress=progress, log=log, latency=lat)
    seed_everything(seed)
    log(f"[run] {method.name} preset={p.preset} task={cfg.task} variants={len(p.variants)} todo={len(todo)} device={device}")
    task = p.task_cls(cfg, ctx)          # may raise MissingAssetError before anything is written

    ref = p.variants[0]
    order = [ref] + [v for v in todo if v is not ref]
    bar = ctx.bar(order, desc=f"{method.name}")
    for v in bar:
        bar.set_postfix_str(v.name[:40])
        write = v in todo
        rec = _run_variant(method, task, v, ctx, store, p, seed, write)
        if v is ref:
            if rec is not None and rec.status != "ok":
                summary.written.append(rec)
                raise EffbenchError(f"reference variant {ref.name} failed: {rec.error}")
        if rec is not None:
            if write:
                rec.tracker = _track(rec, tracker, out, log)
                store.append(rec)
                summary.written.append(rec)
                log(f"[done] {method.name} {v.name}: {_brief(rec)}")
    return summary


def _track(rec: RunRecord, tracker: str, out, log) -> dict:
    try:
        return log_record(rec, tracker, Path(out))
    except Exception as e:  # the local record is the source of truth; a tracker failure must not lose it
        log(f"[warn] tracker {tracker} failed: {type(e).__name__}: {e}")
        return {"name": tracker, "error": f"{type(e).__name__}: {e}"}


def _run_variant(method: Method, task: Task, v: Variant, ctx: RunContext, store: RecordStore, p: Plan,
                 seed: int, write: bool) -> RunRecord | None:
    run_id = new_run_id(method.name, v.name)
    ctx.artifact_dir = store.artifact_tmp(run_id) if write else None
    started = time.time()
    seed_everything(seed)
    status, error, outcome = "ok", None, Outcome()
    try:
        subject = task.subject()
        try:
            subject = _impl(method, v).apply(subject, dict(v.params), ctx)
            outcome = task.evaluate(subject, v, ctx)
        finally:
            task.release(subject)
    except KeyboardInterrupt:
        if ctx.artifact_dir is not None:
            shutil.rmtree(ctx.artifact_dir, ignore_errors=True)
        raise
    except EffbenchError:
        if ctx.artifact_dir is not None:
            shutil.rmtree(ctx.artifact_dir, ignore_errors=True)
        raise
    except Exception as e:
        status, error = "error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"
        ctx.log(f"[error] {method.name} {v.name}: {type(e).__name__}: {e}")
    if v is p.variants[0] and status == "ok":
        ctx.reference = outcome
    eff = dict(outcome.efficiency)
    if status == "ok":
        _speedups(eff, None if v is p.variants[0] else ctx.reference, p.variants[0].name)
    if not write and status == "ok":
        ctx.artifact_dir = None
        return None
    from .provenance import provenance

    art = store.commit_artifacts(run_id) if write else None
    ctx.artifact_dir = None
    return RunRecord(
        run_id=run_id, method=method.name, variant=v.name, preset=p.preset, model=task.model_id,
        task=task.task_id, config=to_dict(p.cfg), config_hash=p.hashes[v.name], seed=seed,
        metrics={k: m.to_dict() for k, m in outcome.metrics.items()}, efficiency=eff,
        provenance=provenance(seed, started, method.version, getattr(task, "version", None)),
        status=status, error=error, variant_kind=v.kind, variant_params=dict(v.params), notes=outcome.notes,
        artifacts=str(art.relative_to(store.root)) if art else None)


def _brief(r: RunRecord) -> str:
    if r.status != "ok":
        return f"ERROR {(r.error or '').splitlines()[0]}"
    parts = [f"{k}={m['value']:.4g}" for k, m in list(r.metrics.items())[:6]]
    sp = r.efficiency.get("speedup")
    if sp:
        parts.append(f"speedup={sp['value']:.2f}x")
    ms = r.efficiency.get("mac_speedup")
    if ms:
        parts.append(f"mac_speedup={ms['value']:.2f}x")
    return " ".join(parts)
