"""Paper-track image metrics on a user's diffusers pipeline (hf:<folder>): FID against the user's reference
folder through the configured extractor, CLIP Score on the prompts file, and a clear missing-file error
before any sampling. A tiny random pipeline stands in for SD-1.5 (mechanics only, no quality claim)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks.errors import MissingAssetError
from benchmarks.runner import run
from tests.tiny import tiny_sd_pipeline

QUIET = dict(tracker="none", progress=False, log=lambda m: None)


@pytest.fixture
def user_files(tmp_path):
    pipe_dir = tmp_path / "sd"
    tiny_sd_pipeline().save_pretrained(pipe_dir)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"a photo of digit {i}" for i in range(4)) + "\n")
    ref = tmp_path / "ref"
    ref.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(ref / f"{i}.png")
    return pipe_dir, prompts, ref


def _overrides(pipe_dir, prompts, **extra):
    o = {"model": f"hf:{pipe_dir}", "prompts_file": str(prompts), "num_samples": 4, "batch_size": 2, "steps": 3,
         "scheduler": "ddim", "guidance_scale": 1.0, "intervals": "[2]", "fewer_steps": "[2]", "latency_min_reps": 1,
         "latency_min_seconds": 0.0, "latency_warmup": 0, "save_samples": 0, **extra}
    return [f"{k}={v}" for k, v in o.items()]


@pytest.mark.timeout(300)
def test_missing_fid_reference_fails_before_sampling_and_names_the_key(user_files, results):
    pipe_dir, prompts, _ = user_files
    with pytest.raises(MissingAssetError, match="fid_reference"):
        run("deepcache", "paper", _overrides(pipe_dir, prompts, quality="[fid]"), out=results, **QUIET)
    assert not (results / "runs.jsonl").exists() or not (results / "runs.jsonl").read_text().strip()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_paper_preset_computes_fid_and_clip_score_from_user_files(user_files, results):
    pipe_dir, prompts, ref = user_files
    s = run("deepcache", "paper", _overrides(pipe_dir, prompts, quality="[fid, clip_score, psnr]",
                                             fid_reference=ref, fid_extractor="digits_cnn", clip_model="clip_digits"),
            out=results, **QUIET)
    recs = {r.variant: r for r in s.written}
    assert all(r.status == "ok" for r in recs.values()), [r.error for r in recs.values()]
    base = recs["uncached"].metrics
    assert base["fid"]["value"] > 0 and "ref=ref(n=12)" in base["fid"]["protocol"]
    assert base["clip_score"]["value"] >= 0 and base["clip_score"]["protocol"].startswith("clip_score/clip_digits")
    assert "psnr" in recs["deepcache[branch=0,interval=2]"].metrics
