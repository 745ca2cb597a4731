"""Audio metrics: FAD is the image FID's Fréchet computation; KL / IS / CLAP-style / mel PSNR values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.metrics import audio as A
from benchmarks.metrics import fid


def test_fad_is_the_shared_frechet_implementation():
    assert A.frechet_from_features is fid.frechet_from_features
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g) + 0.5
    assert A.fad(a, b) == fid.frechet_from_features(a, b)
    # closed form for equal covariances: |mu1 - mu2|^2 when both sets share the same spread
    x = torch.randn(500, 4, generator=g, dtype=torch.float64)
    assert A.fad(x, x + 1.0) == pytest.approx(4.0, abs=1e-8)
    assert A.fad(x, x) == pytest.approx(0.0, abs=1e-8)


def test_kl_values():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    assert A.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    q = torch.tensor([[0.25, 0.75]])
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert A.kl_divergence(p[:1], q) == pytest.approx(want, rel=1e-6)


def test_inception_score_bounds():
    k = 6
    confident = torch.eye(k).repeat(3, 1)
    assert A.inception_score(confident) == pytest.approx(k, rel=1e-6)
    assert A.inception_score(torch.full((10, k), 1.0 / k)) == pytest.approx(1.0, rel=1e-9)
    assert A.inception_score(torch.tensor([[1.0, 0, 0]] * 5)) == pytest.approx(1.0, rel=1e-6)


def test_clap_style_score_and_mel_psnr():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert A.clap_score(a, a) == pytest.approx(100.0)
    assert A.clap_score(a, torch.tensor([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.0)
    assert A.clap_score(a, -a) == 0.0                                        # negatives clipped
    m = torch.randn(2, 1, 10, 8, generator=torch.Generator().manual_seed(1))
    assert A.mel_psnr(m, m) == float("inf")
    assert 0 < A.mel_psnr(m + 0.1, m) < A.mel_psnr(m + 0.01, m)


def test_synthetic_audio_is_deterministic_and_labelled():
    from benchmarks.zoo.models.audio import CLASSES, caption, label_of_caption, log_mel, synth

    w1 = synth(4, 0.64, np.random.default_rng(3))
    w2 = synth(4, 0.64, np.random.default_rng(3))
    assert np.array_equal(w1, w2) and len(w1) == int(0.64 * 16000)
    assert log_mel(w1).shape == (1, 1, 64, 32)
    assert all(label_of_caption(caption(i)) == i for i in range(len(CLASSES)))


@pytest.mark.slow
def test_quality_on_the_classifier_embedding_orders_real_above_noise():
    """With the zoo classifier: real clips score well, noise badly (FAD, KL, accuracy, CLAP-style)."""
    labels = [i % 12 for i in range(48)]
    from benchmarks.zoo.models.audio import caption

    prompts = [caption(l) for l in labels]
    real = A.reference_mels(labels, 0.64, seed=11)
    noise = torch.randn_like(real)
    emb = A.ClassifierEmbedding()
    names = ("fad", "kl", "is", "clap_score", "accuracy")
    good = A.audio_quality(real, labels, prompts, 0.64, names=names, embedding=emb, n_reference=120)
    bad = A.audio_quality(noise, labels, prompts, 0.64, names=names, embedding=emb, n_reference=120)
    assert good["accuracy"].value > 0.9 and bad["accuracy"].value < 0.3
    assert good["fad"].value < bad["fad"].value and good["kl"].value < bad["kl"].value
    assert good["clap_score"].value > bad["clap_score"].value and good["is"].value > bad["is"].value
    assert "audio-classifier/n=48/len=0.64s" in good["fad"].protocol
