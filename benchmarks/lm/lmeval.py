"""The shared lm-eval runner: zero-shot multiple-choice tasks on an in-memory model.

`evaluate(model, tokenizer, tasks)` wraps the live model in lm-eval's `HFLM(pretrained=model,
tokenizer=tok, ...)` and calls `lm_eval.simple_evaluate` with a `TaskManager(include_path=...)`, so the
numbers are lm-eval's own (tested against a direct lm-eval call). It returns per-task accuracies with
the metric the paper uses (LLM-Pruner: `acc` for BoolQ and WinoGrande, `acc_norm` otherwise) and the
notes to store in the run record: lm-eval version, task versions and full task configs, n-shot,
n-samples and the model arguments.

Tasks:
- mini-world (`world_*`): YAML + JSONL shipped in benchmarks/lm_tasks/; lm-eval resolves relative
  `data_files` against the working directory, so the YAMLs carry an `@@DATA_DIR@@` placeholder and are
  copied with absolute paths into `$EFFBENCH_HOME/lm_tasks/<hash>/` at run time.
- paper track: the stock `boolq piqa hellaswag winogrande arc_easy arc_challenge openbookqa`, read
  from the user's Hugging Face datasets cache with HF_DATASETS_OFFLINE=1; a task whose data is not
  there raises MissingAssetError.

lm-eval's TaskManager indexes every built-in task (~7 s), so one manager is built per process and
per (include_path, include_defaults) and reused.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from ..errors import MissingAssetError

TASK_DIR = Path(__file__).resolve().parents[1] / "lm_tasks"
PLACEHOLDER = "@@DATA_DIR@@"
WORLD_TASKS = ("world_boolq", "world_piqa", "world_hellaswag", "world_winogrande", "world_arc_easy",
               "world_arc_challenge", "world_openbookqa")
PAPER_TASKS = ("boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")
# paper: LLM-Pruner reports acc for BoolQ and WinoGrande and acc_norm for the others (inferred, papers.md 9)
ACC_METRIC = {"boolq": "acc", "winogrande": "acc", "piqa": "acc_norm", "hellaswag": "acc_norm",
              "arc_easy": "acc_norm", "arc_challenge": "acc_norm", "openbookqa": "acc_norm"}
PROTOCOL_VERSION = 1


def base_name(task: str) -> str:
    return task[len("world_"):] if task.startswith("world_") else task


def metric_for(task: str) -> str:
    return ACC_METRIC.get(base_name(task), "acc")


def materialize_world_tasks(dest_root: Path | None = None) -> Path:
    """Copy the shipped task YAMLs (+ utils.py) into a folder with absolute data paths; returns it."""
    from ..zoo.core import home

    files = sorted(TASK_DIR.glob("*.yaml")) + [TASK_DIR / "utils.py"]
    data_dir = TASK_DIR / "data"
    h = hashlib.sha256(str(data_dir).encode())
    for f in files + sorted(data_dir.glob("*.jsonl")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    dest = Path(dest_root or home() / "lm_tasks") / h.hexdigest()[:12]
    if not (dest / "utils.py").exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in files:
            text = f.read_text()
            if f.suffix == ".yaml":
                text = text.replace(PLACEHOLDER, str(data_dir))
            (tmp / f.name).write_text(text)
        if dest.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    return dest


_MANAGERS: dict[tuple, Any] = {}


def task_manager(include_path: str | None = None, include_defaults: bool = True):
    """One lm-eval TaskManager per process and (include_path, include_defaults)."""
    from lm_eval.tasks import TaskManager

    key = (include_path, include_defaults)
    if key not in _MANAGERS:
        _MANAGERS[key] = TaskManager(include_path=include_path, include_defaults=include_defaults)
    return _MANAGERS[key]


def world_task_manager():
    return task_manager(str(materialize_world_tasks()), include_defaults=False)


def _manager_for(tasks: Sequence[str]):
    if all(t.startswith("world_") for t in tasks):
        return world_task_manager()
    if any(t.startswith("world_") for t in tasks):
        return task_manager(str(materialize_world_tasks()), include_defaults=True)
    return task_manager(None, include_defaults=True)


_TASK_DICTS: dict[tuple, dict] = {}


def task_dict(tasks: Sequence[str], manager) -> dict:
    """Loaded lm-eval task objects, cached per process (loading datasets is the slow part)."""
    from lm_eval.tasks import get_task_dict

    key = (tuple(tasks), id(manager))
    if key not in _TASK_DICTS:
        paper = [t for t in tasks if not t.startswith("world_")]
        old = os.environ.get("HF_DATASETS_OFFLINE")
        if paper:
            os.environ["HF_DATASETS_OFFLINE"] = "1"
        try:
            _TASK_DICTS[key] = get_task_dict(list(tasks), manager)
        except Exception as e:  # datasets raises several types when the cache lacks a dataset
            if not paper:
                raise
            raise MissingAssetError(
                f"lm-eval datasets for {', '.join(paper)} ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                "on a machine with network run `python -c \"import lm_eval.tasks as t; t.get_task_dict("
                f"{paper!r}, t.TaskManager())\"` (fills ~/.cache/huggingface/datasets), then copy that cache here "
                "or point HF_DATASETS_CACHE at it",
                [os.environ.get("HF_DATASETS_CACHE", "~/.cache/huggingface/datasets")]) from None
        finally:
            if paper:
                if old is None:
                    os.environ.pop("HF_DATASETS_OFFLINE", None)
                else:
                    os.environ["HF_DATASETS_OFFLINE"] = old
    return _TASK_DICTS[key]


def make_lm(model, tokenizer, batch_size: int = 32, max_length: int = 256, device: str = "cpu",
            add_bos_token: bool = False):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length,
                device=device, add_bos_token=add_bos_token, dtype=next(model.parameters()).dtype)


def evaluate(model, tokenizer, tasks: Sequence[str], *, batch_size: int = 32, max_length: int = 256,
             device: str = "cpu", limit: int | None = None, add_bos_token: bool = False) -> dict:
    """Zero-shot evaluation through lm-eval. Returns {"accuracy": {task: value}, "metric": {task: name},
    "stderr": {...}, "results": lm-eval's per-task results, "notes": provenance for the record}."""
    import lm_eval
    from lm_eval import simple_evaluate

    tasks = list(tasks)
    manager = _manager_for(tasks)
    tdict = task_dict(tasks, manager)
    lm = make_lm(model, tokenizer, batch_size=batch_size, max_length=max_length, device=device,
                 add_bos_token=add_bos_token)
    was_training = model.training
    model.eval()
    res = simple_evaluate(model=lm, tasks=list(tdict.values()), num_fewshot=0, limit=limit, bootstrap_iters=0,
                          log_samples=False, task_manager=manager, random_seed=0, numpy_random_seed=1234,
                          torch_random_seed=1234, fewshot_random_seed=1234, verbosity="ERROR")
    model.train(was_training)
    acc, metric, stderr = {}, {}, {}
    for t in tasks:
        r = res["results"][t]
        m = metric_for(t)
        acc[t] = float(r[f"{m},none"])
        metric[t] = m
        se = r.get(f"{m}_stderr,none")
        stderr[t] = float(se) if isinstance(se, (int, float)) else None
    notes = {
        "lm_eval_version": getattr(lm_eval, "__version__", None),
        "lm_eval_task_versions": {t: res.get("versions", {}).get(t) for t in tasks},
        "lm_eval_configs": {t: res.get("configs", {}).get(t) for t in tasks},
        "lm_eval_n_shot": {t: res.get("n-shot", {}).get(t) for t in tasks},
        "lm_eval_n_samples": {t: res.get("n-samples", {}).get(t) for t in tasks},
        "lm_eval_metric": metric,
        "lm_eval_all_metrics": {t: {k: v for k, v in res["results"][t].items() if k != "alias"} for t in tasks},
        "lm_eval_model_args": {"class": "HFLM(pretrained=<in-memory model>)", "batch_size": batch_size,
                               "max_length": max_length, "add_bos_token": add_bos_token, "num_fewshot": 0,
                               "limit": limit, "bootstrap_iters": 0},
    }
    return {"accuracy": acc, "metric": metric, "stderr": stderr, "results": res["results"], "notes": notes}
