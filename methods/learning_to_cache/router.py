"""Learning-to-Cache core (Ma et al., NeurIPS 2024, arXiv 2406.01733): a static per-step, per-layer cache
schedule for diffusion transformers, learned by a sigmoid-relaxed router, and applied through the shared
replay hooks (benchmarks/hooks.py) on the sub-layers `attn1` and `ff` of a diffusers DiT.

Units (Sec. 3.1): every residual sub-layer f_i in {MHSA, FFN} of every block: 2 * depth per step. The
hooked module is f_i itself, so on a cached step the residual add and the current step's adaLN gate
are still applied to the replayed f_i(h_s) (paper Eq. 4).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from benchmarks.hooks import HOOK_NAME, CacheHandle, CachePolicy, ReplayHook, StepClock, _DenoiserHook


# ------------------------------------------------------------------ units and schedules

def cache_units(transformer: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Ordered {name: module} of the cacheable sub-layers, bottom (input side) to top: attn1, ff per block."""
    units = {}
    for i, block in enumerate(transformer.transformer_blocks):
        units[f"transformer_blocks.{i}.attn1"] = block.attn1
        units[f"transformer_blocks.{i}.ff"] = block.ff
    return units


def cache_steps(total: int) -> list[int]:
    """Steps on which layers may be replayed. official: full and cache steps alternate, the first step is
    full (routers exist at odd step indices only), so a replayed output is always one step old."""
    return list(range(1, total, 2))


@dataclass
class Schedule:
    """cached[step] = set of unit names replayed at that step (every other unit is recomputed)."""

    total: int
    units: list[str]
    cached: dict[int, frozenset[str]] = field(default_factory=dict)

    def n_cached(self) -> int:
        return sum(len(v) for v in self.cached.values())

    def share(self) -> float:
        """Cached share of the units over the cache steps (the paper's 'cacheable layers' figure)."""
        slots = len(cache_steps(self.total)) * len(self.units)
        return self.n_cached() / slots if slots else 0.0

    def kinds(self) -> tuple[list[str], dict[str, frozenset[str]]]:
        """Per-step kind for paper-arch composition: 'full', or one name per distinct cached set."""
        sets: dict[frozenset[str], str] = {}
        plan = []
        for s in range(self.total):
            c = self.cached.get(s, frozenset())
            if not c:
                plan.append("full")
                continue
            if c not in sets:
                sets[c] = "cached" if not sets else f"cached{len(sets)}"
            plan.append(sets[c])
        return plan, {v: k for k, v in sets.items()}

    def to_json(self) -> dict:
        return {"total": self.total, "cached": {str(s): sorted(v, key=self.units.index) for s, v in sorted(self.cached.items()) if v}}


def schedule_from_scores(scores: torch.Tensor, units: list[str], *, threshold: float | None = None,
                         fraction: float | None = None) -> Schedule:
    """scores [total, n_units] router logits. threshold (paper Sec. 3.3): replay unit j at step m iff
    sigmoid(score) <= threshold. fraction (ours, for cost-matched comparisons): replay the lowest-scoring
    `fraction` of all (cache step, unit) slots."""
    total = scores.shape[0]
    steps = cache_steps(total)
    prob = torch.sigmoid(scores.detach().float())
    cached: dict[int, set[str]] = {s: set() for s in steps}
    if fraction is not None:
        slots = [(float(prob[s, j]), s, j) for s in steps for j in range(len(units))]
        slots.sort()
        for _, s, j in slots[: round(fraction * len(slots))]:
            cached[s].add(units[j])
    else:
        thr = 0.1 if threshold is None else threshold
        for s in steps:
            for j, u in enumerate(units):
                if prob[s, j] <= thr:
                    cached[s].add(u)
    return Schedule(total, list(units), {s: frozenset(v) for s, v in cached.items()})


