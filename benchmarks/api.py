"""The contracts between methods, baselines, tasks and the runner.

- A **Method** (methods/<name>/method.py) holds an algorithm: `apply(subject, params, ctx)` turns the
  task's subject (a model, a pipeline, ...) into the accelerated or compressed one. `variants(cfg)`
  lists what one run of the method compares: the reference first, then baselines and method settings.
- A **Baseline** (baselines/) has the same `apply` and is shared by methods.
- A **Task** (benchmarks/tasks/) owns the experiment protocol: it loads the model and data once, hands
  out fresh subjects, and evaluates a transformed subject (quality metrics + efficiency) into an Outcome.
- The **runner** (benchmarks/runner.py) owns the loop, skip-if-done, speedups, records and tracking.
"""
from __future__ import annotations

import abc
import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal, Mapping

from .registry import Registry


def _load_methods() -> None:
    import importlib
    import os

    import methods  # noqa: F401  (imports every methods/<name>/method.py)

    # out-of-tree methods/tasks/baselines: EFFBENCH_PLUGINS="pkg.module,other.module"
    for mod in filter(None, (m.strip() for m in os.environ.get("EFFBENCH_PLUGINS", "").split(","))):
        importlib.import_module(mod)


def _load_baselines() -> None:
    import baselines  # noqa: F401


def _load_tasks() -> None:
    import benchmarks.tasks  # noqa: F401

    METHODS.names()   # plugins may register tasks too


METHODS: Registry[type["Method"]] = Registry("method", _load_methods)
BASELINES: Registry[type["Baseline"]] = Registry("baseline", _load_baselines)
TASKS: Registry[type["Task"]] = Registry("task", _load_tasks)


def register_method(name: str):
    def deco(cls):
        cls.name = name
        return METHODS.register(name)(cls)
    return deco


def register_baseline(name: str):
    def deco(cls):
        cls.name = name
        return BASELINES.register(name)(cls)
    return deco


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    unit: str = ""
    describe: str = ""


def _load_metrics() -> None:
    import importlib
    import pkgutil

    import benchmarks.efficiency  # noqa: F401
    import benchmarks.metrics

    for m in pkgutil.iter_modules(benchmarks.metrics.__path__):
        importlib.import_module(f"benchmarks.metrics.{m.name}")
    METHODS.names()   # methods/tasks may register their own metrics


METRICS: Registry[MetricSpec] = Registry("metric", _load_metrics)


def register_metric(name: str, higher_is_better: bool, unit: str = "", describe: str = "") -> MetricSpec:
    spec = MetricSpec(name, higher_is_better, unit, describe)
    METRICS.register(name)(spec)
    return spec


def register_task(name: str):
    def deco(cls):
        cls.name = name
        return TASKS.register(name)(cls)
    return deco


# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One row of a method's comparison: the method itself or a baseline, with its parameters."""

    impl: str                                  # the method's name, or a registered baseline name
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: Literal["method", "baseline"] = "method"

    @property
    def name(self) -> str:
        """benchopt-style label: `impl[k=v,...]`, keys sorted; the same string in records and tables."""
        if not self.params:
            return self.impl
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.impl}[{inner}]"


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_fmt(x) for x in v) + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass
class Metric:
    """A quality number with its protocol: compare two values only when protocol and version match."""

    value: float
    higher_is_better: bool
    protocol: str = ""          # e.g. "fid/digits-cnn/n=256/ref=digits-test"
    version: int = 1
    unit: str = ""
    stderr: float | None = None

    def to_dict(self) -> dict:
        d = {"value": float(self.value), "higher_is_better": self.higher_is_better,
             "protocol": self.protocol, "version": self.version}
        if self.unit:
            d["unit"] = self.unit
        if self.stderr is not None:
            d["stderr"] = float(self.stderr)
        return d


