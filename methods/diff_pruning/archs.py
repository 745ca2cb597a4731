"""Paper architectures for Diff-Pruning's efficiency rows (random weights; params/MACs only).

Registered into benchmarks.diffusion_archs when the lead's registry does not already have them.
- ddpm_cifar10: google/ddpm-cifar10-32 (Ho et al. 2020 CIFAR-10 model; 35.7M params, 6.1G MACs).
- ddpm_celeba64: the DDIM CelebA-64 model (ch 128, mult 1,2,2,2,4, attention at 16x16) that the
  Diff-Pruning CelebA rows use (paper tables say CelebA-HQ; papers.md: the config is CelebA 64).
"""
from __future__ import annotations

import torch

from benchmarks.diffusion_archs import ARCHS, register_arch


def _pixel_inputs(channels: int, size: int):
    def make(b: int, device: torch.device) -> dict:
        g = torch.Generator().manual_seed(0)
        return {"sample": torch.randn(b, channels, size, size, generator=g).to(device),
                "timestep": torch.ones((b,), dtype=torch.long, device=device)}
    return make


CIFAR10 = dict(act_fn="silu", attention_head_dim=None, block_out_channels=(128, 256, 256, 256),
               center_input_sample=False, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
               downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, in_channels=3, layers_per_block=2,
               mid_block_scale_factor=1, norm_eps=1e-6, norm_num_groups=32, out_channels=3, sample_size=32,
               time_embedding_type="positional", up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))

CELEBA64 = dict(CIFAR10, block_out_channels=(128, 256, 256, 256, 512), sample_size=64,
                down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


def _unet(cfg: dict):
    def build() -> torch.nn.Module:
        from diffusers import UNet2DModel

        return UNet2DModel(**cfg)
    return build


if "ddpm_cifar10" not in ARCHS:
    register_arch("ddpm_cifar10", _pixel_inputs(3, 32), "DDPM CIFAR-10 U-Net (google/ddpm-cifar10-32)")(_unet(CIFAR10))
if "ddpm_celeba64" not in ARCHS:
    register_arch("ddpm_celeba64", _pixel_inputs(3, 64), "DDIM CelebA-64 U-Net (Diff-Pruning's CelebA rows)")(_unet(CELEBA64))
