"""Sweep executors on real engines: a two-worker Ray cluster on 127.0.0.1 (one point crashes, one worker
node is killed mid-point) and submitit's local executor for the slurm path. Every other point must land
exactly once, and a rerun must run only what is missing."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks.errors import ConfigError
from benchmarks.record import RecordStore
from benchmarks.runner import plan
from benchmarks.sweep import load_spec, parse_spec, points, run_sweep

REPO = Path(__file__).resolve().parents[2]
QUIET = dict(tracker="none", progress=False, log=lambda s: None)


def _write_spec(tmp_path, **spec) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _hashes_by_point(spec_path) -> dict[str, dict[str, str]]:
    spec = load_spec(spec_path)
    return {p.label: plan(p.method, p.preset, p.overrides, p.seed).hashes for p in points(spec)}


# ------------------------------------------------------------------------------------------------ ray

@pytest.fixture(scope="module")
def ray_cluster():
    # set before Ray is imported (it reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import): loopback only
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    mem = 80 * 1024 * 1024
    local = {"node_ip_address": "127.0.0.1", "object_store_memory": mem}
    # the head has no CPU, so every point runs on one of the two worker nodes
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **local})
    workers = [cluster.add_node(num_cpus=1, **local) for _ in range(2)]
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"} and len(ray.nodes()) == 3
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _node_pids(node) -> set[int]:
    import psutil

    pids = set()
    for infos in node.all_processes.values():
        for info in infos:
            try:
                proc = psutil.Process(info.process.pid)
                pids |= {proc.pid} | {c.pid for c in proc.children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
    return pids


@pytest.mark.timeout(240)
def test_ray_sweep_survives_a_crashing_point_and_a_killed_worker_node(tmp_path, ray_cluster):
    cluster, (w1, w2) = ray_cluster
    marks = tmp_path / "marks"
    spec = _write_spec(tmp_path, method="toy", preset="smoke", executor="ray",
                       set=["crash_scale=0.2", "sleep=1.0", f"marker_dir={marks}"],
                       grid={"scales": [[0.1], [0.2], [0.3], [0.4], [0.6]]},
                       ray={"max_retries": 0}, resources={"num_cpus": 1})
    out = tmp_path / "r"
    by_point = _hashes_by_point(spec)
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("res", run_sweep(spec, out=out, **QUIET)))
    t.start()
    # kill worker node 1 while it runs the pruned variant of a point other than the crashing one
    deadline, killed = time.time() + 150, None
    while time.time() < deadline and killed is None and t.is_alive():
        w1_pids = _node_pids(w1)
        for m in marks.glob("*") if marks.exists() else []:
            pid, variant = m.name.split("-", 1)
            if int(pid) in w1_pids and variant.startswith("toy[") and variant != "toy[scale=0.2]":
                killed = variant
                break
        time.sleep(0.05)
    assert killed is not None, "no point started on worker node 1"
    # the machine dies: its worker processes (children of its raylet) go at the same instant as the node
    for pid in _node_pids(w1) - {os.getpid()}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.remove_node(w1, allow_graceful=False)
    killed_point = next(lbl for lbl in by_point if f"scales=[{killed[len('toy[scale='):-1]}]" in lbl)
    t.join(180)
    res = box["res"]
    assert res["points"] == 5 and res["ran"] == 5

    recs, problems = RecordStore(out).read()
    assert not problems
    ok = Counter(r.config_hash for r in recs if r.status == "ok")
    assert set(ok.values()) == {1}                                   # nothing duplicated
    failed = {r["point"] for r in res["results"] if r.get("failed")}
    errored = {r["point"] for r in res["results"] if r.get("errors")}
    crash = next(lbl for lbl in by_point if "scales=[0.2]" in lbl)
    assert errored == {crash}                                        # the crash is an error row, not a lost point
    assert any("injected crash" in (r.error or "") for r in recs if r.status == "error")
    assert killed_point in failed, "the killed node's point must be reported as failed"
    assert all(any(k in f for k in ("Crashed", "Died", "Unavailable", "Worker", "Node", "Lost", "Raylet")) for f in
               (r["failed"] for r in res["results"] if r.get("failed"))), res["results"]
    complete = {lbl for lbl, hs in by_point.items() if all(h in ok for h in hs.values())}
    assert complete == set(by_point) - failed - {crash}             # every other point landed
    before_ids = {r.run_id for r in recs}

    # rerun on the surviving node: only the missing points run; the crash stays an error row
    res2 = run_sweep(spec, out=out, **QUIET)
    assert res2["ran"] == len(failed) + 1 and res2["still_missing"] == 1
    assert {r["point"] for r in res2["results"]} == failed | {crash}
    recs2, _ = RecordStore(out).read()
    ok2 = Counter(r.config_hash for r in recs2 if r.status == "ok")
    assert set(ok2.values()) == {1}
    assert {lbl for lbl, hs in by_point.items() if all(h in ok2 for h in hs.values())} == set(by_point) - {crash}
    assert before_ids <= {r.run_id for r in recs2}                   # finished records untouched
    new = [r for r in recs2 if r.run_id not in before_ids]
    assert all(r.config_hash not in ok for r in new)                 # nothing already done ran again


def test_ray_spec_options_are_validated(tmp_path):
    from benchmarks.executors.common import resources
    from benchmarks.executors.ray_exec import RAY_KEYS
    from benchmarks.executors.common import options

    with pytest.raises(ConfigError, match="unknown key 'gpu'"):
        resources({"resources": {"gpu": 1}})
    with pytest.raises(ConfigError, match="resources.num_cpus"):
        resources({"resources": {"num_cpus": -1}})
    with pytest.raises(ConfigError, match="ray.max_retries"):
        options({"ray": {"max_retries": "3"}}, "ray", RAY_KEYS)


# ---------------------------------------------------------------------------------------------- slurm

def test_slurm_parameters_come_from_the_spec():
    from benchmarks.executors.slurm_exec import executor_parameters

    spec = parse_spec({"method": "toy", "executor": "slurm", "resources": {"num_cpus": 4, "num_gpus": 1},
                       "slurm": {"partition": "gpu", "time": "02:30:00", "array_parallelism": 8, "qos": "high",
                                 "setup": ["module load cuda"]}})
    cluster, p = executor_parameters(spec)
    assert cluster == "slurm"
    assert p["slurm_partition"] == "gpu" and p["timeout_min"] == 150 and p["gpus_per_node"] == 1
    assert p["cpus_per_task"] == 4 and p["slurm_array_parallelism"] == 8 and p["slurm_qos"] == "high"
    assert p["slurm_setup"] == ["module load cuda"]
    with pytest.raises(ConfigError, match="slurm.time"):
        executor_parameters(parse_spec({"method": "toy", "slurm": {"time": "soon"}}))
    with pytest.raises(ConfigError, match="unknown key 'partion'"):
        executor_parameters(parse_spec({"method": "toy", "slurm": {"partion": "gpu"}}))


@pytest.mark.timeout(240)
def test_slurm_job_array_through_submitit_local_executor_then_resume(tmp_path):
    pytest.importorskip("submitit")
    spec = _write_spec(tmp_path, method="toy", preset="smoke", executor="slurm", set=["crash_scale=0.2"],
                       grid={"scales": [[0.1], [0.2]]}, slurm={"cluster": "local", "time": 10})
    out = tmp_path / "r"
    by_point = _hashes_by_point(spec)
    res = run_sweep(spec, out=out, **QUIET)
    assert res["ran"] == 2 and res["still_missing"] == 1
    recs, problems = RecordStore(out).read()
    assert not problems
    ok = Counter(r.config_hash for r in recs if r.status == "ok")
    assert set(ok.values()) == {1}
    good = next(lbl for lbl in by_point if "scales=[0.1]" in lbl)
    assert set(by_point[good].values()) <= set(ok)
    assert [r["errors"] for r in res["results"]] == [0, 1]            # per-point summaries came back from the jobs
    assert list((out / "slurm").glob("*_0_log.out"))                  # submitit job folder with logs
    # the same sweep resumes on another executor: only the crashed point runs again
    res2 = run_sweep(spec, out=out, executor="local", **QUIET)
    assert res2["ran"] == 1 and [r["point"] for r in res2["results"]] == [lbl for lbl in by_point if lbl != good]
    assert Counter(r.config_hash for r in RecordStore(out).read()[0] if r.status == "ok") == ok
