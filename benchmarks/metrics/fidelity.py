"""Fidelity of a variant's samples to the reference variant's samples from the same seeds: PSNR and
SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range 1), as
torchmetrics 1.9 computes them on [0, 1] images: reflect padding by 5, SSIM map averaged over the
full image and channels, variances clamped at 0. float64."""
from __future__ import annotations

import torch
import torch.nn.functional as F

VERSION = 1


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR (dB); identical images give +inf."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def _gauss(size: int, sigma: float) -> torch.Tensor:
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, kernel_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM of [N,C,H,W] images (H, W > 5)."""
    x, y = x.double(), y.double()
    c = x.shape[1]
    pad = (kernel_size - 1) // 2
    g = _gauss(kernel_size, sigma)
    w = (g[:, None] * g[None, :]).expand(c, 1, kernel_size, kernel_size).contiguous()
    filt = lambda z: F.conv2d(F.pad(z, (pad, pad, pad, pad), mode="reflect"), w, groups=c)  # noqa: E731
    mx, my = filt(x), filt(y)
    sxx, syy = (filt(x * x) - mx**2).clamp(min=0), (filt(y * y) - my**2).clamp(min=0)
    sxy = filt(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)
