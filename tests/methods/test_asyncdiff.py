"""AsyncDiff: split, replay equivalences, the multi-process run, and the launcher's clean-up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from methods.asyncdiff.core import AsyncUNet, make_plan, split_costs, unet_call_args
from methods.asyncdiff.tiny import tiny_sd_pipeline

ROOT = Path(__file__).resolve().parents[2]
STEPS = 5


def _sample(pipe, steps=STEPS):
    g = [torch.Generator().manual_seed(s) for s in (0, 1)]
    return pipe(["a seven", "a two"], num_inference_steps=steps, guidance_scale=2.0, output_type="pt",
                generator=g).images


def _reset_on_set_timesteps(pipe, au):
    orig = pipe.scheduler.set_timesteps

    def f(*a, **k):
        out = orig(*a, **k)
        au.reset()
        return out

    pipe.scheduler.set_timesteps = f


@pytest.fixture(scope="module")
def pipe_and_plan():
    torch.manual_seed(0)
    pipe = tiny_sd_pipeline()
    args, kwargs = unet_call_args(pipe, 1, cfg=True)
    return pipe, make_plan(pipe.unet, 2, args, kwargs), _sample(pipe)


def test_split_is_optimal_and_contiguous():
    assert split_costs([1, 1, 1, 1], 2) == [0, 2, 4]
    assert split_costs([5, 1, 1, 1, 1, 1], 2) == [0, 1, 6]
    b = split_costs([3, 1, 4, 1, 5, 9, 2, 6], 3)
    parts = [sum([3, 1, 4, 1, 5, 9, 2, 6][b[i]:b[i + 1]]) for i in range(3)]
    assert b[0] == 0 and b[-1] == 8 and max(parts) == 14      # brute-force optimum for this list
    with pytest.raises(ValueError):
        split_costs([1, 2], 3)


def test_plan_covers_every_unit_in_order(pipe_and_plan):
    pipe, plan, _ = pipe_and_plan
    assert plan.units[0] == "conv_in" and plan.units[-1] == "conv_out"
    assert sum(len(plan.component(c)) for c in range(plan.n)) == len(plan.units)
    assert all(c > 0 for c in plan.component_costs()) and plan.balance() < 1.5


def test_simulated_warmup_over_all_steps_equals_sequential_and_remove_restores(pipe_and_plan):
    pipe, plan, ref = pipe_and_plan
    au = AsyncUNet(pipe.unet, plan, stride=1, warmup=STEPS, scheduler=pipe.scheduler).install()
    _reset_on_set_timesteps(pipe, au)
    try:
        assert torch.equal(_sample(pipe), ref)
        au.warmup = 2
        approx = _sample(pipe)
        assert not torch.equal(approx, ref)                    # stale inputs really are used
        assert (approx - ref).abs().mean() < 0.1
    finally:
        au.remove()
        del pipe.scheduler.set_timesteps
    assert torch.equal(_sample(pipe), ref)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_processes_equal_simulation_and_sequential(pipe_and_plan):
    from methods.asyncdiff.dist import Driver

    pipe, plan, ref = pipe_and_plan
    # simulation of the parallel schedule in one process
    au = AsyncUNet(pipe.unet, plan, stride=1, warmup=2, scheduler=pipe.scheduler).install()
    _reset_on_set_timesteps(pipe, au)
    sim = _sample(pipe)
    au.remove()
    del pipe.scheduler.set_timesteps
    d = Driver(pipe, plan, stride=1, warmup=2).start()
    try:
        assert torch.equal(_sample(pipe), sim)                 # 2 processes == simulation, bit for bit
        workers = d.snapshot()
        assert [w["rank"] for w in workers] == [1] and workers[0]["calls"] == STEPS   # 2 warm-up + 3 async
    finally:
        stats = d.close()
    assert stats and stats[0]["peak_memory"]["rss_peak_mib"] > 0
    assert torch.equal(_sample(pipe), ref)                     # wrappers and scheduler restored
    import torch.distributed as dist
    assert not dist.is_initialized()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_processes_warmup_covering_every_step_equals_sequential_stride2(pipe_and_plan):
    from methods.asyncdiff.dist import Driver

    pipe, plan, ref = pipe_and_plan
    d = Driver(pipe, plan, stride=2, warmup=STEPS).start()    # 3 processes
    try:
        assert torch.equal(_sample(pipe), ref)
    finally:
        d.close()


# ---------------------------------------------------------------------------------------------
# launcher clean-up

def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(120)
def test_worker_error_reaches_rank0_and_all_workers_end():
    import torch.distributed as dist

    from benchmarks.distributed import WorkerError, WorkerGroup, demo_target

    g = WorkerGroup(3, demo_target, ("fail",))
    with pytest.raises((WorkerError, RuntimeError)) as info:
        with g:
            dist.barrier()
            while True:                                         # rank 2 raises: this barrier fails
                dist.barrier()
    assert "deliberate failure on rank 2" in str(info.value)
    assert g.pids and not any(_alive(p) for p in g.pids)
    assert not dist.is_initialized()


@pytest.mark.timeout(120)
def test_ctrl_c_terminates_every_worker(tmp_path):
    script = (
        "import faulthandler, signal, sys, time, torch.distributed as dist\n"
        # as in a terminal: a test runner started in the background (`cmd &`, GNU time) may pass SIGINT
        # down as ignored, and Python then never raises KeyboardInterrupt
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "faulthandler.register(signal.SIGUSR1)\n"          # on a hang the test asks where rank 0 is stuck
        "from benchmarks.distributed import WorkerGroup, demo_target\n"
        "g = WorkerGroup(3, demo_target, ('loop',)).start()\n"
        "print(' '.join(map(str, g.pids)), flush=True)\n"
        "try:\n"
        "    with g:\n"
        "        while True: dist.barrier()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True); sys.exit(130)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=ROOT)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(x) for x in pids)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        p.kill()
        out, err = p.communicate()
        for x in pids:
            if _alive(x):
                os.kill(x, signal.SIGKILL)
        pytest.fail(f"rank 0 did not exit within 60 s of Ctrl-C; its stacks:\n{err[-6000:]}")
    assert p.returncode == 130 and "interrupted" in out, err[-3000:]
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(x) for x in pids):
        time.sleep(0.1)
    assert not any(_alive(x) for x in pids)
