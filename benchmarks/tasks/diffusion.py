"""Diffusion sampling task: quality and cost of a (possibly accelerated) diffusion pipeline.

- Mini-world (`model: zoo:<entry>`): samples `num_samples` images from fixed per-image seeds (the same
  seeds for every variant), measures quality against the digits test set with the shared image metrics,
  fidelity (PSNR/SSIM) against the reference variant's images from the same seeds, latency per image of
  a whole sampling call, denoiser MACs per image (aten counter, hooks respected) and params.
- Paper architecture (`model: arch:<name>`, random weights): no quality. Denoiser MACs per step with
  Torch-Pruning's counter (the papers' convention) and latency per step, for each kind of denoiser call
  the variant makes (`subject.plan`), composed over the sampling schedule.
- User weights (`model: hf:<repo-or-path>`): a local diffusers pipeline; prompts from `prompts_file`.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import torch

from .. import efficiency as eff
from ..api import Metric, Outcome, RunContext, Task, Variant, register_task
from ..config import BaseConfig, check_choice, check_positive
from ..errors import ConfigError

SCHEDULERS = ("ddim", "pndm", "dpm", "ddpm")
IMAGE_METRICS = ("fid", "kid", "is", "precision", "recall", "accuracy", "clip_score", "psnr", "ssim")
PAPER_FEATURE_METRICS = ("fid", "kid", "is", "precision", "recall")   # against fid_reference, fid_extractor features


@dataclass(frozen=True)
class DiffusionConfig(BaseConfig):
    task: str = "diffusion"
    model: str = "zoo:ddpm_digits"
    scheduler: str = "ddim"
    steps: int = 20
    guidance_scale: float = 1.0
    num_samples: int = 100
    batch_size: int = 50
    latency_batch: int = 1
    quality: tuple[str, ...] = ("fid", "kid", "accuracy", "psnr", "ssim")
    mac_counter: str = "aten"
    prompts_file: str = ""        # hf: models: one prompt per line (PartiPrompts, COCO captions)
    clip_model: str = "clip_digits"   # CLIP Score model: the zoo's, or a local Hugging Face CLIP folder / hub id
    fid_reference: str = ""       # hf: models: folder of reference images for FID / KID / precision-recall
    fid_extractor: str = "inception_cleanfid"   # hf: models: Inception port (weights from the user, see metrics)
    save_samples: int = 64        # images written to the run's artifacts as a grid (0: none)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "scheduler", SCHEDULERS)
        check_choice(self, "quality", IMAGE_METRICS)
        check_choice(self, "mac_counter", eff.MAC_COUNTERS)
        check_positive(self, "steps", "batch_size", "latency_batch")
        if self.num_samples < 0:
            raise ConfigError("num_samples must be >= 0")
        if not self.model.startswith(("zoo:", "arch:", "hf:")):
            raise ConfigError(f"bad value {self.model!r} for key 'model': use zoo:<name>, arch:<name> or hf:<path>")


@dataclass(frozen=True)
class Cond:
    label: int
    prompt: str


@dataclass
class DiffusionSubject:
    pipe: Any
    steps: int
    guidance_scale: float
    sampler: Callable | None = None          # sampler(subject, conds, seed) -> images [B,C,H,W] in [0,1]
    plan: list[str] | None = None             # kind of each denoiser call, for paper-arch composition
    force: Callable[[str], ContextManager] | None = None
    replayed: Callable[[str], list] | None = None   # modules a call of this kind replays instead of computing
    undo: list[Callable[[], None]] = field(default_factory=list)
    arch_inputs: Callable[[int, torch.device], dict] | None = None

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.unet if hasattr(self.pipe, "unet") else self.pipe.transformer

    def set_denoiser(self, module: torch.nn.Module) -> None:
        """Replace the denoiser in this subject only (pruning methods). Never prune the shared one in place."""
        if hasattr(self.pipe, "unet"):
            self.pipe.unet = module
        else:
            self.pipe.transformer = module

    def release(self) -> None:
        while self.undo:
            self.undo.pop()()


class ArchPipe:
    """Stand-in 'pipeline' for a bare paper architecture: holds the denoiser and a scheduler."""

    def __init__(self, denoiser: torch.nn.Module, scheduler: Any):
        self.unet = denoiser
        self.scheduler = scheduler


def make_scheduler(kind: str, config: Any):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

    cls = {"ddim": DDIMScheduler, "pndm": PNDMScheduler, "dpm": DPMSolverMultistepScheduler, "ddpm": DDPMScheduler}[kind]
    extra = {"skip_prk_steps": True} if kind == "pndm" else {}
    return cls.from_config(config, **extra)


def digit_conditions(n: int) -> list[Cond]:
    from ..zoo.data import DIGIT_NAMES

    return [Cond(i % 10, f"a handwritten {DIGIT_NAMES[i % 10]}") for i in range(n)]


def _to_tensor(images: Any) -> torch.Tensor:
    import numpy as np

    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
    else:
        x = torch.from_numpy(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    return x.clamp(0, 1).contiguous()


def pipeline_sample(subject: DiffusionSubject, conds: list[Cond], seed: int) -> torch.Tensor:
    """Sample one image per condition with the pipeline's own __call__; image i uses seed + i."""
    if subject.sampler is not None:
        return subject.sampler(subject, conds, seed)
    pipe = subject.pipe
    device = getattr(pipe, "device", torch.device("cpu"))
    gens = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(len(conds))]
    name = type(pipe).__name__
    kw: dict[str, Any] = {"num_inference_steps": subject.steps, "generator": gens}
    if name.startswith("DDPM") or name.startswith("DDIM"):
        out = pipe(batch_size=len(conds), output_type="np", **kw)
    elif name.startswith("DiT"):
        out = pipe(class_labels=[c.label for c in conds], guidance_scale=subject.guidance_scale, output_type="np", **kw)
    else:
        out = pipe(prompt=[c.prompt for c in conds], guidance_scale=subject.guidance_scale, output_type="np", **kw)
    del device
    return _to_tensor(out.images)


