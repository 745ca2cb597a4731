"""Image quality metrics with versioned protocols.

    image_quality(images, labels=None, prompts=None, names=("fid", "kid", "is", "precision", "recall",
                  "accuracy"), reference="digits_test", extractor="digits_cnn") -> {name: Metric}
    fidelity(images, reference_images) -> {"psnr": Metric, "ssim": Metric}

`images`: [N,C,H,W] (or NHWC array, as pipelines' output_type="np" gives) in [0, 1]. Every Metric's
`protocol` names the extractor (network, weights key, resize, dtype), N and the reference set, so two
numbers are compared only when the protocols match. Reference features are computed once per
(reference, extractor) and cached on disk under the zoo home (`$EFFBENCH_HOME/metrics/`) and in memory.

Names: fid, kid, is, precision, recall, density, coverage (extractor features); accuracy (the
extractor's classifier agrees with the requested `labels`); clip_score (needs `prompts`; CLIP model
`clip_model`, default the zoo's `clip_digits`, or a local Hugging Face CLIP folder).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..api import Metric
from ..errors import ConfigError
from .extractors import Extractor, get_extractor, to_nchw
from .fid import frechet_distance, frechet_from_features, gaussian_stats

__all__ = ["image_quality", "fidelity", "frechet_distance", "frechet_from_features", "gaussian_stats",
           "reference_features", "IMAGE_METRICS", "VERSIONS"]

IMAGE_METRICS = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "accuracy", "clip_score")
DEFAULT_NAMES = ("fid", "kid", "is", "precision", "recall", "accuracy")
REFERENCES = ("digits_test", "digits_train")


def _versions() -> dict[str, int]:
    """Metric name -> version of the code computing it (the extractor is named in the protocol)."""
    from . import accuracy, clip_score, fid, fidelity as fidelity_mod, inception_score, kid, prdc

    return {"fid": fid.VERSION, "kid": kid.VERSION, "is": inception_score.VERSION, "precision": prdc.VERSION,
            "recall": prdc.VERSION, "density": prdc.VERSION, "coverage": prdc.VERSION,
            "accuracy": accuracy.VERSION, "clip_score": clip_score.VERSION, "psnr": fidelity_mod.VERSION,
            "ssim": fidelity_mod.VERSION}


VERSIONS = _versions()

_REF_MEM: dict[tuple[str, str], torch.Tensor] = {}


def _reference_images(reference: str) -> torch.Tensor:
    if reference in REFERENCES:
        from ..zoo.data import digits

        return digits(reference.split("_")[1], 16)[0]
    p = Path(reference).expanduser()
    if p.is_dir():
        from PIL import Image

        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
        if not files:
            raise ConfigError(f"reference folder {p} holds no images")
        return to_nchw([Image.open(f).convert("RGB") for f in files])
    raise ConfigError(f"unknown reference {reference!r}: use one of {', '.join(REFERENCES)} or an image folder")


def reference_features(reference: str, extractor: Extractor) -> torch.Tensor:
    """Features [M, D] (float64) of a reference set, cached in memory and on disk (safetensors)."""
    from ..config import stable_hash
    from ..safeio import load_tensors, save_tensors
    from ..zoo.core import home

    k = (reference, extractor.protocol)
    if k in _REF_MEM:
        return _REF_MEM[k]
    tag = stable_hash({"reference": str(Path(reference).resolve()) if reference not in REFERENCES else reference,
                       "extractor": extractor.protocol})[:16]
    name = Path(reference).name if reference not in REFERENCES else reference
    f = home() / "metrics" / f"ref-{name}-{extractor.name}-{tag}.safetensors"
    if f.exists():
        feats = load_tensors(f)["features"]
    else:
        feats = extractor.features(_reference_images(reference))
        tmp = f.with_suffix(f".tmp{id(feats)}")
        save_tensors({"features": feats}, tmp, {"reference": reference, "extractor": extractor.protocol})
        tmp.replace(f)
    _REF_MEM[k] = feats
    return feats


def image_quality(images, labels=None, prompts: Sequence[str] | None = None,
                  names: Sequence[str] = DEFAULT_NAMES, reference: str = "digits_test",
                  extractor: str | Extractor = "digits_cnn", clip_model: str = "clip_digits",
                  kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int | None = None,
                  k: int = 3) -> dict[str, Metric]:
    """Quality metrics of generated `images` (see module docstring)."""
    names = tuple(names)
    bad = [n for n in names if n not in IMAGE_METRICS]
    if bad:
        raise ConfigError(f"unknown image metric {bad[0]!r}; valid: {', '.join(IMAGE_METRICS)}")
    x = to_nchw(images)
    n = len(x)
    out: dict[str, Metric] = {}
    feat_names = {"fid", "kid", "precision", "recall", "density", "coverage"}
    ex = get_extractor(extractor) if (set(names) & (feat_names | {"is", "accuracy"})) else None
    base = lambda m: f"{m}/{ex.protocol}/n={n}"  # noqa: E731

    if set(names) & feat_names:
        fake = ex.features(x)
        real = reference_features(reference, ex)
        ref = f"ref={Path(reference).name}(n={len(real)})"
        if "fid" in names:
            out["fid"] = Metric(frechet_from_features(fake, real), False, f"{base('fid')}/{ref}", VERSIONS["fid"])
        if "kid" in names:
            from .kid import kid

            mean, std, m = kid(fake.numpy(), real.numpy(), kid_subsets, kid_subset_size)
            out["kid"] = Metric(mean, False, f"{base('kid')}/{ref}/subsets={kid_subsets}x{m}", VERSIONS["kid"],
                                stderr=std)
        pr_names = [p for p in ("precision", "recall", "density", "coverage") if p in names]
        if pr_names:
            from .prdc import prdc

            vals = prdc(fake.numpy(), real.numpy(), k=k)
            for p in pr_names:
                out[p] = Metric(vals[p], True, f"{base(p)}/{ref}/k={k}", VERSIONS[p])
    if "is" in names or "accuracy" in names:
        probs = ex.probs(x)
        if "is" in names:
            from .inception_score import inception_score

            splits = is_splits or (10 if n >= 1000 else 1)
            mean, std = inception_score(probs.numpy(), splits)
            out["is"] = Metric(mean, True, f"{base('is')}/splits={splits}", VERSIONS["is"],
                               stderr=std if splits > 1 else None)
        if "accuracy" in names:
            if labels is None:
                raise ConfigError("metric 'accuracy' needs the requested labels")
            y = torch.as_tensor(np.asarray(labels)).long().view(-1)
            if len(y) != n:
                raise ValueError(f"{len(y)} labels for {n} images")
            out["accuracy"] = Metric(float((probs.argmax(-1) == y).double().mean()), True, base("accuracy"),
                                     VERSIONS["accuracy"])
    if "clip_score" in names:
        if prompts is None:
            raise ConfigError("metric 'clip_score' needs the prompts")
        from .clip_score import get_clip

        clip = get_clip(clip_model)
        out["clip_score"] = Metric(clip.score(x, list(prompts)), True, f"clip_score/{clip.protocol}/n={n}",
                                   VERSIONS["clip_score"])
    return out


def fidelity(images, reference_images, names: Sequence[str] = ("psnr", "ssim")) -> dict[str, Metric]:
    """PSNR (dB) and SSIM of `images` against `reference_images` (same seeds, same order), mean over images.
    Identical images give PSNR = inf; the mean PSNR is computed over finite values and capped at 100 dB."""
    from .fidelity import psnr, ssim

    x, y = to_nchw(images), to_nchw(reference_images)
    if x.shape != y.shape:
        raise ValueError(f"fidelity needs images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    n = len(x)
    out = {}
    if "psnr" in names:
        v = psnr(x, y).clamp(max=100.0)
        out["psnr"] = Metric(float(v.mean()), True, f"psnr/range=1/cap=100dB/n={n}", VERSIONS["psnr"], unit="dB")
    if "ssim" in names:
        out["ssim"] = Metric(float(ssim(x, y).mean()), True, f"ssim/gauss11-1.5/reflect/range=1/n={n}", VERSIONS["ssim"])
    return out


def _register() -> None:
    from ..api import register_metric

    for name, hib, unit, text in [
        ("fid", False, "", "Frechet distance of extractor features to the reference set (float64)"),
        ("kid", False, "", "kernel inception distance (unbiased MMD, polynomial kernel)"),
        ("is", True, "", "inception score of the extractor's class posteriors"),
        ("precision", True, "", "Kynkaanniemi et al. improved precision (k-NN manifolds)"),
        ("recall", True, "", "Kynkaanniemi et al. improved recall"),
        ("density", True, "", "Naeem et al. density"),
        ("coverage", True, "", "Naeem et al. coverage"),
        ("accuracy", True, "", "fraction where the classifier agrees with the requested label / class"),
        ("clip_score", True, "", "100 * max(cos(image, text), 0), mean over pairs"),
        ("psnr", True, "dB", "fidelity to the reference variant's output (capped at 100)"),
        ("ssim", True, "", "structural similarity to the reference variant's output"),
    ]:
        register_metric(name, hib, unit, text)


_register()
