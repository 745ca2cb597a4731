"""DeepCache: schedules against the paper's definition, exact equality for N=1 and after removal,
replay mechanics across schedulers / CFG / U-Net types, and a run through the harness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.errors import ConfigError
from methods.deepcache.method import (DeepCachePolicy, enable_deepcache, nonuniform_steps, replayed_modules,
                                      uniform_steps)
from benchmarks.hooks import named
from tests.tiny import tiny_ddpm_pipeline, tiny_sd_pipeline


# ---- schedules ---------------------------------------------------------------------------------

def test_uniform_schedule_full_steps_every_n():
    assert uniform_steps(10, 3) == [0, 3, 6, 9]
    assert uniform_steps(50, 1) == list(range(50))


def test_nonuniform_schedule_matches_paper_sd_example():
    # papers.md: T=50, N=5, c=15, p=1.4 -> [0, 5, 9, 13, 17, 21, 26, 31, 37, 43]
    assert nonuniform_steps(50, 5, 15, 1.4) == [0, 5, 9, 13, 17, 21, 26, 31, 37, 43]


@pytest.mark.parametrize("T,N,c,p", [(50, 2, 15, 1.5), (50, 3, 15, 1.3), (50, 4, 15, 1.4), (50, 5, 10, 1.5),
                                     (50, 8, 10, 1.4), (100, 10, 40, 1.2)])
def test_nonuniform_schedule_properties(T, N, c, p):
    steps = nonuniform_steps(T, N, c, p)
    k = -(-T // N)
    assert len(steps) == k and steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] < T
    gaps = np.diff(steps)
    # denser near the centre c than at the ends: the smallest gap lies within the middle of the schedule
    assert gaps.min() <= gaps.max()
    near = [g for s, g in zip(steps, gaps) if abs(s - c) <= T / 4]
    assert min(near) == gaps.min()


def test_policy_uses_the_schedule():
    pol = DeepCachePolicy(5, "uniform", 15, 1.4)
    assert [s for s in range(12) if pol.compute(s, 12, "x")] == [0, 5, 10]


def test_plms_schedule_is_drawn_over_inference_steps_not_calls():
    """official: full steps = range(0, num_inference_steps, N) compared with the call index; PLMS 50 has
    51 timesteps (its first one repeats), so the trailing call is cached: 10 full calls, 41 cached."""
    from diffusers import PNDMScheduler

    sched = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
    sched.set_timesteps(50)
    assert len(sched.timesteps) == 51
    pol = DeepCachePolicy(5, "uniform", 15, 1.4, scheduler=sched)
    assert sorted(pol.full_steps(51)) == list(range(0, 50, 5))
    assert not pol.compute(50, 51, "x")
    assert sorted(DeepCachePolicy(2, "uniform", 15, 1.4, scheduler=sched).full_steps(51)) == list(range(0, 50, 2))
    assert sorted(DeepCachePolicy(5, "nonuniform", 15, 1.4, scheduler=sched).full_steps(51)) == \
        [0, 5, 9, 13, 17, 21, 26, 31, 37, 43]
    # N=1 caches nothing, the trailing PLMS call included (official: quick_replicate = interval > 1)
    assert DeepCachePolicy(1, "uniform", 15, 1.4, scheduler=sched).full_steps(51) == frozenset(range(51))


# ---- which modules are replayed ------------------------------------------------------------------

def test_branch_selects_layers_deeper_than_the_skip():
    unet = tiny_sd_pipeline().unet
    names = list(named(unet, replayed_modules(unet, 0)))
    assert names == ["down_blocks.0.downsamplers.0", "down_blocks.1", "mid_block", "up_blocks.0"]
    names = list(named(unet, replayed_modules(unet, 1)))
    assert names == ["down_blocks.1", "mid_block", "up_blocks.0.resnets.0"]
    with pytest.raises(ConfigError, match="out of range"):
        replayed_modules(unet, 2)


# ---- exactness and replay --------------------------------------------------------------------------

def _sd(pipe, steps=6, cfg=3.0):
    g = [torch.Generator().manual_seed(i) for i in range(2)]
    return pipe(prompt=["a seven", "a two"], num_inference_steps=steps, guidance_scale=cfg, generator=g,
                output_type="np", height=32, width=32).images


@pytest.fixture(scope="module")
def sd():
    return tiny_sd_pipeline()


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "dpm"])
def test_interval_1_and_removal_are_bit_identical(sd, scheduler):
    from benchmarks.tasks.diffusion import make_scheduler

    sd.scheduler = make_scheduler(scheduler, sd.scheduler.config)
    ref = _sd(sd)
    h = enable_deepcache(sd, interval=1)
    same = _sd(sd)
    h.disable()
    assert np.array_equal(same, ref)
    h = enable_deepcache(sd, interval=3)
    cached = _sd(sd)
    h.disable()
    assert not np.array_equal(cached, ref)          # the cache really replaces computation
    assert np.array_equal(_sd(sd), ref)             # and removal restores the pipeline exactly
    assert not hasattr(sd.unet.mid_block, "_diffusers_hook") and "step" not in vars(sd.scheduler)


def test_cached_steps_skip_the_deep_path_and_count_steps(sd):
    calls = {"mid": 0, "unet": 0}
    hm = sd.unet.mid_block.resnets[0].register_forward_pre_hook(lambda *a: calls.__setitem__("mid", calls["mid"] + 1))
    hu = sd.unet.register_forward_pre_hook(lambda *a: calls.__setitem__("unet", calls["unet"] + 1))
    from diffusers import DDIMScheduler

    sd.scheduler = DDIMScheduler.from_config(sd.scheduler.config)
    h = enable_deepcache(sd, interval=3)
    _sd(sd, steps=7)
    h.disable()
    hm.remove(), hu.remove()
    # 7 steps, full at 0, 3, 6: the mid block computes 3 times (CFG is batched: one U-Net call per step)
    assert calls == {"mid": 3, "unet": 7}


def test_plms_trailing_call_is_cached_in_a_real_sampling_loop(sd):
    from benchmarks.tasks.diffusion import make_scheduler

    calls = {"mid": 0, "unet": 0}
    hm = sd.unet.mid_block.resnets[0].register_forward_pre_hook(lambda *a: calls.__setitem__("mid", calls["mid"] + 1))
    hu = sd.unet.register_forward_pre_hook(lambda *a: calls.__setitem__("unet", calls["unet"] + 1))
    sd.scheduler = make_scheduler("pndm", sd.scheduler.config)
    h = enable_deepcache(sd, interval=3)
    _sd(sd, steps=6)
    h.disable()
    hm.remove(), hu.remove()
    # PLMS 6 steps = 7 U-Net calls; full calls at 0, 3 (range(0, 6, 3)); calls 6 is cached
    assert calls == {"mid": 2, "unet": 7}


def test_cached_step_replays_the_full_step_features_exactly(sd):
    """On a cached step the replayed module returns exactly what it produced on the last full step."""
    unet = sd.unet
    h = enable_deepcache(sd, interval=2)
    seen = []
    hk = unet.mid_block.resnets[0].register_forward_hook(lambda m, a, o: seen.append(o.clone()))
    x = torch.randn(2, 4, 8, 8)
    ctx = torch.randn(2, 16, 32)
    with h.force("full"):
        full = unet(x, 10, ctx).sample
    with h.force("cached"):
        cached = unet(x + 0.5, 10, ctx).sample          # different input, deep path replayed
    h.disable()
    hk.remove()
    assert len(seen) == 1                                # mid block ran only on the full call
    ref = unet(x + 0.5, 10, ctx).sample
    assert not torch.equal(cached, ref) and not torch.equal(cached, full)


def test_unet2dmodel_pipeline_ddpm():
    pipe = tiny_ddpm_pipeline()
    run = lambda: pipe(batch_size=2, generator=[torch.Generator().manual_seed(i) for i in range(2)],
                       num_inference_steps=6, output_type="np").images
    ref = run()
    h = enable_deepcache(pipe, interval=1, branch=1)
    assert np.array_equal(run(), ref)
    h.disable()
    h = enable_deepcache(pipe, interval=3, branch=1)
    assert not np.array_equal(run(), ref)
    h.disable()
    assert np.array_equal(run(), ref)


def test_unbatched_cfg_gets_one_cache_slot_per_call(sd):
    """Pipelines that call the U-Net twice per step (cond, uncond) must not share one cache."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(sd.scheduler.config)
    h = enable_deepcache(type("P", (), {"unet": sd.unet, "scheduler": sched})(), interval=2)
    x, ctx_a, ctx_b = torch.randn(1, 4, 8, 8), torch.randn(1, 16, 32), torch.randn(1, 16, 32)
    sched.set_timesteps(4)
    outs = []
    for t in sched.timesteps[:2]:
        a = sd.unet(x, t, ctx_a).sample
        b = sd.unet(x, t, ctx_b).sample
        outs.append((a, b))
        sched.step(a, t, x)
    h.disable()
    # step 1 is cached: each call replays its own slot, so cond and uncond stay different
    assert not torch.equal(outs[1][0], outs[1][1])
    assert torch.equal(outs[1][0], sd.unet(x, sched.timesteps[1], ctx_a).sample) is False


