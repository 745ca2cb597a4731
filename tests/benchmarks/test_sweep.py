"""Sweeps: grid expansion, validation up front, and kill -9 then resume with no lost or duplicated record."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml

from benchmarks.errors import ConfigError
from benchmarks.record import RecordStore
from benchmarks.runner import plan
from benchmarks.sweep import load_spec, parse_spec, points, run_sweep


def _spec(tmp_path, **extra):
    spec = {"method": "toy", "preset": "smoke", "grid": {"scales": [[0.1], [0.2], [0.3], [0.4]]}, "seeds": [0]}
    spec.update(extra)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _expected_hashes(spec_path) -> set[str]:
    spec = load_spec(spec_path)
    return {h for p in points(spec) for h in plan(p.method, p.preset, p.overrides, p.seed).hashes.values()}


def test_points_are_the_cross_product_of_grid_and_seeds():
    spec = parse_spec({"method": "toy", "grid": {"size": [8, 16], "scales": [[0.5]]}, "seeds": [0, 1], "set": ["sleep=0"]})
    pts = points(spec)
    assert len(pts) == 4
    assert pts[0].overrides == ("sleep=0", "scales=[0.5]", "size=8")


@pytest.mark.parametrize("bad,needle", [
    ({"grid": {"size": [8]}}, "'method'"),
    ({"method": "toy", "grid": {"size": 8}}, "non-empty list"),
    ({"method": "toy", "seeds": ["a"]}, "'seeds'"),
    ({"method": "toy", "workers": 0}, "'workers'"),
    ({"method": "toy", "typo": 1}, "unknown key 'typo'"),
])
def test_bad_specs_are_config_errors(bad, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_spec(bad)


def test_a_bad_grid_value_fails_before_anything_runs(tmp_path):
    path = _spec(tmp_path, grid={"size": [8, "big"]})
    with pytest.raises(ConfigError, match="bad type for key 'size'"):
        run_sweep(path, out=tmp_path / "r", tracker="none", progress=False, log=lambda s: None)
    assert not (tmp_path / "r" / "runs.jsonl").exists()


def test_sweep_in_process_pool_then_resume_is_a_noop(tmp_path):
    path = _spec(tmp_path, workers=2)
    out = tmp_path / "r"
    res = run_sweep(path, out=out, tracker="none", progress=False, log=lambda s: None)
    assert res["still_missing"] == 0 and res["ran"] == 4
    hashes = Counter(r.config_hash for r in RecordStore(out).read()[0])
    assert set(hashes) == _expected_hashes(path) and set(hashes.values()) == {1}
    res = run_sweep(path, out=out, tracker="none", progress=False, log=lambda s: None)
    assert res["ran"] == 0


@pytest.mark.timeout(240)
def test_kill_9_mid_sweep_then_rerun_loses_and_duplicates_nothing(tmp_path):
    path = _spec(tmp_path, set=["sleep=0.4"])
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "effbench", "sweep", str(path), "--out", str(out), "--tracker", "none", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    store = RecordStore(out)
    deadline = time.time() + 180
    while time.time() < deadline and len(store.read()[0]) < 3:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = store.read()[0]
    assert 3 <= len(before) < 8, "the kill should land mid-sweep"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    recs, problems = store.read()
    counts = Counter(r.config_hash for r in recs)
    assert set(counts) == _expected_hashes(path)          # nothing lost
    assert set(counts.values()) == {1}                    # nothing duplicated
    assert all(r.status == "ok" for r in recs) and not problems
    assert {r.run_id for r in before} <= {r.run_id for r in recs}   # finished records kept as they were
