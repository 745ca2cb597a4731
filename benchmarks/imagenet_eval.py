"""ImageNet-style top-1/top-5 evaluation on the paper track (ImageFolder layout, user-supplied path).

    evaluate_imagefolder(model, root=None, batch_size=64, limit=None, ...) -> {"top1": Metric, "top5": Metric}

`root` (or $EFFBENCH_IMAGENET_VAL) is a folder with one sub-folder per class (ILSVRC2012 val sorted
into its 1000 synset folders: class index = sorted folder order, the order timm/torchvision models are
trained with). Transforms are timm's standard eval pipeline resolved from the model's pretrained
config (`timm.data.resolve_data_config` + `create_transform`: resize the shorter side to
size/crop_pct with the model's interpolation, center crop, normalise), overridable by arguments.
Batched, with a progress bar; `limit` evaluates a deterministic class-balanced prefix (for smoke runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .api import Metric
from .assets import local_path
from .metrics.accuracy import topk_correct

VERSION = 1
HOW = ("extract ILSVRC2012_img_val.tar and sort it into one folder per synset (e.g. with the standard "
       "valprep.sh script), then pass the folder (config key `data` or $EFFBENCH_IMAGENET_VAL)")


def eval_transform(model: torch.nn.Module | None = None, **overrides: Any):
    """(transform, resolved data config) with timm's eval defaults for `model`."""
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config(dict(overrides), model=model) if model is not None else resolve_data_config(dict(overrides))
    tf = create_transform(**cfg, is_training=False)
    return tf, cfg


def _balanced_prefix(targets: list[int], limit: int) -> list[int]:
    """Indices of the first images of each class, round-robin, `limit` in total."""
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(t, []).append(i)
    out, r = [], 0
    while len(out) < limit and any(r < len(v) for v in by_class.values()):
        for c in sorted(by_class):
            if r < len(by_class[c]) and len(out) < limit:
                out.append(by_class[c][r])
        r += 1
    return sorted(out)


@torch.no_grad()
def evaluate_imagefolder(model: torch.nn.Module, root: str | None = None, batch_size: int = 64,
                         limit: int | None = None, num_workers: int = 0, device: str = "cpu",
                         progress: bool = True, name: str = "imagenet-val", **transform_overrides: Any) -> dict[str, Metric]:
    from torchvision.datasets import ImageFolder
    from tqdm.auto import tqdm

    path = local_path(root, f"{name} images (ImageFolder layout)", HOW, env="EFFBENCH_IMAGENET_VAL")
    tf, cfg = eval_transform(model, **transform_overrides)
    ds = ImageFolder(str(path), transform=tf)
    n_classes = len(ds.classes)
    if limit:
        ds = torch.utils.data.Subset(ds, _balanced_prefix(ds.targets, limit))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model = model.eval().to(device)
    hits, n = {1: 0, 5: 0}, 0
    for x, y in tqdm(loader, desc=f"eval {name}", disable=not progress, leave=False, dynamic_ncols=True):
        logits = model(x.to(device)).float().cpu()
        for k, v in topk_correct(logits, y, (1, 5)).items():
            hits[k] += v
        n += len(y)
    proto = (f"{name}/timm-eval(size={cfg['input_size'][-1]},crop_pct={cfg['crop_pct']:g},"
             f"interp={cfg['interpolation']},crop={cfg.get('crop_mode', 'center')})/classes={n_classes}/n={n}")
    return {f"top{k}": Metric(hits[k] / max(n, 1), True, proto, VERSION, unit="") for k in (1, 5)}
