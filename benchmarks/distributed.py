"""Process launching for multi-process methods (AsyncDiff): one process per device, torch.distributed.

Two ways to get a process group of `world_size` ranks:

- **spawned** (default, what `effbench run` does): the calling process becomes rank 0 and starts
  `world_size - 1` workers with `torch.multiprocessing` (spawn), each running `target(rank, world, *args)`
  after `init_process_group` (gloo on CPU, NCCL on CUDA; MASTER_ADDR=127.0.0.1 and a free port). Every
  worker pins its thread count (default one thread) so speedups measured on a small CPU are honest.
- **torchrun**: when RANK/WORLD_SIZE/MASTER_ADDR are set by `torchrun --nproc_per_node=W`, no process is
  spawned; `torchrun_env()` tells a method which rank it is and the group is initialised from the env.

Clean-up: a `WorkerGroup` terminates (then kills) every worker it started when the block exits, on
error, on Ctrl-C (KeyboardInterrupt) and at interpreter exit; workers ignore SIGINT (the parent decides)
and exit on their own when the parent disappears (a watchdog thread polls the parent pid). A worker's
exception is sent back to rank 0 and re-raised there as `WorkerError` with the worker's traceback.
"""
from __future__ import annotations

import atexit
import datetime
import os
import signal
import socket
import threading
import time
import traceback
from typing import Any, Callable, Sequence

from .errors import EffbenchError


class WorkerError(EffbenchError):
    """A worker process failed; the message holds its rank and traceback."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_for(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


def torchrun_env() -> tuple[int, int] | None:
    """(rank, world_size) when this process was started by torchrun with more than one rank, else None."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and "LOCAL_RANK" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 else None


