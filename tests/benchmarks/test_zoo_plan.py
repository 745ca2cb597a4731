"""Cold zoo builds start the longest dependency chains first and never start an entry before the
entries it needs (benchmarks.zoo.core.build_plan / build_many)."""
from __future__ import annotations

import json

import pytest

from benchmarks.zoo import core

# a: 10 s -> needed by b (100 s); c: 50 s alone; d: 30 s -> needed by e (5 s) and b
ENTRIES = {"plan_a": (10, ()), "plan_b": (100, ("plan_a", "plan_d")), "plan_c": (50, ()),
           "plan_d": (30, ()), "plan_e": (5, ("plan_d",))}


@pytest.fixture
def entries(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFBENCH_HOME", str(tmp_path))
    for name, (cost, deps) in ENTRIES.items():
        if name not in core.ZOO:
            core.register_zoo(name, {"n": name}, load=lambda p: p, depends=deps, cost=cost)(lambda r, o, c: {})
    return tmp_path


def _mark_built(name: str, seconds: float | None = None) -> None:
    p = core.path(name)
    p.mkdir(parents=True)
    (p / "manifest.json").write_text(json.dumps({"name": name, "train_seconds": seconds, "quality": {}}))


def test_plan_orders_by_critical_path_and_keeps_dependencies_first(entries):
    plan = core.build_plan(list(ENTRIES))
    assert sorted(plan) == sorted(ENTRIES)
    # chains: d->b 130, a->b 110, b 100, c 50, e 5 (d's longest tail is through b)
    assert plan == ["plan_d", "plan_a", "plan_b", "plan_c", "plan_e"]
    for n in plan:
        assert all(plan.index(d) < plan.index(n) for d in ENTRIES[n][1])


def test_plan_adds_missing_dependencies_and_skips_built_entries(entries):
    assert core.build_plan(["plan_e"]) == ["plan_d", "plan_e"]
    _mark_built("plan_d")
    assert core.build_plan(["plan_e", "plan_b"]) == ["plan_a", "plan_b", "plan_e"]
    assert core.build_plan(["plan_d"]) == []


def test_plan_follows_the_cost_hints(entries):
    assert core.build_plan(["plan_c", "plan_e"]) == ["plan_c", "plan_d", "plan_e"]
    core.ZOO.get("plan_c").cost, old = 1.0, core.ZOO.get("plan_c").cost
    try:
        assert core.build_plan(["plan_c", "plan_e"]) == ["plan_d", "plan_e", "plan_c"]
    finally:
        core.ZOO.get("plan_c").cost = old


def test_build_many_with_everything_built_starts_nothing(entries):
    for n in ENTRIES:
        _mark_built(n, 1.0)
    out = core.build_many(["plan_b", "plan_e"], jobs=2, log=lambda s: None)
    assert out == {"plan_b": core.path("plan_b"), "plan_e": core.path("plan_e")}
