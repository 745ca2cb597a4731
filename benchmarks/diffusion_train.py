"""Shared denoising-loss fine-tuning and distillation for diffusion denoisers on the mini-world data.

Used by the diffusion compression methods (Diff-Pruning fine-tuning and scratch training, LD-Pruner
distillation). Everything is deterministic for a given seed on CPU and takes a `forward` callable so
one loop serves diffusers `UNet2DModel`, `UNet2DConditionModel` and `DiTTransformer2DModel`:

    forward(model, noisy [B,C,H,W], t [B] long, batch: dict) -> prediction [B,C,H,W]

`batch` holds whatever the conditioning needs (class `labels`, `prompt_embeds`, ...), sliced with the
images. The target is the scheduler's (`epsilon`: the noise, `v_prediction`: the velocity,
`sample`: x0).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

Forward = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, dict], torch.Tensor]


# ------------------------------------------------------------------ data

def digits_images(size: int, channels: int = 1, split: str = "train", n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mini-world digits as (images in [-1, 1] with `channels` channels, labels)."""
    from benchmarks.zoo.data import digits

    x, y = digits(split, size=size)
    if channels != 1:
        x = x.repeat(1, channels, 1, 1)
    if n is not None:
        x, y = x[:n], y[:n]
    return x * 2 - 1, y


@torch.no_grad()
def encode_latents(vae: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """VAE latents (distribution mean, times the VAE's scaling factor) of images in [-1, 1]."""
    scale = float(getattr(vae.config, "scaling_factor", 1.0))
    out = []
    for i in range(0, len(images), batch_size):
        out.append(vae.encode(images[i:i + batch_size]).latent_dist.mean * scale)
    return torch.cat(out)


# ------------------------------------------------------------------ forwards

def unet2d_forward(model, noisy, t, batch):
    return model(noisy, t).sample


def unet_cond_forward(model, noisy, t, batch):
    return model(noisy, t, encoder_hidden_states=batch["prompt_embeds"]).sample


def dit_forward(model, noisy, t, batch):
    out = model(noisy, timestep=t, class_labels=batch["labels"]).sample
    c = noisy.shape[1]
    return out[:, :c] if out.shape[1] != c else out      # learned-sigma DiTs: keep the epsilon half


# ------------------------------------------------------------------ helpers

def train_scheduler(scheduler: Any):
    """A DDPMScheduler with the same noise schedule (add_noise / get_velocity) as `scheduler`."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler.config)


def _target(sched, x0, noise, t):
    kind = sched.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return sched.get_velocity(x0, noise, t)
    return x0


class EMA:
    """Exponential moving average of a model's floating-point state (paper: EMA 0.9999 in fine-tuning)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        sd = model.state_dict()
        for k, v in self.shadow.items():
            sd[k].copy_(v)


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)
    steps: int = 0

    def summary(self) -> dict:
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return {"steps": self.steps, "loss_first": self.losses[0] if self.losses else None,
                "loss_last": sum(tail) / len(tail) if tail else None}


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos:pos + batch_size]
        pos += batch_size


def _slice(cond: Mapping[str, torch.Tensor], idx: torch.Tensor) -> dict:
    return {k: v[idx] for k, v in cond.items()}


# ------------------------------------------------------------------ loops

def train_denoiser(model: torch.nn.Module, scheduler: Any, x0: torch.Tensor, *, steps: int, batch_size: int = 64,
                   lr: float = 2e-4, forward: Forward = unet2d_forward, cond: Mapping[str, torch.Tensor] | None = None,
                   grad_clip: float = 1.0, ema_decay: float = 0.0, seed: int = 0, teacher: torch.nn.Module | None = None,
                   kd_weight: float = 1.0, task_weight: float = 1.0, bar: Callable | None = None) -> TrainLog:
    """Fine-tune (or train from scratch) `model` with the DDPM denoising loss, in place.

    With `teacher`, the loss is `task_weight * MSE(pred, target) + kd_weight * MSE(pred, teacher(pred input))`
    (output-level distillation, as BK-SDM's output KD). Adam, gradient clipping, optional EMA (copied
    into the model at the end). Returns the loss curve.
    """
    sched = train_scheduler(scheduler)
    gen = torch.Generator().manual_seed(seed)
    cond = dict(cond or {})
    was_training = model.training
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    ema = EMA(model, ema_decay) if ema_decay > 0 else None
    log = TrainLog()
    if teacher is not None:
        teacher.eval()
    it = _batches(len(x0), min(batch_size, len(x0)), steps, gen)
    if bar is not None:
        it = bar(it, total=steps, desc="train")
    T = sched.config.num_train_timesteps
    for idx in it:
        xb = x0[idx]
        b = _slice(cond, idx)
        noise = torch.randn(xb.shape, generator=gen)
        t = torch.randint(0, T, (len(xb),), generator=gen)
        noisy = sched.add_noise(xb, noise, t)
        pred = forward(model, noisy, t, b)
        loss = task_weight * F.mse_loss(pred, _target(sched, xb, noise, t)) if task_weight else pred.new_zeros(())
        if teacher is not None:
            with torch.no_grad():
                tpred = forward(teacher, noisy, t, b)
            loss = loss + kd_weight * F.mse_loss(pred, tpred)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        log.losses.append(float(loss))
        log.steps += 1
    if ema is not None:
        ema.copy_to(model)
    model.train(was_training)
    model.zero_grad(set_to_none=True)
    return log


def reinit(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-initialise every submodule that has `reset_parameters` (scratch baseline: same architecture)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    return model


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    t = copy.deepcopy(model).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t
