"""Layer-caching baselines for diffusion transformers (Learning-to-Cache, Sec. 4 comparisons).

`layer_cache[policy, fraction]`: a static schedule with the same number of replayed (cache step, sub-layer)
slots as a Learning-to-Cache schedule at `fraction`, chosen without learning:
- random: random slots (seeded by the run seed);
- bottom_up / top_down: the k = fraction * units lowest / highest sub-layers at every cache step;
- uniform: DeepCache-style uniform reuse: the same middle sub-layers replayed at every cache step, the
  input- and output-side ones always recomputed;
- all: every sub-layer on every cache step (interval-2 reuse of the whole network).
Cache steps alternate with full steps (official L2C code), so replayed outputs are one step old.
"""
from __future__ import annotations

from typing import Any, Mapping

from benchmarks.api import Baseline, RunContext, register_baseline


@register_baseline("layer_cache")
class LayerCache(Baseline):
    def apply(self, subject: Any, params: Mapping[str, Any], ctx: RunContext) -> Any:
        from methods.learning_to_cache.method import install
        from methods.learning_to_cache.router import cache_units, heuristic_schedule

        sched_ = subject.pipe.scheduler
        sched_.set_timesteps(subject.steps)
        units = list(cache_units(subject.denoiser))
        sched = heuristic_schedule(str(params["policy"]), len(sched_.timesteps), units, float(params["fraction"]), seed=ctx.seed)
        return install(subject, sched)
