"""`digits_cnn`: the mini-world's "Inception", a small CNN on 16x16 sklearn digits.

It plays the role Inception-v3 plays for FID/IS on ImageNet-scale models: `features(x)` gives the
64-d penultimate activations (FID, KID, precision/recall), `forward(x)` the 10 logits (Inception
Score, digit accuracy of generated samples). Inputs are images in [0, 1], any size and 1 or 3
channels: they are converted to gray (channel mean) and resized to 16x16 (bilinear, antialiased),
which is the protocol recorded by the metrics (`benchmarks.metrics`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import ZooContext, register_zoo

SIZE = 16

RECIPE = {
    "size": SIZE,
    "channels": (32, 64),
    "features": 64,
    "epochs": 20,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "shift": 1,          # random translation (pixels) during training
    "noise": 0.05,       # gaussian pixel noise during training (robustness to generator artefacts)
    "seed": 0,
}


class DigitsCNN(nn.Module):
    """conv(32)-conv(32)-pool-conv(64)-conv(64)-pool-fc(64)-fc(10). `num_features` = feature size."""

    def __init__(self, channels=(32, 64), features: int = 64, size: int = SIZE, num_classes: int = 10):
        super().__init__()
        c1, c2 = channels
        self.size = size
        self.num_features = features
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(c2 * (size // 4) ** 2, features)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(features, num_classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[B,C,H,W] in [0,1] (C = 1 or 3, any H, W) -> [B,1,16,16] in [-1,1]."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = x.float()
        if x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)
        return x * 2 - 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (post-ReLU, like Inception's pool features)."""
        h = self.body(self.prepare(x))
        return F.relu(self.fc(h.flatten(1)))

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(x))


def _augment(x: torch.Tensor, shift: int, noise: float, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    if shift:
        pad = F.pad(x, (shift, shift, shift, shift))
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=g)
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=g)
        h, w = x.shape[-2:]
        x = torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    if noise:
        x = (x + noise * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    model.eval()
    pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def train_digits_cnn(recipe: dict, ctx: ZooContext | None = None) -> tuple[DigitsCNN, dict]:
    from ..data import digits

    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    g = torch.Generator().manual_seed(recipe["seed"])
    xtr, ytr = digits("train", recipe["size"])
    xte, yte = digits("test", recipe["size"])
    model = DigitsCNN(tuple(recipe["channels"]), recipe["features"], recipe["size"])
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    bs, epochs = recipe["batch_size"], recipe["epochs"]
    steps = epochs * ((len(xtr) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.2)
    bar = ctx.bar(range(epochs), desc="digits_cnn") if ctx else range(epochs)
    for _ in bar:
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), bs):
            idx = perm[i:i + bs]
            xb = _augment(xtr[idx], recipe["shift"], recipe["noise"], g)
            loss = F.cross_entropy(model(xb), ytr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model, {"test_acc": accuracy(model, xte, yte), "train_acc": accuracy(model, xtr, ytr)}


def load_digits_cnn(path: Path) -> DigitsCNN:
    from ...safeio import load_tensors

    cfg = json.loads((Path(path) / "config.json").read_text())
    model = DigitsCNN(tuple(cfg["channels"]), cfg["features"], cfg["size"])
    model.load_state_dict(load_tensors(Path(path) / "model.safetensors"))
    return model.eval().requires_grad_(False)


@register_zoo("digits_cnn", RECIPE, load=load_digits_cnn, cost=30,
              describe="16x16 digit CNN classifier + 64-d feature extractor (the mini-world Inception)")
def train(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from ...safeio import save_tensors

    model, quality = train_digits_cnn(recipe, ctx)
    save_tensors(model.state_dict(), out / "model.safetensors")
    cfg = {"channels": list(recipe["channels"]), "features": recipe["features"], "size": recipe["size"]}
    (out / "config.json").write_text(json.dumps(cfg))
    return {"quality": quality, "params": sum(p.numel() for p in model.parameters())}
