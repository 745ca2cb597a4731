"""`sam_shapes`: a small Segment Anything model (transformers `SamModel`) for the mini-world.

The world: 64x64 RGB images of 1-3 shapes (circles, rotated rectangles, triangles) in random colours
over a noisy colour gradient, generated in code from a seed (no download). Every visible shape is one
ground-truth mask (occluded parts removed) with two prompts, as in SAM/SlimSAM's protocol:
a box (xyxy of the visible mask, pixels) and a point (the mask pixel farthest from its boundary).

The model is a full `SamModel` (image encoder ViT with windowed + global attention, relative-position
tables and absolute positional embedding, neck, prompt encoder, two-way mask decoder), only small:
64x64 input, 8x8 patches (8x8 tokens), width 64, 4 heads, MLP 256, 4 layers (1 and 3 global,
the others in 4x4 windows); low-resolution masks are 32x32, upsampled to 64x64 like SAM's post-processing.
It is trained from scratch with box and point prompts (BCE + Dice on the single-mask output).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ZooContext, register_zoo

IMAGE_SIZE = 64
SPLITS = {"train": (0, 2000), "test": (1, 200)}   # split -> (seed offset, number of images)
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25

ARCH = {
    "image_size": IMAGE_SIZE, "patch_size": 8, "hidden_size": 64, "num_attention_heads": 4,
    "num_hidden_layers": 4, "global_attn_indexes": [1, 3], "window_size": 4, "mlp_dim": 256,
    "output_channels": 64, "decoder_layers": 2, "decoder_mlp_dim": 256,
}

RECIPE = {
    "arch": ARCH,
    "data_seed": 1234,
    "steps": 1200,
    "batch_size": 16,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "seed": 0,
}


# ---------------------------------------------------------------------------------------------
# synthetic shapes

def _render_shape(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = rng.uniform(8, size - 8, 2)
    if kind == "circle":
        r = rng.uniform(5, 14)
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if kind == "rectangle":
        hw, hh = rng.uniform(4, 14, 2)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        return (np.abs(u) <= hw) & (np.abs(v) <= hh)
    # triangle: three vertices around the centre, checked with edge signs
    r = rng.uniform(7, 16)
    a0 = rng.uniform(0, 2 * np.pi)
    angles = a0 + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.4, 0.4, 3)
    px, py = cx + r * np.cos(angles), cy + r * np.sin(angles)

    def edge(i, j):
        return (xx - px[j]) * (py[i] - py[j]) - (px[i] - px[j]) * (yy - py[j])

    d1, d2, d3 = edge(0, 1), edge(1, 2), edge(2, 0)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def _make_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    t = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    w = (np.cos(t) * xx + np.sin(t) * yy)
    w = (w - w.min()) / max(w.max() - w.min(), 1e-6)
    img = c0[None, None] * (1 - w[..., None]) + c1[None, None] * w[..., None]
    bg_mean = img.reshape(-1, 3).mean(0)
    masks = []
    for _ in range(int(rng.integers(1, 4))):
        kind = ("circle", "rectangle", "triangle")[int(rng.integers(0, 3))]
        m = _render_shape(kind, rng, size)
        for _try in range(10):   # a colour that stands out from the background
            col = rng.uniform(0, 1, 3)
            if np.abs(col - bg_mean).sum() > 0.6:
                break
        col = col * rng.uniform(0.85, 1.0) + rng.normal(0, 0.02, 3)
        img[m] = col
        masks = [old & ~m for old in masks] + [m]
    img = img + rng.normal(0, 0.03, img.shape)
    masks = [m for m in masks if m.sum() >= 20]
    return np.clip(img, 0, 1).astype(np.float32), masks


def _prompts(mask: np.ndarray) -> tuple[list[float], list[float]]:
    from scipy.ndimage import distance_transform_edt

    ys, xs = np.nonzero(mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return box, [float(x), float(y)]


@lru_cache(maxsize=None)
def _dataset(split: str, seed: int, size: int) -> dict:
    off, n = SPLITS[split]
    rng = np.random.default_rng([seed, off])
    images, masks, boxes, points, owner = [], [], [], [], []
    for i in range(n):
        img, ms = _make_image(rng, size)
        while not ms:
            img, ms = _make_image(rng, size)
        images.append(img)
        for m in ms:
            b, p = _prompts(m)
            masks.append(m)
            boxes.append(b)
            points.append(p)
            owner.append(i)
    return {
        "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        "masks": torch.from_numpy(np.stack(masks)),
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "points": torch.tensor(points, dtype=torch.float32),
        "image_index": torch.tensor(owner, dtype=torch.long),
    }


def shapes(split: str = "train", seed: int = RECIPE["data_seed"], size: int = IMAGE_SIZE) -> dict:
    """The shapes world. Returns a dict of tensors: `images` [N,3,S,S] in [0,1]; one row per mask:
    `masks` [M,S,S] bool, `boxes` [M,4] xyxy pixels, `points` [M,2] xy pixels, `image_index` [M]."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return _dataset(split, seed, size)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0,1] images -> the model's pixel_values."""
    return (images - PIXEL_MEAN) / PIXEL_STD


