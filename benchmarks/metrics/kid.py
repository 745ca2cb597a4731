"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random equal-size subsets (torchmetrics/clean-fid/
torch-fidelity defaults: 100 subsets of up to 1000). float64; subsets drawn from a seeded generator."""
from __future__ import annotations

import numpy as np

VERSION = 1


def poly_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef: float = 1.0):
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, **kernel) -> float:
    """Unbiased MMD^2 of two equal-size samples (diagonals of K_xx, K_yy excluded)."""
    m = x.shape[0]
    kxx, kyy, kxy = poly_kernel(x, x, **kernel), poly_kernel(y, y, **kernel), poly_kernel(x, y, **kernel)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2)


def kid(fake, real, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float, int]:
    """(mean, std over subsets, effective subset size) of the unbiased MMD^2 between feature sets."""
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    m = min(len(fake), len(real), subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        f = fake[rng.choice(len(fake), m, replace=False)]
        r = real[rng.choice(len(real), m, replace=False)]
        vals.append(mmd2_unbiased(f, r))
    return float(np.mean(vals)), float(np.std(vals)), m
