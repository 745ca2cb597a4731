"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean over `splits` chunks
(p(y) estimated per chunk), as torch-fidelity/torchmetrics compute it. float64."""
from __future__ import annotations

import numpy as np

VERSION = 1


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """(mean, std over splits) from class probabilities [N, K]."""
    p = np.asarray(probs, np.float64)
    n = len(p)
    if splits < 1 or n < splits:
        raise ValueError(f"need at least `splits`={splits} samples, got {n}")
    scores = []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-30) - np.log(py + 1e-30))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
