"""LD-Pruner: operator removal, latent score, budget, BK-SDM plan, save/load on a tiny random SD pipeline."""
from __future__ import annotations

import torch
import torch.nn as nn

from methods.ld_pruner.ops import (bk_sdm_plan, latent_score, load_removed, operators, remove, removed_params,
                                   save_removed, score_operators, select, swap)


def tiny_sd_pipe():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=16,
                                attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(block_out_channels=(8, 16), latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    import tempfile

    from benchmarks.zoo.models.clip import build_tokenizer

    tok = build_tokenizer(tempfile.mkdtemp())
    tok.model_max_length = 77
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1))
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=te.eval(), tokenizer=tok, unet=unet.eval(),
                                   scheduler=DDIMScheduler(num_train_timesteps=1000, steps_offset=1),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def latents(pipe, k=3, steps=3):
    gens = [torch.Generator().manual_seed(i) for i in range(k)]
    with torch.inference_mode():
        return pipe(prompt=["a one", "a two", "a six"][:k], num_inference_steps=steps, guidance_scale=2.0,
                    generator=gens, output_type="latent").images


class _Same(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, *a, **k):
        return self.m(*a, **k)


def test_score_is_zero_for_identity_change_and_positive_for_removal():
    pipe = tiny_sd_pipe()
    ref = latents(pipe)
    assert latent_score(ref, ref.clone()) == 0.0
    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    old = swap(pipe.unet, path, _Same(pipe.unet.get_submodule(path)))     # an identity change of one operator
    assert latent_score(ref, latents(pipe)) == 0.0
    swap(pipe.unet, path, old)
    ops = operators(pipe.unet)
    kinds = {k for _, k in ops}
    assert kinds == {"resnet", "attn1", "attn2", "ff"}
    scores = score_operators(pipe.unet, lambda: latents(pipe), ops[:4])
    assert all(v > 0 for v in scores.values())
    assert torch.equal(latents(pipe), ref)                                    # every swap restored


def test_budget_and_bk_sdm_plan():
    pipe = tiny_sd_pipe()
    unet = pipe.unet
    ops = operators(unet)
    total = sum(p.numel() for p in unet.parameters())
    scores = {p: float(i) for i, (p, _) in enumerate(ops)}
    plan = select(unet, scores, ops, 0.2)
    got = sum(removed_params(unet.get_submodule(p), k) for p, k in plan)
    assert got >= 0.2 * total
    assert sum(removed_params(unet.get_submodule(p), k) for p, k in plan[:-1]) < 0.2 * total   # minimal prefix
    assert [p for p, _ in plan] == [p for p, _ in ops[: len(plan)]]                            # lowest first
    bk = bk_sdm_plan(unet, "base")
    assert ("down_blocks.0.resnets.1", "resnet") in bk and ("down_blocks.0.attentions.1", "transformer") in bk
    assert ("up_blocks.1.resnets.1", "resnet") in bk and ("up_blocks.1.attentions.1", "transformer") in bk
    assert len(bk_sdm_plan(unet, "small")) == len(bk) + 3


def test_pruned_unet_samples_and_round_trips(tmp_path):
    pipe = tiny_sd_pipe()
    unet = pipe.unet
    n0 = sum(p.numel() for p in unet.parameters())
    plan = bk_sdm_plan(unet, "small") + [("up_blocks.0.resnets.0", "resnet"),
                                         ("down_blocks.0.attentions.0.transformer_blocks.0.ff", "ff")]
    remove(unet, plan)
    assert sum(p.numel() for p in unet.parameters()) < n0
    out = latents(pipe)
    assert torch.isfinite(out).all()
    f = save_removed(unet, plan, tmp_path / "u.safetensors")
    pipe.unet = load_removed(f)
    assert torch.equal(latents(pipe), out)


def test_apply_scores_prunes_and_distills_without_touching_the_teacher(tmp_path):
    from benchmarks.api import RunContext
    from benchmarks.tasks.diffusion import DiffusionSubject
    from methods.ld_pruner.method import LDPruner

    pipe = tiny_sd_pipe()
    pipe.vae.register_to_config(sample_size=16)
    teacher = pipe.unet
    before = [p.clone() for p in teacher.parameters()]
    s = DiffusionSubject(pipe, steps=3, guidance_scale=2.0)
    ctx = RunContext(progress=False, log=lambda s: None, artifact_dir=tmp_path)
    LDPruner().apply(s, {"target": 0.2, "ft_steps": 2, "k": 2, "score_steps": 2, "bs": 4}, ctx)
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert s.denoiser is not teacher and n(s.denoiser) <= 0.8 * n(teacher) + 1
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    out = latents(pipe)
    pipe.unet = load_removed(tmp_path / "unet_pruned.safetensors")
    assert torch.equal(latents(pipe), out)
