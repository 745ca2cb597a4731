"""The trained image zoo (cached in $EFFBENCH_HOME; built on first use): the metrics discriminate.

FID orders real-vs-real < generator with enough DDIM steps < too few steps < noise; conditional
generators' samples are classified as the requested digit well above chance (10%)."""
from __future__ import annotations

import pytest
import torch

from benchmarks import zoo
from benchmarks.metrics import image_quality
from benchmarks.zoo.data import digits

pytestmark = pytest.mark.slow

N = 100


def test_digits_cnn_is_accurate():
    x, y = digits("test", 16)
    model = zoo.load("digits_cnn")
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc >= 0.97
    assert zoo.manifest("digits_cnn")["quality"]["test_acc"] == pytest.approx(acc, abs=1e-6)


def test_ddpm_fid_orders_real_steps_noise():
    from benchmarks.zoo.models.ddpm import sample_ddim

    pipe = zoo.load("ddpm_digits")
    assert type(pipe).__name__ == "DDPMPipeline"
    x, _ = digits("train", 16)
    real = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:N]]
    good = sample_ddim(pipe, N, 20, seed=0)
    few = sample_ddim(pipe, N, 2, seed=0)
    noise = torch.rand(N, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert good.shape == (N, 1, 16, 16) and 0 <= good.min() and good.max() <= 1
    fid = {k: image_quality(v, names=("fid", "is"))for k, v in
           {"real": real, "good": good, "few": few, "noise": noise}.items()}
    f = {k: v["fid"].value for k, v in fid.items()}
    assert f["real"] < f["good"] < f["few"] < f["noise"], f
    assert fid["good"]["is"].value > 5.0      # confident and diverse over the 10 digits (max 10)


def test_t2i_samples_follow_the_prompt():
    from benchmarks.zoo.models.clip import prompt
    from benchmarks.zoo.models.t2i import sample_t2i

    pipe = zoo.load("t2i_digits")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    labels = torch.arange(N) % 10
    imgs = sample_t2i(pipe, labels, steps=20, guidance=3.0, seed=0)
    m = image_quality(imgs, labels=labels, prompts=[prompt(int(c)) for c in labels],
                      names=("accuracy", "clip_score"))
    wrong = image_quality(imgs, prompts=[prompt(int(c + 3) % 10) for c in labels], names=("clip_score",))
    assert m["accuracy"].value > 0.4, m["accuracy"]
    assert m["clip_score"].value > wrong["clip_score"].value


def test_dit_samples_follow_the_class():
    from benchmarks.zoo.models.dit import sample_dit

    pipe = zoo.load("dit_digits")
    assert type(pipe).__name__ == "DiTPipeline"
    labels = torch.arange(N) % 10
    imgs = sample_dit(pipe, labels, steps=20, guidance=3.0, seed=0)
    assert image_quality(imgs, labels=labels, names=("accuracy",))["accuracy"].value > 0.4


def test_clip_digits_aligns_images_and_captions():
    from benchmarks.metrics.clip_score import get_clip
    from benchmarks.zoo.models.clip import prompt

    x, y = digits("test", 16)
    clip = get_clip("clip_digits")
    right = clip.score(x, [prompt(int(c)) for c in y])
    wrong = clip.score(x, [prompt(int(c + 1) % 10) for c in y])
    assert right > wrong + 5
