"""Record store: atomic appends, damaged lines reported and skipped, schema checks."""
from __future__ import annotations

import json

from benchmarks.record import RecordStore, RunRecord, validate


def _rec(i: int, status: str = "ok") -> RunRecord:
    return RunRecord(run_id=f"r{i}", method="toy", variant=f"v{i}", preset="smoke", model="m", task="t",
                     config={"k": i}, config_hash=f"h{i}", seed=0,
                     metrics={"mse": {"value": float(i), "higher_is_better": False, "protocol": "p", "version": 1}},
                     status=status)


def test_roundtrip_and_done_hashes(tmp_path):
    s = RecordStore(tmp_path)
    s.append(_rec(1))
    s.append(_rec(2, "error"))
    recs, problems = s.read()
    assert [r.run_id for r in recs] == ["r1", "r2"] and not problems
    assert s.done_hashes() == {"h1"}
    assert recs[0].value("mse") == 1.0 and recs[0].value("config.k") == 1


def test_damaged_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    s = RecordStore(tmp_path)
    s.append(_rec(1))
    with open(s.path, "a") as f:
        f.write("garbage line\n")
        bad = json.loads(_rec(3).to_json())
        bad["seed"] = "zero"
        f.write(json.dumps(bad) + "\n")
        f.write(json.loads(json.dumps("[1, 2]")) + "\n")
        f.write(_rec(4).to_json()[:40])           # a writer killed mid-line
    s.append(_rec(5))                              # must start on a fresh line
    recs, problems = s.read()
    assert [r.run_id for r in recs] == ["r1", "r5"]
    lines = {p.line: p.reason for p in problems}
    assert set(lines) == {2, 3, 4, 5}
    assert "not valid JSON" in lines[2] and "'seed'" in lines[3] and "not a JSON object" in lines[4]


def test_validate_rejects_non_numeric_metric():
    d = json.loads(_rec(1).to_json())
    d["metrics"]["mse"]["value"] = "1.0"
    assert "no numeric value" in validate(d)
    assert validate(json.loads(_rec(1).to_json())) is None



def test_artifacts_of_a_killed_run_are_removed_live_and_foreign_ones_kept(tmp_path):
    import socket
    import subprocess
    import sys

    s = RecordStore(tmp_path)
    live = s.artifact_tmp("live")                       # this process: still running
    dead = s.artifact_tmp("dead")
    (dead / "samples.png").write_bytes(b"x")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (dead / ".owner").write_text(f"{socket.gethostname()} {gone.pid}")
    other = s.artifact_tmp("other_host")
    (other / ".owner").write_text("some-other-host 1")
    legacy = s.runs_dir / ".tmp-legacy"                 # no owner file: left alone
    legacy.mkdir()
    assert s.remove_orphans() == [dead]
    assert live.exists() and other.exists() and legacy.exists() and not dead.exists()
    (live / "grid.png").write_bytes(b"x")
    final = s.commit_artifacts("live")
    assert final is not None and sorted(p.name for p in final.iterdir()) == ["grid.png"]
