"""Diff-Pruning (Fang, Ma, Wang; NeurIPS 2023, arXiv 2305.10924; https://github.com/VainF/Diff-Pruning).

Structural pruning of a diffusion U-Net with a Taylor score accumulated over timesteps: on one fixed
batch of clean images and one fixed noise draw, gradients of the denoising loss L_t are accumulated for
t = 0, 1, 2, ... until L_t falls under T * max L (Sec. 4.2: late, noisy steps carry little of the image
content and only add noise to the score). Channel importance = sum |w * g| per coupled group
(Torch-Pruning `GroupTaylorImportance(multivariable=False)`), one-shot local pruning at a uniform
ratio, then fine-tuning with the standard denoising loss (Sec. 4.3).

`apply` replaces the subject's denoiser with the pruned (and fine-tuned) copy; the shared model is never
modified.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.tasks.diffusion import DiffusionConfig, DiffusionSubject

from . import archs  # noqa: F401  (registers arch:ddpm_cifar10 / arch:ddpm_celeba64 if absent)
from .prune import accumulate_gradients, example_inputs, prune_unet, save_pruned

BASELINES = ("random", "magnitude", "taylor", "scratch")

# training knobs shared by the method and its baselines; variant names list only those that differ
_PRUNED: dict[tuple, tuple] = {}   # last pruned (not yet fine-tuned) network, reused within one process

DEFAULTS = {"lr": 2e-4, "bs": 64, "taylor_bs": 32, "stride": 10, "ema": 0.0, "data": "digits"}


@dataclass(frozen=True)
class DiffPruningConfig(DiffusionConfig):
    ratios: tuple[float, ...] = (0.25, 0.4)        # channel pruning ratio per variant (local, uniform)
    threshold: float = 0.05                          # T of the threshold rule (paper: CIFAR 0.05, LDM 0.1)
    finetune_steps: int = 150                        # fine-tuning steps after pruning (0: prune only)
    report_pruned: bool = True                       # also evaluate each ratio before fine-tuning
    baselines: tuple[str, ...] = BASELINES           # random | magnitude | taylor (all steps) | scratch
    baseline_ratios: tuple[float, ...] = (0.25,)     # ratios at which the baselines are compared
    lr: float = 2e-4                                 # paper: Adam 2e-4 (CIFAR)
    batch: int = 64                                  # fine-tuning batch (paper: 128)
    taylor_batch: int = 32                           # fixed batch for the Taylor score (paper: 128)
    taylor_stride: int = 10                          # visit t = 0, k, 2k, ... (paper: every t, k = 1)
    ema: float = 0.0                                 # EMA decay in fine-tuning (paper: 0.9999 over 100K steps)
    train_data: str = "digits"                       # "digits" (mini-world) or a folder of training images

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "baselines", BASELINES)
        if any(not 0 < r < 1 for r in self.ratios + self.baseline_ratios):
            raise ConfigError("ratios and baseline_ratios must lie in (0, 1)")
        check_positive(self, "batch", "taylor_batch", "taylor_stride", "lr")
        if self.finetune_steps < 0 or self.threshold < 0:
            raise ConfigError("finetune_steps and threshold must be >= 0")


def knobs(cfg: DiffPruningConfig) -> dict:
    vals = {"lr": cfg.lr, "bs": cfg.batch, "taylor_bs": cfg.taylor_batch, "stride": cfg.taylor_stride,
            "ema": cfg.ema, "data": cfg.train_data}
    return {k: v for k, v in vals.items() if v != DEFAULTS[k]}


def _p(params: Mapping[str, Any], key: str):
    return params.get(key, DEFAULTS[key])


# ------------------------------------------------------------------ data

def training_images(subject: DiffusionSubject, source: str, n: int | None = None) -> torch.Tensor:
    """Clean training images in [-1, 1] matching the denoiser's input: mini-world digits, random images for
    a bare architecture (efficiency only), or the user's image folder (paper track)."""
    unet = subject.denoiser
    c = unet.config.in_channels
    s = unet.config.sample_size
    s = s if isinstance(s, int) else s[0]
    if type(subject.pipe).__name__ == "ArchPipe":
        g = torch.Generator().manual_seed(0)
        return torch.rand(n or 8, c, s, s, generator=g) * 2 - 1
    if source == "digits":
        from benchmarks.diffusion_train import digits_images

        return digits_images(s, c, "train", n)[0]
    from benchmarks.assets import local_path

    folder = local_path(source, "training images for Taylor scores and fine-tuning",
                        "pass a folder of images with --set train_data=/path/to/images (e.g. CIFAR-10 train PNGs)")
    import numpy as np
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: n or None]
    if not files:
        from benchmarks.errors import MissingAssetError

        raise MissingAssetError("training images", "put PNG/JPEG files in the folder given by train_data", [str(folder)])
    mode = "RGB" if c == 3 else "L"
    arr = [np.asarray(Image.open(f).convert(mode).resize((s, s), Image.BICUBIC), dtype=np.float32) / 127.5 - 1 for f in files]
    x = torch.from_numpy(np.stack(arr))
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)


