"""Run records: one JSON object per (method, variant, resolved config, seed), in results/runs.jsonl.

The store is append-only. A record is appended only after its run finished and its artifacts were
moved into place (results/runs/<run_id>/), under a file lock, as one write followed by fsync: a killed
run leaves no record, and concurrent writers (process pools, Ray workers, SLURM jobs on a shared disk)
never interleave lines. Reading tolerates damage: a truncated, garbage or wrongly typed line is
reported with its line number and skipped.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1

# field -> accepted types (checked when reading)
_SCHEMA: dict[str, tuple[type, ...]] = {
    "schema_version": (int,), "run_id": (str,), "method": (str,), "variant": (str,), "preset": (str,),
    "model": (str,), "task": (str,), "config": (dict,), "config_hash": (str,), "seed": (int,),
    "metrics": (dict,), "efficiency": (dict,), "provenance": (dict,), "status": (str,),
}
STATUSES = ("ok", "error")


@dataclass
class RunRecord:
    run_id: str
    method: str
    variant: str
    preset: str
    model: str
    task: str
    config: dict
    config_hash: str
    seed: int
    metrics: dict = field(default_factory=dict)
    efficiency: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    variant_kind: str = "method"
    variant_params: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    artifacts: str | None = None
    tracker: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=_json_default, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def value(self, name: str) -> float | None:
        """A number by name: a metric, an efficiency field, or a dotted path (`efficiency.latency.p50`)."""
        if "." in name:
            cur: Any = asdict(self)
            for part in name.split("."):
                if not isinstance(cur, dict) or part not in cur:
                    return None
                cur = cur[part]
            return _num(cur)
        if name in self.metrics:
            return _num(self.metrics[name])
        if name in self.efficiency:
            return _num(self.efficiency[name])
        return None

    def higher_is_better(self, name: str) -> bool:
        m = self.metrics.get(name)
        if isinstance(m, dict) and "higher_is_better" in m:
            return bool(m["higher_is_better"])
        return name in {"speedup", "mac_speedup", "throughput"}


def _num(v: Any) -> float | None:
    if isinstance(v, dict):
        v = v.get("value", v.get("mean"))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    return str(o)


OWNER = ".owner"          # "<host> <pid>" of the process writing a .tmp-<run_id> artifact folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_id(method: str, variant: str) -> str:
    import re
    import time

    slug = re.sub(r"[^A-Za-z0-9]+", "-", variant).strip("-")[:48]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{method}-{slug}-{uuid.uuid4().hex[:6]}"


@dataclass
class Problem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"runs.jsonl line {self.line}: {self.reason}"


def validate(d: Any) -> str | None:
    """None if `d` is a well-formed record dict, else the reason it is not."""
    if not isinstance(d, dict):
        return f"not a JSON object ({type(d).__name__})"
    for k, types in _SCHEMA.items():
        if k not in d:
            return f"missing field {k!r}"
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, types):
            return f"field {k!r} has type {type(v).__name__}, expected {'/'.join(t.__name__ for t in types)}"
    if d["status"] not in STATUSES:
        return f"field 'status' is {d['status']!r}, expected one of {STATUSES}"
    for k in ("metrics",):
        for name, m in d[k].items():
            if not isinstance(m, dict) or isinstance(m.get("value"), bool) or not isinstance(m.get("value"), (int, float)):
                return f"metric {name!r} has no numeric value"
    return None


class RecordStore:
    """results/ folder: runs.jsonl + runs/<run_id>/ artifacts."""

    def __init__(self, root: str | Path = "results"):
        self.root = Path(root)
        self.path = self.root / "runs.jsonl"
        self.runs_dir = self.root / "runs"

    def _lock(self):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock")

    def append(self, record: RunRecord) -> None:
        line = (record.to_json() + "\n").encode()
        with self._lock():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                # a line truncated by a killed writer must not swallow ours
                size = os.fstat(fd).st_size
                if size:
                    with open(self.path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            line = b"\n" + line
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> tuple[list[RunRecord], list[Problem]]:
        records, problems = [], []
        if not self.path.exists():
            return records, problems
        with open(self.path, "rb") as f:
            for i, raw in enumerate(f, start=1):
                text = raw.decode("utf-8", errors="replace").strip()
                if not text:
                    continue
                try:
                    d = json.loads(text)
                except json.JSONDecodeError as e:
                    problems.append(Problem(i, f"not valid JSON ({e.msg}); truncated or damaged line skipped"))
                    continue
                why = validate(d)
                if why:
                    problems.append(Problem(i, f"{why}; line skipped"))
                    continue
                records.append(RunRecord.from_dict(d))
        return records, problems

    def records(self, report: Any = None, **where: Any) -> list[RunRecord]:
        """Good records filtered by field equality; problems go to `report` (a callable) if given."""
        recs, problems = self.read()
        if report is not None:
            for p in problems:
                report(str(p))
        return [r for r in recs if all(getattr(r, k) == v for k, v in where.items())]

    def done_hashes(self) -> set[str]:
        recs, _ = self.read()
        return {r.config_hash for r in recs if r.status == "ok"}

    def latest(self, records: Iterable[RunRecord]) -> dict[tuple, RunRecord]:
        """Latest ok record per (method, variant, preset, config_hash)."""
        out: dict[tuple, RunRecord] = {}
        for r in records:
            if r.status == "ok":
                out[(r.method, r.variant, r.preset, r.config_hash)] = r
        return out

    def artifact_tmp(self, run_id: str) -> Path:
        """Artifacts of a run in progress; renamed to runs/<run_id> when its record is written. The owner
        file lets a later run remove the folder if this process dies first (`remove_orphans`)."""
        p = self.runs_dir / f".tmp-{run_id}"
        p.mkdir(parents=True, exist_ok=True)
        (p / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}")
        return p

    def remove_orphans(self) -> list[Path]:
        """Delete `.tmp-*` artifact folders whose owning process (on this host) no longer runs: what a
        killed run leaves behind. Folders of live runs, of other hosts or without an owner file stay."""
        removed = []
        for tmp in self.runs_dir.glob(".tmp-*") if self.runs_dir.exists() else []:
            try:
                host, pid = (tmp / OWNER).read_text().split()
            except (OSError, ValueError):
                continue
            if host == socket.gethostname() and not _pid_alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
        return removed

    def commit_artifacts(self, run_id: str) -> Path | None:
        tmp = self.runs_dir / f".tmp-{run_id}"
        final = self.runs_dir / run_id
        if not tmp.exists():
            return None
        (tmp / OWNER).unlink(missing_ok=True)
        if not any(tmp.iterdir()):
            tmp.rmdir()
            return None
        os.replace(tmp, final)
        return final
