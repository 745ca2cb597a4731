"""Fréchet distance between Gaussians fitted to features: FID (images) and, later, FAD (audio).

One implementation, float64 throughout. The trace term tr((S1 S2)^{1/2}) is computed as
tr((A S2 A)^{1/2}) with A = S1^{1/2} (both from symmetric eigendecompositions, negative round-off
eigenvalues clipped to 0). A S2 A is symmetric positive semi-definite and similar to S1 S2, so this
equals the eigenvalue trace used by torchmetrics/torch-fidelity and the `scipy.linalg.sqrtm` trace
used by clean-fid/pytorch-fid, without their complex round-off (tests check all three agree).
"""
from __future__ import annotations

import numpy as np

VERSION = 1


def _as_f64(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x, dtype=np.float64)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of [N, D] features, float64, unbiased covariance (N-1), like np.cov."""
    f = _as_f64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need [N>=2, D] features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^{1/2}) for symmetric PSD S1, S2."""
    a = _sqrt_psd(_as_f64(s1))
    m = a @ _as_f64(s2) @ a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}) (Heusel et al. 2017, eq. 6)."""
    mu1, mu2, s1, s2 = (_as_f64(a) for a in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    d = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2))
    return max(d, 0.0)


def frechet_from_features(a, b) -> float:
    """Fréchet distance between the Gaussians of two [N, D] feature sets."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