def heuristic_schedule(policy: str, total: int, units: list[str], fraction: float, seed: int = 0) -> Schedule:
    """Baseline schedules with the same number of replayed slots as `fraction` of all cache-step slots:
    bottom_up (the k lowest units at every cache step), top_down (the k highest), uniform (DeepCache-style:
    the same middle units at every cache step, input- and output-side units always recomputed), random
    (k·|cache steps| random slots), all (every unit on every cache step: interval-2 reuse of everything)."""
    steps = cache_steps(total)
    n = len(units)
    k = round(fraction * n)
    cached: dict[int, frozenset[str]] = {}
    if policy == "random":
        g = torch.Generator().manual_seed(seed)
        slots = [(s, j) for s in steps for j in range(n)]
        pick = torch.randperm(len(slots), generator=g)[: round(fraction * len(slots))].tolist()
        tmp: dict[int, set[str]] = {s: set() for s in steps}
        for i in pick:
            s, j = slots[i]
            tmp[s].add(units[j])
        cached = {s: frozenset(v) for s, v in tmp.items()}
    else:
        if policy == "bottom_up":
            chosen = units[:k]
        elif policy == "top_down":
            chosen = units[n - k:] if k else []
        elif policy == "uniform":
            lo = (n - k) // 2
            chosen = units[lo:lo + k]
        elif policy == "all":
            chosen = list(units)
        else:
            raise ValueError(f"unknown layer-cache policy {policy!r}")
        cached = {s: frozenset(chosen) for s in steps}
    return Schedule(total, list(units), cached)


# ------------------------------------------------------------------ applying a schedule through the shared hooks

class SchedulePolicy(CachePolicy):
    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.forced_set: frozenset[str] | None = None

    def compute(self, step: int, total: int, name: str) -> bool:
        if total != self.schedule.total:
            return True          # another step count than the schedule was made for: never replay
        return name not in self.schedule.cached.get(step, ())


class _ScheduledReplayHook(ReplayHook):
    """ReplayHook whose forced mode can replay a *subset* of units (per-kind timing of a per-layer
    schedule): force('full') computes all, force(kind) replays the units of that kind only."""

    def new_forward(self, module, *args, **kwargs):
        c = self.clock
        if c.forced is not None and c.forced != "full":
            replay = self.policy.kind_sets.get(c.forced)
            if replay is not None and self.name not in replay:
                out = self.fn_ref.original_forward(*args, **kwargs)
                self.cache[c.slot] = out
                return out
        return super().new_forward(module, *args, **kwargs)


def attach_schedule(transformer: torch.nn.Module, scheduler: Any, schedule: Schedule) -> CacheHandle:
    """Attach a static per-step per-unit schedule to a live DiT (same hook/clock machinery as DeepCache)."""
    from diffusers.hooks import HookRegistry

    policy = SchedulePolicy(schedule)
    plan, kind_sets = schedule.kinds()
    policy.kind_sets = kind_sets
    clock = StepClock()
    clock.attach(scheduler)
    units = {n: m for n, m in cache_units(transformer).items() if n in schedule.units}
    HookRegistry.check_if_exists_or_initialize(transformer).register_hook(_DenoiserHook(clock), HOOK_NAME)
    for name, m in units.items():
        HookRegistry.check_if_exists_or_initialize(m).register_hook(_ScheduledReplayHook(name, clock, policy), HOOK_NAME)
    handle = CacheHandle(transformer, units, clock, policy)
    handle.plan = plan
    return handle


# ------------------------------------------------------------------ router training (Sec. 3.2, Alg. 1)

def dit_eps(transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
            guidance: float) -> torch.Tensor:
    """The guided epsilon a DiTPipeline step feeds to the scheduler (CFG with null class 1000 batched)."""
    c = x.shape[1]
    if guidance > 1:
        inp = torch.cat([x, x])
        lab = torch.cat([labels, torch.full_like(labels, 1000)])
    else:
        inp, lab = x, labels
    out = transformer(inp, timestep=t.expand(len(inp)), class_labels=lab).sample[:, :c]
    if guidance > 1:
        cond, uncond = out.chunk(2)
        out = uncond + guidance * (cond - uncond)
    return out


