"""AsyncDiff across processes: rank 0 runs the pipeline and component 1, ranks 1.. the other components.

Every rank holds the full UNet (as the official code does); rank r computes component r (rank N, with
stride 2, the last component for the round's second timestep). Per UNet call rank 0 broadcasts a small
header (timestep, and the latent/text inputs while they change); after the parallel compute each
component's unit outputs go to the ranks that read them (S=1: point to point; S=2: broadcast, as the
official code broadcasts every module's cached output), and rank 0 gets the noise prediction. Workers are started by
benchmarks.distributed.WorkerGroup (spawn, one thread each, gloo on CPU / NCCL on CUDA) or joined from a
torchrun launch.
"""
from __future__ import annotations

import importlib
import time
from typing import Any

import torch

from .core import AsyncUNet, Plan, flatten, unflatten


def ship(unet: torch.nn.Module) -> dict:
    """What a worker needs to rebuild the UNet: class, config, weights (shared memory under spawn)."""
    cls = type(unet)
    return {"cls": f"{cls.__module__}:{cls.__qualname__}", "config": dict(unet.config),
            "state": {k: v.detach() for k, v in unet.state_dict().items()}}


def rebuild(blob: dict, device: str = "cpu") -> torch.nn.Module:
    mod, name = blob["cls"].split(":")
    cls = getattr(importlib.import_module(mod), name)
    unet = cls.from_config(blob["config"])
    unet.load_state_dict(blob["state"])
    return unet.to(device).eval()


class _Schedule:
    """Stand-in for the scheduler on workers: only `timesteps` is read (stride 2)."""
    timesteps = None


def _bcast_tensors(tensors: list[torch.Tensor] | None, like: list[torch.Tensor], src: int, rank: int,
                   device: str) -> list[torch.Tensor]:
    """Broadcast a list of tensors shaped like `like` from `src` as one flat buffer."""
    import torch.distributed as dist

    if rank == src:
        buf = torch.cat([t.reshape(-1) for t in tensors]).to(device)
    else:
        buf = torch.empty(sum(t.numel() for t in like), dtype=like[0].dtype, device=device)
    dist.broadcast(buf, src)
    if rank == src:
        return tensors
    out, i = [], 0
    for t in like:
        out.append(buf[i:i + t.numel()].view(t.shape))
        i += t.numel()
    return out


