"""DiT architectures for Learning-to-Cache's efficiency rows (random weights; MACs/latency only).

DiT-XL/2 (Peebles & Xie 2023): depth 28, width 1152 (16 heads x 72), patch 2, on the 4-channel SD-VAE
latent (256 px -> 32x32, 512 px -> 64x64), learned sigma (8 output channels), 1000 classes + null class.
DiT-L/2: depth 24, width 1024 (16 x 64). Registered into benchmarks.diffusion_archs if absent.
"""
from __future__ import annotations

import torch

from benchmarks.diffusion_archs import ARCHS, register_arch


def _dit_inputs(size: int):
    def make(b: int, device: torch.device) -> dict:
        g = torch.Generator().manual_seed(0)
        return {"hidden_states": torch.randn(b, 4, size, size, generator=g).to(device),
                "timestep": torch.full((b,), 500, dtype=torch.long, device=device),
                "class_labels": torch.zeros(b, dtype=torch.long, device=device)}
    return make


def _dit(layers: int, heads: int, head_dim: int, size: int):
    def build() -> torch.nn.Module:
        from diffusers import DiTTransformer2DModel

        return DiTTransformer2DModel(num_attention_heads=heads, attention_head_dim=head_dim, in_channels=4,
                                     out_channels=8, num_layers=layers, sample_size=size, patch_size=2,
                                     num_embeds_ada_norm=1000, norm_type="ada_norm_zero")
    return build


for _name, _args, _desc in [("dit_xl2_256", (28, 16, 72, 32), "DiT-XL/2, 256 px (32x32 latent)"),
                            ("dit_xl2_512", (28, 16, 72, 64), "DiT-XL/2, 512 px (64x64 latent)"),
                            ("dit_l2_256", (24, 16, 64, 32), "DiT-L/2, 256 px (32x32 latent)")]:
    if _name not in ARCHS:
        register_arch(_name, _dit_inputs(_args[3]), _desc)(_dit(*_args))