@contextlib.contextmanager
def count_denoiser_macs(denoiser: torch.nn.Module):
    """Counts aten MACs of the denoiser's forward calls only (hooks of the method respected)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    state = {"depth": 0, "calls": 0, "flops": 0}   # entering the mode resets its counts: accumulate here

    def pre(_m, _a):
        if state["depth"] == 0:
            counter.__enter__()
        state["depth"] += 1

    def post(_m, _a, _o):
        state["depth"] -= 1
        if state["depth"] == 0:
            counter.__exit__(None, None, None)
            state["flops"] += counter.get_total_flops()
            state["calls"] += 1

    h1, h2 = denoiser.register_forward_pre_hook(pre), denoiser.register_forward_hook(post)
    result: dict[str, int] = {}
    try:
        yield result
    finally:
        h1.remove(), h2.remove()
        result["macs"] = int(state["flops"] // 2)
        result["calls"] = state["calls"]


def _grid(images: torch.Tensor, path) -> None:
    import torchvision

    torchvision.utils.save_image(images, str(path), nrow=int(max(1, round(len(images) ** 0.5))), padding=1)


@register_task("diffusion")
class DiffusionTask(Task):
    version = 1

    def __init__(self, cfg: DiffusionConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        kind, _, name = cfg.model.partition(":")
        self.kind, self.source = kind, name
        device = torch.device(ctx.device)
        if kind == "zoo":
            from .. import zoo

            self.pipe = zoo.load(name, progress=ctx.progress)
            self._model_id = zoo.model_id(name)
        elif kind == "arch":
            from ..diffusion_archs import build_random, get_arch
            from diffusers import DDIMScheduler

            arch = get_arch(name)
            self.arch = arch
            self.pipe = ArchPipe(build_random(name, ctx.seed).to(device), DDIMScheduler(num_train_timesteps=1000))
            self._model_id = f"arch:{name}(random weights)"
        else:
            from ..assets import hf_model
            from diffusers import DiffusionPipeline

            path = hf_model(name, what=f"diffusers pipeline {name!r}")
            self.pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
            self._model_id = f"hf:{name}"
        if hasattr(self.pipe, "to") and kind != "arch":
            self.pipe = self.pipe.to(device)
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        self.conds = self._conditions()
        if kind == "hf":
            self._paper_metric_assets()
        self._memo: dict = {}
        base = make_scheduler(cfg.scheduler, self.pipe.scheduler.config)
        base.set_timesteps(cfg.steps)
        self.base_calls = len(base.timesteps)   # denoiser calls of the unaccelerated schedule

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def task_id(self) -> str:
        c = self.cfg
        if self.kind == "arch":
            return f"diffusion/{self.source}/{c.scheduler}{c.steps}"
        return f"diffusion/{self.source}/{c.scheduler}{c.steps}/n{c.num_samples}"

    def _conditions(self) -> list[Cond]:
        if self.kind == "hf" and self.cfg.num_samples:
            from ..assets import local_path

            path = local_path(self.cfg.prompts_file, "prompt list for the paper protocol (one prompt per line)",
                              "export PartiPrompts (P2.tsv 'Prompt' column) or the first caption of each COCO2017 "
                              "val image to a text file and pass --set prompts_file=/path/prompts.txt")
            prompts = [p.strip() for p in path.read_text().splitlines() if p.strip()][: self.cfg.num_samples]
            return [Cond(-1, p) for p in prompts]
        return digit_conditions(self.cfg.num_samples)

    def _paper_metric_assets(self) -> None:
        """Resolve what the requested paper-track metrics need before any sampling, so a missing file fails
        in seconds with its name and how to get it (exit 3), not after hours of generation."""
        feats = [n for n in self.cfg.quality if n in PAPER_FEATURE_METRICS]
        self._fid_reference = "digits_test"          # image_quality's default; only read for feature metrics
        if "accuracy" in self.cfg.quality:
            raise ConfigError("metric 'accuracy' is mini-world only (digit labels); drop it from 'quality' for hf: models")
        if feats and self.cfg.num_samples:
            from ..assets import local_path
            from ..metrics.extractors import get_extractor

            self._fid_reference = str(local_path(
                self.cfg.fid_reference, f"reference images for {', '.join(feats)} (a folder of images)",
                "extract the paper's reference set (e.g. CIFAR-10 train, COCO val2014 at 256 px) as image files "
                "into a folder and pass --set fid_reference=/path/to/folder"))
            get_extractor(self.cfg.fid_extractor)        # its weights file must exist (clear error otherwise)
        if "clip_score" in self.cfg.quality and self.cfg.num_samples:
            from ..metrics.clip_score import get_clip

            get_clip(self.cfg.clip_model)

    def subject(self) -> DiffusionSubject:
        if self.kind == "arch":
            pipe = ArchPipe(self.pipe.unet, make_scheduler(self.cfg.scheduler, self.pipe.scheduler.config))
            return DiffusionSubject(pipe, self.cfg.steps, self.cfg.guidance_scale, arch_inputs=self.arch.inputs)
        from diffusers.utils import logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()            # re-wrapping the same components repeats load-time warnings
        try:
            pipe = type(self.pipe)(**self.pipe.components)   # new pipeline object, shared modules
        finally:
            dlog.set_verbosity(level)
        pipe.scheduler = make_scheduler(self.cfg.scheduler, self.pipe.scheduler.config)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        return DiffusionSubject(pipe, self.cfg.steps, self.cfg.guidance_scale)

    def release(self, subject: DiffusionSubject) -> None:
        subject.release()

    # -----------------------------------------------------------------------------------------
    def evaluate(self, subject: DiffusionSubject, variant: Variant, ctx: RunContext) -> Outcome:
        if self.kind == "arch":
            return self._evaluate_arch(subject, ctx)
        cfg, out = self.cfg, Outcome()
        seed = ctx.seed * 100_003
        images = []
        if cfg.num_samples:
            for i in ctx.bar(range(0, len(self.conds), cfg.batch_size), desc="sampling"):
                with torch.inference_mode():
                    images.append(pipeline_sample(subject, self.conds[i:i + cfg.batch_size], seed + i))
            imgs = torch.cat(images)
            out.metrics.update(self._quality(imgs, ctx))
            if ctx.artifact_dir is not None and cfg.save_samples:
                _grid(imgs[: cfg.save_samples], ctx.artifact_dir / "samples.png")
            out.payload = imgs
        one = self.conds[: cfg.latency_batch] or digit_conditions(cfg.latency_batch)
        with torch.inference_mode(), eff.countable_attention(), count_denoiser_macs(subject.denoiser) as m:
            pipeline_sample(subject, one[:1], seed)
        lat, mem = eff.timed(lambda: pipeline_sample(subject, one, seed), ctx.latency, ctx.device, per="call")
        e = out.efficiency
        e["params"] = eff.count_params(subject.denoiser)
        e["macs"], e["macs_per"], e["mac_counter"] = m["macs"], "image", "aten(denoiser)"
        e["denoiser_calls"] = m["calls"]
        e["macs_per_step"] = m["macs"] / max(m["calls"], 1)
        e["macs_per_base_step"] = m["macs"] / self.base_calls
        e["latency"] = lat.scaled(1.0 / len(one), per="image").to_dict()
        e["latency_batch"] = len(one)
        e["peak_memory"] = mem
        out.notes["steps"] = subject.steps
        return out

    def _quality(self, imgs: torch.Tensor, ctx: RunContext) -> dict[str, Metric]:
        names = [n for n in self.cfg.quality if n not in ("psnr", "ssim")]
        res: dict[str, Metric] = {}
        if self.kind == "zoo" and names:
            from ..metrics import image_quality

            labels = torch.tensor([c.label for c in self.conds]) if self._conditional() else None
            prompts = [c.prompt for c in self.conds] if self._conditional() else None
            usable = [n for n in names if (n not in ("accuracy", "clip_score")) or labels is not None]
            res.update(image_quality(imgs, labels=labels, prompts=prompts, names=tuple(usable),
                                     clip_model=self.cfg.clip_model))
        if self.kind == "hf" and names:      # paper protocol: the user's reference images, Inception and CLIP
            from ..metrics import image_quality

            usable = tuple(n for n in names if n in PAPER_FEATURE_METRICS or n == "clip_score")
            res.update(image_quality(imgs, prompts=[c.prompt for c in self.conds], names=usable,
                                     reference=self._fid_reference, extractor=self.cfg.fid_extractor,
                                     clip_model=self.cfg.clip_model))
        fid_names = [n for n in self.cfg.quality if n in ("psnr", "ssim")]
        if fid_names and ctx.reference is not None and isinstance(ctx.reference.payload, torch.Tensor):
            from ..metrics import fidelity

            res.update({k: v for k, v in fidelity(imgs, ctx.reference.payload).items() if k in fid_names})
        return res

    def _conditional(self) -> bool:
        return not type(self.pipe).__name__.startswith(("DDPM", "DDIM"))

    # -----------------------------------------------------------------------------------------
    def _evaluate_arch(self, subject: DiffusionSubject, ctx: RunContext) -> Outcome:
        """Per-kind MACs and latency of one denoiser call, composed over the plan.

        Torch-Pruning's counter deep-copies the model, which does not carry diffusers hooks over, so MACs
        of a kind = MACs of the plain full call minus the (layer-wise counted) MACs of the modules that
        kind replays. Per-kind measurements are memoised for the run: every schedule composes the same
        measured full and cached calls (the issue's "measure full and cached steps separately")."""
        out = Outcome()
        sched = subject.pipe.scheduler
        sched.set_timesteps(subject.steps)
        plan = subject.plan or ["full"] * len(sched.timesteps)
        device = torch.device(ctx.device)
        den = subject.denoiser
        per_kind: dict[str, dict] = {}
        for kind in dict.fromkeys(plan):
            replayed = list(subject.replayed(kind)) if subject.replayed else []
            key = (id(den), kind, tuple(sorted(id(m) for m in replayed)))
            if key not in self._memo:
                self._memo[key] = self._measure_kind(subject, kind, replayed, device, ctx)
            per_kind[kind] = {**self._memo[key], "count": plan.count(kind)}
        total_macs = sum(v["macs"] * v["count"] for v in per_kind.values())
        reps = min(len(v["latency"].values) for v in per_kind.values())
        composed = [sum(v["count"] * v["latency"].values[i] for v in per_kind.values()) for i in range(reps)]
        e = out.efficiency
        e["params"] = eff.count_params(den)
        e["macs"], e["macs_per"], e["mac_counter"] = total_macs, "image", self.cfg.mac_counter
        e["macs_per_step"] = total_macs / len(plan)
        e["macs_per_base_step"] = total_macs / self.base_calls
        e["denoiser_calls"] = len(plan)
        e["latency"] = eff.LatencyStats(composed, per="image (composed per-step timings)",
                                        warmup=ctx.latency.get("warmup", 0)).to_dict()
        e["latency_per_step"] = e["latency"]["mean"] / len(plan)
        e["latency_per_kind"] = {k: {**v["latency"].to_dict(), "count": v["count"], "macs": v["macs"]}
                                 for k, v in per_kind.items()}
        e["peak_memory"] = max((v["peak_memory"] for v in per_kind.values()), key=lambda d: d["rss_peak_mib"])
        out.notes["composed"] = ("latency and MACs per image are composed from per-kind denoiser calls "
                                 "measured separately: sum over the schedule of (count x per-call cost)")
        out.notes["plan"] = "".join("F" if k == "full" else k[0] for k in plan)
        return out

    def _measure_kind(self, subject: DiffusionSubject, kind: str, replayed: list, device, ctx: RunContext) -> dict:
        den = subject.denoiser
        inputs = subject.arch_inputs(1, device)
        batch_inputs = subject.arch_inputs(self.cfg.latency_batch, device)
        force = subject.force(kind) if subject.force else contextlib.nullcontext()
        if self.cfg.mac_counter == "torch_pruning":
            total, layer = self._layerwise(den, inputs)
            macs = int(total - sum(layer.get(m) or 0 for m in replayed))
        else:
            if subject.force:
                with subject.force("full"):
                    den(**inputs)            # the replayed kind reads outputs of the same input shape
            with force:
                macs = eff.macs_aten(lambda: den(**inputs))
        if subject.force:
            with subject.force("full"):
                den(**batch_inputs)          # fill the cache the replayed kind reads
        with (subject.force(kind) if subject.force else contextlib.nullcontext()):
            lat, mem = eff.timed(lambda: den(**batch_inputs), ctx.latency, ctx.device, per="step")
        return {"macs": macs, "latency": lat.scaled(1.0 / self.cfg.latency_batch, per="step"), "peak_memory": mem}

    def _layerwise(self, den: torch.nn.Module, inputs: dict) -> tuple[int, dict]:
        key = ("tp", id(den))
        if key not in self._memo:
            if any(hasattr(m, "_diffusers_hook") for m in den.modules()):
                raise RuntimeError("count Torch-Pruning MACs on the plain denoiser first (the reference variant)")
            import torch_pruning as tp

            with torch.no_grad():
                total, _, layer, _ = tp.utils.count_ops_and_params(den, inputs, layer_wise=True)
            self._memo[key] = (int(total), layer)
        return self._memo[key]


def deepcopy_denoiser(subject: DiffusionSubject) -> torch.nn.Module:
    """A private copy of the subject's denoiser for methods that modify weights or structure."""
    return copy.deepcopy(subject.denoiser)
