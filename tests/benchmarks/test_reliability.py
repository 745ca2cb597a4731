"""Reliability suite: kill -9 mid-sweep, damaged runs.jsonl, malformed inputs (hypothesis), safe model
loading, bit-identical determinism, and the offline W&B directory a record names."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import bench_reliability as br
from benchmarks.errors import ConfigError
from benchmarks.record import RecordStore
from benchmarks.runner import run
from effbench.cli import main

QUIET = dict(tracker="none", progress=False, log=lambda s: None)
REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


# ------------------------------------------------------------------------------------ kill -9 stress

@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_then_rerun_loses_and_duplicates_nothing(tmp_path):
    figs = br.kill_sweep(n_points=6, kills=3, seed=3, tmp=tmp_path, sleep=0.1, log=lambda s: None)
    assert figs["faults_injected"] >= 2
    assert figs["records_lost"] == 0 and figs["records_duplicated"] == 0 and figs["foreign_records"] == 0
    assert figs["malformed_lines"] == 0 and figs["partial_artifacts_used"] == 0 and figs["rerun_exit"] == 0


# ------------------------------------------------------------------------------- damaged runs.jsonl

def test_damaged_runs_jsonl_is_reported_by_line_and_tables_leaderboard_report_still_build(tmp_path, capsys):
    from benchmarks.leaderboard import write as write_leaderboard
    from benchmarks.report import build
    from benchmarks.tables import write_table

    res = tmp_path / "r"
    run("toy", "wide", out=res, **QUIET)
    run("toy", "smoke", out=res, **QUIET)
    good = RecordStore(res).read()[0]
    wrong_types = json.loads(good[0].to_json())
    wrong_types.update(seed="zero", metrics={"mse": {"value": "low"}})
    lines = (res / "runs.jsonl").read_text().splitlines()
    lines.insert(2, lines[2][: len(lines[2]) // 2])                         # truncated (line 3)
    lines.insert(4, "\x00\x01 garbage }{")                                  # garbage (line 5)
    lines.append(json.dumps(wrong_types))                                  # wrong types (line 9)
    lines.append("[1, 2, 3]")                                              # not an object (line 10)
    (res / "runs.jsonl").write_text("\n".join(lines) + "\n")
    recs, problems = RecordStore(res).read()
    assert [p.line for p in problems] == [3, 5, 9, 10] and len(recs) == len(good)
    assert "not valid JSON" in problems[0].reason and "'seed'" in problems[2].reason

    warned: list[str] = []
    md, tex = write_table("toy", res, tmp_path / "tables", report=warned.append)
    assert [w.split(":")[0] for w in warned] == [f"runs.jsonl line {n}" for n in (3, 5, 9, 10)]
    from benchmarks.tables import build_rows

    rows = build_rows("toy", good)[1]
    assert f"{sum(r.ours is not None for r in rows)} of {len(rows)} rows reproduced" in md.read_text()
    assert sum(r.ours is not None for r in rows) >= 2                      # built from the good records
    warned.clear()
    board = write_leaderboard(res, out=tmp_path / "lb", report=warned.append)[0].read_text()
    assert len(warned) == 4 and board.count("| toy |") == len(good)
    warned.clear()
    html = build(res, tmp_path / "site", report=warned.append).read_text()
    assert all(f"runs.jsonl line {n}:" in html for n in (3, 5, 9, 10)) and "4 damaged line(s)" in html
    assert main(["table", "toy", "--results", str(res), "--out", str(tmp_path / "t2")]) == 0
    assert "runs.jsonl line 5" in capsys.readouterr().err


# -------------------------------------------------------------------------------- malformed inputs

def _only_config_errors(fn) -> None:
    try:
        fn()
    except ConfigError as e:
        assert str(e).strip() and "Traceback" not in str(e)


yamlish = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                       max_leaves=12)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_config_file_text_gives_a_config_or_a_config_error(text, tmp_path_factory):
    from benchmarks.config import resolve
    from tests.toy.plugin import ToyConfig

    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(text)
    _only_config_errors(lambda: resolve(ToyConfig, path, "smoke", (), method="toy"))


@FUZZ
@given(defaults=st.dictionaries(st.sampled_from(br.TOY_KEYS + ["bogus"]), yamlish, max_size=4),
       preset=st.dictionaries(st.sampled_from(br.TOY_KEYS), yamlish, max_size=3))
def test_any_config_structure_gives_a_config_or_a_config_error(defaults, preset, tmp_path_factory):
    from benchmarks.config import resolve
    from tests.toy.plugin import ToyConfig

    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"task": "toy", **defaults}, "presets": {"smoke": preset}}))
    _only_config_errors(lambda: resolve(ToyConfig, path, "smoke", (), method="toy"))


@FUZZ
@given(overrides=st.lists(st.text(max_size=40), max_size=3))
def test_any_set_override_text_gives_a_plan_or_a_config_error(overrides):
    from benchmarks.runner import plan

    _only_config_errors(lambda: plan("toy", "smoke", overrides))


@FUZZ
@given(spec=st.dictionaries(st.sampled_from(sorted(__import__("benchmarks.sweep", fromlist=["x"]).SPEC_KEYS)),
                            yamlish, max_size=5))
def test_any_sweep_spec_structure_gives_points_or_a_config_error(spec, tmp_path_factory):
    from benchmarks.sweep import load_spec, validate

    path = tmp_path_factory.mktemp("spec") / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    _only_config_errors(lambda: validate(load_spec(path)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["run", "sweep"]))
def test_malformed_cli_input_exits_2_with_a_clear_message_and_writes_nothing(seed, kind, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = random.Random(seed)
    out = tmp / "out"
    if kind == "run":
        argv = ["run", "toy", "--out", str(out), "--tracker", "none", "--quiet"] + \
               [f"--set={s}" for s in br.malformed_overrides(rng)]
    else:
        (tmp / "s.yaml").write_text(br.malformed_spec(rng))
        argv = ["sweep", str(tmp / "s.yaml"), "--out", str(out), "--tracker", "none", "--quiet"]
    assert br.check_cli(argv, out) is None


def test_fuzzing_found_yaml_values_that_used_to_escape_as_tracebacks(tmp_path):
    """Regressions: a timestamp with month 13, a self-referential alias and very deep nesting."""
    for value, needle in (("2001-13-45", "month must be in 1..12"), ("&a [*a]", "refers to itself"),
                          ("[" * 3000 + "]" * 3000, "nested too deeply")):
        out = tmp_path / "o"
        assert br.check_cli(["run", "toy", "--out", str(out), "--tracker", "none", f"--set=scales={value}"], out) is None
        with pytest.raises(ConfigError, match=needle):
            from benchmarks.config import parse_override
            parse_override(f"scales={value}")


# ------------------------------------------------------------------------------------- safe loading

class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))      # runs at unpickling time: proof that code executed


def test_a_crafted_pickle_in_the_zoo_cache_is_refused_unless_opted_in(tmp_path, monkeypatch):
    from benchmarks import zoo
    from benchmarks.safeio import UnsafeFileError, load_tensors
    from benchmarks.zoo import core

    monkeypatch.setenv("EFFBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EFFBENCH_ALLOW_PICKLE", raising=False)
    name = "reliability_pickle_probe"
    if name not in core.ZOO:
        core.register_zoo(name, {"v": 1}, load=lambda p: load_tensors(p / "weights.pt"),
                          describe="test probe")(lambda recipe, out, ctx: {})
    folder = core.path(name)
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "x": _Payload(marker)}, folder / "weights.pt")   # a tampered cache file
    (folder / "manifest.json").write_text(json.dumps({"name": name, "quality": {}}))
    with pytest.raises(UnsafeFileError, match="EFFBENCH_ALLOW_PICKLE=1"):
        zoo.load(name, progress=False, cache=False)
    assert not marker.exists()
    # a plain tensor file still loads under weights_only=True
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_tensors(tmp_path / "plain.pt")["w"], torch.ones(2))
    monkeypatch.setenv("EFFBENCH_ALLOW_PICKLE", "1")            # the user's explicit opt-in
    zoo.load(name, progress=False, cache=False)
    assert marker.exists()


def test_a_pickle_disguised_as_safetensors_is_not_unpickled(tmp_path):
    from benchmarks.safeio import load_tensors

    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(marker)}, tmp_path / "model.safetensors")
    with pytest.raises(Exception):
        load_tensors(tmp_path / "model.safetensors")
    assert not marker.exists()


# -------------------------------------------------------------------------------------- determinism

@pytest.mark.timeout(180)
def test_same_config_and_seed_give_bit_identical_metrics_across_processes(tmp_path):
    def metrics(out: Path) -> list:
        return [(r.variant, {k: float(m["value"]).hex() for k, m in r.metrics.items()}, r.config_hash)
                for r in RecordStore(out).read()[0]]

    run("toy", "wide", overrides=["size=96"], seed=7, out=tmp_path / "a", **QUIET)
    subprocess.run([sys.executable, "-m", "effbench", "run", "toy", "--preset", "wide", "--set", "size=96", "--seed", "7",
                    "--out", str(tmp_path / "b"), "--tracker", "none", "--quiet"], cwd=REPO, check=True,
                   capture_output=True)
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert len(a) == 4 and a == b
    assert any(float.fromhex(v["mse"]) > 0 for _, v, _ in a)
    run("toy", "wide", overrides=["size=96"], seed=8, out=tmp_path / "c", **QUIET)
    assert metrics(tmp_path / "c")[1][1] != a[1][1]          # the seed matters


# --------------------------------------------------------------------------------------------- W&B

@pytest.mark.timeout(180)
def test_wandb_offline_run_directory_exists_with_the_run_id_the_record_names(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from benchmarks.report import build, page_name

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    res = tmp_path / "r"
    run("toy", out=res, tracker="wandb", progress=False, log=lambda s: None)
    recs = RecordStore(res).read()[0]
    assert len(recs) == 2
    for r in recs:
        assert r.tracker["name"] == "wandb" and r.tracker["run_id"]
        d = Path(r.tracker["dir"])
        assert d.is_dir() and d.name.startswith("offline-run-") and d.name.endswith(r.tracker["run_id"])
        assert d.parent == res / "wandb"
        assert list(d.glob(f"run-{r.tracker['run_id']}.wandb"))        # what `wandb sync <dir>` uploads
    build(res, report=lambda s: None)
    page = (res / "report" / "runs" / page_name(recs[1].run_id)).read_text()
    assert recs[1].tracker["run_id"] in page and f"wandb sync {recs[1].tracker['dir']}" in page
