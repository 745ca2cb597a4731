"""Promptable segmentation quality: mIoU as SAM/SlimSAM report it.

Protocol (SlimSAM, arXiv 2312.05284, Sec. 4.1; SAM's point/box evaluation): one prompt per
ground-truth mask (a box or a point), one predicted mask per prompt (`multimask_output=False`),
mask logits thresholded at 0, IoU per mask; **per image the mean over its masks, then the mean over
images** (images with many masks do not dominate).
"""
from __future__ import annotations

import torch

PROTOCOL_VERSION = 1


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU per mask for boolean masks [M,H,W] (an empty prediction of an empty mask counts as 1)."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
    p, g = pred.bool().flatten(1), gt.bool().flatten(1)
    inter = (p & g).sum(1).double()
    union = (p | g).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def miou(pred: torch.Tensor, gt: torch.Tensor, image_index: torch.Tensor) -> float:
    """Mean over images of the mean IoU of each image's masks. `image_index[m]` names mask m's image."""
    ious = mask_iou(pred, gt)
    idx = torch.as_tensor(image_index, dtype=torch.long)
    if idx.shape != ious.shape:
        raise ValueError("image_index needs one entry per mask")
    uniq, inv = torch.unique(idx, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, ious)
    counts = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.ones_like(ious))
    return float((sums / counts).mean())


def protocol(prompt: str, world: str, n_images: int, n_masks: int) -> str:
    """The string that makes two mIoU values comparable."""
    return f"miou/{prompt}/per-image-mean/thr=0/single-mask/{world}/images={n_images}/masks={n_masks}"
