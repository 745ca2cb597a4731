"""Sweep executors beyond the local process pool: `ray` (tasks on a Ray cluster) and `slurm` (job arrays
through submitit). `benchmarks.sweep` imports this package the first time an executor name it does not
know is asked for; importing it registers both names without importing Ray or submitit (they are imported
when a sweep actually uses them).

Every executor runs the same worker entry point (`benchmarks.sweep.run_point`, here wrapped by
`run_point_once`), so records land in the same `runs.jsonl` under the same file lock with the same
skip-if-done rule: a sweep can be started on one executor and resumed on another.
"""
from __future__ import annotations

from .common import point_lock_path, run_point_once  # noqa: F401
from .ray_exec import run_ray  # noqa: F401
from .slurm_exec import run_slurm  # noqa: F401
