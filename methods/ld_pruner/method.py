"""LD-Pruner (Castells, Song, Kim, Shin, Kim, Choi, Kim; CVPR'24 EDGE workshop, arXiv 2404.11936; no official code).

Task-agnostic structural pruning of a latent diffusion U-Net scored in latent space: each operator is
changed alone, the unchanged sampler runs from fixed seeds and prompts, and the operator's importance is
the shift of the final latents' mean and standard deviation against the unmodified model (Sec. 3).
The least important operators are removed up to a budget and the pruned U-Net is fine-tuned, here
with output-level distillation from the original U-Net plus the denoising loss. Operator set,
replacements, budget and fine-tuning are our reconstruction (see ops.py and README.md).
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_positive
from benchmarks.errors import ConfigError
from benchmarks.tasks.diffusion import DiffusionConfig, DiffusionSubject

from .ops import bk_sdm_plan, operators, remove, removed_params, save_removed, score_operators, select

_SCORES: dict[tuple, dict] = {}    # operator scores of the last scored model, reused within one process

DEFAULTS = {"k": 8, "score_steps": 10, "lr": 1e-4, "bs": 32, "score_size": 0}


@dataclass(frozen=True)
class LDPrunerConfig(DiffusionConfig):
    model: str = "zoo:t2i_digits"
    guidance_scale: float = 4.0
    quality: tuple[str, ...] = ("fid", "kid", "accuracy", "clip_score", "psnr", "ssim")
    targets: tuple[float, ...] = (0.3,)         # removed share of the U-Net's parameters
    finetune_steps: int = 150                   # distillation steps after removal (0: none)
    report_pruned: bool = True                  # also evaluate before fine-tuning
    score_samples: int = 8                      # k fixed seeds/prompts for the latent score
    score_steps: int = 10                       # sampler steps while scoring
    score_size: int = 0                         # latent side while scoring a bare architecture (0: native)
    lr: float = 1e-4
    batch: int = 32
    baselines: tuple[str, ...] = ("random", "bk_sdm_base", "bk_sdm_small")

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(not 0 < t < 1 for t in self.targets):
            raise ConfigError("targets must lie in (0, 1)")
        check_positive(self, "score_samples", "score_steps", "lr", "batch")
        bad = set(self.baselines) - {"random", "bk_sdm_base", "bk_sdm_small"}
        if bad:
            raise ConfigError(f"bad value {sorted(bad)[0]!r} for key 'baselines'; allowed: 'random', 'bk_sdm_base', 'bk_sdm_small'")


def knobs(cfg: LDPrunerConfig) -> dict:
    vals = {"k": cfg.score_samples, "score_steps": cfg.score_steps, "lr": cfg.lr, "bs": cfg.batch, "score_size": cfg.score_size}
    return {k: v for k, v in vals.items() if v != DEFAULTS[k]}


def _p(params, key):
    return params.get(key, DEFAULTS[key])


# ------------------------------------------------------------------ sampling final latents with the unchanged sampler

def latent_sampler(subject: DiffusionSubject, unet: torch.nn.Module, k: int, steps: int, size: int = 0):
    """A callable returning the final latents [k, C, H, W] of k fixed seeds/prompts."""
    pipe = subject.pipe
    if type(pipe).__name__ == "ArchPipe":      # bare architecture: DDIM on random text embeddings
        import copy as _c

        sched = _c.deepcopy(pipe.scheduler)
        c = unet.config.in_channels
        s = size or unet.config.sample_size
        g = torch.Generator().manual_seed(1234)
        x0 = torch.randn(k, c, s, s, generator=g)
        ehs = torch.randn(k, 77, unet.config.cross_attention_dim, generator=g)

        def run() -> torch.Tensor:
            sched.set_timesteps(steps)
            x = x0
            for t in sched.timesteps:
                x = sched.step(unet(x, t, encoder_hidden_states=ehs).sample, t, x).prev_sample
            return x
        return run

    from benchmarks.tasks.diffusion import digit_conditions

    prompts = [c.prompt for c in digit_conditions(k)]

    def run() -> torch.Tensor:
        gens = [torch.Generator().manual_seed(1234 + i) for i in range(k)]
        return pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=subject.guidance_scale,
                    generator=gens, output_type="latent").images
    return run


# ------------------------------------------------------------------ distillation data

def distill(subject: DiffusionSubject, student: torch.nn.Module, teacher: torch.nn.Module, steps: int,
            params: Mapping[str, Any], ctx: RunContext) -> dict:
    """Fine-tune the pruned U-Net on mini-world latents: denoising loss + output KD from the original U-Net."""
    from benchmarks.diffusion_train import digits_images, encode_latents, train_denoiser, unet_cond_forward
    from benchmarks.zoo.data import DIGIT_NAMES

    pipe = subject.pipe
    vae = pipe.vae
    size = int(pipe.vae.config.sample_size) if isinstance(pipe.vae.config.sample_size, int) else 0
    size = size or unet_pixels(pipe)
    x, y = digits_images(size, int(vae.config.in_channels), "train")
    lat = encode_latents(vae, x)
    prompts = [f"a handwritten {DIGIT_NAMES[int(i)]}" for i in y]
    gen = random.Random(ctx.seed)
    prompts = [p if gen.random() >= 0.1 else "" for p in prompts]      # 10% unconditional (CFG), as in training
    with torch.no_grad():
        embeds = []
        for i in range(0, len(prompts), 128):
            embeds.append(pipe.encode_prompt(prompts[i:i + 128], torch.device("cpu"), 1, False)[0])
        embeds = torch.cat(embeds)
    log = train_denoiser(student, pipe.scheduler, lat, steps=steps, batch_size=int(_p(params, "bs")),
                         lr=float(_p(params, "lr")), forward=unet_cond_forward, cond={"prompt_embeds": embeds},
                         seed=ctx.seed, teacher=teacher, bar=ctx.bar)
    return log.summary()


def unet_pixels(pipe) -> int:
    f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return int(pipe.unet.config.sample_size) * f


# ------------------------------------------------------------------ the shared pipeline (method + baselines)

def prune_subject(subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext, how: str) -> dict:
    """how: 'ld_pruner' (latent score), 'random' (random order, same budget), 'bk_sdm_base' / 'bk_sdm_small'."""
    teacher = subject.denoiser
    unet = copy.deepcopy(teacher).float().eval().requires_grad_(True)
    ops = operators(unet)
    notes: dict[str, Any] = {"how": how, "operators": len(ops)}
    if how == "ld_pruner":
        key = (id(teacher), subject.guidance_scale, ctx.seed) + tuple(_p(params, k) for k in ("k", "score_steps", "score_size"))
        if key not in _SCORES:               # scores are reused by the before/after fine-tuning variants
            run = latent_sampler(subject, unet, int(_p(params, "k")), int(_p(params, "score_steps")), int(_p(params, "score_size")))
            if type(subject.pipe).__name__ != "ArchPipe":
                subject.set_denoiser(unet)       # the unchanged pipeline samples with the private copy
            _SCORES.clear()
            _SCORES[key] = score_operators(unet, run, ops, bar=ctx.bar)
        scores = _SCORES[key]
        plan = select(unet, scores, ops, float(params["target"]))
        notes["lowest"] = sorted(scores.items(), key=lambda kv: kv[1])[:5]
    elif how == "random":
        order = [p for p, _ in ops]
        random.Random(ctx.seed).shuffle(order)
        plan = select(unet, {}, ops, float(params["target"]), order=order)
    else:
        plan = bk_sdm_plan(unet, "small" if how == "bk_sdm_small" else "base")
    total = sum(p.numel() for p in unet.parameters())
    notes["removed_param_share"] = sum(removed_params(unet.get_submodule(p), k) for p, k in plan) / total
    remove(unet, plan)
    notes["plan"] = [p for p, _ in plan]
    ft = int(params.get("ft_steps", 0))
    if ft and type(subject.pipe).__name__ != "ArchPipe":
        notes["finetune"] = distill(subject, unet, teacher, ft, params, ctx)
    unet.eval().requires_grad_(False)
    subject.set_denoiser(unet)
    if ctx.artifact_dir is not None:
        save_removed(unet, plan, ctx.artifact_dir / "unet_pruned.safetensors")
    ctx.log(f"[ld_pruner] {how}: removed {len(plan)}/{len(ops)} operators, "
            f"{100 * notes['removed_param_share']:.1f}% of params; {notes.get('finetune', '')}")
    return notes


@register_method("ld_pruner")
class LDPruner(Method):
    version = 1
    Config = LDPrunerConfig
    paper = {"title": "LD-Pruner: Efficient Pruning of Latent Diffusion Models using Task-Agnostic Insights",
             "arxiv": "2404.11936", "code": "", "venue": "CVPR 2024 workshops (EDGE)"}

    def variants(self, cfg: LDPrunerConfig) -> list[Variant]:
        k = knobs(cfg)
        kb = {x: v for x, v in k.items() if x in ("lr", "bs")}      # baselines do not score
        out = [Variant("uncached", {}, "baseline")]
        for t in cfg.targets:
            if cfg.report_pruned and cfg.finetune_steps:
                out.append(Variant("ld_pruner", {"target": t, "ft_steps": 0, **k}))
            out.append(Variant("ld_pruner", {"target": t, "ft_steps": cfg.finetune_steps, **k}))
            if "random" in cfg.baselines:
                out.append(Variant("unet_random_removal", {"target": t, "ft_steps": cfg.finetune_steps, **kb}, "baseline"))
        for b in cfg.baselines:
            if b.startswith("bk_sdm"):
                out.append(Variant("bk_sdm", {"variant": b.split("_")[-1], "ft_steps": cfg.finetune_steps, **kb}, "baseline"))
        return out

    def apply(self, subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext) -> DiffusionSubject:
        prune_subject(subject, params, ctx, "ld_pruner")
        return subject
