"""Mini-world data shipped with scikit-learn (no download): the 8x8 handwritten digits, 1797 images.

Deterministic stratified split: 1347 train / 450 test (random_state=0). Images are upsampled with
bilinear interpolation to `size` and scaled to [0, 1].
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@lru_cache(maxsize=None)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    return tuple(train_test_split(x, d.target.astype(np.int64), test_size=450, random_state=0, stratify=d.target))


def digits(split: str = "train", size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images [N,1,size,size] in [0,1], labels [N]) for split 'train' (1347) or 'test' (450)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    xtr, xte, ytr, yte = _split()
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    img = torch.from_numpy(x).unsqueeze(1)
    if size != 8:
        img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    return img.clamp(0, 1).contiguous(), torch.from_numpy(y)