@torch.no_grad()
def trajectories(transformer, scheduler, labels: torch.Tensor, steps: int, guidance: float, seed: int,
                 sample_size: int, channels: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Uncached sampling from `seed`: the denoiser input x at every step, and the timesteps."""
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), channels, sample_size, sample_size, generator=g)
    xs = []
    for t in sched.timesteps:
        xs.append(x)
        x = sched.step(dit_eps(transformer, sched.scale_model_input(x, t), t, labels, guidance), t, x).prev_sample
    return xs, sched.timesteps


class _Mixer:
    """Forward hooks on the units: 'store' keeps f_i(h_s); 'mix' returns b*f_i(h_m) + (1-b)*f_i(h_s)."""

    def __init__(self, units: dict[str, torch.nn.Module]):
        self.mode = "off"
        self.cache: dict[str, torch.Tensor] = {}
        self.beta: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in units.items()]

    def _hook(self, name):
        def fn(_m, _a, out):
            if self.mode == "store":
                self.cache[name] = out.detach()
            elif self.mode == "mix":
                b = self.beta[name]
                return b * out + (1 - b) * self.cache[name]
            return out
        return fn

    def remove(self):
        for h in self.handles:
            h.remove()


def train_router(transformer: torch.nn.Module, scheduler: Any, *, steps: int, guidance: float, iters: int,
                 batch: int, lam: float, lr: float, seed: int = 0, init: float = 1.0, num_classes: int = 10,
                 bar: Callable | None = None) -> tuple[torch.Tensor, dict]:
    """Learn router logits [steps, n_units] for a frozen DiT (Alg. 1): pick a cache step m (odd index) and
    s = m - 1; run the full model at x_s (fills the cache) and at x_m (the target); the routed model at x_m
    mixes each unit as beta*f(h_m) + (1-beta)*f(h_s), beta = sigmoid(router[m]); loss = MSE(routed, target)
    + lam * sum(beta). AdamW on the router only (weight decay 0), logits clamped to [-5, 5].

    reconstruction: x_s comes from uncached DDIM trajectories of the mini-world model from random labels
    and seeds (the paper noises a VAE latent of an ImageNet image to x_s and takes one DDIM step); the
    router starts at `init` = 1.0 (every unit recomputed, sigmoid 0.73) instead of randn, so a short CPU run starts from the
    uncached model and the sparsity penalty pushes the least useful units down.
    """
    units = cache_units(transformer)
    names = list(units)
    router = torch.nn.Parameter(torch.full((steps, len(names)), float(init)))
    opt = torch.optim.AdamW([router], lr=lr, weight_decay=0.0)
    transformer.eval()
    req = [p.requires_grad for p in transformer.parameters()]
    for p in transformer.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1)
    n_traj = max(batch, 8)
    labels = torch.randint(0, num_classes, (n_traj,), generator=g)
    cfg = transformer.config
    xs, ts = trajectories(transformer, scheduler, labels, steps, guidance, seed + 12345, cfg.sample_size, cfg.in_channels)
    mixer = _Mixer(units)
    m_steps = cache_steps(steps)
    losses = []
    try:
        it = range(iters)
        if bar is not None:
            it = bar(it, desc="router")
        for _ in it:
            m = m_steps[int(torch.randint(len(m_steps), (1,), generator=g))]
            idx = torch.randperm(n_traj, generator=g)[:batch]
            lab = labels[idx]
            with torch.no_grad():
                mixer.mode = "store"
                dit_eps(transformer, xs[m - 1][idx], ts[m - 1], lab, guidance)
                mixer.mode = "off"
                target = dit_eps(transformer, xs[m][idx], ts[m], lab, guidance)
            beta = torch.sigmoid(router[m])
            mixer.beta = {n: beta[j] for j, n in enumerate(names)}
            mixer.mode = "mix"
            pred = dit_eps(transformer, xs[m][idx], ts[m], lab, guidance)
            mixer.mode = "off"
            loss = F.mse_loss(pred, target) + lam * beta.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                router.clamp_(-5, 5)
            losses.append(float(loss.detach()))
    finally:
        mixer.remove()
        for p, r in zip(transformer.parameters(), req):
            p.requires_grad_(r)
    return router.detach(), {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                             "iters": iters}


@contextlib.contextmanager
def all_scores_high(transformer, scheduler, steps: int):
    """A schedule from an all-high router (every unit recomputed), attached: for the bit-identity test."""
    units = list(cache_units(transformer))
    sched = schedule_from_scores(torch.full((steps, len(units)), 5.0), units, threshold=0.1)
    h = attach_schedule(transformer, scheduler, sched)
    try:
        yield h
    finally:
        h.disable()
