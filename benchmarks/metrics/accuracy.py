"""Top-k accuracy (classifiers) and conditional-generation accuracy (the digit classifier agrees with
the requested label)."""
from __future__ import annotations

import torch

VERSION = 1


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the top-k logits, for each k (k capped at #classes)."""
    out = {}
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hit = top == labels.view(-1, 1)
    for k in ks:
        out[k] = int(hit[:, :min(k, maxk)].any(dim=1).sum())
    return out


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    n = max(1, len(labels))
    return {k: v / n for k, v in topk_correct(logits, labels, ks).items()}
