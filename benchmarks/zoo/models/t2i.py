"""`vae_digits` and `t2i_digits`: the mini-world's latent text-to-image model (a tiny Stable Diffusion).

- `vae_digits`: a diffusers `AutoencoderKL`, 16x16x1 pixels <-> 8x8x4 latents, trained with MSE +
  a small KL term; `scaling_factor` set to 1/std of the training latents (SD's 0.18215 convention).
  Shared by `t2i_digits` and `dit_digits`.
- `t2i_digits`: `UNet2DConditionModel` (latent 8x8, cross-attention to the frozen text encoder of
  `clip_digits`, as SD uses a frozen CLIP text encoder), trained with epsilon prediction and 10%
  caption dropout (classifier-free guidance), saved as a real `StableDiffusionPipeline`
  (safety_checker=None) with the in-code `CLIPTokenizer`. Prompts: "a handwritten seven, thick stroke".
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..core import ZooContext, register_zoo
from .ddpm import judge_samples, train_diffusion_loop

VAE_RECIPE = {
    "size": 16,
    "block_out_channels": (32, 64),
    "latent_channels": 4,
    "norm_num_groups": 16,
    "steps": 200,                 # test-digit reconstructions: PSNR 36 dB, digit accuracy 0.998 (600 steps: 44 dB)
    "batch_size": 64,
    "lr": 2e-3,
    "kl_weight": 1e-4,
    "seed": 0,
}

T2I_RECIPE = {
    "block_out_channels": (32, 64),
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "layers_per_block": 1,
    "attention_head_dim": 4,
    "norm_num_groups": 16,
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "steps": 1200,
    "batch_size": 32,             # cfg 3: accuracy 0.985, FID 4.8 (batch 64: 0.995, 5.8) for 55% of the compute
    "lr": 2e-3,
    "warmup": 100,
    "ema": 0.995,
    "cond_drop": 0.1,
    "seed": 0,
    "eval_samples": 200,
    "eval_steps": 25,
    "eval_guidance": 3.0,
}


# ---------------------------------------------------------------------------------------------
# VAE

def build_vae(recipe: dict):
    from diffusers import AutoencoderKL

    n = len(recipe["block_out_channels"])
    return AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(recipe["block_out_channels"]),
                         layers_per_block=1, latent_channels=recipe["latent_channels"],
                         norm_num_groups=recipe["norm_num_groups"], sample_size=recipe["size"],
                         mid_block_add_attention=False)


def load_vae(path: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(path)).eval().requires_grad_(False)


@register_zoo("vae_digits", VAE_RECIPE, load=load_vae, depends=("digits_cnn",), cost=70,
              describe="AutoencoderKL 16x16x1 <-> 8x8x4 latents (shared by t2i_digits and dit_digits)")
def train_vae(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from ..data import digits

    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    g = torch.Generator().manual_seed(recipe["seed"])
    x, _ = digits("train", recipe["size"])
    x = x * 2 - 1
    vae = build_vae(recipe)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe["lr"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=recipe["steps"], pct_start=0.1)
    bs = recipe["batch_size"]
    vae.train()
    for _ in ctx.bar(range(recipe["steps"]), desc="vae_digits"):
        idx = torch.randint(0, len(x), (bs,), generator=g)
        post = vae.encode(x[idx]).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x[idx]) + recipe["kl_weight"] * post.kl().mean() / z[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    vae.eval()
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        vae.register_to_config(scaling_factor=float(1.0 / z.std()))
        xte, yte = digits("test", recipe["size"])
        rec = (vae.decode(vae.encode(xte * 2 - 1).latent_dist.mean).sample / 2 + 0.5).clamp(0, 1)
    vae.save_pretrained(str(out), safe_serialization=True)
    from ...metrics.fidelity import psnr

    q = judge_samples(rec, yte)
    return {"quality": {"test_recon_psnr": float(psnr(rec, xte).mean()), "test_recon_accuracy": q["accuracy"],
                        "test_recon_fid": q["fid"]}, "scaling_factor": vae.config.scaling_factor}


@torch.no_grad()
def encode_latents(vae, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the scaled latent posterior of images in [0, 1]."""
    post = vae.encode(x01 * 2 - 1).latent_dist
    s = vae.config.scaling_factor
    return post.mean * s, post.std * s


# ---------------------------------------------------------------------------------------------
# text-to-image

def build_cond_unet(recipe: dict, cross_dim: int, latent_channels: int = 4, sample_size: int = 8):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=latent_channels, out_channels=latent_channels,
        down_block_types=tuple(recipe["down_block_types"]), up_block_types=tuple(recipe["up_block_types"]),
        block_out_channels=tuple(recipe["block_out_channels"]), layers_per_block=recipe["layers_per_block"],
        cross_attention_dim=cross_dim, attention_head_dim=recipe["attention_head_dim"],
        norm_num_groups=recipe["norm_num_groups"])


