"""`effbench report`: a static, offline HTML site built from results/runs.jsonl.

results/report/index.html  leaderboard per task (ranked table + quality-vs-speedup Pareto plot), every
                           method's paper table (paper vs reproduced, tolerance marks), sweep plots (each
                           metric against each swept parameter), all runs, and damaged record lines
results/report/runs/<id>.html  one page per run: metrics, efficiency, config, provenance, W&B run id

Ranking and paper rows come from `benchmarks.leaderboard.rank` and `benchmarks.tables.build_rows`, so the
report always agrees with `effbench leaderboard` and `effbench table`. Plots are inline SVG, scripts and
styles are inline, and a Content-Security-Policy forbids every network fetch: the site works from a USB
stick.
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import EffbenchError
from ..leaderboard import rank, tasks
from ..record import Problem, RecordStore, RunRecord
from . import svg

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "form-action 'none'; base-uri 'none'")
IGNORED_SWEEP_KEYS = {"marker_dir", "device"}
COST_KEYS = ("speedup", "mac_speedup")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395d;color:#fff;padding:14px 28px}header a{color:#cfe0ff}
main{padding:8px 28px 40px;max-width:1400px}h2{border-bottom:2px solid #23395d;padding-bottom:3px;margin-top:34px}
h3{margin:22px 0 6px}table{border-collapse:collapse;margin:8px 0 14px;background:#fff;font-size:13px}
th,td{border:1px solid #d5d5d5;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;cursor:pointer;user-select:none;white-space:nowrap}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.pareto td{background:#f0fff0}.yes{color:#08780e;font-weight:bold}.no{color:#b00020;font-weight:bold}
.muted{color:#777}.warn{background:#fff4e5;border:1px solid #f0b46a;padding:8px 12px}
.err{background:#fdecea;border:1px solid #e57373;padding:8px 12px;white-space:pre-wrap;font-family:monospace}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;max-height:520px;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{background:#fff;border:1px solid #ddd}
.plot .grid{stroke:#eee}.plot .tick{font-size:10px;fill:#555}.plot .axis{font-size:11px;fill:#222}
.plot .ptitle{font-size:12px;font-weight:bold}.plot .legend{font-size:10px}.plot .front{fill:none;stroke:#888;
stroke-dasharray:5 3;stroke-width:1.2}.plot .pt{stroke:#fff;stroke-width:1}.plot a .pt:hover{stroke:#000}
nav a{margin-right:14px}input.filter{margin:6px 0;padding:3px 6px;width:280px}
"""

JS = """
(function(){
  function key(td){var t=td.getAttribute('data-v');if(t===null)t=td.textContent.trim();
    var n=parseFloat(t);return (t!==''&&!isNaN(n)&&isFinite(t))?n:t.toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(tbl){
    tbl.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
      var body=tbl.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      var asc=!th.classList.contains('sorted-asc');
      tbl.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});});});});
  document.querySelectorAll('input.filter').forEach(function(inp){
    var tbl=document.getElementById(inp.getAttribute('data-table'));
    inp.addEventListener('input',function(){var q=inp.value.toLowerCase();
      Array.prototype.forEach.call(tbl.tBodies[0].rows,function(r){
        r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});});});
  document.body.setAttribute('data-ready','1');
})();
"""


def _page(title: str, body: str, root: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f'<header><b>effbench report</b> &middot; {escape(title)} &middot; <a href="{root}index.html">index</a></header>'
            f"<main>{body}</main><script>{JS}</script></body></html>\n")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        a = abs(v)
        return "0" if a == 0 else (f"{v:.4g}" if a < 1e5 and a >= 1e-3 else f"{v:.3e}")
    return str(v)


