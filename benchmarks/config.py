"""Method configs: `methods/<name>/config.yaml` = `defaults:` + `presets:`, loaded into a frozen dataclass.

A preset lists only the keys it changes. `--set key=value` overrides are parsed with `yaml.safe_load`
(so `3`, `0.5`, `true`, `[2, 3]` get their YAML types). Every key is checked against the dataclass
fields (unknown key -> ConfigError naming it and listing valid keys) and every value against the
field's type annotation, before any work starts. `__post_init__` of a config checks allowed values.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class BaseConfig:
    """Fields every method config has (the runner's own knobs)."""

    task: str = ""              # registered task the method runs on (benchmarks/tasks)
    device: str = "cpu"         # "cpu", "cuda", "cuda:1", or "auto" (cuda when available)
    latency_warmup: int = 1     # discarded runs before timing
    latency_min_reps: int = 3   # timing stops once both min_reps and min_seconds are reached
    latency_min_seconds: float = 0.0
    latency_max_reps: int = 1000

    def __post_init__(self) -> None:
        check_positive(self, "latency_min_reps")
        if self.latency_warmup < 0:
            raise ConfigError("latency_warmup must be >= 0")


def check_choice(cfg: Any, key: str, allowed: typing.Iterable[Any]) -> None:
    allowed = list(allowed)
    value = getattr(cfg, key)
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v not in allowed:
            raise ConfigError(f"bad value {v!r} for key {key!r}; allowed: {', '.join(map(repr, allowed))}")


def check_positive(cfg: Any, *keys: str) -> None:
    for key in keys:
        value = getattr(cfg, key)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v is None or v <= 0 for v in values):
            raise ConfigError(f"bad value {value!r} for key {key!r}: must be > 0")


# ---------------------------------------------------------------------------------------------
# type checking against annotations

def _type_ok(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],)
        if origin is tuple and len(args) > 1:
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
        return all(_type_ok(v, args[0]) for v in value)
    if origin in (dict, typing.Mapping) or tp is dict:
        if not isinstance(value, dict):
            return False
        if not args:
            return True
        return all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items())
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any) -> Any:
    """Lists become tuples where the field is a tuple (frozen, hashable configs); ints widen to float."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            if _type_ok(value, a):
                return _coerce(value, a)
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def build_config(cls: type, values: Mapping[str, Any], where: str = "config") -> Any:
    """Validate `values` against dataclass `cls` and build it. ConfigError names the bad key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key in values:
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {key!r} in {where}{hint}; valid keys: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in values.items():
        tp = hints[key]
        if not _type_ok(value, tp):
            raise ConfigError(
                f"bad type for key {key!r} in {where}: got {value!r} ({type(value).__name__}), "
                f"expected {_type_name(tp)}"
            )
        kwargs[key] = _coerce(value, tp)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"bad --set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not key.replace("_", "a").isalnum():
        raise ConfigError(f"bad --set {text!r}: key must be a name like cache_interval")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except ConfigError as e:
        raise ConfigError(f"bad --set {text!r}: value is not valid YAML ({str(e).splitlines()[0]})") from None
    return key, value


def read_yaml(path: Path) -> Any:
    if not Path(path).exists():
        raise ConfigError(f"{path} does not exist")
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        return load_yaml_text(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def load_yaml_text(text: str) -> Any:
    """yaml.safe_load that only ever raises ConfigError: YAML errors, but also values the YAML constructors
    reject (`2001-13-45` is a timestamp with month 13: ValueError), nesting deep enough to exhaust the stack,
    and self-referential anchors (`&a [*a]`), which no config or spec can mean."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(str(e)) from None
    except RecursionError:
        raise ConfigError("nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"bad value: {e}") from None
    _check_acyclic(data)
    return data


def _check_acyclic(data: Any) -> None:
    stack: list[tuple[Any, frozenset]] = [(data, frozenset())]
    while stack:
        node, seen = stack.pop()
        if isinstance(node, (list, tuple, dict)):
            if id(node) in seen:
                raise ConfigError("a YAML alias refers to itself (recursive structure)")
            inner = seen | {id(node)}
            stack.extend((v, inner) for v in (node.values() if isinstance(node, dict) else node))
            if isinstance(node, dict):
                stack.extend((k, inner) for k in node if isinstance(k, tuple))


@dataclass(frozen=True)
class PresetFile:
    defaults: dict
    presets: dict[str, dict]


def read_preset_file(path: Path) -> PresetFile:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'defaults' and 'presets'")
    extra = set(data) - {"defaults", "presets"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {sorted(extra)[0]!r}; valid: defaults, presets")
    defaults = data.get("defaults") or {}
    presets = data.get("presets") or {}
    if not isinstance(defaults, dict) or not isinstance(presets, dict):
        raise ConfigError(f"{path}: 'defaults' and 'presets' must be mappings")
    for name, body in presets.items():
        if not isinstance(body, dict) and body is not None:
            raise ConfigError(f"{path}: preset {name!r} must be a mapping")
    return PresetFile(defaults, {str(k): dict(v or {}) for k, v in presets.items()})


def resolve(cls: type, path: Path, preset: str | None, overrides: typing.Sequence[str] = (), method: str = "") -> tuple[str, Any]:
    """Return (preset name, validated config) for `preset` plus `--set` overrides."""
    pf = read_preset_file(path)
    preset = preset or "smoke"
    if preset not in pf.presets:
        raise ConfigError(f"unknown preset {preset!r} for {method or path}; valid presets: {', '.join(pf.presets)}")
    values = dict(pf.defaults)
    values.update(pf.presets[preset])
    for text in overrides:
        key, value = parse_override(text)
        values[key] = value
    return preset, build_config(cls, values, where=f"{method} preset {preset!r}")


def to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def stable_hash(obj: Any) -> str:
    """sha256 of canonical JSON (sorted keys): independent of key order and CLI order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