# ---- paper-architecture path (composition of per-kind costs) ---------------------------------------

@pytest.fixture
def tiny_arch():
    from benchmarks.diffusion_archs import ARCHS, Arch

    def build():
        return tiny_sd_pipeline().unet

    def inputs(b, device):
        return {"sample": torch.randn(b, 4, 8, 8), "timestep": torch.tensor(10),
                "encoder_hidden_states": torch.randn(b, 16, 32), "return_dict": False}

    ARCHS["tiny_test"] = Arch("tiny_test", build, inputs, "tiny U-Net for tests")
    yield "arch:tiny_test"
    del ARCHS["tiny_test"]


def test_paper_arch_run_composes_full_and_cached_costs(tiny_arch, results):
    import torch_pruning as tp

    from benchmarks.runner import run

    s = run("deepcache", "paper_arch", [f"model={tiny_arch}", "intervals=[2, 5]", "fewer_steps=[25]",
                                        "latency_min_reps=2", "latency_warmup=0"],
            out=results, tracker="none", progress=False, log=lambda m: None)
    recs = {r.variant: r for r in s.written}
    assert all(r.status == "ok" for r in recs.values()), [r.error for r in recs.values()]
    base, n5, few = recs["uncached"], recs["deepcache[branch=0,interval=5]"], recs["fewer_steps[steps=25]"]
    unet = tiny_sd_pipeline().unet
    inputs = {"sample": torch.randn(1, 4, 8, 8), "timestep": torch.tensor(10),
              "encoder_hidden_states": torch.randn(1, 16, 32), "return_dict": False}
    full, _, layer, _ = tp.utils.count_ops_and_params(unet, inputs, layer_wise=True)
    assert base.efficiency["macs_per_step"] == pytest.approx(full)
    # PLMS 50 = 51 U-Net calls; N=5 -> official full calls at 0,5,...,45 (10), the other 41 replay the deep path
    kinds = n5.efficiency["latency_per_kind"]
    assert kinds["full"]["count"] == 10 and kinds["cached"]["count"] == 41
    assert n5.notes["plan"] == ("F" + "c" * 4) * 10 + "c"
    replayed = sum(layer[m] for m in replayed_modules(unet, 0))
    assert kinds["cached"]["macs"] == pytest.approx(full - replayed)
    assert n5.efficiency["mac_speedup"]["value"] == pytest.approx(51 * full / (10 * full + 41 * (full - replayed)))
    assert few.efficiency["macs_per_base_step"] == pytest.approx(26 * full / 51)
    assert "composed" in n5.notes


