"""Reliability stress test: `effbench bench reliability [--points 20 --kills 5 --fuzz 300 --seed 0]`.

1. Crash consistency: a `--points`-point local sweep of the toy method (tests/toy, registered through
   EFFBENCH_PLUGINS) is started as `effbench sweep` in its own process group and killed with SIGKILL at
   random moments (during start-up, mid-variant, between records) `--kills` times; then it is rerun to
   completion. Checked: every expected config hash has exactly one ok record (0 lost, 0 duplicated), every
   line of runs.jsonl parses, and every record's artifact folder is complete (its out.txt holds the record's
   own mse): a killed run's partial `.tmp-*` folder is never referenced by a record.
2. Malformed input: `--fuzz` malformed `--set` overrides, config files and sweep specs go through the CLI
   in-process; each must exit 2 with an `effbench: error:` message, no traceback, and write nothing.

Prints the figures; exit 0 if all hold, 1 otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOY_PLUGIN = "tests.toy.plugin"

# --------------------------------------------------------------------------------------------- inputs
TOY_KEYS = ["size", "scales", "crash_scale", "sleep", "marker_dir", "latency_min_reps", "latency_warmup", "device",
            "task", "latency_max_reps"]
BAD_VALUES = {
    "size": ["big", "[8]", "1.5", "true", "null", "0", "-3", "{a: 1}", "2001-13-45", "'8'"],
    "scales": ["0.5", "[0]", "[-0.5]", "[a]", "[[0.5]]", "{x: 1}", "null", "[true]", "&a [*a]"],
    "crash_scale": ["x", "[1]", "null", "true", "{}"],
    "sleep": ["slow", "[0]", "true", "null"],
    "marker_dir": ["1", "[a]", "{}", "true", "null"],
    "latency_min_reps": ["0", "-1", "2.5", "x", "null"],
    "latency_warmup": ["-1", "x", "1.5"],
    "device": ["gpu", "tpu", "3", "[cpu]", "cuda:x", "null"],
    "task": ["nosuch", "3", "[toy]"],
    "latency_max_reps": ["x", "[1]", "1.5"],
}
YAML_GARBAGE = ["[", "{", "{a: ", "]", "!!python/object:os.system x", "!!binary zz", "*undefined", "&a [*a]",
                "a: b: c", "'unterminated", '"\\x"', "- [", "? ? ?", "\t- x", "%YAML 9.9\n---\nx", "[" * 1500,
                "1970-02-30", "!!int xyz", "!!float abc", "@x", "`x"]


def malformed_overrides(rng: random.Random, keys: list[str] = TOY_KEYS) -> list[str]:
    kind = rng.randrange(5)
    if kind == 0:                                   # a known key with a value of the wrong type or range
        k = rng.choice(keys)
        return [f"{k}={rng.choice(BAD_VALUES[k])}"]
    if kind == 1:                                   # an unknown key
        k = "".join(rng.choice("abcxyz_") for _ in range(rng.randint(1, 12)))
        return [f"{k if k not in TOY_KEYS else k + 'q'}=1"]
    if kind == 2:                                   # not key=value, or a key that is not a name
        return [rng.choice(["size", "=3", " =1", "si ze=3", "size-x=1", "a.b=1", "s!ze=1", "ké y=1", "\x00=1"])]
    if kind == 3:                                   # YAML that does not parse or does not construct
        return [f"{rng.choice(TOY_KEYS)}={rng.choice(YAML_GARBAGE)}"]
    good = ["size=16", "scales=[0.5]", "sleep=0"]   # valid overrides around one bad one
    bad = malformed_overrides(rng, keys)
    rng.shuffle(good)
    return good[: rng.randint(0, 3)] + bad


def malformed_spec(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(YAML_GARBAGE)
    if kind == 1:
        return rng.choice(["[]", "3", "null", "'toy'", "method: 3", "method: [toy]", "grid: {size: [8]}"])
    if kind == 2:
        bad = rng.choice([{"grid": {"size": 8}}, {"grid": {"size": []}}, {"grid": [1, 2]}, {"seeds": []},
                          {"seeds": ["a"]}, {"seeds": [True]}, {"workers": 0}, {"workers": "2"}, {"preset": 3},
                          {"set": "size=8"}, {"set": ["size"]}, {"executor": 3}, {"ray": [1]}, {"slurm": "x"},
                          {"typo": 1}, {"executor": "nosuch"}, {"preset": "nosuch"}, {"method": "nosuch"}])
        return json.dumps({"method": "toy", "preset": "smoke", **bad})
    if kind == 3:                                   # a grid value that fails config validation up front
        k = rng.choice(TOY_KEYS[:3])
        return json.dumps({"method": "toy", "grid": {"size": [16], k: [rng.choice(BAD_VALUES[k])]}})
    if kind == 4:
        # device values are checked when a point starts (a GPU may exist only on the workers), so a bad
        # device in a sweep is a failed point (exit 1, nothing written) rather than an up-front exit 2
        keys = [k for k in TOY_KEYS if k != "device"]
        return json.dumps({"method": "toy", "set": malformed_overrides(rng, keys), "seeds": [0, 1]})
    return "method: toy\ngrid:\n  size: " + rng.choice(YAML_GARBAGE)


def malformed_config_file(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(YAML_GARBAGE)
    if kind == 1:
        return rng.choice(["[]", "3", "defaults: 3", "presets: [a]", "other: 1", "presets: {smoke: 3}",
                           "defaults: {}\npresets: {}"])
    k = rng.choice(TOY_KEYS)
    where = rng.choice(["defaults", "smoke"])
    val = rng.choice(BAD_VALUES[k]) if kind == 2 else rng.choice(YAML_GARBAGE)
    if where == "defaults":
        return f"defaults:\n  task: toy\n  {k}: {val}\npresets:\n  smoke: {{}}\n"
    return f"defaults:\n  task: toy\npresets:\n  smoke:\n    {k}: {val}\n"


def check_cli(argv: list[str], out: Path) -> str | None:
    """Run the CLI in-process; None if it failed cleanly (exit 2, one-line error, nothing written)."""
    from effbench.cli import main

    err, std = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            rc = main(argv)
    except SystemExit as e:                        # argparse usage errors exit 2 as well
        rc = e.code
    except BaseException as e:  # noqa: BLE001 - the point is to catch whatever escapes
        return f"{argv!r}: traceback {type(e).__name__}: {e}"
    if rc != 2:
        return f"{argv!r}: exit {rc}, expected 2 ({err.getvalue().strip()[:200]})"
    text = err.getvalue()
    if "Traceback" in text or "error" not in text:
        return f"{argv!r}: unclear error output {text[:200]!r}"
    if out.exists() and any(out.iterdir()):
        return f"{argv!r}: wrote {sorted(p.name for p in out.iterdir())}"
    return None


def check_config_file(text: str, tmp: Path) -> str | None:
    from benchmarks.api import TASKS
    from benchmarks.config import resolve
    from benchmarks.errors import ConfigError
    from benchmarks.runner import resolve_device
    from tests.toy.plugin import ToyConfig

    path = tmp / "config.yaml"
    path.write_text(text)
    try:
        _, cfg = resolve(ToyConfig, path, "smoke", (), method="toy")
        TASKS.get(cfg.task)                        # what runner.plan checks before anything is written
        resolve_device(cfg.device)
    except ConfigError:
        return None
    except BaseException as e:  # noqa: BLE001
        return f"config file {text[:60]!r}: traceback {type(e).__name__}: {e}"
    return f"config file {text[:60]!r}: accepted"


def fuzz(n: int, seed: int, tmp: Path) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    failures = []
    for i in range(n):
        out = tmp / f"out{i}"
        kind = i % 3
        if kind == 0:
            argv = ["run", "toy", "--out", str(out), "--tracker", "none", "--quiet"] + \
                   [f"--set={s}" for s in malformed_overrides(rng)]
            why = check_cli(argv, out)
        elif kind == 1:
            spec = tmp / f"spec{i}.yaml"
            spec.write_text(malformed_spec(rng))
            why = check_cli(["sweep", str(spec), "--out", str(out), "--tracker", "none", "--quiet"], out)
        else:
            why = check_config_file(malformed_config_file(rng), tmp)
        if why:
            failures.append(why)
    return n, failures


# -------------------------------------------------------------------------------------- crash / kill

def _expected(spec_path: Path) -> dict[str, str]:
    from benchmarks.runner import plan
    from benchmarks.sweep import load_spec, points

    spec = load_spec(spec_path)
    return {h: p.label for p in points(spec) for h in plan(p.method, p.preset, p.overrides, p.seed).hashes.values()}


def kill_sweep(n_points: int, kills: int, seed: int, tmp: Path, workers: int = 1, sleep: float = 0.15,
               log=print) -> dict:
    import yaml

    from benchmarks.record import RecordStore

    rng = random.Random(seed)
    scales = [round(0.05 * (i + 1), 4) for i in range(n_points)]
    tmp.mkdir(parents=True, exist_ok=True)
    spec_path = tmp / "sweep.yaml"
    spec_path.write_text(yaml.safe_dump({"method": "toy", "preset": "smoke", "set": [f"sleep={sleep}"],
                                         "grid": {"scales": [[s] for s in scales]}, "workers": workers}))
    out = tmp / "results"
    store = RecordStore(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EFFBENCH_PLUGINS": _plugins(),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "effbench", "sweep", str(spec_path), "--out", str(out), "--tracker", "none", "--quiet"]
    injected, phases = 0, Counter()
    for k in range(kills):
        before = len(store.read()[0])
        proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        if rng.random() < 0.25:                       # during start-up / planning
            time.sleep(rng.uniform(0.0, 2.0))
            phase = "start-up"
        else:                                         # after the first new record, at a random moment
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None and len(store.read()[0]) <= before:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 2.5 * sleep * 2))
            phase = "mid-sweep"
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            injected += 1
            phases[phase] += 1
        proc.wait()
        log(f"[reliability] kill {k + 1}/{kills} ({phase}): records {before} -> {len(store.read()[0])}")
    t0 = time.time()
    res = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=600)
    log(f"[reliability] rerun: exit {res.returncode} in {time.time() - t0:.1f}s: {res.stdout.strip()[-200:]}")
    expected = _expected(spec_path)
    recs, problems = store.read()
    ok = Counter(r.config_hash for r in recs if r.status == "ok")
    lost = sorted(set(expected) - set(ok))
    dup = sum(c - 1 for c in ok.values() if c > 1)
    foreign = sorted(set(ok) - set(expected))
    bad_art, orphans = [], sorted(p.name for p in store.runs_dir.glob(".tmp-*")) if store.runs_dir.exists() else []
    for r in recs:
        if r.status != "ok":
            continue
        f = out / (r.artifacts or "") / "out.txt"
        if not r.artifacts or r.artifacts.split("/")[-1].startswith(".tmp-") or not f.exists() \
                or float(f.read_text()) != r.metrics["mse"]["value"]:
            bad_art.append(r.run_id)
    return {"points": n_points, "records_expected": len(expected), "faults_injected": injected,
            "kill_phases": dict(phases), "records_lost": len(lost), "records_duplicated": dup,
            "foreign_records": len(foreign), "malformed_lines": len(problems), "partial_artifacts_used": len(bad_art),
            "orphaned_tmp_dirs_ignored": len(orphans), "rerun_exit": res.returncode}


def _plugins() -> str:
    cur = [m for m in os.environ.get("EFFBENCH_PLUGINS", "").split(",") if m.strip()]
    return ",".join(cur if TOY_PLUGIN in cur else cur + [TOY_PLUGIN])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="effbench bench reliability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--fuzz", type=int, default=300, help="malformed inputs to try (0: skip)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="folder to keep the results in (default: a temporary one)")
    args = ap.parse_args(argv or [])
    os.environ["EFFBENCH_PLUGINS"] = _plugins()
    os.environ.setdefault("WANDB_MODE", "disabled")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="effbench-reliability-") as td:
        tmp = Path(args.keep or td)
        tmp.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        figs = kill_sweep(args.points, args.kills, args.seed, tmp / "kill", workers=args.workers)
        figs["kill_seconds"] = round(time.time() - t0, 1)
        t0 = time.time()
        (tmp / "fuzz").mkdir(exist_ok=True)
        tried, failures = fuzz(args.fuzz, args.seed, tmp / "fuzz") if args.fuzz else (0, [])
        figs.update(malformed_inputs_tried=tried, malformed_inputs_mishandled=len(failures),
                    fuzz_seconds=round(time.time() - t0, 1))
    for f in failures[:20]:
        print(f"[reliability] MISHANDLED {f}")
    width = max(len(k) for k in figs)
    print("effbench reliability figures")
    for k, v in figs.items():
        print(f"  {k:<{width}}  {v}")
    good = (figs["records_lost"] == 0 and figs["records_duplicated"] == 0 and figs["malformed_lines"] == 0 and
            figs["partial_artifacts_used"] == 0 and figs["foreign_records"] == 0 and figs["rerun_exit"] == 0 and
            not failures)
    print("PASS" if good else "FAIL")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
