"""Digit classifiers for the structural-pruning mini-world (DepGraph, Isomorphic Pruning).

Three architecture families on 16x16 sklearn digits (benchmarks/zoo/data.py), small enough to train in
well under a minute on one CPU thread:
- `resnet_digits`: CIFAR-style ResNet-14 (3 stages of basic blocks, widths 16/32/64);
- `vit_digits`: DeiT-style timm VisionTransformer (patch 4, 16 tokens, dim 96, 4 blocks, 4 heads; mean-pooled
  tokens instead of a class token: 95.8% vs 94.2% on 1347 training images);
- `convnext_digits`: timm ConvNeXt (1x1 stem, 4 stages at 16/8/4/2 px, dims 16/32/64/96, depths 1/1/2/1).
Each recipe's `arch` is the spec `benchmarks.pruning.build_arch` rebuilds it from (pruned models are
saved as arch + pruning plan + weights).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core import ZooContext, register_zoo

SIZE = 16


def _load(folder: Path) -> torch.nn.Module:
    from ...pruning import build_arch
    from ...safeio import load_tensors

    recipe = json.loads((Path(folder) / "recipe.json").read_text())
    model = build_arch(recipe["arch"])
    model.load_state_dict(load_tensors(Path(folder) / "model.safetensors"))
    return model.eval()


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 1 pixel (padding 1, random crop)."""
    xp = F.pad(x, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
    return xp[:, :, dy:dy + SIZE, dx:dx + SIZE]


def train_classifier(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from ...api import seed_everything
    from ...pruning import build_arch
    from ...safeio import save_tensors
    from ..data import digits

    torch.set_num_threads(1)
    seed_everything(recipe["seed"])
    xtr, ytr = digits("train", SIZE)
    xte, yte = digits("test", SIZE)
    model = build_arch(recipe["arch"])
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["wd"])
    steps_per_epoch = -(-len(xtr) // recipe["batch"])
    total = recipe["epochs"] * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=total, pct_start=0.15)
    g = torch.Generator().manual_seed(recipe["seed"])
    for _ in ctx.bar(range(recipe["epochs"]), desc=f"train {recipe['arch']['kind']}"):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), recipe["batch"]):
            idx = perm[i:i + recipe["batch"]]
            xb = _augment(xtr[idx], g) if recipe.get("augment") else xtr[idx]
            loss = F.cross_entropy(model(xb), ytr[idx], label_smoothing=recipe.get("label_smoothing", 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    acc = accuracy(model, xte, yte)
    save_tensors(model.state_dict(), out / "model.safetensors")
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2))
    return {"quality": {"test_acc": acc}, "params": sum(p.numel() for p in model.parameters())}


RESNET = {
    "arch": {"kind": "cifar_resnet", "kwargs": {"depth": 14, "num_classes": 10, "width": 16, "in_chans": 1}},
    "size": SIZE, "seed": 0, "epochs": 10, "batch": 64, "lr": 4e-3, "wd": 5e-4, "augment": True,
}
VIT = {
    "arch": {"kind": "timm_vit", "kwargs": {"img_size": SIZE, "patch_size": 4, "in_chans": 1, "num_classes": 10,
                                             "embed_dim": 96, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0,
                                             "qkv_bias": True, "class_token": False, "global_pool": "avg"}},
    "size": SIZE, "seed": 0, "epochs": 40, "batch": 64, "lr": 2e-3, "wd": 0.05, "augment": True,
    "label_smoothing": 0.1,
}
CONVNEXT = {
    "arch": {"kind": "timm_convnext", "kwargs": {"in_chans": 1, "num_classes": 10, "depths": [1, 1, 2, 1],
                                                  "dims": [16, 32, 64, 96], "patch_size": 1}},
    "size": SIZE, "seed": 0, "epochs": 20, "batch": 64, "lr": 4e-3, "wd": 0.05, "augment": True,
}

register_zoo("resnet_digits", RESNET, load=_load, cost=10, describe="CIFAR-style ResNet-14 on 16x16 digits")(train_classifier)
register_zoo("vit_digits", VIT, load=_load, cost=45, describe="DeiT-style ViT (timm, 4 blocks, 4 heads) on 16x16 digits")(train_classifier)
register_zoo("convnext_digits", CONVNEXT, load=_load, cost=35, describe="ConvNeXt (timm, 3 stages) on 16x16 digits")(train_classifier)
