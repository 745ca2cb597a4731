"""Config loading and validation: unknown keys/presets/types fail before any work, with clear messages."""
from __future__ import annotations

import pytest

from benchmarks.config import build_config, parse_override, resolve, stable_hash
from benchmarks.errors import ConfigError
from methods.deepcache.method import DeepCacheConfig
from tests.toy.plugin import ToyConfig, Toy


def test_presets_and_overrides():
    preset, cfg = resolve(ToyConfig, Toy.config_path(), "wide", ["size=32", "scales=[0.1, 0.2]"], method="toy")
    assert preset == "wide" and cfg.size == 32 and cfg.scales == (0.1, 0.2)
    preset, cfg = resolve(ToyConfig, Toy.config_path(), None, [], method="toy")
    assert preset == "smoke" and cfg.size == 64


@pytest.mark.parametrize("override,needle", [
    ("sise=3", "unknown key 'sise'"),
    ("size=abc", "bad type for key 'size'"),
    ("size=0", "'size'"),
    ("scales=0.5", "bad type for key 'scales'"),
    ("size", "expected key=value"),
    ("size=[1", "not valid YAML"),
    ("latency_min_reps=-1", "latency_min_reps"),
])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        resolve(ToyConfig, Toy.config_path(), None, [override], method="toy")


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid presets: smoke, wide"):
        resolve(ToyConfig, Toy.config_path(), "nope", [], method="toy")


def test_type_rules():
    assert build_config(ToyConfig, {"latency_min_seconds": 1}).latency_min_seconds == 1.0   # int widens to float
    with pytest.raises(ConfigError, match="bad type"):
        build_config(ToyConfig, {"size": True})                                         # bool is not int
    with pytest.raises(ConfigError, match="allowed"):
        build_config(DeepCacheConfig, {"scheduler": "euler"})
    with pytest.raises(ConfigError, match="did you mean 'intervals'"):
        build_config(DeepCacheConfig, {"interval": [2]})


def test_parse_override_yaml_types():
    assert parse_override("a=3") == ("a", 3)
    assert parse_override("a=0.5") == ("a", 0.5)
    assert parse_override("a=[2, 3]") == ("a", [2, 3])
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=zoo:x") == ("a", "zoo:x")


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
