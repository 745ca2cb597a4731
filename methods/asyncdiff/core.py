"""AsyncDiff's algorithm on a diffusers UNet2DConditionModel, in one process or across processes.

AsyncDiff (Chen et al., NeurIPS'24, arXiv 2406.06911), Sec. 3.2-3.4: the denoiser is cut into N
sequential components of about equal cost. After `warmup` sequential steps, component n at step t reads
component n-1's output of step t-1 (not of step t), so the N components of one step run in parallel on
N devices; at the end of each step every component's output is broadcast. With stride S=2 one round
completes two steps: components 1..N-1 compute once per round and the last component runs on two devices,
once with the round's first timestep and once with its second (N+1 devices).

How it is built: a *unit* is a heavy submodule of the UNet (conv_in, every resnet, attention transformer,
down/upsampler, conv_out). Each unit's forward is wrapped: a unit of the active component computes, any
other unit returns its output from the previous step (replay). The stock UNet forward (time embedding,
skip bookkeeping, concatenations: cheap glue) runs unchanged, so no UNet code is copied; component n's
input is exactly what the previous component and the skip connections produced one step earlier.

- `profile_units` orders the units by execution and counts each one's MACs (aten, one denoiser call).
- `split_costs` cuts the unit sequence into N contiguous components minimising the largest one.
- `AsyncUNet` holds the replay state; `.simulate()` runs all components of a step in this process
  (bit-identical to the distributed run, used for tests and as a single-device emulation), `.as_rank(r)`
  makes this process compute only rank r's component (methods/asyncdiff/dist.py moves the tensors).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

# heavy submodules of a diffusers UNet2DConditionModel, by qualified name
_UNIT_RE = re.compile(
    r"^(conv_in|conv_out"
    r"|(down_blocks|up_blocks)\.\d+\.(resnets|attentions|downsamplers|upsamplers)\.\d+"
    r"|mid_block\.(resnets|attentions)\.\d+)$"
)


def unit_names(unet: torch.nn.Module) -> list[str]:
    return [n for n, _ in unet.named_modules() if _UNIT_RE.match(n)]


@dataclass
class Plan:
    """The split: `units` in execution order, MACs per unit, component c = units[bounds[c]:bounds[c+1]]."""

    units: list[str]
    costs: list[int]
    bounds: list[int]

    @property
    def n(self) -> int:
        return len(self.bounds) - 1

    def component(self, c: int) -> list[str]:
        return self.units[self.bounds[c]:self.bounds[c + 1]]

    def component_costs(self) -> list[int]:
        return [sum(self.costs[self.bounds[c]:self.bounds[c + 1]]) for c in range(self.n)]

    def balance(self) -> float:
        """max component cost / ideal (total / N); 1.0 = perfect split."""
        cc = self.component_costs()
        return max(cc) * self.n / max(1, sum(cc))

    def to_dict(self) -> dict:
        return {"n": self.n, "components": [self.component(c) for c in range(self.n)],
                "component_macs": self.component_costs(), "balance": round(self.balance(), 4)}


def profile_units(unet: torch.nn.Module, args: tuple, kwargs: dict | None = None,
                  exclude_attention_matmul: bool = False) -> tuple[list[str], list[int]]:
    """Execution order of the units and their MACs for one call `unet(*args, **kwargs)`.

    MACs are counted at the aten level (FLOPs/2). `exclude_attention_matmul=True` drops the attention
    score/value products (sdpa, bmm), which is the Torch-Pruning convention the papers' MAC columns use."""
    from torch.utils.flop_counter import FlopCounterMode

    names = unit_names(unet)
    modules = dict(unet.named_modules())
    order: list[str] = []
    handles = [modules[n].register_forward_pre_hook(lambda m, a, n=n: order.append(n)) for n in names]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            unet(*args, **(kwargs or {}))
    finally:
        for h in handles:
            h.remove()
    counts = counter.get_flop_counts()
    root = type(unet).__name__
    skip = ("_scaled_dot_product", "bmm", "baddbmm") if exclude_attention_matmul else ()
    seen, units, costs = set(), [], []
    for n in order:
        if n in seen:
            continue
        seen.add(n)
        ops = counts.get(f"{root}.{n}", {})
        flops = sum(v for op, v in ops.items() if not any(s in str(op) for s in skip))
        units.append(n)
        costs.append(int(flops // 2))
    return units, costs


def split_costs(costs: list[int], n: int) -> list[int]:
    """Contiguous split of `costs` into n non-empty parts minimising the largest part (exact DP);
    returns the n+1 bounds. paper: "components of roughly equal computational load" (Sec. 3.2)."""
    m = len(costs)
    if not 1 <= n <= m:
        raise ValueError(f"cannot split {m} units into {n} components")
    pre = [0]
    for c in costs:
        pre.append(pre[-1] + c)
    inf = float("inf")
    # best[k][i]: minimal max part for the first i units in k parts
    best = [[inf] * (m + 1) for _ in range(n + 1)]
    arg = [[0] * (m + 1) for _ in range(n + 1)]
    best[0][0] = 0
    for k in range(1, n + 1):
        for i in range(k, m - (n - k) + 1):
            for j in range(k - 1, i):
                v = max(best[k - 1][j], pre[i] - pre[j])
                if v < best[k][i]:
                    best[k][i], arg[k][i] = v, j
    bounds = [m]
    i = m
    for k in range(n, 0, -1):
        i = arg[k][i]
        bounds.append(i)
    return bounds[::-1]


def make_plan(unet: torch.nn.Module, n: int, args: tuple, kwargs: dict | None = None) -> Plan:
    units, costs = profile_units(unet, args, kwargs)
    return Plan(units, costs, split_costs(costs, n))


# ---------------------------------------------------------------------------------------------
# replay state

def flatten(out: Any) -> tuple[list[torch.Tensor], Any]:
    """Tensors of a unit's output (a tensor or nested tuples/lists of tensors) and its structure."""
    if isinstance(out, torch.Tensor):
        return [out], None
    if isinstance(out, (tuple, list)):
        tensors, specs = [], []
        for o in out:
            t, s = flatten(o)
            specs.append((len(t), s))
            tensors += t
        return tensors, (type(out), specs)
    raise TypeError(f"AsyncDiff cannot exchange a unit output of type {type(out).__name__}")


def unflatten(tensors: list[torch.Tensor], spec: Any) -> Any:
    if spec is None:
        return tensors[0]
    kind, specs = spec
    out, i = [], 0
    for k, s in specs:
        out.append(unflatten(tensors[i:i + k], s))
        i += k
    return kind(out)


@dataclass
class StepStats:
    compute_s: float = 0.0
    comm_s: float = 0.0
    unet_s: float = 0.0      # wall time inside the UNet calls (rank 0: what the pipeline waits for)
    cpu_s: float = 0.0       # process CPU time inside the UNet calls (robust to other jobs on the machine)
    calls: int = 0


class AsyncUNet:
    """Replay wrappers on a UNet's units plus the step logic of AsyncDiff.

    Use `install()` once, `reset()` before every sampling call (the pipeline's own loop then calls the
    UNet as usual) and `remove()` to restore the original forwards exactly.

    role "simulate": every UNet call runs all components in this process, each reading the previous
    step's outputs of the others (the parallel schedule emulated sequentially).
    role "rank": this process computes only its own component; `exchange(rank_outputs)` must be set by
    the distributed driver to broadcast outputs between ranks.
    """

    def __init__(self, unet: torch.nn.Module, plan: Plan, stride: int = 1, warmup: int = 1,
                 scheduler: Any = None):
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        if warmup < 1:
            raise ValueError("warmup must be >= 1 (the first step fills every component's input)")
        self.unet, self.plan, self.stride, self.warmup, self.scheduler = unet, plan, stride, warmup, scheduler
        self.modules = dict(unet.named_modules())
        self.comp_of = {u: c for c in range(plan.n) for u in plan.component(c)}
        self.active: set[str] | None = None      # None: compute every unit (sequential step)
        self.prev: dict[str, Any] = {}           # unit -> output of the previous step
        self.cur: dict[str, Any] = {}            # unit -> output computed in this call
        self.step = 0
        self.pending: Any = None                 # stride 2: the round's second noise prediction
        self._orig_unit: dict[str, Callable] = {}
        self._orig_unet: Callable | None = None
        self.role = "simulate"
        self.rank = 0
        self.device = "cpu"
        self.exchange: Callable[["AsyncUNet", Any], Any] | None = None   # set by the distributed driver
        self.before_call: Callable[["AsyncUNet", tuple, dict], None] | None = None
        self.stats = StepStats()

    # -- wrappers --------------------------------------------------------------------------------
    def install(self) -> "AsyncUNet":
        if self._orig_unet is not None:
            return self
        for name in self.plan.units:
            mod = self.modules[name]
            self._orig_unit[name] = mod.forward           # bound method (or an instance attribute)
            mod.forward = self._unit_forward(name, mod.forward)
        self._orig_unet = self.unet.forward
        self.unet.forward = self._unet_forward
        return self

    def remove(self) -> None:
        if self._orig_unet is None:
            return
        for name, fwd in self._orig_unit.items():
            mod = self.modules[name]
            if getattr(fwd, "__self__", None) is mod and getattr(fwd, "__func__", None) is type(mod).forward:
                del mod.forward                            # back to the class's forward
            else:
                mod.forward = fwd
        self._orig_unit.clear()
        if getattr(self._orig_unet, "__func__", None) is type(self.unet).forward:
            del self.unet.forward
        else:
            self.unet.forward = self._orig_unet
        self._orig_unet = None

    def _unit_forward(self, name: str, fwd: Callable) -> Callable:
        def forward(*args, **kwargs):
            if self.active is None or name in self.active:
                out = fwd(*args, **kwargs)
                self.cur[name] = out
                return out
            return self.prev[name]                         # the previous step's output of another component
        return forward

    def reset(self) -> None:
        self.prev, self.cur, self.step, self.pending, self.active = {}, {}, 0, None, None

    # -- step logic ------------------------------------------------------------------------------
    def _timestep_after(self, t: Any) -> Any:
        """The scheduler timestep following `t` (stride 2's second step of a round); `t` at the end."""
        ts = getattr(self.scheduler, "timesteps", None)
        if ts is None:
            return t
        idx = self.step + 1
        return ts[idx] if idx < len(ts) else t

    def _call(self, active: set[str] | None, args: tuple, kwargs: dict, timestep: Any = None) -> Any:
        self.active, self.cur = active, {}
        if timestep is not None:
            args = (args[0], timestep) + tuple(args[2:])
        try:
            return self._orig_unet(*args, **kwargs)
        finally:
            self.active = None

    def _output(self, eps: torch.Tensor, kwargs: dict) -> Any:
        if kwargs.get("return_dict", True):
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=eps)
        return (eps,)

    @staticmethod
    def _normalise(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """(sample, timestep, ...) positionally, whatever way the pipeline passed them."""
        args, kwargs = list(args), dict(kwargs)
        if not args:
            args.append(kwargs.pop("sample"))
        if len(args) < 2:
            args.append(kwargs.pop("timestep"))
        return tuple(args), kwargs

    def _unet_forward(self, *args, **kwargs):
        args, kwargs = self._normalise(args, kwargs)
        step, n = self.step, self.plan.n
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if self.before_call is not None and (step < self.warmup or (step - self.warmup) % self.stride == 0):
                self.before_call(self, args, kwargs)
            if step < self.warmup:                          # warm-up: one sequential pass
                out = self._call(None, args, kwargs)
                self.prev = self.cur
                return out
            offset = (step - self.warmup) % self.stride
            if offset == 1:                                 # stride 2, second step: computed last round
                return self._output(self.pending, kwargs)
            if self.role == "simulate":
                new: dict[str, Any] = {}
                for c in range(n):
                    self._call(set(self.plan.component(c)), args, kwargs)
                    new.update(self.cur)
                last = set(self.plan.component(n - 1))
                if self.stride == 2:
                    self._call(last, args, kwargs, timestep=self._timestep_after(args[1]))
                    self.pending = self._eps(self.cur["conv_out"])
                self.prev = new
                eps = self._eps(new["conv_out"])
            else:
                comp = min(self.rank, n - 1)
                ts = self._timestep_after(args[1]) if self.rank == n else None
                self._call(set(self.plan.component(comp)), args, kwargs, timestep=ts)
                eps, self.pending = self.exchange(self, args)   # broadcasts; updates self.prev
            return self._output(eps, kwargs)
        finally:
            self.step += 1
            self.stats.calls += 1
            self.stats.unet_s += time.perf_counter() - t0
            self.stats.cpu_s += time.process_time() - c0

    @staticmethod
    def _eps(out: Any) -> torch.Tensor:
        return out[0] if isinstance(out, (tuple, list)) else out


def unet_call_args(pipe: Any, batch: int = 1, cfg: bool = True) -> tuple[tuple, dict]:
    """Example UNet inputs with the pipeline's latent and text shapes (batch doubled for CFG)."""
    unet = pipe.unet
    cfgd = unet.config
    size = cfgd.sample_size if isinstance(cfgd.sample_size, int) else cfgd.sample_size[0]
    b = batch * (2 if cfg else 1)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(b, cfgd.in_channels, size, size, generator=g)
    tokens = getattr(getattr(pipe, "tokenizer", None), "model_max_length", 77) or 77
    tokens = min(int(tokens), 77)
    ctx = torch.randn(b, tokens, cfgd.cross_attention_dim, generator=g)
    return (sample, torch.tensor(500)), {"encoder_hidden_states": ctx}
