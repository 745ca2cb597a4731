"""effbench command line: a thin wrapper over the Python API in benchmarks/.

Exit codes: 0 ok; 1 a variant or point failed; 2 bad input (unknown method/preset/key, bad value);
3 missing weights or data (the message says what and how to get it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from benchmarks.errors import EffbenchError


def _p(*a, **k) -> None:
    print(*a, **k, flush=True)


def cmd_list(args) -> int:
    from benchmarks.api import BASELINES, METHODS, METRICS, TASKS
    from benchmarks.tables import load_paper

    rows = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        try:
            n_rows = len(load_paper(name)["rows"])
        except EffbenchError:
            n_rows = 0
        try:
            presets = cls.presets()
        except EffbenchError as e:
            presets = [f"(broken: {e})"]
        try:
            zoo_models = {p: cls.zoo_models(p) for p in presets}
        except EffbenchError:
            zoo_models = {}
        rows.append({"method": name, "presets": presets, "zoo": zoo_models, "paper": cls.paper.get("arxiv", ""),
                     "title": cls.paper.get("title", ""), "paper_rows": n_rows})
    if args.json:
        _p(json.dumps({"methods": rows, "baselines": BASELINES.names(), "tasks": TASKS.names(),
                       "metrics": {m: vars(METRICS.get(m)) for m in METRICS.names()}}, indent=2))
        return 0
    _p("methods:")
    for r in rows:
        _p(f"  {r['method']:<20} presets: {', '.join(r['presets']):<32} arXiv {r['paper']:<11} {r['title']}")
    _p("baselines: " + ", ".join(BASELINES.names()))
    _p("tasks:     " + ", ".join(TASKS.names()))
    _p("metrics:")
    for m in METRICS.names():
        spec = METRICS.get(m)
        _p(f"  {m:<14} {'higher' if spec.higher_is_better else 'lower'} is better  {spec.unit:<6} {spec.describe}")
    return 0


def cmd_run(args) -> int:
    from benchmarks.runner import run

    s = run(args.method, args.preset, args.set or [], args.seed, out=args.out, force=args.force,
            tracker=args.tracker, progress=not args.quiet)
    ok = len(s.written) - len(s.errors)
    _p(f"{s.method} [{s.preset}]: {ok} ok, {len(s.errors)} failed, {len(s.skipped)} skipped (already done) -> "
       f"{os.path.join(args.out, 'runs.jsonl')}")
    return 1 if s.errors else 0


def cmd_sweep(args) -> int:
    from benchmarks.sweep import run_sweep

    res = run_sweep(args.spec, out=args.out, tracker=args.tracker, executor=args.executor, workers=args.workers,
                    progress=not args.quiet)
    failed = [r for r in res["results"] if r.get("failed") or r.get("errors")]
    _p(f"sweep: {res['points']} points, ran {res['ran']}, still missing {res['still_missing']}, failed {len(failed)}")
    return 1 if failed or res["still_missing"] else 0


def cmd_table(args) -> int:
    from benchmarks.tables import methods_with_tables, write_table

    if not args.all and not args.method:
        raise EffbenchError("give a METHOD or --all")
    names = methods_with_tables() if args.all else [args.method]
    for m in names:
        files = write_table(m, args.results, args.out, report=lambda s: _p(f"[warn] {s}", file=sys.stderr))
        _p("wrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_leaderboard(args) -> int:
    from benchmarks.leaderboard import write

    files = write(args.results, args.task, args.metric, args.out, report=lambda s: _p(f"[warn] {s}", file=sys.stderr))
    _p(files[0].read_text())
    _p("wrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_report(args) -> int:
    from benchmarks.report import build

    index = build(args.results, args.out, report=lambda s: _p(f"[warn] {s}", file=sys.stderr))
    _p(f"wrote {index} (open it in a browser; works offline)")
    return 0


def cmd_zoo(args) -> int:
    from benchmarks import zoo

    if args.action == "list":
        rows = zoo.list_models()
        if args.json:
            _p(json.dumps(rows, indent=2))
            return 0
        _p(f"{'name':<16} {'built':<6} {'train s':>8}  quality / description")
        for r in rows:
            q = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["quality"].items())
            secs = f"{r['train_seconds']:.1f}" if r["train_seconds"] is not None else "-"
            _p(f"{r['name']:<16} {'yes' if r['built'] else 'no':<6} {secs:>8}  {q or r['describe']}")
        _p(f"zoo home: {zoo.home()}")
        return 0
    names = args.names or zoo.ZOO.names()
    for n in names:
        zoo.ZOO.get(n)
    if args.jobs > 1 and len(names) > 1:
        zoo.build_many(names, jobs=args.jobs, force=args.force)
    else:
        for n in names:
            zoo.build(n, force=args.force)
    return 0


def cmd_bench(args) -> int:
    import importlib
    import pkgutil

    import benchmarks

    avail = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    name = (args.name or "").replace("-", "_")
    if name not in avail:
        raise EffbenchError(f"unknown benchmark {args.name!r}; valid: {', '.join(avail)}")
    mod = importlib.import_module(f"benchmarks.bench_{name}")
    return int(mod.main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    from effbench import __version__

    p = argparse.ArgumentParser(prog="effbench", description="Reproduce, sweep and compare model-efficiency papers.")
    p.add_argument("--version", action="version", version=f"effbench {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("list", help="methods, presets, baselines, tasks, metrics")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("run", help="run one method's preset: one record per variant")
    s.add_argument("method")
    s.add_argument("--preset", default=None, help="preset from methods/<m>/config.yaml (default: smoke)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (YAML value)")
    s.add_argument("--out", default="results", help="results folder (runs.jsonl + runs/)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--force", action="store_true", help="rerun variants that already have an ok record")
    s.add_argument("--tracker", default="wandb", choices=["wandb", "none"], help="W&B logs offline by default")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("sweep", help="run a sweep spec (YAML grid of --set values and seeds), resumable")
    s.add_argument("spec")
    s.add_argument("--out", default="results")
    s.add_argument("--executor", default=None, help="local (default), ray, slurm")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--tracker", default="wandb", choices=["wandb", "none"])
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("table", help="paper tables (paper vs reproduced) into paper_tables/")
    s.add_argument("method", nargs="?")
    s.add_argument("--all", action="store_true")
    s.add_argument("--results", default="results")
    s.add_argument("--out", default="paper_tables")
    s.set_defaults(fn=cmd_table)

    s = sub.add_parser("leaderboard", help="rank variants per task by a metric; Pareto plot")
    s.add_argument("--task", default=None)
    s.add_argument("--metric", default=None)
    s.add_argument("--results", default="results")
    s.add_argument("--out", default=None, help="folder for leaderboard.md and plots (default: results folder)")
    s.set_defaults(fn=cmd_leaderboard)

    s = sub.add_parser("report", help="static HTML site: leaderboards, paper tables, sweeps, run pages")
    s.add_argument("--results", default="results")
    s.add_argument("--out", default=None, help="site folder (default: <results>/report)")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("zoo", help="mini-world models: build (train, cached) or list")
    s.add_argument("action", choices=["build", "list"])
    s.add_argument("names", nargs="*")
    s.add_argument("--force", action="store_true")
    s.add_argument("--json", action="store_true")
    s.add_argument("--jobs", type=int, default=1, help="train this many models at once (one thread each)")
    s.set_defaults(fn=cmd_zoo)

    s = sub.add_parser("bench", help="speed/memory benchmarks (benchmarks/bench_*.py)")
    s.add_argument("name", nargs="?")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("WANDB_SILENT", "true")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except EffbenchError as e:
        print(f"effbench: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("effbench: interrupted; finished records are kept, the unfinished run wrote nothing", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