# ---- mini-world path through the harness (tiny random pipeline registered as a zoo entry) ---------

@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    from benchmarks.zoo.core import ZOO, ZooEntry

    monkeypatch.setenv("EFFBENCH_HOME", str(tmp_path / "home"))

    def train(recipe, out, ctx):
        tiny_ddpm_pipeline().save_pretrained(out)
        return {"quality": {}}

    def load(path):
        from diffusers import DDPMPipeline

        return DDPMPipeline.from_pretrained(path)

    ZOO._ensure()
    ZOO._items["tiny_ddpm_test"] = ZooEntry("tiny_ddpm_test", {}, train, load, "test fixture")
    yield "zoo:tiny_ddpm_test"
    del ZOO._items["tiny_ddpm_test"]


def test_smoke_path_records_fidelity_speedup_and_macs(tiny_zoo, results):
    from benchmarks.runner import run

    s = run("deepcache", "smoke_ddpm", [f"model={tiny_zoo}", "quality=[psnr, ssim]", "num_samples=4",
                                        "batch_size=4", "steps=6", "intervals=[1, 3]", "fewer_steps=[3]", "branch=1",
                                        "latency_min_reps=2", "latency_min_seconds=0", "latency_batch=2"],
            out=results, tracker="none", progress=False, log=lambda m: None)
    recs = {r.variant: r for r in s.written}
    assert all(r.status == "ok" for r in recs.values()), [r.error for r in recs.values()]
    n1, n3, few = recs["deepcache[branch=1,interval=1]"], recs["deepcache[branch=1,interval=3]"], recs["fewer_steps[steps=3]"]
    assert "psnr" not in recs["uncached"].metrics               # fidelity is relative to the reference
    assert n1.metrics["psnr"]["value"] >= 100 and n1.metrics["ssim"]["value"] == pytest.approx(1.0)  # N=1: identical
    assert n3.metrics["ssim"]["value"] < 1.0
    assert n3.efficiency["macs"] < recs["uncached"].efficiency["macs"]
    assert n3.efficiency["mac_speedup"]["value"] > 1.0 and few.efficiency["mac_speedup"]["value"] == pytest.approx(2.0)
    assert n3.efficiency["denoiser_calls"] == 6 and few.efficiency["denoiser_calls"] == 3
    assert (results / n3.artifacts / "samples.png").exists()
