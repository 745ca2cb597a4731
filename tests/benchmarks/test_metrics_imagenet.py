"""The ImageFolder top-1/top-5 evaluator on a tiny synthetic ImageFolder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.errors import MissingAssetError
from benchmarks.imagenet_eval import _balanced_prefix, evaluate_imagefolder
from benchmarks.metrics.accuracy import topk_accuracy


class ColorNet(torch.nn.Module):
    """Logits = mean of each RGB channel (after normalisation): predicts the dominant colour's index."""

    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), torch.full((len(x), 3), -10.0)], dim=1)


def _folder(root, per_class=3):
    from PIL import Image

    colors = {"a_red": (220, 10, 10), "b_green": (10, 220, 10), "c_blue": (10, 10, 220)}
    for i, (name, c) in enumerate(colors.items()):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            arr = np.zeros((40, 48, 3), np.uint8) + np.array(c, np.uint8)
            if name == "c_blue" and j == 0:
                arr[:] = (10, 220, 10)      # one mislabelled image: top-1 miss, top-5 hit
            Image.fromarray(arr).save(root / name / f"{j}.png")
    return root


def test_imagefolder_top1_top5(tmp_path):
    root = _folder(tmp_path / "val")
    m = evaluate_imagefolder(ColorNet(), str(root), batch_size=4, progress=False,
                             input_size=(3, 32, 32), crop_pct=0.875, interpolation="bicubic")
    assert m["top1"].value == pytest.approx(8 / 9)
    assert m["top5"].value == pytest.approx(1.0)
    assert "size=32" in m["top1"].protocol and "n=9" in m["top1"].protocol and m["top1"].higher_is_better
    part = evaluate_imagefolder(ColorNet(), str(root), limit=3, progress=False, input_size=(3, 32, 32))
    assert "n=3" in part["top1"].protocol and part["top1"].value == pytest.approx(2 / 3)


def test_imagefolder_missing_path(tmp_path, monkeypatch):
    monkeypatch.delenv("EFFBENCH_IMAGENET_VAL", raising=False)
    with pytest.raises(MissingAssetError, match="ImageFolder"):
        evaluate_imagefolder(ColorNet(), str(tmp_path / "nope"), progress=False)


def test_topk_and_balanced_prefix():
    logits = torch.tensor([[3.0, 2, 1], [1, 3, 2], [1, 2, 3]])
    acc = topk_accuracy(logits, torch.tensor([0, 2, 0]), ks=(1, 2, 5))
    assert acc == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 5: 1.0}
    assert _balanced_prefix([0, 0, 0, 1, 1, 2], 4) == [0, 1, 3, 5]
