"""`effbench report`: the static site from records, checked as files and in a real headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from benchmarks.leaderboard import rank
from benchmarks.record import RecordStore
from benchmarks.report import build, page_name, sweeps
from benchmarks.runner import run
from effbench.cli import main

QUIET = dict(tracker="none", progress=False, log=lambda s: None)
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Records of a small scales sweep (smoke), the wide preset, a crashed variant and one damaged line."""
    res = tmp_path_factory.mktemp("report") / "results"
    for s in (0.25, 0.5, 0.75):
        run("toy", "smoke", [f"scales=[{s}]"], out=res, **QUIET)
    run("toy", "wide", ["crash_scale=0.75"], out=res, **QUIET)
    with open(res / "runs.jsonl", "a") as f:
        f.write('{"run_id": "broken", "method": \n')
    index = build(res, report=lambda s: None)
    return res, index


def test_site_has_index_and_one_page_per_run_and_is_self_contained(site):
    res, index = site
    recs, problems = RecordStore(res).read()
    assert index == res / "report" / "index.html" and len(problems) == 1
    html = index.read_text()
    pages = sorted(p.name for p in (res / "report" / "runs").glob("*.html"))
    assert pages == sorted(page_name(r.run_id) for r in recs) and len(pages) == len(recs) == 10
    for r in recs:
        assert f'runs/{page_name(r.run_id)}' in html
    # offline: no external resource at all, and a CSP that forbids fetching any
    assert not re.search(r"\bsrc\s*=", html) and "<link" not in html
    assert "default-src 'none'" in html
    assert f"runs.jsonl line {problems[0].line}" in html          # the damaged line is reported with its number
    # the paper table is build_rows' rows: toy_mse_half and toy_mac_speedup reproduced within tolerance
    from benchmarks.tables import build_rows

    _, rows = build_rows("toy", recs)
    toy = html.split("id='paper-toy'")[1].split("</table>")[0]
    assert toy.count("<tr>") == len(rows) + 1 and all(f"<td>{r.id}</td>" in toy for r in rows)
    assert toy.count("&#10003;") == sum(r.within is True for r in rows) >= 2
    assert toy.count("&#10007;") == sum(r.within is False for r in rows)
    assert "not run: needs the real toy weights" in toy
    run_page = (res / "report" / "runs" / page_name(next(r.run_id for r in recs if r.status == "error"))).read_text()
    assert "injected crash" in run_page and "Provenance" in run_page and "config hash" in run_page


def test_leaderboard_section_uses_the_leaderboard_ranking(site):
    res, index = site
    recs = RecordStore(res).read()[0]
    metric, entries = rank(recs, "toy")
    table = index.read_text().split('class="sortable leaderboard"')[1].split("</table>")[0]
    order = re.findall(r'href="runs/([^"]+)\.html"', table)
    assert order == [page_name(e.run_id)[:-5] for e in entries]
    assert table.count("&#9733;") == sum(e.pareto for e in entries) > 0


def test_sweep_axes_are_detected_from_the_records(site):
    res, _ = site
    axes = {(s["preset"], s["axis"]) for s in sweeps(RecordStore(res).read()[0])}
    assert ("smoke", "config.scales") in axes and ("smoke", "param.scale") in axes
    assert ("wide", "param.scale") in axes and ("wide", "config.scales") not in axes
    assert not any(a.endswith(("marker_dir", "device")) for _, a in axes)


def test_hostile_record_fields_are_escaped_and_cannot_escape_the_site(tmp_path):
    res = tmp_path / "r"
    run("toy", out=res, **QUIET)
    rec = RecordStore(res).read()[0][0]
    d = json.loads(rec.to_json())
    d.update(run_id="../../evil", variant="<script>alert(1)</script>", config_hash="x" * 64)
    with open(res / "runs.jsonl", "a") as f:
        f.write(json.dumps(d) + "\n")
    index = build(res, report=lambda s: None)
    html = index.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not (tmp_path / "evil.html").exists() and not (res / "evil.html").exists()
    assert all(p.parent == res / "report" / "runs" for p in (res / "report").rglob("*.html") if p != index)


def test_cli_report_writes_the_site(tmp_path, capsys):
    res = tmp_path / "r"
    run("toy", out=res, **QUIET)
    assert main(["report", "--results", str(res), "--out", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").exists() and "wrote" in capsys.readouterr().out
    assert main(["report", "--results", str(tmp_path / "empty")]) == 0          # no records: still a page
    assert "No ok records yet" in (tmp_path / "empty" / "report" / "index.html").read_text()


@pytest.mark.timeout(120)
def test_report_renders_in_headless_chromium_without_console_errors(site):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium/chromedriver binary found (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    res, index = site
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        drv.get(index.as_uri())
        assert drv.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"   # inline JS ran
        recs = RecordStore(res).read()[0]
        rows = drv.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
        assert len(rows) == len(recs) and all(r.is_displayed() for r in rows)
        assert drv.find_elements(By.CSS_SELECTOR, "table.paper-table") and drv.find_elements(By.CSS_SELECTOR, "table.leaderboard")
        plots = drv.find_elements(By.CSS_SELECTOR, "svg.plot")
        assert len(plots) >= 3 and all(p.size["width"] > 100 and p.size["height"] > 100 for p in plots)
        metric, entries = rank(recs, "toy")
        pareto_pts = drv.find_elements(By.CSS_SELECTOR, "#pareto-1 circle.pt")
        assert len(pareto_pts) == sum(e.speedup is not None for e in entries)
        assert drv.find_elements(By.CSS_SELECTOR, ".sweep svg.plot circle.pt")
        # sorting: click the metric header twice -> descending mse
        th = drv.find_elements(By.CSS_SELECTOR, "table.leaderboard th")[4]
        th.click()
        th.click()
        vals = [float(td.get_attribute("data-v")) for td in
                drv.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr td:nth-child(5)")]
        assert vals == sorted(vals, reverse=True)
        # filter box hides non-matching rows
        box = drv.find_element(By.CSS_SELECTOR, "input.filter")
        box.send_keys("error")
        shown = [r for r in drv.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr") if r.is_displayed()]
        assert len(shown) == sum(r.status == "error" for r in recs) == 1
        # a run page through its link
        shown[0].find_element(By.TAG_NAME, "a").click()
        assert "injected crash" in drv.page_source and "Provenance" in drv.page_source
        assert drv.find_element(By.CSS_SELECTOR, "div.err").is_displayed()
        logs = drv.get_log("browser")
        assert not [e for e in logs if e["level"] in ("SEVERE", "ERROR")], logs
    finally:
        drv.quit()