def init_from_env(backend: str = "gloo", timeout_s: float = 300.0) -> None:
    """Join the torchrun process group (env:// rendezvous) if not already joined."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))


def _parent_watchdog(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def _entry(rank: int, world: int, port: int, backend: str, threads: int, timeout_s: float,
           target: Callable, args: Sequence[Any], errors: Any, parent: int) -> None:
    """Worker body: pin threads, join the group, run `target`, report a failure to rank 0."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)          # Ctrl-C is handled by rank 0, which terminates us
    threading.Thread(target=_parent_watchdog, args=(parent,), daemon=True).start()
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        target(rank, world, *args)
    except BaseException as e:  # noqa: BLE001 -- everything must reach rank 0
        try:
            errors.put((rank, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        except Exception:
            pass
        os._exit(1)
    finally:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:
                pass


_LIVE: list["WorkerGroup"] = []


def _cleanup_all() -> None:
    for g in list(_LIVE):
        g.terminate()


atexit.register(_cleanup_all)


class WorkerGroup:
    """This process is rank 0 of a `world_size` group; ranks 1.. are spawned workers running `target`.

    ```python
    with WorkerGroup(3, serve, args=(unet_blob,)) as group:   # group.rank == 0, process group ready
        ...collectives with the workers...
    # workers joined (or terminated) here, process group destroyed
    ```
    `target(rank, world, *args)` must be importable (module level). Set `threads` per worker; the
    calling process's own thread count is left to the caller.
    """

    def __init__(self, world_size: int, target: Callable, args: Sequence[Any] = (), backend: str = "gloo",
                 threads: int = 1, timeout_s: float = 300.0, join_timeout_s: float = 30.0):
        if world_size < 1:
            raise ValueError("world_size must be >= 1")
        self.world_size, self.target, self.args = world_size, target, tuple(args)
        self.backend, self.threads, self.timeout_s, self.join_timeout_s = backend, threads, timeout_s, join_timeout_s
        self.procs: list[Any] = []
        self.port: int | None = None
        self.rank = 0
        self._errors = None
        self._owns_group = False

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "WorkerGroup":
        import torch.distributed as dist
        import torch.multiprocessing as mp

        if self._owns_group:                               # already started (start() then `with group:`)
            return self
        if dist.is_initialized():
            raise RuntimeError("a torch.distributed process group already exists in this process")
        ctx = mp.get_context("spawn")
        self._errors = ctx.SimpleQueue()
        self.port = free_port()
        _LIVE.append(self)
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.threads)     # inherited by the spawned interpreters
        try:
            for rank in range(1, self.world_size):
                p = ctx.Process(target=_entry, name=f"effbench-worker-{rank}", daemon=True,
                                args=(rank, self.world_size, self.port, self.backend, self.threads,
                                      self.timeout_s, self.target, self.args, self._errors, os.getpid()))
                p.start()
                self.procs.append(p)
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old
        try:
            self._init_rank0()
        except BaseException:
            self.terminate()
            raise
        return self

    def _init_rank0(self) -> None:
        import torch.distributed as dist

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(self.port))
        result: dict = {}

        def init() -> None:
            try:
                dist.init_process_group(self.backend, rank=0, world_size=self.world_size,
                                        timeout=datetime.timedelta(seconds=self.timeout_s))
            except BaseException as e:  # noqa: BLE001
                result["error"] = e

        t = threading.Thread(target=init, daemon=True)
        t.start()
        # wait for the rendezvous, but notice a worker dying during start-up instead of hanging
        while t.is_alive():
            t.join(0.2)
            dead = [p for p in self.procs if p.exitcode not in (None, 0)]
            if dead and t.is_alive():
                raise self._worker_error(f"worker {dead[0].name} exited with code {dead[0].exitcode} during start-up")
        if "error" in result:
            raise result["error"]
        self._owns_group = True

    def check(self) -> None:
        """Raise WorkerError if a worker has failed (call after a failed collective)."""
        dead = [p for p in self.procs if p.exitcode not in (None, 0)]
        if dead or (self._errors is not None and not self._errors.empty()):
            raise self._worker_error("a worker failed")

    def _worker_error(self, what: str) -> WorkerError:
        msgs = []
        deadline = time.time() + 2.0
        while self._errors is not None and time.time() < deadline:
            if not self._errors.empty():
                rank, tb = self._errors.get()
                msgs.append(f"--- worker rank {rank} ---\n{tb}")
                break
            if all(p.exitcode is not None for p in self.procs):
                if self._errors.empty():
                    break
            time.sleep(0.05)
        return WorkerError(what + ("\n" + "\n".join(msgs) if msgs else ""))

    def join(self) -> None:
        """Wait for workers to return from `target` (after the caller told them to stop)."""
        deadline = time.time() + self.join_timeout_s
        for p in self.procs:
            p.join(max(0.0, deadline - time.time()))
        self.terminate()

    def terminate(self) -> None:
        """Terminate, then kill, every worker still running; destroy the process group. Idempotent."""
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        deadline = time.time() + 5.0
        for p in self.procs:
            p.join(max(0.0, deadline - time.time()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(2.0)
        if self._owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                try:
                    dist.destroy_process_group()
                except Exception:
                    pass
            self._owns_group = False
        if self in _LIVE:
            _LIVE.remove(self)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def __enter__(self) -> "WorkerGroup":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.join()
            return
        # a worker's failure usually reaches rank 0 as a collective error (gloo: "connection closed by
        # peer") before that worker's exit code is visible, so look for its report whatever the exit codes
        err = self._worker_error("a worker failed") if exc_type is not KeyboardInterrupt else None
        self.terminate()
        if err is not None and "--- worker rank" in str(err):
            raise err from exc


def run_all(target: Callable, world_size: int, args: Sequence[Any] = (), backend: str = "gloo",
            threads: int = 1, timeout_s: float = 300.0) -> None:
    """Run `target(rank, world, *args)` on every rank: rank 0 in this process, the others spawned;
    torchrun-launched processes just join their group and run their own rank."""
    env = torchrun_env()
    if env is not None:
        init_from_env(backend, timeout_s)
        target(env[0], env[1], *args)
        return
    with WorkerGroup(world_size, target, args, backend, threads, timeout_s) as g:
        try:
            target(0, world_size, *args)
        except BaseException:
            g.check()
            raise


def demo_target(rank: int, world: int, mode: str = "loop") -> None:
    """A minimal worker body for tests of the launcher: "loop" joins barriers until rank 0 stops
    answering, "fail" raises on the last rank after one barrier, "echo" sums ranks once."""
    import torch
    import torch.distributed as dist

    if mode == "echo":
        t = torch.tensor([float(rank)])
        dist.all_reduce(t)
        return
    dist.barrier()
    if mode == "fail" and rank == world - 1:
        raise ValueError(f"deliberate failure on rank {rank}")
    while True:
        dist.barrier()