def _num_td(v: Any, fmt: Callable[[Any], str] = _fmt) -> str:
    dv = "" if v is None else (repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
    return f'<td class="num" data-v="{escape(dv)}">{escape(fmt(v))}</td>'


def page_name(run_id: str) -> str:
    """A file name for a run page that is safe whatever a (possibly hostile) record says."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id).strip(".-")[:120]
    if safe != run_id or not safe:
        safe = f"{safe[:100]}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"
    return f"{safe}.html"


def _table(tid: str, head: list[str], rows: Iterable[str], cls: str = "sortable") -> str:
    return (f'<table id="{tid}" class="{cls}"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head) +
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _kv(d: dict) -> str:
    rows = []
    for k, v in d.items():
        val = json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else _fmt(v)
        rows.append(f"<tr><th>{escape(str(k))}</th><td>{escape(val)}</td></tr>")
    return "<table class='kv'>" + "".join(rows) + "</table>"


# ------------------------------------------------------------------------------------------- sections

def _problems(problems: list[Problem]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{escape(str(p))}</li>" for p in problems)
    return (f'<div class="warn" id="problems"><b>{len(problems)} damaged line(s) in runs.jsonl were skipped</b>'
            f"<ul>{items}</ul></div>")


def _leaderboards(records: list[RunRecord]) -> str:
    parts = ['<h2 id="leaderboard">Leaderboard per task</h2>',
             '<p class="muted">Ranked by the task\'s quality metric; speedup = reference latency / variant latency '
             "measured in the same process. Highlighted rows and the dashed line form the quality/speed Pareto front. "
             "Click a point or a run id for the run's page.</p>"]
    n = 0
    for t in tasks(records):
        metric, entries = rank(records, t)
        if not entries:
            continue
        n += 1
        tid = f"lb-{n}"
        rows = []
        for i, e in enumerate(entries, 1):
            rows.append(f'<tr class="{"pareto" if e.pareto else ""}"><td class="num">{i}</td><td>{escape(e.method)}</td>'
                        f"<td>{escape(e.variant)}</td><td>{escape(e.preset)}</td>{_num_td(e.value)}"
                        f"{_num_td(e.speedup)}{_num_td(e.mac_speedup)}{_num_td(e.params)}"
                        f"<td>{'&#9733;' if e.pareto else ''}</td>"
                        f'<td><a href="runs/{page_name(e.run_id)}">{escape(e.run_id)}</a></td></tr>')
        arrow = "higher is better" if entries[0].higher_is_better else "lower is better"
        parts.append(f"<h3>{escape(t)}</h3><p class='muted'>metric <code>{escape(metric or '')}</code> ({arrow}); "
                     f"protocol <code>{escape(entries[0].protocol)}</code></p>")
        parts.append(_table(tid, ["rank", "method", "variant", "preset", metric or "", "speedup", "MAC speedup", "params",
                                  "pareto", "run"], rows, "sortable leaderboard"))
        by_method: dict[str, svg.Series] = {}
        cost = "speedup" if any(e.speedup is not None for e in entries) else "mac_speedup"
        for e in entries:
            x = e.speedup if cost == "speedup" else e.mac_speedup
            if x is None:
                continue
            s = by_method.setdefault(e.method, svg.Series(e.method))
            s.points.append((x, e.value, f"{e.method} {e.variant} ({e.preset}): {metric}={_fmt(e.value)}, "
                             f"{cost}={_fmt(x)}", f"runs/{page_name(e.run_id)}"))
        front = sorted(((e.speedup if cost == "speedup" else e.mac_speedup, e.value) for e in entries
                        if e.pareto and (e.speedup if cost == "speedup" else e.mac_speedup) is not None))
        plot = svg.plot(list(by_method.values()), f"{cost} (x)", f"{metric} ({arrow})", f"{t}: quality vs cost",
                        front=front, plot_id=f"pareto-{n}")
        if plot:
            parts.append(f'<div class="plots">{plot}</div>')
    if n == 0:
        parts.append("<p>No ok records yet: run <code>effbench run METHOD</code> first.</p>")
    return "".join(parts)


def _paper_tables(records: list[RunRecord], report: Callable[[str], None]) -> str:
    from ..tables import build_rows, methods_with_tables

    parts = ['<h2 id="paper-tables">Paper tables</h2>',
             '<p class="muted">The paper\'s number beside ours (from records only); '
             '<span class="yes">&#10003;</span> within the row\'s tolerance, <span class="no">&#10007;</span> outside.</p>']
    names = set(methods_with_tables()) | {r.method for r in records}
    n = 0
    for m in sorted(names):
        try:
            paper, rows = build_rows(m, records)
        except EffbenchError as e:          # no paper.yaml, or an unknown method in an old record
            report(f"paper table for {m}: {e}")
            continue
        n += 1
        trs = []
        for r in rows:
            mark = {True: '<span class="yes">&#10003;</span>', False: '<span class="no">&#10007;</span>'}.get(r.within, "")
            run = f'<a href="runs/{page_name(r.run_id)}">run</a>' if r.run_id else ""
            trs.append(f"<tr><td>{escape(r.id)}</td><td>{escape(r.source)}</td><td>{escape(r.setting)}</td>"
                       f"<td>{escape(r.metric)}</td><td>{escape(r.unit)}</td>{_num_td(r.paper)}{_num_td(r.ours)}"
                       f"{_num_td(r.delta)}<td data-v=\"{'' if r.within is None else int(r.within)}\">{mark}</td>"
                       f"<td>{escape(r.status)}{(' &middot; ' + escape(r.note)) if r.note else ''}</td><td>{run}</td></tr>")
        link = f' &middot; <a href="{escape(paper["code"])}">code</a>' if str(paper.get("code", "")).startswith("http") else ""
        done = sum(r.ours is not None for r in rows)
        ok = sum(r.within is True for r in rows)
        parts.append(f"<h3 id='paper-{escape(m)}'>{escape(m)}: {escape(str(paper.get('title', '')))}</h3>"
                     f"<p class='muted'>arXiv {escape(str(paper.get('arxiv', '?')))}{link} &middot; {done} of "
                     f"{len(rows)} rows reproduced, {ok} within tolerance</p>")
        parts.append(_table(f"paper-{n}", ["id", "source", "setting", "metric", "unit", "paper", "reproduced", "delta",
                                           "within tol.", "status", "run"], trs, "sortable paper-table"))
    if n == 0:
        parts.append("<p>No method has a paper.yaml.</p>")
    return "".join(parts)


def _sweep_value(v: Any) -> float | str | None:
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return float(v)
    if v is None:
        return None
    return json.dumps(v, sort_keys=True) if not isinstance(v, str) else v


def sweeps(records: list[RunRecord]) -> list[dict]:
    """Swept parameters per (method, preset): config keys and variant parameters that take 2+ values among
    the ok records. Returns [{method, preset, axis, records}] (axis "config.<k>" or "param.<k>")."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.status == "ok":
            groups[(r.method, r.preset)].append(r)
    out = []
    for (method, preset), recs in sorted(groups.items()):
        if len(recs) < 2:
            continue
        axes = []
        for src in ("config", "param"):
            keys = sorted({k for r in recs for k in (r.config if src == "config" else r.variant_params)})
            for k in keys:
                if src == "config" and k in IGNORED_SWEEP_KEYS:
                    continue
                vals = {json.dumps((r.config if src == "config" else r.variant_params).get(k), sort_keys=True, default=str)
                        for r in recs if k in (r.config if src == "config" else r.variant_params)}
                if len(vals) > 1:
                    axes.append(f"{src}.{k}")
        for a in axes:
            out.append({"method": method, "preset": preset, "axis": a, "records": recs})
    return out


def _sweep_plots(records: list[RunRecord], max_plots: int = 60) -> str:
    parts = ['<h2 id="sweeps">Sweeps</h2>', '<p class="muted">Each quality metric and speedup against every '
             "parameter that takes more than one value among a method's ok records (one colour per variant family; "
             "the line joins the mean over seeds).</p>"]
    found = sweeps(records)
    if not found:
        parts.append("<p>No swept parameter found (run <code>effbench sweep SPEC.yaml</code>).</p>")
        return "".join(parts)
    n = 0
    last = None
    for sw in found:
        head = (sw["method"], sw["preset"])
        if head != last:
            parts.append(f"<h3>{escape(sw['method'])} &middot; preset {escape(sw['preset'])}</h3>")
            last = head
        src, key = sw["axis"].split(".", 1)
        metrics = sorted({m for r in sw["records"] for m in r.metrics})
        plots = []
        for name in metrics + [c for c in COST_KEYS if any(r.value(c) is not None for r in sw["records"])]:
            series: dict[str, svg.Series] = {}
            for r in sw["records"]:
                bag = r.config if src == "config" else r.variant_params
                if key not in bag:
                    continue
                x, y = _sweep_value(bag[key]), r.value(name)
                if x is None or y is None:
                    continue
                fam = r.variant.split("[", 1)[0]
                s = series.setdefault(fam, svg.Series(fam, line=True))
                s.points.append((x, y, f"{r.variant} seed={r.seed}: {key}={bag[key]}, {name}={_fmt(y)}",
                                 f"runs/{page_name(r.run_id)}"))
            xs = {str(p[0]) for s in series.values() for p in s.points}
            if len(xs) < 2 or n >= max_plots:
                continue
            n += 1
            plots.append(svg.plot(list(series.values()), f"{sw['axis']}", name, f"{name} vs {key}",
                                  plot_id=f"sweep-{n}"))
        if plots:
            parts.append(f'<div class="plots sweep">{"".join(plots)}</div>')
    return "".join(parts)


def _runs_table(records: list[RunRecord]) -> str:
    trs = []
    for r in records:
        metrics = ", ".join(f"{k}={_fmt(m.get('value'))}" for k, m in list(r.metrics.items())[:4])
        sp = (r.efficiency.get("speedup") or {}).get("value") if isinstance(r.efficiency.get("speedup"), dict) else None
        wb = (r.tracker or {}).get("run_id", "") if isinstance(r.tracker, dict) else ""
        status = f'<span class="{"yes" if r.status == "ok" else "no"}">{escape(r.status)}</span>'
        trs.append(f'<tr><td><a href="runs/{page_name(r.run_id)}">{escape(r.run_id)}</a></td><td>{escape(r.method)}</td>'
                   f"<td>{escape(r.variant)}</td><td>{escape(r.preset)}</td><td>{escape(r.task)}</td>"
                   f"<td class='num'>{r.seed}</td><td>{status}</td><td>{escape(metrics)}</td>{_num_td(sp)}"
                   f"<td>{escape(str(wb))}</td></tr>")
    return ('<h2 id="runs">All runs</h2><input class="filter" data-table="runs-table" placeholder="filter runs...">' +
            _table("runs-table", ["run", "method", "variant", "preset", "task", "seed", "status", "metrics", "speedup",
                                  "W&B run"], trs))


def run_page(r: RunRecord) -> str:
    body = [f"<h2>{escape(r.method)} &middot; {escape(r.variant)}</h2>",
            _kv({"run_id": r.run_id, "status": r.status, "preset": r.preset, "task": r.task, "model": r.model,
                 "seed": r.seed, "variant kind": r.variant_kind, "config hash": r.config_hash,
                 "artifacts": r.artifacts or "-"})]
    if r.error:
        body.append(f'<h3>Error</h3><div class="err">{escape(r.error)}</div>')
    mrows = [f"<tr><td>{escape(k)}</td>{_num_td(m.get('value'))}<td>{escape(str(m.get('unit', '')))}</td>"
             f"<td>{'higher' if m.get('higher_is_better', True) else 'lower'}</td><td>{escape(str(m.get('protocol', '')))}</td>"
             f"<td>{escape(str(m.get('version', '')))}</td></tr>" for k, m in r.metrics.items()]
    body.append("<h3>Metrics</h3>" + _table("metrics", ["metric", "value", "unit", "better", "protocol", "version"], mrows))
    body.append("<h3>Efficiency</h3>" + _kv(r.efficiency))
    tr = r.tracker if isinstance(r.tracker, dict) else {}
    if tr.get("run_id"):
        sync = f"wandb sync {tr.get('dir', '')}" if tr.get("dir") else "wandb sync <results>/wandb/offline-run-*"
        body.append(f'<h3>W&amp;B</h3><p>run id <code id="wandb-run-id">{escape(str(tr["run_id"]))}</code>'
                    f" &middot; offline directory <code>{escape(str(tr.get('dir', '-')))}</code><br>"
                    f"upload it later with <code>{escape(sync)}</code></p>")
    elif tr.get("error"):
        body.append(f"<h3>W&amp;B</h3><p>tracker failed: {escape(str(tr['error']))}</p>")
    else:
        body.append("<h3>W&amp;B</h3><p class='muted'>not tracked (<code>--tracker none</code> or W&amp;B disabled)</p>")
    body.append("<h3>Config</h3>" + _kv(r.config))
    if r.variant_params:
        body.append("<h3>Variant parameters</h3>" + _kv(r.variant_params))
    body.append("<h3>Provenance</h3>" + _kv(r.provenance))
    if r.notes:
        body.append("<h3>Notes</h3><pre>" + escape(json.dumps(r.notes, indent=2, sort_keys=True, default=str)) + "</pre>")
    return _page(f"{r.method} {r.variant}", "".join(body), root="../")


def build(results: str | Path = "results", out: str | Path | None = None,
          report: Callable[[str], None] = print) -> Path:
    """Write the site; returns the path of index.html. Damaged record lines are reported and skipped."""
    store = RecordStore(results)
    records, problems = store.read()
    for p in problems:
        report(str(p))
    out = Path(out) if out else Path(results) / "report"
    (out / "runs").mkdir(parents=True, exist_ok=True)
    ok = sum(r.status == "ok" for r in records)
    nav = ('<nav><a href="#leaderboard">leaderboard</a><a href="#paper-tables">paper tables</a>'
           '<a href="#sweeps">sweeps</a><a href="#runs">all runs</a></nav>')
    summary = (f"<p>{len(records)} record(s) from <code>{escape(str(store.path))}</code>: {ok} ok, "
               f"{len(records) - ok} failed; {len(problems)} damaged line(s) skipped.</p>")
    body = "".join([nav, summary, _problems(problems), _leaderboards(records), _paper_tables(records, report),
                    _sweep_plots(records), _runs_table(records)])
    index = out / "index.html"
    written = set()
    for r in records:
        name = page_name(r.run_id)
        (out / "runs" / name).write_text(run_page(r), encoding="utf-8")
        written.add(name)
    for stale in (out / "runs").glob("*.html"):
        if stale.name not in written:
            stale.unlink()
    tmp = out / ".index.html.tmp"
    tmp.write_text(_page("results", body), encoding="utf-8")
    tmp.replace(index)
    return index
