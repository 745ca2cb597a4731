"""`diffusion_parallel`: the diffusion sampling task plus what a multi-device method must report.

Same protocol, task_id and metrics as benchmarks.tasks.diffusion (so AsyncDiff rows rank against every
other diffusion method), plus, for AsyncDiff variants: communication share, per-worker peak memory and
compute time, the component split; on a paper architecture the per-component MACs and the paper's
"MACs per device" column (Table 1).
"""
from __future__ import annotations

from benchmarks.api import Outcome, RunContext, Variant, register_task
from benchmarks.tasks.diffusion import DiffusionSubject, DiffusionTask


@register_task("diffusion_parallel")
class ParallelDiffusionTask(DiffusionTask):
    version = 1

    def evaluate(self, subject: DiffusionSubject, variant: Variant, ctx: RunContext) -> Outcome:
        info = getattr(subject, "asyncdiff", None)
        if info is None:
            return super().evaluate(subject, variant, ctx)
        plan, stride = info["plan"], info["stride"]
        if self.kind == "arch":
            out = super().evaluate(subject, variant, ctx)
            return self._arch_devices(out, subject, plan, stride, info["warmup"])
        ctl = info.get("controller") or info["driver"].au
        ctl.stats.comm_s = ctl.stats.unet_s = ctl.stats.cpu_s = 0.0
        out = super().evaluate(subject, variant, ctx)
        e = out.efficiency
        e["devices"] = plan.n + stride - 1
        e["comm_share"] = ctl.stats.comm_s / ctl.stats.unet_s if ctl.stats.unet_s else 0.0
        out.notes["comm_share_basis"] = ("rank 0: seconds in broadcasts (headers + component outputs, incl. waiting "
                                         "for the slowest rank) / seconds inside denoiser calls, over this variant")
        out.notes["split"] = plan.to_dict()
        if "driver" in info:
            workers = info["driver"].snapshot()
            e["peak_memory_per_worker"] = [{"rank": 0, **e.get("peak_memory", {})}] + [
                {"rank": w["rank"], **w["peak_memory"]} for w in workers]
            out.notes["workers"] = workers
            out.notes["rank0"] = {"unet_s": round(ctl.stats.unet_s, 4), "cpu_s": round(ctl.stats.cpu_s, 4),
                                  "comm_s": round(ctl.stats.comm_s, 4), "calls": ctl.stats.calls}
        else:
            out.notes["mode"] = "simulate: all components run in this process (quality only; no speedup expected)"
        return out

    def _arch_devices(self, out: Outcome, subject: DiffusionSubject, plan, stride: int, warmup: int) -> Outcome:
        """Paper Table 1 "MACs" column: per device over one sampling (CFG doubles the batch)."""
        steps = len(subject.pipe.scheduler.timesteps) or subject.steps
        cfg_factor = 2 if subject.guidance_scale > 1.0 else 1
        cc = plan.component_costs()
        total = sum(cc)
        e = out.efficiency
        e["devices"] = plan.n + stride - 1
        e["component_macs"] = cc
        e["macs_per_device"] = steps * cfg_factor * max(cc) / stride
        e["macs_per_device_ideal"] = steps * cfg_factor * total / (plan.n * stride)
        e["macs_sequential"] = steps * cfg_factor * total
        out.notes["split"] = plan.to_dict()
        out.notes["macs_per_device_basis"] = (
            "one sampling call, CFG batch 2, largest component; warm-up steps not counted (the paper's "
            "column equals total/(N*S)); MACs counted at aten level without attention score products "
            "(Torch-Pruning convention)")
        return out
