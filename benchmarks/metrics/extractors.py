"""Pluggable image feature extractors for FID/KID/IS/precision-recall.

An extractor maps images in [0, 1] ([N,C,H,W] float, C = 1 or 3, any size) to features [N, D]
(float64) and, where it has a classifier head, class probabilities [N, K]. Its `protocol` string
names everything that makes numbers comparable (network and weights, resize, dtype), and goes into
every Metric's protocol.

- `digits_cnn` (default, mini-world): the zoo's 16x16 digit CNN; gray (channel mean), antialiased
  bilinear resize to 16x16, fp32; 64-d penultimate features; 10-way softmax.
- `inception_cleanfid` (paper track): clean-fid's TorchScript Inception `inception-2015-12-05.pt`
  (the StyleGAN/ADM-compatible port of TF Inception); "clean" preprocessing: uint8 quantisation, PIL
  bicubic resize to 299 per channel in float, 2048-d pool features. TorchScript is loaded with
  `torch.jit.load` (not a pickle), from a file the user supplies.
- `inception_fidelity` (paper track): torch-fidelity's / torchmetrics' `pt_inception-2015-12-05`
  weights (TF1-compatible bilinear resize inside the network), 2048-d features, 1008-way
  `logits_unbiased` for the Inception Score. The weights file is checked to hold only tensors.
Missing weight files raise MissingAssetError naming the file and how to get it.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError

VERSION = 1


def to_nchw(images) -> torch.Tensor:
    """Tensor [N,C,H,W] float in [0,1] from a tensor/array in NCHW or NHWC (C in {1,3}), or a list of
    PIL images."""
    if isinstance(images, (list, tuple)) and images and hasattr(images[0], "mode"):
        images = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    x = images.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    if x.dim() == 3:
        x = x.unsqueeze(1) if x.shape[-1] not in (1, 3) else x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"images must be 4-d (NCHW or NHWC), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()


class Extractor:
    """Base class: `features(x)` [N,D] float64, `probs(x)` [N,K] float64 or None, `protocol`."""

    name: str = ""
    protocol: str = ""
    has_classifier: bool = False
    batch_size: int = 256

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"extractor {self.name!r} has no classifier head")

    def _batched(self, fn: Callable, images) -> torch.Tensor:
        x = to_nchw(images)
        with torch.no_grad():
            outs = [fn(x[i:i + self.batch_size]).double() for i in range(0, len(x), self.batch_size)]
        return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.float64)

    def features(self, images) -> torch.Tensor:
        return self._batched(self._features, images)

    def probs(self, images) -> torch.Tensor:
        return self._batched(self._probs, images)


class DigitsCNNExtractor(Extractor):
    name = "digits_cnn"
    has_classifier = True

    def __init__(self):
        from ..zoo import core

        self.model = core.load("digits_cnn")
        self.protocol = f"digits_cnn@{core.key('digits_cnn')}/gray/bilinear-aa16/fp32"

    def _features(self, x):
        return self.model.features(x)

    def _probs(self, x):
        return self.model.logits_from_features(self.model.features(x)).softmax(-1)

    def logits(self, images) -> torch.Tensor:
        return self._batched(self.model, images)


def _resize_pil_bicubic_299(x: torch.Tensor) -> torch.Tensor:
    """clean-fid's 'clean' resize: quantise to uint8, then PIL bicubic resize of each channel as a
    float ('F') image to 299x299, values 0..255."""
    from PIL import Image

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    out = np.empty((u8.shape[0], 3, 299, 299), dtype=np.float32)
    arr = u8.numpy()
    for i in range(arr.shape[0]):
        for c in range(3):
            im = Image.fromarray(arr[i, c].astype(np.float32), mode="F")
            out[i, c] = np.asarray(im.resize((299, 299), resample=Image.BICUBIC), dtype=np.float32)
    return torch.from_numpy(out)


def _weights_file(value: str | None, env: str, filename: str, how: str) -> Path:
    from ..assets import local_path

    return local_path(value, f"Inception weights `{filename}`", how, env=env)


class CleanFIDInception(Extractor):
    name = "inception_cleanfid"
    batch_size = 32

    def __init__(self, weights: str | None = None):
        path = _weights_file(
            weights, "EFFBENCH_INCEPTION_CLEANFID", "inception-2015-12-05.pt",
            "download https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
            "inception-2015-12-05.pt (clean-fid's file) and set $EFFBENCH_INCEPTION_CLEANFID to its path")
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        self.protocol = "inception-2015-12-05(clean-fid)/clean-pil-bicubic299/uint8/fp32"

    def _features(self, x):
        x = _resize_pil_bicubic_299(x)
        return self.model.layers.forward((x - 128) / 128).reshape(x.shape[0], -1)


class FidelityInception(Extractor):
    name = "inception_fidelity"
    has_classifier = True
    batch_size = 32

    def __init__(self, weights: str | None = None):
        from ..safeio import torch_load

        path = _weights_file(
            weights, "EFFBENCH_INCEPTION_FIDELITY", "pt_inception-2015-12-05-6726825d.pth",
            "download https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth (torch-fidelity/torchmetrics weights) and set "
            "$EFFBENCH_INCEPTION_FIDELITY to its path")
        torch_load(path)  # refuses anything but plain tensors before torch-fidelity unpickles it
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                 feature_extractor_weights_path=str(path))
        self.protocol = "inception-2015-12-05(torch-fidelity)/tf1-bilinear299/uint8/fp32"

    def _u8(self, x):
        u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8

    def _features(self, x):
        return self.model(self._u8(x))[0]

    def _probs(self, x):
        return self.model(self._u8(x))[1].double().softmax(-1)


EXTRACTORS: dict[str, Callable[..., Extractor]] = {
    "digits_cnn": DigitsCNNExtractor,
    "inception_cleanfid": CleanFIDInception,
    "inception_fidelity": FidelityInception,
}


@lru_cache(maxsize=None)
def _cached(name: str, weights: str | None) -> Extractor:
    return EXTRACTORS[name](weights) if weights else EXTRACTORS[name]()


def get_extractor(name: str | Extractor, weights: str | None = None) -> Extractor:
    """An extractor by name (cached per process) or an Extractor instance (returned as is)."""
    if isinstance(name, Extractor):
        return name
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown feature extractor {name!r}; valid: {', '.join(EXTRACTORS)}")
    if name != "digits_cnn":
        weights = weights or os.environ.get(f"EFFBENCH_{name.upper()}")
    return _cached(name, weights)
