"""Image metrics against the reference implementations on the same features (float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.errors import ConfigError, MissingAssetError
from benchmarks.metrics import fidelity, frechet_distance, frechet_from_features, gaussian_stats, image_quality
from benchmarks.metrics.extractors import Extractor, get_extractor, to_nchw
from benchmarks.metrics.inception_score import inception_score
from benchmarks.metrics.kid import kid
from benchmarks.metrics.prdc import prdc


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def test_fid_equals_cleanfid_and_torchmetrics(feature_pair, feature_module):
    from cleanfid.fid import frechet_distance as cf_frechet
    from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

    a, b = feature_pair
    ours = frechet_from_features(a, b)
    assert ours > 1.0
    mu1, s1, mu2, s2 = *gaussian_stats(a), *gaussian_stats(b)
    # clean-fid: np.mean / np.cov statistics, scipy.linalg.sqrtm trace
    cf = cf_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert _rel(ours, cf) < 1e-6
    # torchmetrics: its float64 eigenvalue trace on our statistics ...
    tm = float(_compute_fid(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2))))
    assert _rel(ours, tm) < 1e-6
    # ... and its full metric object with a custom feature module (online float64 accumulation)
    fid = FrechetInceptionDistance(feature=feature_module(a.shape[1]), reset_real_features=False)
    fid.update(torch.from_numpy(a).view(len(a), 1, 1, -1), real=True)
    fid.update(torch.from_numpy(b).view(len(b), 1, 1, -1), real=False)
    assert _rel(ours, float(fid.compute())) < 1e-6
    assert _rel(ours, frechet_distance(mu1, s1, mu2, s2)) < 1e-12


def test_frechet_properties(feature_pair):
    a, b = feature_pair
    assert frechet_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_from_features(a, b) == pytest.approx(frechet_from_features(b, a), rel=1e-9)
    shift = np.arange(a.shape[1], dtype=np.float64) * 0.1
    assert frechet_from_features(a + shift, a) == pytest.approx(float(shift @ shift), rel=1e-6)
    # rank-deficient covariances (N < D) stay finite and non-negative
    assert np.isfinite(frechet_from_features(a[:5], b[:7])) and frechet_from_features(a[:5], b[:7]) >= 0


def test_kid_matches_torchmetrics_and_cleanfid(feature_pair, feature_module):
    from cleanfid.fid import kernel_distance
    from torchmetrics.image.kid import KernelInceptionDistance

    a, b = feature_pair
    n = 300   # equal-size full subsets: the random subset choice cannot matter
    a = a[:n]
    mean, std, m = kid(b, a, subsets=3, subset_size=n)
    assert m == n and std == pytest.approx(0.0, abs=1e-9) and mean > 0
    metric = KernelInceptionDistance(feature=feature_module(a.shape[1]), subsets=3, subset_size=n)
    metric.update(torch.from_numpy(a).view(n, 1, 1, -1), real=True)
    metric.update(torch.from_numpy(b).view(n, 1, 1, -1), real=False)
    tm_mean, _ = metric.compute()
    assert _rel(mean, float(tm_mean)) < 1e-6
    assert _rel(mean, float(kernel_distance(a, b, num_subsets=1, max_subset_size=n))) < 1e-6
    # same distribution: KID close to 0 relative to the shifted pair
    assert abs(kid(a[:150], a[150:], subsets=10)[0]) < 0.25 * mean


def test_inception_score_matches_torchmetrics(feature_module):
    from torchmetrics.image.inception import InceptionScore

    logits = torch.from_numpy(np.random.default_rng(1).normal(size=(200, 10)) * 3)
    ours, _ = inception_score(logits.softmax(-1).numpy(), splits=1)
    metric = InceptionScore(feature=feature_module(10), splits=1)
    metric.update(logits.view(200, 1, 1, 10))
    assert _rel(ours, float(metric.compute()[0])) < 1e-6
    onehot = torch.eye(10).repeat(20, 1).numpy()          # confident and balanced: IS = #classes
    assert inception_score(onehot, splits=2)[0] == pytest.approx(10.0, rel=1e-6)
    assert inception_score(np.full((50, 10), 0.1), splits=1)[0] == pytest.approx(1.0, rel=1e-9)


def _prdc_bruteforce(fake, real, k):
    def radii(x):
        return np.array([np.sort(np.linalg.norm(x - p, axis=1))[k] for p in x])
    rr, rf = radii(real), radii(fake)
    prec = np.mean([any(np.linalg.norm(f - r) <= rr[i] for i, r in enumerate(real)) for f in fake])
    rec = np.mean([any(np.linalg.norm(r - f) <= rf[j] for j, f in enumerate(fake)) for r in real])
    dens = np.mean([sum(np.linalg.norm(f - r) <= rr[i] for i, r in enumerate(real)) for f in fake]) / k
    cov = np.mean([min(np.linalg.norm(r - f) for f in fake) <= rr[i] for i, r in enumerate(real)])
    return {"precision": prec, "recall": rec, "density": dens, "coverage": cov}


def test_precision_recall_against_bruteforce():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(60, 4))
    fake = np.concatenate([rng.normal(size=(30, 4)), rng.normal(size=(20, 4)) + 6])   # 30 on-manifold, 20 off
    got, want = prdc(fake, real, k=3), _prdc_bruteforce(fake, real, 3)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["precision"] == pytest.approx(0.6, abs=0.1)
    same = prdc(real, real, k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0


def test_fidelity_matches_torchmetrics():
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 24, 24, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    m = fidelity(y, x)
    tm_ssim = structural_similarity_index_measure(y, x, data_range=1.0)
    tm_psnr = peak_signal_noise_ratio(y, x, data_range=1.0, dim=(1, 2, 3), reduction="none").mean()
    assert m["ssim"].value == pytest.approx(float(tm_ssim), rel=1e-6)
    assert m["psnr"].value == pytest.approx(float(tm_psnr), rel=1e-6)
    same = fidelity(x, x)
    assert same["ssim"].value == pytest.approx(1.0) and same["psnr"].value == 100.0
    assert m["psnr"].unit == "dB" and "n=6" in m["psnr"].protocol


def _tiny_clip():
    from benchmarks.zoo.models.clip import RECIPE, build_clip, build_processor, build_tokenizer

    import tempfile
    from pathlib import Path

    torch.manual_seed(0)
    tok = build_tokenizer(Path(tempfile.mkdtemp()))
    model = build_clip(len(tok), dict(RECIPE, hidden=32, layers=1)).eval()
    return model, build_processor(tok)


def test_clip_score_matches_torchmetrics_definition():
    from torchmetrics.functional.multimodal import clip_score as tm_clip_score

    from benchmarks.metrics.clip_score import CLIPScorer, clip_model_wrapper

    model, proc = _tiny_clip()
    scorer = CLIPScorer(model, proc, "tiny")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 1, 16, 16, generator=g)
    prompts = [f"a handwritten {w}, thick stroke" for w in ("one", "two", "three", "four", "five", "six", "seven", "eight")]
    cos = scorer.cosines(images, prompts)
    u8 = (images * 255).round().to(torch.uint8)
    wrapped = lambda: (clip_model_wrapper(model), proc)  # noqa: E731  (transformers-5 fix for torchmetrics)
    per_pair = [float(tm_clip_score(u8[i], prompts[i], model_name_or_path=wrapped)) for i in range(8)]
    # torchmetrics: max(100 * cos, 0) per call
    for c, tm in zip(cos.tolist(), per_pair):
        assert max(100 * c, 0.0) == pytest.approx(tm, abs=1e-4)
    batch = float(tm_clip_score(list(u8), prompts, model_name_or_path=wrapped))
    assert scorer.score(images, prompts) == pytest.approx(batch, abs=1e-4)


class _ToyExtractor(Extractor):
    """Deterministic stand-in for the zoo CNN: a fixed random projection + softmax head."""

    name = "toy"
    protocol = "toy/v1"
    has_classifier = True

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(256, 8, generator=g)
        self.h = torch.randn(8, 10, generator=g)

    def _features(self, x):
        x = torch.nn.functional.interpolate(x.mean(1, keepdim=True), size=(16, 16), mode="bilinear")
        return x.flatten(1) @ self.w

    def _probs(self, x):
        return (self._features(x) @ self.h).softmax(-1)


def test_image_quality_api_and_reference_cache(tmp_home):
    from benchmarks.zoo.data import digits

    real, y = digits("train", 16)
    noise = torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ex = _ToyExtractor()
    names = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "accuracy")
    good = image_quality(real[:200], labels=y[:200], names=names, extractor=ex)
    bad = image_quality(noise, labels=y[:200], names=names, extractor=ex)
    assert set(good) == set(names)
    assert good["fid"].value < bad["fid"].value and good["kid"].value < bad["kid"].value
    assert good["precision"].value > bad["precision"].value and good["recall"].value > bad["recall"].value
    assert not good["fid"].higher_is_better and good["precision"].higher_is_better
    assert good["fid"].protocol == "fid/toy/v1/n=200/ref=digits_test(n=450)"
    assert "subsets=100x200" in good["kid"].protocol
    cached = list((tmp_home / "metrics").glob("ref-digits_test-toy-*.safetensors"))
    assert len(cached) == 1
    # NHWC numpy input (pipelines' output_type="np") gives the same numbers
    again = image_quality(real[:200].permute(0, 2, 3, 1).numpy(), names=("fid",), extractor=ex)
    assert again["fid"].value == pytest.approx(good["fid"].value, rel=1e-12)
    with pytest.raises(ConfigError, match="unknown image metric"):
        image_quality(real[:10], names=("fdi",), extractor=ex)
    with pytest.raises(ConfigError, match="labels"):
        image_quality(real[:10], names=("accuracy",), extractor=ex)
    with pytest.raises(ConfigError, match="prompts"):
        image_quality(real[:10], names=("clip_score",), extractor=ex)


def test_paper_track_extractors_need_user_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("EFFBENCH_INCEPTION_CLEANFID", raising=False)
    monkeypatch.delenv("EFFBENCH_INCEPTION_FIDELITY", raising=False)
    with pytest.raises(MissingAssetError, match="inception-2015-12-05.pt"):
        get_extractor("inception_cleanfid")
    with pytest.raises(MissingAssetError, match="pt_inception-2015-12-05"):
        get_extractor("inception_fidelity")
    with pytest.raises(MissingAssetError):
        get_extractor("inception_cleanfid", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(ConfigError, match="unknown feature extractor"):
        get_extractor("vgg")


def test_to_nchw_layouts():
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(to_nchw(x.permute(0, 2, 3, 1).numpy()), x)
    assert to_nchw((x * 255).to(torch.uint8)).dtype == torch.float32
    assert to_nchw(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)
