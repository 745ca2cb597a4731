"""Paper tables: the paper's number beside ours, generated from run records and methods/<m>/paper.yaml.

Each paper.yaml row names the record it is compared with (`match`), the value to read (`metric`), an
optional `scale` applied to our value and a tolerance. A row with no matching ok record says
"not run: needs <what>". Nothing in a table is typed by hand: reproduced values come from records only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import METHODS
from .config import read_yaml
from .errors import ConfigError
from .record import RecordStore, RunRecord

ROW_KEYS = {"id", "source", "setting", "metric", "value", "unit", "scale", "tolerance", "match", "needs", "note",
            "higher_is_better", "versus", "relation", "margin"}
# A claim row (has `versus`) checks a qualitative statement between two of our records:
#   ours(match) <relation> ours(versus) [+/- margin], relation in > >= < <= ~ ("~": |a-b| <= margin).
RELATIONS = (">", ">=", "<", "<=", "~")


@dataclass
class Row:
    id: str
    source: str
    setting: str
    metric: str
    paper: float | None
    unit: str
    ours: float | None
    delta: float | None
    within: bool | None
    status: str           # "ok" | "miss" | "not run: needs ..." | "reported qualitatively"
    run_id: str | None
    note: str


def load_paper(method: str) -> dict:
    cls = METHODS.get(method)
    path = cls.folder() / "paper.yaml"
    if not path.exists():
        raise ConfigError(f"{cls.name} has no paper.yaml")
    data = read_yaml(path) or {}
    rows = data.get("rows") or []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ConfigError(f"{path}: row {i} is not a mapping")
        bad = set(r) - ROW_KEYS
        if bad:
            raise ConfigError(f"{path}: row {r.get('id', i)} has unknown key {sorted(bad)[0]!r}; valid: {', '.join(sorted(ROW_KEYS))}")
        for k in ("id", "metric", "match"):
            if k not in r:
                raise ConfigError(f"{path}: row {r.get('id', i)} lacks {k!r}")
        if "versus" in r and r.get("relation") not in RELATIONS:
            raise ConfigError(f"{path}: claim row {r['id']} needs relation in {RELATIONS}")
    return {"paper": data.get("paper", {}), "rows": rows}


def _matches(rec: RunRecord, match: dict) -> bool:
    for k, want in match.items():
        if k.startswith("config."):
            have = rec.config.get(k[7:])
            if isinstance(have, list) and isinstance(want, list):
                have, want = tuple(have), tuple(want)
        else:
            have = getattr(rec, k, None)
        if have != want:
            return False
    return True


def _within(ours: float, paper: float, tol: dict | None) -> bool:
    tol = tol or {"rel": 0.02}
    if "abs" in tol and abs(ours - paper) <= float(tol["abs"]):
        return True
    if "rel" in tol and paper != 0 and abs(ours - paper) / abs(paper) <= float(tol["rel"]):
        return True
    return False


def build_rows(method: str, records: list[RunRecord]) -> tuple[dict, list[Row]]:
    spec = load_paper(method)
    name = METHODS.get(method).name
    mine = [r for r in records if r.method == name and r.status == "ok"]
    rows = []
    for r in spec["rows"]:
        cands = [rec for rec in mine if _matches(rec, r["match"])]
        rec = cands[-1] if cands else None           # latest record wins
        ours = rec.value(r["metric"]) if rec else None
        if ours is not None and r.get("scale") is not None:
            ours *= float(r["scale"])
        paper = r.get("value")
        paper = float(paper) if isinstance(paper, (int, float)) else None
        delta = within = None
        if "versus" in r:
            rows.append(_claim_row(r, rec, ours, mine))
            continue
        if rec is None:
            status = f"not run: needs {r['needs']}" if r.get("needs") else "not run"
        elif ours is None:
            status = f"record has no {r['metric']!r}"
        elif paper is None:
            status = "no paper number"
        else:
            delta = ours - paper
            within = _within(ours, paper, r.get("tolerance"))
            status = "ok" if within else "outside tolerance"
        rows.append(Row(str(r["id"]), str(r.get("source", "")), str(r.get("setting", "")), r["metric"], paper,
                        str(r.get("unit", "")), ours, delta, within, status, rec.run_id if rec else None,
                        str(r.get("note", ""))))
    return spec["paper"], rows


def _claim_row(r: dict, rec: RunRecord | None, ours: float | None, mine: list[RunRecord]) -> Row:
    other = [x for x in mine if _matches(x, r["versus"])]
    theirs = other[-1].value(r["metric"]) if other else None
    if theirs is not None and r.get("scale") is not None:
        theirs *= float(r["scale"])
    margin = float(r.get("margin", 0.0))
    within = status = None
    if rec is None or not other:
        status = f"not run: needs {r['needs']}" if r.get("needs") else "not run"
    elif ours is None or theirs is None:
        status = f"record has no {r['metric']!r}"
    else:
        rel = r["relation"]
        within = {">": ours > theirs + margin, ">=": ours >= theirs - margin, "<": ours < theirs - margin,
                  "<=": ours <= theirs + margin, "~": abs(ours - theirs) <= margin}[rel]
        status = "claim supported" if within else "claim NOT supported"
    vs = r["versus"].get("variant", str(r["versus"]))
    return Row(str(r["id"]), str(r.get("source", "")), f"{r.get('setting', '')} [ours {r['relation']} {vs}]",
               r["metric"], theirs, str(r.get("unit", "")), ours, (ours - theirs) if ours is not None and theirs is not None else None,
               within, status, rec.run_id if rec else None, str(r.get("note", "")))


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000 or a < 0.01:
        return f"{v:.4g}"
    return f"{v:.4g}" if a < 100 else f"{v:.2f}"


def _mark(row: Row) -> str:
    return {True: "yes", False: "no", None: ""}[row.within]


def to_markdown(method: str, paper: dict, rows: list[Row]) -> str:
    title = paper.get("title", method)
    lines = [f"# {title}", "",
             f"arXiv {paper.get('arxiv', '?')} · code: {paper.get('code', 'not public')} · generated by "
             f"`effbench table {method}` from results/runs.jsonl; do not edit by hand.", "",
             "| id | source | setting | metric | unit | paper | reproduced | delta | within tol. | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.id} | {r.source} | {r.setting} | {r.metric} | {r.unit} | {_fmt(r.paper)} | {_fmt(r.ours)} | "
                     f"{_fmt(r.delta)} | {_mark(r)} | {r.status}{' · ' + r.note if r.note else ''} |")
    n_ok = sum(r.within is True for r in rows)
    n_run = sum(r.ours is not None for r in rows)
    lines += ["", f"{n_run} of {len(rows)} rows reproduced, {n_ok} within tolerance."]
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        s = s.replace(a, b)
    return s


def to_latex(method: str, paper: dict, rows: list[Row]) -> str:
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{llllrrrl}", r"\toprule",
           r"Source & Setting & Metric & Unit & Paper & Ours & $\Delta$ & Status \\", r"\midrule"]
    for r in rows:
        status = {True: r"\checkmark", False: r"$\times$"}.get(r.within, _tex(r.status))
        out.append(" & ".join(_tex(x) for x in (r.source, r.setting, r.metric, r.unit)) +
                   f" & {_fmt(r.paper)} & {_fmt(r.ours)} & {_fmt(r.delta)} & {status} \\\\")
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{_tex(paper.get('title', method))}: paper vs.\ reproduced (effbench).}}",
            rf"\label{{tab:effbench-{method.replace('_', '-')}}}", r"\end{table}"]
    return "\n".join(out) + "\n"


def write_table(method: str, results: str | Path = "results", out_dir: str | Path = "paper_tables",
                report=print) -> list[Path]:
    store = RecordStore(results)
    records = store.records(report=report)
    name = METHODS.get(method).name
    paper, rows = build_rows(name, records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, tex = out / f"{name}.md", out / f"{name}.tex"
    md.write_text(to_markdown(name, paper, rows))
    tex.write_text(to_latex(name, paper, rows))
    return [md, tex]


def methods_with_tables() -> list[str]:
    return [m for m in METHODS.names() if (METHODS.get(m).folder() / "paper.yaml").exists()]


def summary(method: str, records: list[RunRecord]) -> dict[str, Any]:
    _, rows = build_rows(method, records)
    return {"rows": len(rows), "reproduced": sum(r.ours is not None for r in rows),
            "within": sum(r.within is True for r in rows)}