@dataclass
class Outcome:
    """What a task measured for one variant."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)   # params, macs, latency{...}, peak_memory{...}
    payload: Any = None        # in-memory data for later variants (e.g. reference samples); never serialised
    notes: dict[str, Any] = field(default_factory=dict)        # free-form, serialised into the record


@dataclass
class RunContext:
    """What the runner hands to tasks and methods."""

    seed: int = 0
    device: str = "cpu"
    out_dir: Path = Path("results")
    artifact_dir: Path | None = None      # per-variant folder (moved into results/runs/<run_id>/)
    progress: bool = True
    log: Callable[[str], None] = print
    latency: dict = field(default_factory=dict)   # kwargs for benchmarks.efficiency.measure_latency
    reference: Outcome | None = None      # the reference variant's outcome (None while measuring it)

    def bar(self, iterable: Iterable | None = None, total: int | None = None, desc: str = ""):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, disable=not self.progress, leave=False, dynamic_ncols=True)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------

class Method(abc.ABC):
    """A paper's algorithm. Subclasses set `Config` (a frozen dataclass deriving from the task's config),
    `version` (bump when outputs change) and `paper` (title, arxiv, code)."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    Config: ClassVar[type]
    paper: ClassVar[dict] = {}

    @classmethod
    def folder(cls) -> Path:
        import inspect

        return Path(inspect.getfile(cls)).parent

    @classmethod
    def config_path(cls) -> Path:
        return cls.folder() / "config.yaml"

    @classmethod
    def presets(cls) -> list[str]:
        from .config import read_preset_file

        return list(read_preset_file(cls.config_path()).presets)

    @classmethod
    def zoo_models(cls, preset: str) -> list[str]:
        """Zoo entries a preset names (`zoo:<name>` or a bare zoo name in any config value), so a suite
        can build them up front; entries they depend on (e.g. the FID feature network) come with them."""
        from .config import read_preset_file
        from .zoo import ZOO

        pf = read_preset_file(cls.config_path())
        found: list[str] = []

        def scan(v: Any) -> None:
            if isinstance(v, str):
                name = v[4:].split("@")[0] if v.startswith("zoo:") else v
                if name in ZOO and name not in found:
                    found.append(name)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    scan(x)
            elif isinstance(v, dict):
                for x in v.values():
                    scan(x)

        scan({**pf.defaults, **pf.presets[preset]})
        return found

    @abc.abstractmethod
    def variants(self, cfg: Any) -> list[Variant]:
        """The comparison this run makes. The first variant is the reference for speedups."""

    @abc.abstractmethod
    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Transform the task's subject. Must not time or measure anything."""

    def skip(self, cfg: Any) -> tuple[bool, str | None]:
        return False, None


class Baseline(abc.ABC):
    name: ClassVar[str] = ""
    version: ClassVar[int] = 1

    @abc.abstractmethod
    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any: ...


class Task(abc.ABC):
    """An experiment protocol. Constructed once per run invocation (loads models and data)."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def __init__(self, cfg: Any, ctx: RunContext):
        self.cfg, self.ctx = cfg, ctx

    @property
    @abc.abstractmethod
    def model_id(self) -> str:
        """What model this is, e.g. 'zoo:ddpm_digits@<hash>' or 'sd15-arch(random)'."""

    @property
    def task_id(self) -> str:
        """Leaderboard key: variants are ranked only against others with the same task_id."""
        return self.name

    @abc.abstractmethod
    def subject(self) -> Any:
        """A fresh subject for one variant (methods may mutate it)."""

    @abc.abstractmethod
    def evaluate(self, subject: Any, variant: Variant, ctx: RunContext) -> Outcome:
        """Quality + efficiency of a transformed subject; ctx.reference holds the reference outcome."""

    def release(self, subject: Any) -> None:
        """Undo what apply did, if the subject is shared (e.g. remove hooks). Default: nothing."""
        undo = getattr(subject, "undo", None)
        if callable(undo):
            undo()


@contextlib.contextmanager
def nullcontext():
    yield
