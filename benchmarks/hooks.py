"""Feature-caching machinery shared by caching methods (DeepCache, Learning-to-Cache, ...).

Built on diffusers' own hook system (`ModelHook` / `HookRegistry`), so no diffusers code is copied and
everything is removable:

- `StepClock` follows the sampler: it wraps the scheduler's `set_timesteps` (a new sampling run) and
  `step` (end of one denoising step), so every denoiser call knows its step index and its position
  within the step (slot). Un-batched classifier-free guidance calls the denoiser twice per step; each
  call position gets its own cache slot.
- `CachePolicy.compute(step, total, name) -> bool` decides per step and per module whether to run the
  module (and refresh its cache) or to replay its cached output.
- `ReplayHook` on a module: compute -> run and store the output in the current slot; otherwise return
  the stored output of the last computed step. `force(kind)` pins the decision ("full" or "cached")
  for per-kind measurements outside a sampling loop.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

import torch
from diffusers.hooks import HookRegistry, ModelHook


class CachePolicy:
    """Override `compute`. Default: always compute (no caching)."""

    def compute(self, step: int, total: int, name: str) -> bool:
        return True


class StepClock:
    def __init__(self) -> None:
        self.step = 0
        self.total = 0
        self.slot = 0
        self.forced: str | None = None
        self._scheduler: Any = None

    def attach(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        set_timesteps, step = scheduler.set_timesteps, scheduler.step

        def wrapped_set_timesteps(*args, **kwargs):
            out = set_timesteps(*args, **kwargs)
            self.step, self.slot, self.total = 0, 0, len(scheduler.timesteps)
            return out

        def wrapped_step(*args, **kwargs):
            out = step(*args, **kwargs)
            self.step, self.slot = self.step + 1, 0
            return out

        scheduler.set_timesteps, scheduler.step = wrapped_set_timesteps, wrapped_step

    def detach(self) -> None:
        if self._scheduler is not None:
            for attr in ("set_timesteps", "step"):
                self._scheduler.__dict__.pop(attr, None)
            self._scheduler = None


class _DenoiserHook(ModelHook):
    """Counts denoiser calls within a step (slot) so each call position has its own cache."""

    def __init__(self, clock: StepClock):
        super().__init__()
        self.clock = clock
        self.depth = 0

    def pre_forward(self, module, *args, **kwargs):
        self.depth += 1
        return args, kwargs

    def post_forward(self, module, output):
        self.depth -= 1
        if self.depth == 0 and self.clock.forced is None:
            self.clock.slot += 1
        return output


class ReplayHook(ModelHook):
    def __init__(self, name: str, clock: StepClock, policy: CachePolicy):
        super().__init__()
        self.name, self.clock, self.policy = name, clock, policy
        self.cache: dict[int, Any] = {}

    def new_forward(self, module: torch.nn.Module, *args, **kwargs):
        c = self.clock
        if c.forced is not None:
            compute = c.forced == "full"
        else:
            compute = self.policy.compute(c.step, c.total, self.name)
        if compute:
            out = self.fn_ref.original_forward(*args, **kwargs)
            self.cache[c.slot] = out
            return out
        if c.slot not in self.cache:
            raise RuntimeError(f"no cached output for {self.name} (slot {c.slot}): the first step must compute it")
        return self.cache[c.slot]


HOOK_NAME = "effbench_replay"


class CacheHandle:
    """What `attach_replay` returns: `disable()` removes every hook and scheduler wrapper."""

    def __init__(self, denoiser: torch.nn.Module, modules: dict[str, torch.nn.Module], clock: StepClock,
                 policy: CachePolicy):
        self.denoiser, self.modules, self.clock, self.policy = denoiser, modules, clock, policy

    @contextlib.contextmanager
    def force(self, kind: str):
        """Pin the caching decision ("full" computes and refreshes the cache, anything else replays)."""
        old = self.clock.forced
        self.clock.forced = kind
        try:
            yield
        finally:
            self.clock.forced = old

    def disable(self) -> None:
        for m in list(self.modules.values()) + [self.denoiser]:
            reg = getattr(m, "_diffusers_hook", None)
            if reg is not None:
                reg.remove_hook(HOOK_NAME, recurse=False)
                if not reg.hooks:
                    # restore the class forward (the registry leaves a bound-method attribute behind)
                    m.__dict__.pop("forward", None)
                    del m._diffusers_hook
        self.clock.detach()


def attach_replay(denoiser: torch.nn.Module, scheduler: Any, modules: dict[str, torch.nn.Module],
                  policy: CachePolicy) -> CacheHandle:
    clock = StepClock()
    clock.attach(scheduler)
    HookRegistry.check_if_exists_or_initialize(denoiser).register_hook(_DenoiserHook(clock), HOOK_NAME)
    for name, m in modules.items():
        HookRegistry.check_if_exists_or_initialize(m).register_hook(ReplayHook(name, clock, policy), HOOK_NAME)
    return CacheHandle(denoiser, modules, clock, policy)


def named(root: torch.nn.Module, modules: Iterable[torch.nn.Module]) -> dict[str, torch.nn.Module]:
    lookup = {id(m): n for n, m in root.named_modules()}
    return {lookup[id(m)]: m for m in modules}


Policy = Callable[[int, int, str], bool]
