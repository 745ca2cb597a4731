"""Improved precision and recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020)
from k-nearest-neighbour balls in feature space (k = 3 by default, the paper's choice).

precision = share of fake samples inside some real sample's k-NN ball; recall = share of real samples
inside some fake sample's k-NN ball; density = mean count of real balls containing a fake / k;
coverage = share of real samples whose ball contains some fake sample."""
from __future__ import annotations

import numpy as np

VERSION = 1


def _pdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(d, 0, None))


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _pdist(x, x)
    return np.partition(d, k, axis=1)[:, k]   # index 0 is the point itself (distance 0)


def prdc(fake, real, k: int = 3) -> dict[str, float]:
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    if min(len(fake), len(real)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)
    d = _pdist(real, fake)                     # [R, F]
    inside_real = d <= r_real[:, None]         # fake j in real i's ball
    inside_fake = d <= r_fake[None, :]         # real i in fake j's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float(inside_fake.any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) <= r_real).mean()),
    }