# ---------------------------------------------------------------------------------------------
# model

def sam_config(arch: dict = ARCH):
    from transformers import SamConfig

    oc = arch["output_channels"]
    emb = arch["image_size"] // arch["patch_size"]
    vision = dict(hidden_size=arch["hidden_size"], output_channels=oc, num_hidden_layers=arch["num_hidden_layers"],
                  num_attention_heads=arch["num_attention_heads"], image_size=arch["image_size"],
                  patch_size=arch["patch_size"], window_size=arch["window_size"],
                  global_attn_indexes=list(arch["global_attn_indexes"]), mlp_dim=arch["mlp_dim"],
                  num_pos_feats=oc // 2, initializer_range=0.02)
    prompt = dict(hidden_size=oc, image_size=arch["image_size"], patch_size=arch["patch_size"],
                  mask_input_channels=8)
    decoder = dict(hidden_size=oc, num_hidden_layers=arch["decoder_layers"], num_attention_heads=4,
                   mlp_dim=arch["decoder_mlp_dim"], iou_head_hidden_dim=oc)
    cfg = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    cfg.prompt_encoder_config.image_embedding_size = emb
    return cfg


def predict_masks(model, embeddings: torch.Tensor, data: dict, rows: torch.Tensor, prompt: str) -> torch.Tensor:
    """Mask logits [len(rows), S, S] (upsampled to the image size) for mask rows `rows`, given image embeddings of all images of
    `data` already indexed by `data['image_index'][rows]` (i.e. embeddings[j] belongs to rows[j])."""
    if prompt == "box":
        out = model(image_embeddings=embeddings, input_boxes=data["boxes"][rows][:, None, :], multimask_output=False)
    elif prompt == "point":
        pts = data["points"][rows][:, None, None, :]
        labels = torch.ones(pts.shape[:3], dtype=torch.long)
        out = model(image_embeddings=embeddings, input_points=pts, input_labels=labels, multimask_output=False)
    else:
        raise ValueError(f"prompt must be 'box' or 'point', got {prompt!r}")
    low = out.pred_masks[:, 0, 0]
    # SAM's post-processing: bilinear upsampling of the low-resolution logits to the image size
    size = data["masks"].shape[-2:]
    if low.shape[-2:] != size:
        low = F.interpolate(low[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return low


def _seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits[:, None], size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, t)
    p = logits.sigmoid()
    dice = 1 - (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    return bce + dice.mean()


@torch.no_grad()
def quick_miou(model, data: dict, prompt: str, batch: int = 64) -> float:
    from benchmarks.metrics.segmentation import miou

    model.eval()
    emb = torch.cat([model.get_image_embeddings(normalize(data["images"][i:i + batch]))
                     for i in range(0, len(data["images"]), batch)])
    preds = []
    for s in range(0, len(data["masks"]), batch):
        rows = torch.arange(s, min(s + batch, len(data["masks"])))
        preds.append(predict_masks(model, emb[data["image_index"][rows]], data, rows, prompt) > 0)
    return miou(torch.cat(preds), data["masks"], data["image_index"])


def load_sam(path: Path):
    from transformers import SamModel

    return SamModel.from_pretrained(str(path)).eval()


@register_zoo("sam_shapes", RECIPE, load=load_sam, cost=125, describe="small SamModel (64x64 input, ViT width 64, 4 layers) on synthetic shapes")
def train(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from transformers import SamModel

    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    data = shapes("train", recipe["data_seed"])
    model = SamModel(sam_config(recipe["arch"])).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps, bs = recipe["steps"], recipe["batch_size"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(recipe["seed"])
    n_masks = len(data["masks"])
    for step in ctx.bar(range(steps), desc="sam_shapes"):
        rows = torch.randint(0, n_masks, (bs,), generator=g)
        imgs = normalize(data["images"][data["image_index"][rows]])
        emb = model.vision_encoder(imgs).last_hidden_state
        target = data["masks"][rows]
        loss = _seg_loss(predict_masks(model, emb, data, rows, "box"), target) + \
            _seg_loss(predict_masks(model, emb, data, rows, "point"), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    test = shapes("test", recipe["data_seed"])
    q = {"test_miou_box": quick_miou(model, test, "box"), "test_miou_point": quick_miou(model, test, "point"),
         "final_loss": float(loss.detach())}
    model.save_pretrained(str(out))
    (out / "world.json").write_text(json.dumps({"image_size": IMAGE_SIZE, "splits": SPLITS,
                                                "pixel_mean": PIXEL_MEAN, "pixel_std": PIXEL_STD}))
    return {"quality": q, "params": sum(p.numel() for p in model.parameters())}
