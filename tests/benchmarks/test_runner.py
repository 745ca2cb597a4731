"""The run loop end to end on the toy method: records, skip-if-done, errors as rows, speedups, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.errors import ConfigError
from benchmarks.record import RecordStore
from benchmarks.runner import run
from effbench.cli import main

QUIET = dict(tracker="none", progress=False, log=lambda s: None)


def test_run_writes_one_ok_record_per_variant_with_full_schema(results):
    s = run("toy", "wide", out=results, **QUIET)
    recs, problems = RecordStore(results).read()
    assert not problems and len(recs) == len(s.written) == 4
    ref, r = recs[0], recs[1]
    assert ref.variant == "dense" and ref.variant_kind == "baseline" and r.variant == "toy[scale=0.25]"
    for rec in recs:
        assert rec.status == "ok" and rec.config["size"] == 128 and len(rec.config_hash) == 64
        lat = rec.efficiency["latency"]
        assert {"mean", "p50", "p90", "p99", "std", "n"} <= set(lat) and lat["n"] >= 2
        assert rec.efficiency["speedup"]["reference"] == "dense"
        prov = rec.provenance
        assert {"effbench", "git", "packages", "hardware", "threads", "seed", "started", "ended"} <= set(prov)
        assert rec.metrics["mse"]["higher_is_better"] is False and rec.metrics["mse"]["protocol"] == "toy/mse"
    assert ref.efficiency["speedup"]["value"] == 1.0 and ref.metrics["mse"]["value"] == 0.0
    assert r.efficiency["mac_speedup"]["value"] == pytest.approx(128 / 32)
    assert (results / r.artifacts / "out.txt").exists()


def test_rerun_writes_nothing_new_and_force_reruns(results):
    run("toy", out=results, **QUIET)
    n = len(RecordStore(results).read()[0])
    s = run("toy", out=results, **QUIET)
    assert not s.written and len(s.skipped) == 2 and len(RecordStore(results).read()[0]) == n
    s = run("toy", out=results, force=True, **QUIET)
    assert len(s.written) == 2


def test_missing_variant_reruns_only_that_one(results):
    run("toy", out=results, **QUIET)
    s = run("toy", overrides=["scales=[0.5, 0.25]"], out=results, **QUIET)
    # a changed config is a different run: both variants re-run under the new hash, reference too
    assert len(s.written) == 3
    s = run("toy", overrides=["scales=[0.5, 0.25]"], out=results, **QUIET)
    assert not s.written


def test_a_crashing_variant_is_an_error_row_and_others_still_land(results):
    s = run("toy", "wide", overrides=["crash_scale=0.5"], out=results, **QUIET)
    recs = RecordStore(results).read()[0]
    status = {r.variant: r.status for r in recs}
    assert status == {"dense": "ok", "toy[scale=0.25]": "ok", "toy[scale=0.5]": "error", "toy[scale=0.75]": "ok"}
    err = [r for r in recs if r.status == "error"][0]
    assert "injected crash" in err.error and len(s.errors) == 1
    # the failed variant is retried on the next invocation, finished ones are not
    s = run("toy", "wide", overrides=["crash_scale=0.5"], out=results, **QUIET)
    assert [r.variant for r in s.written] == ["toy[scale=0.5]"]


def test_same_config_and_seed_give_identical_metrics(results, tmp_path):
    a = run("toy", "wide", out=results, **QUIET).written
    b = run("toy", "wide", out=tmp_path / "b", **QUIET).written
    assert [r.metrics for r in a] == [r.metrics for r in b]
    assert [r.config_hash for r in a] == [r.config_hash for r in b]


@pytest.mark.parametrize("argv,needle", [
    (["run", "nosuch"], "unknown method 'nosuch'"),
    (["run", "toy", "--preset", "nope"], "unknown preset 'nope'"),
    (["run", "toy", "--set", "bogus=1"], "unknown key 'bogus'"),
    (["run", "toy", "--set", "size=big"], "bad type for key 'size'"),
    (["run", "deepcache", "--set", "scheduler=euler"], "bad value 'euler'"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(argv, needle, results, capsys):
    assert main(argv + ["--out", str(results), "--tracker", "none"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not results.exists()


def test_cli_run_then_table_and_leaderboard(results, tmp_path, capsys):
    assert main(["run", "toy", "--out", str(results), "--tracker", "none", "--quiet"]) == 0
    assert main(["table", "toy", "--results", str(results), "--out", str(tmp_path / "tables")]) == 0
    md = (tmp_path / "tables" / "toy.md").read_text()
    assert "| toy_mac_speedup |" in md and "not run: needs the real toy weights" in md
    assert "| toy_claim_cheaper_is_worse |" in md and "claim supported" in md and "claim NOT supported" in md
    assert (tmp_path / "tables" / "toy.tex").read_text().startswith("\\begin{table}")
    assert main(["leaderboard", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | toy | dense |" in out and (results / "leaderboard.md").exists()


def test_unknown_task_in_config_is_a_config_error(results):
    with pytest.raises(ConfigError, match="unknown task"):
        run("toy", overrides=["task=nosuch"], out=results, **QUIET)


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "effbench", "list", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "deepcache" in [m["method"] for m in data["methods"]]
