"""Diff-Pruning: threshold rule, Taylor accumulation, channel pruning, sampling and safe save/load."""
from __future__ import annotations

import pytest
import torch

from methods.diff_pruning.prune import (accumulate_gradients, example_inputs, load_pruned, prune_unet, save_pruned,
                                        threshold_steps)


def tiny_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, attention_head_dim=8)


def test_threshold_rule_on_constructed_curve():
    # the loss rises to its max at step 2 (10.0), then decays; T=0.05 -> stop at the first L < 0.5
    losses = [4.0, 8.0, 10.0, 6.0, 2.0, 0.9, 0.6, 0.45, 0.3, 0.1]
    assert threshold_steps(losses, 0.05) == [0, 1, 2, 3, 4, 5, 6, 7]      # step 7 included (official order)
    assert threshold_steps(losses, 0.1) == [0, 1, 2, 3, 4, 5]             # 0.9 < 1.0
    assert threshold_steps(losses, 0.0) == list(range(10))                # T = 0: every step
    assert threshold_steps([1.0, 0.2, 0.01], 0.5) == [0, 1]



@pytest.mark.timeout(120)
def test_accumulation_follows_rule_and_pruned_unet_samples_and_round_trips(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler

    unet = tiny_unet()
    sched = DDPMScheduler(num_train_timesteps=1000)
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    steps = list(range(0, 1000, 50))
    info = accumulate_gradients(unet, sched, x0, threshold=0.05, timesteps=steps, seed=0)
    assert info["timesteps"] == [steps[i] for i in threshold_steps(info["losses"], 0.05)]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in unet.parameters())
    full = accumulate_gradients(tiny_unet(), sched, x0, threshold=None, timesteps=steps, seed=0)
    assert full["timesteps"] == steps

    ex = example_inputs(unet)
    n0 = sum(p.numel() for p in unet.parameters())
    prune_unet(unet, 0.5, "diff_pruning", ex)
    assert sum(p.numel() for p in unet.parameters()) < 0.5 * n0
    assert unet.conv_out.out_channels == 1 and unet.conv_in.out_channels == 8
    for m in unet.modules():
        if type(m).__name__ == "Attention":
            assert m.to_q.out_features == m.heads * (m.to_q.out_features // m.heads)
    pipe = DDPMPipeline(unet=unet.eval(), scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        img = pipe(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert img.shape == (2, 8, 8, 1) and (img >= 0).all() and (img <= 1).all()

    f = save_pruned(unet, tmp_path / "unet.safetensors")
    back = load_pruned(f)
    with torch.inference_mode():
        assert torch.equal(unet(**ex).sample, back(**ex).sample)
    pipe2 = DDPMPipeline(unet=back, scheduler=sched)
    pipe2.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        img2 = pipe2(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert (img == img2).all()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["random", "magnitude"])
def test_baseline_importances_prune_same_widths(kind):
    a, b = tiny_unet(), tiny_unet()
    prune_unet(a, 0.5, kind)
    prune_unet(b, 0.5, "magnitude")
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]   # local uniform ratio


@pytest.mark.timeout(180)
def test_apply_on_a_subject_prunes_finetunes_and_keeps_shared_model(tmp_path):
    from diffusers import DDIMScheduler, DDPMPipeline

    from benchmarks.api import RunContext
    from benchmarks.tasks.diffusion import DiffusionSubject
    from methods.diff_pruning.method import DiffPruning

    shared = tiny_unet()
    before = [p.clone() for p in shared.parameters()]
    pipe = DDPMPipeline(unet=shared, scheduler=DDIMScheduler(num_train_timesteps=1000))
    subject = DiffusionSubject(pipe, steps=4, guidance_scale=1.0)
    ctx = RunContext(progress=False, log=lambda s: None, artifact_dir=tmp_path)
    DiffPruning().apply(subject, {"ratio": 0.5, "thr": 0.05, "ft_steps": 3, "bs": 8, "taylor_bs": 4, "stride": 100}, ctx)
    assert subject.denoiser is not shared
    assert sum(p.numel() for p in subject.denoiser.parameters()) < sum(p.numel() for p in shared.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, shared.parameters()))      # shared model untouched
    back = load_pruned(tmp_path / "unet_pruned.safetensors")
    ex = example_inputs(back)
    with torch.inference_mode():
        assert torch.equal(back(**ex).sample, subject.denoiser(**ex).sample)