def exchange(au: AsyncUNet, args: tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """After this rank computed its component: broadcast each component from its owner; returns the
    step's noise prediction and, with stride 2, the round's second one."""
    t0 = time.perf_counter()
    n, rank, dev = au.plan.n, au.rank, au.device
    if au.stride == 1:
        eps = _exchange_p2p(au)
        au.stats.comm_s += time.perf_counter() - t0
        return eps, None
    new = dict(au.prev)
    for c in range(n):
        names = au.plan.component(c)
        like, specs = [], []
        for name in names:
            ts, spec = flatten(au.prev[name])
            like += ts
            specs.append((len(ts), spec))
        mine = None
        if rank == c:
            mine = []
            for name in names:
                mine += flatten(au.cur[name])[0]
        got = _bcast_tensors(mine, like, c, rank, dev)
        i = 0
        for name, (k, spec) in zip(names, specs):
            new[name] = unflatten(got[i:i + k], spec)
            i += k
    pending = None
    if au.stride == 2:
        like = flatten(au.prev["conv_out"])[0]
        mine = flatten(au.cur["conv_out"])[0] if rank == n else None
        pending = _bcast_tensors(mine, like, n, rank, dev)[0]
    au.prev = new
    au.stats.comm_s += time.perf_counter() - t0
    return AsyncUNet._eps(new["conv_out"]), pending


def _exchange_p2p(au: AsyncUNet) -> torch.Tensor:
    """Stride 1: component c's outputs go only to the ranks that read them (ranks c+1..N-1, point to
    point); rank 0 receives only the noise prediction. Replays of components after a rank's own are
    discarded by that rank, so stale values there are harmless (results equal the all-to-all version)."""
    import torch.distributed as dist

    n, rank, dev = au.plan.n, au.rank, au.device
    new, reqs = dict(au.prev), []
    for c in range(min(rank + 1, n)):
        names = au.plan.component(c)
        if c == rank:
            if rank < n - 1:
                mine = []
                for name in names:
                    mine += flatten(au.cur[name])[0]
                buf = torch.cat([t.reshape(-1) for t in mine]).to(dev)
                reqs += [(dist.isend(buf, r), buf) for r in range(c + 1, n)]
            for name in names:
                new[name] = au.cur[name]
            continue
        like, specs = [], []
        for name in names:
            ts, spec = flatten(au.prev[name])
            like += ts
            specs.append((len(ts), spec))
        buf = torch.empty(sum(t.numel() for t in like), dtype=like[0].dtype, device=dev)
        dist.recv(buf, c)
        i = 0
        for name, (k, spec) in zip(names, specs):
            parts = []
            for t in like[i:i + k]:
                parts.append(buf[sum(x.numel() for x in like[:i + len(parts)]):][:t.numel()].view(t.shape))
            new[name] = unflatten(parts, spec)
            i += k
    if n > 1:
        if rank == n - 1:
            eps_buf = AsyncUNet._eps(au.cur["conv_out"]).contiguous()
            reqs.append((dist.isend(eps_buf, 0), eps_buf))
        elif rank == 0:
            like = AsyncUNet._eps(au.prev["conv_out"])
            eps_buf = torch.empty_like(like)
            dist.recv(eps_buf, n - 1)
            new["conv_out"] = eps_buf if not isinstance(au.prev["conv_out"], (tuple, list)) else (eps_buf,)
    for req, _ in reqs:
        req.wait()
    au.prev = new
    return AsyncUNet._eps(new["conv_out"])


def _header(obj: Any | None) -> Any:
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---------------------------------------------------------------------------------------------
# rank 0

_EXIT_REGISTERED = []


def _register_torchrun_exit() -> None:
    """torchrun: tell the serving ranks to exit when rank 0's process ends."""
    if _EXIT_REGISTERED:
        return
    import atexit

    def bye() -> None:
        try:
            _header({"op": "exit"})
        except Exception:
            pass

    atexit.register(bye)
    _EXIT_REGISTERED.append(True)

class Driver:
    """Rank 0's side. `start()` spawns the workers (or joins torchrun's group) and installs the wrappers
    on `pipe.unet`; every `pipe.scheduler.set_timesteps` (called at the start of each pipeline call)
    resets the replay state on all ranks; `close()` stops the workers and returns their statistics."""

    def __init__(self, pipe: Any, plan: Plan, stride: int, warmup: int, device: str = "cpu",
                 threads: int = 1, timeout_s: float = 300.0):
        self.pipe, self.plan, self.stride, self.warmup = pipe, plan, stride, warmup
        self.device, self.threads, self.timeout_s = device, threads, timeout_s
        self.world = plan.n + stride - 1
        self.group = None
        self.au: AsyncUNet | None = None
        self.worker_stats: list[dict] = []
        self._orig_set_timesteps = None
        self._last_ehs = None
        self._last_shape = None

    def start(self) -> "Driver":
        from benchmarks.distributed import WorkerGroup, backend_for, init_from_env, torchrun_env

        spec = {"plan": self.plan, "stride": self.stride, "warmup": self.warmup, "device": self.device}
        env = torchrun_env()
        if env is not None:
            if env[1] != self.world:
                raise RuntimeError(f"torchrun started {env[1]} ranks; AsyncDiff N={self.plan.n} S={self.stride} needs {self.world}")
            init_from_env(backend_for(self.device), self.timeout_s)
            _register_torchrun_exit()
            _header({"op": "begin", "blob": ship(self.pipe.unet), "spec": spec})
        else:
            self.group = WorkerGroup(self.world, serve, args=(ship(self.pipe.unet), spec),
                                     backend=backend_for(self.device), threads=self.threads,
                                     timeout_s=self.timeout_s).start()
        au = AsyncUNet(self.pipe.unet, self.plan, self.stride, self.warmup, self.pipe.scheduler)
        au.role, au.rank, au.device = "rank", 0, self.device
        au.exchange = self._guard(exchange)
        au.before_call = self._guard(self._send_call)
        self.au = au.install()
        sched = self.pipe.scheduler
        self._orig_set_timesteps = sched.set_timesteps

        def set_timesteps(*a, **k):
            out = self._orig_set_timesteps(*a, **k)
            self.reset()
            return out

        sched.set_timesteps = set_timesteps
        return self

    def _guard(self, fn):
        def call(*a, **k):
            try:
                return fn(*a, **k)
            except RuntimeError:
                if self.group is not None:
                    self.group.check()
                raise
        return call

    def reset(self) -> None:
        t0 = time.perf_counter()
        _header({"op": "reset", "timesteps": self.pipe.scheduler.timesteps})
        self.au.reset()
        self.au.stats.comm_s += time.perf_counter() - t0
        self._last_ehs = self._last_shape = None

    def _send_call(self, au: AsyncUNet, args: tuple, kwargs: dict) -> None:
        import torch.distributed as dist

        t0 = time.perf_counter()
        sample, t = args[0], args[1]
        ehs = kwargs.get("encoder_hidden_states")
        extra = {k: v for k, v in kwargs.items() if k not in ("encoder_hidden_states",) and not isinstance(v, torch.Tensor)}
        need_sample = au.step < au.warmup or self._last_shape != tuple(sample.shape)
        need_ehs = ehs is not None and ehs is not self._last_ehs
        h = {"op": "call", "step": au.step, "t": t, "kwargs": extra,
             "sample": (tuple(sample.shape), sample.dtype) if need_sample else None,
             "ehs": (tuple(ehs.shape), ehs.dtype) if need_ehs else None}
        _header(h)
        if need_sample:
            dist.broadcast(sample.contiguous(), 0)
            self._last_shape = tuple(sample.shape)
        if need_ehs:
            dist.broadcast(ehs.contiguous(), 0)
            self._last_ehs = ehs
        au.stats.comm_s += time.perf_counter() - t0

    def snapshot(self) -> list[dict]:
        """Statistics of every worker so far (compute/communication seconds, peak RSS)."""
        import torch.distributed as dist

        _header({"op": "stats"})
        out = [None] * self.world
        dist.gather_object({"rank": 0}, out, dst=0)
        return [s for s in out[1:] if s]

    def close(self) -> list[dict]:
        """Stop the workers (collect their stats) and restore the UNet and scheduler."""
        if self.au is not None:
            self.au.remove()
        if self._orig_set_timesteps is not None:
            try:
                del self.pipe.scheduler.set_timesteps
            except AttributeError:
                self.pipe.scheduler.set_timesteps = self._orig_set_timesteps
            self._orig_set_timesteps = None
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                _header({"op": "stop"})
                out = [None] * self.world
                dist.gather_object({"rank": 0}, out, dst=0)
                self.worker_stats = [s for s in out[1:] if s]
        finally:
            if self.group is not None:
                self.group.join()
                self.group = None
        return self.worker_stats


# ---------------------------------------------------------------------------------------------
# ranks 1..

def serve(rank: int, world: int, blob: dict, spec: dict) -> None:
    """Spawned worker: one session, then exit."""
    _session(rank, blob, spec)


def serve_torchrun(rank: int) -> None:
    """torchrun rank > 0: one session per AsyncDiff variant of rank 0's run, until rank 0 says exit."""
    while True:
        h = _header(None)
        if h["op"] == "exit":
            return
        _session(rank, h["blob"], h["spec"])


def _session(rank: int, blob: dict, spec: dict) -> None:
    """Rebuild the UNet, then follow rank 0's headers until "stop"; send statistics to rank 0."""
    import torch.distributed as dist

    from benchmarks.efficiency import PeakMemory

    unet = rebuild(blob, spec["device"])
    sched = _Schedule()
    au = AsyncUNet(unet, spec["plan"], spec["stride"], spec["warmup"], sched)
    au.role, au.rank, au.device = "rank", rank, spec["device"]
    au.exchange = exchange
    au.install()
    sample = ehs = None
    calls = 0
    t_start = time.perf_counter()
    with PeakMemory() as mem, torch.inference_mode():
        while True:
            h = _header(None)
            if h["op"] == "stop":
                break
            if h["op"] == "stats":
                dist.gather_object(_worker_stats(rank, au, calls, t_start, mem), None, dst=0)
                continue
            if h["op"] == "reset":
                au.reset()
                sched.timesteps = h["timesteps"]
                continue
            if h["sample"] is not None:
                shape, dtype = h["sample"]
                sample = torch.empty(shape, dtype=dtype, device=spec["device"])
                dist.broadcast(sample, 0)
            if h["ehs"] is not None:
                shape, dtype = h["ehs"]
                ehs = torch.empty(shape, dtype=dtype, device=spec["device"])
                dist.broadcast(ehs, 0)
            t0, c0 = time.perf_counter(), au.stats.comm_s
            au.step = h["step"]                            # stride 2: rank 0 makes calls we never see
            unet(sample, h["t"], encoder_hidden_states=ehs, **h["kwargs"])
            au.stats.compute_s += time.perf_counter() - t0 - (au.stats.comm_s - c0)
            calls += 1
    au.remove()
    dist.gather_object(_worker_stats(rank, au, calls, t_start, mem), None, dst=0)


def _worker_stats(rank: int, au: AsyncUNet, calls: int, t_start: float, mem: Any) -> dict:
    busy = au.stats.compute_s + au.stats.comm_s
    return {"rank": rank, "component": min(rank, au.plan.n - 1), "calls": calls,
            "compute_s": round(au.stats.compute_s, 4), "comm_s": round(au.stats.comm_s, 4),
            "comm_share": round(au.stats.comm_s / busy, 4) if busy else 0.0,
            "cpu_s": round(au.stats.cpu_s, 4),
            "alive_s": round(time.perf_counter() - t_start, 3),
            "peak_memory": {"rss_peak_mib": round(max(mem.rss_mib, mem.rss_start_mib), 1),
                            "rss_delta_mib": round(mem.rss_mib - mem.rss_start_mib, 1)}}