# ------------------------------------------------------------------ the pipeline shared with the baselines

def prune_subject(subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext, importance: str,
                  threshold: float | None = None) -> dict:
    """Copy the denoiser, score (Taylor kinds), prune at params['ratio'], fine-tune params['ft_steps'] steps,
    install it in the subject. Returns notes for the record."""
    from benchmarks.diffusion_train import train_denoiser

    ratio = float(params["ratio"])
    sched = subject.pipe.scheduler
    T = int(sched.config.num_train_timesteps)
    key = (id(subject.denoiser), importance, ratio, threshold, _p(params, "taylor_bs"), _p(params, "stride"),
           _p(params, "data"), ctx.seed)
    if key in _PRUNED:                      # the same pruned network before fine-tuning (ft_steps=0 and >0 variants)
        unet, notes = copy.deepcopy(_PRUNED[key][0]), dict(_PRUNED[key][1])
    else:
        unet = copy.deepcopy(subject.denoiser).float()
        unet.eval().requires_grad_(True)
        notes: dict[str, Any] = {"importance": importance, "ratio": ratio}
        if importance in ("diff_pruning", "taylor"):
            x0 = training_images(subject, _p(params, "data"), int(_p(params, "taylor_bs")))
            steps = list(range(0, T, int(_p(params, "stride"))))
            info = accumulate_gradients(unet, sched, x0, threshold=threshold if importance == "diff_pruning" else None,
                                        timesteps=steps, seed=ctx.seed, bar=ctx.bar)
            notes["taylor_timesteps"] = [info["timesteps"][0], info["timesteps"][-1], len(info["timesteps"])]
            notes["taylor_losses"] = [round(v, 5) for v in info["losses"]]
        score = {"scratch": "magnitude"}.get(importance, importance)   # scratch: any structure of this width
        prune_unet(unet, ratio, score, example_inputs(unet))
        _PRUNED.clear()                     # keep one network: the next variant usually reuses it
        _PRUNED[key] = (copy.deepcopy(unet), dict(notes))
    if importance == "scratch":
        from benchmarks.diffusion_train import reinit

        reinit(unet, ctx.seed)
    ft = int(params.get("ft_steps", 0))
    if ft:
        x = training_images(subject, _p(params, "data"))
        log = train_denoiser(unet, sched, x, steps=ft, batch_size=int(_p(params, "bs")), lr=float(_p(params, "lr")),
                             ema_decay=float(_p(params, "ema")), seed=ctx.seed, bar=ctx.bar)
        notes["finetune"] = log.summary()
    unet.eval().requires_grad_(False)
    subject.set_denoiser(unet)
    ctx.log(f"[diff_pruning] {importance} ratio={ratio}: " + ", ".join(f"{k}={v}" for k, v in notes.items() if k != "taylor_losses"))
    if ctx.artifact_dir is not None and type(subject.pipe).__name__ != "ArchPipe":
        save_pruned(unet, ctx.artifact_dir / "unet_pruned.safetensors", {"importance": importance, "ratio": ratio})
    return notes


@register_method("diff_pruning")
class DiffPruning(Method):
    version = 1
    Config = DiffPruningConfig
    paper = {"title": "Structural Pruning for Diffusion Models", "arxiv": "2305.10924",
             "code": "https://github.com/VainF/Diff-Pruning", "venue": "NeurIPS 2023"}

    def variants(self, cfg: DiffPruningConfig) -> list[Variant]:
        self.cfg = cfg
        k = knobs(cfg)
        out = [Variant("uncached", {}, "baseline")]
        for r in cfg.ratios:
            if cfg.report_pruned and cfg.finetune_steps:
                out.append(Variant("diff_pruning", {"ratio": r, "thr": cfg.threshold, "ft_steps": 0, **k}))
            out.append(Variant("diff_pruning", {"ratio": r, "thr": cfg.threshold, "ft_steps": cfg.finetune_steps, **k}))
        for r in cfg.baseline_ratios:
            for b in cfg.baselines:
                kb = k if b == "taylor" else {x: v for x, v in k.items() if x not in ("taylor_bs", "stride")}
                if b == "scratch":
                    if cfg.finetune_steps:
                        out.append(Variant("unet_scratch", {"ratio": r, "ft_steps": cfg.finetune_steps, **kb}, "baseline"))
                else:
                    out.append(Variant("unet_channel_pruning", {"importance": b, "ratio": r,
                                                                "ft_steps": cfg.finetune_steps, **kb}, "baseline"))
        return out

    def apply(self, subject: DiffusionSubject, params: Mapping[str, Any], ctx: RunContext) -> DiffusionSubject:
        prune_subject(subject, params, ctx, "diff_pruning", threshold=float(params.get("thr", 0.05)))
        return subject