def latent_scheduler(recipe: dict, kind: str = "ddpm"):
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = dict(num_train_timesteps=recipe["num_train_timesteps"], beta_schedule=recipe["beta_schedule"],
              prediction_type="epsilon", clip_sample=False)
    if kind == "ddim":
        return DDIMScheduler(**kw, set_alpha_to_one=False, steps_offset=1)
    return DDPMScheduler(**kw)


def text_encoder_from_clip(clip_model):
    """A `CLIPTextModel` holding the text tower of a trained `CLIPModel`."""
    from transformers import CLIPTextModel

    te = CLIPTextModel(clip_model.config.text_config)
    target = getattr(te, "text_model", te)   # transformers 4 nests the tower in .text_model, 5 does not
    target.load_state_dict(clip_model.text_model.state_dict())
    return te.eval().requires_grad_(False)


@torch.no_grad()
def sample_t2i(pipe, labels: torch.Tensor, steps: int, guidance: float, seed: int = 0, batch: int = 100) -> torch.Tensor:
    from diffusers import DDIMScheduler

    from .clip import prompt

    old = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(old.config)
    out = []
    try:
        for i in range(0, len(labels), batch):
            g = torch.Generator().manual_seed(seed + i)
            prompts = [prompt(int(c)) for c in labels[i:i + batch]]
            out.append(pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=guidance, generator=g,
                            output_type="pt").images)
    finally:
        pipe.scheduler = old
    return torch.cat(out)


def load_t2i(path: Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(path), safety_checker=None, requires_safety_checker=False)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@register_zoo("t2i_digits", T2I_RECIPE, load=load_t2i, depends=("digits_cnn", "clip_digits", "vae_digits"), cost=170,
              describe="latent text-to-image (tiny StableDiffusionPipeline: AutoencoderKL + CLIP text + UNet2DConditionModel)")
def train_t2i(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from diffusers import StableDiffusionPipeline

    from ..data import digits
    from .clip import TEMPLATES, caption, load_clip, random_captions, thickness_labels

    torch.set_num_threads(1)
    clip_model, processor = load_clip(ctx.deps["clip_digits"])
    tok = processor.tokenizer
    tok.model_max_length = 77
    te = text_encoder_from_clip(clip_model)
    vae = load_vae(ctx.deps["vae_digits"])
    x, y = digits("train", 16)
    mu, sd = encode_latents(vae, x)
    thick = thickness_labels(x, y)
    bank = [caption(c, th, k) for c in range(10) for k in range(len(TEMPLATES)) for th in (None, "thin", "thick")]
    bank_idx = {c: i for i, c in enumerate(bank)}
    with torch.no_grad():   # exactly as StableDiffusionPipeline.encode_prompt (max_length padding, no mask)
        ids = tok(bank + [""], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        emb = te(ids)[0]
    null = emb[-1]
    g = torch.Generator().manual_seed(recipe["seed"] + 1)
    # one caption per training image per "epoch view": draw a fixed pool of 8 captions per image
    pool = torch.stack([torch.tensor([bank_idx[c] for c in random_captions(y, thick, g)]) for _ in range(8)], 1)

    unet = build_cond_unet(recipe, te.config.hidden_size, mu.shape[1], mu.shape[-1])
    scheduler = latent_scheduler(recipe)
    gl = torch.Generator().manual_seed(recipe["seed"] + 2)

    class Data:   # latent sample from the posterior + a caption from the pool, per draw
        def __len__(self):
            return len(mu)

        def __getitem__(self, idx):
            return mu[idx] + sd[idx] * torch.randn(mu[idx].shape, generator=gl)

    class Cond:
        def __getitem__(self, idx):
            return emb[pool[idx, torch.randint(0, pool.shape[1], (len(idx),), generator=gl)]]

    def null_cond(c, drop):
        c = c.clone()
        c[drop] = null
        return c

    ema = train_diffusion_loop(unet, scheduler, Data(), recipe, ctx, cond=Cond(),
                               forward=lambda m, xt, t, c: m(xt, t, encoder_hidden_states=c).sample,
                               desc="t2i_digits", cond_drop=recipe["cond_drop"], null_cond=null_cond)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=ema,
                                   scheduler=latent_scheduler(recipe, "ddim"), safety_checker=None,
                                   feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(recipe["eval_samples"]) % 10
    q = {}
    for gs in (1.0, recipe["eval_guidance"]):
        imgs = sample_t2i(pipe, labels, recipe["eval_steps"], gs, seed=12345)
        q.update({f"ddim{recipe['eval_steps']}_cfg{gs:g}_{k}": v for k, v in judge_samples(imgs, labels).items()})
    return {"quality": q}
