"""The papers' diffusion denoiser architectures, built from their public configs with random weights.

Used by the paper track for params / MACs / per-step latency only: never for quality. Each entry gives
a builder and example inputs for one denoiser call at batch `b` (the papers count MACs at batch 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .errors import ConfigError


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int, torch.device], dict]
    describe: str


ARCHS: dict[str, Arch] = {}


def register_arch(name: str, inputs: Callable[[int, torch.device], dict], describe: str):
    def deco(fn):
        ARCHS[name] = Arch(name, fn, inputs, describe)
        return fn
    return deco


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ConfigError(f"unknown architecture {name!r}; valid: {', '.join(sorted(ARCHS))}")
    return ARCHS[name]


def _sd_inputs(channels: int, size: int, ctx_dim: int, ctx_len: int = 77):
    def make(b: int, device: torch.device) -> dict:
        g = torch.Generator().manual_seed(0)
        return {"sample": torch.randn(b, channels, size, size, generator=g).to(device),
                "timestep": torch.tensor(500, device=device),
                "encoder_hidden_states": torch.randn(b, ctx_len, ctx_dim, generator=g).to(device),
                "return_dict": False}
    return make


@register_arch("sd15", _sd_inputs(4, 64, 768), "Stable Diffusion v1.5 U-Net (512 px, 64x64 latent); = SD v1.4's")
def sd15_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


ARCHS["sd14"] = Arch("sd14", sd15_unet, _sd_inputs(4, 64, 768), "Stable Diffusion v1.4 U-Net (same architecture as v1.5)")


@register_arch("sd21", _sd_inputs(4, 96, 1024), "Stable Diffusion v2.1 U-Net (768 px, 96x96 latent)")
def sd21_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
        use_linear_projection=True, upcast_attention=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def build_random(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_arch(name).build().eval()
