"""SlimSAM: hand-written SAM encoder surgery, disturbed Taylor importance, mIoU metric (tiny random SAM:
mechanics only, never quality)."""
from __future__ import annotations

import copy

import pytest
import torch

from benchmarks.api import RunContext
from benchmarks.efficiency import count_params
from benchmarks.metrics.segmentation import mask_iou, miou
from benchmarks.tasks.segmentation import SamSubject, encoder_structure
from benchmarks.zoo.models import sam as world
from methods.slimsam import prune as P
from methods.slimsam.method import SlimSAM, SlimSAMConfig, settings, slim_subject
from methods.slimsam.slim import SlimSettings, disturbed_taylor_grads, slim_encoder


def tiny_sam(seed: int = 0, **arch):
    from transformers import SamModel

    torch.manual_seed(seed)
    m = SamModel(world.sam_config(dict(world.ARCH, **arch))).eval()
    with torch.no_grad():   # non-zero tables so that slicing them matters
        m.vision_encoder.pos_embed.normal_(0, 0.5)
        for layer in m.vision_encoder.layers:
            layer.attn.rel_pos_h.normal_(0, 0.5)
            layer.attn.rel_pos_w.normal_(0, 0.5)
    return m


def images(n, seed=0):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def data_rows(n=3):
    d = world.shapes("test")
    rows = torch.arange(n)
    return d, rows


def test_split_qkv_is_exact():
    m = tiny_sam()
    x = images(2)
    with torch.no_grad():
        ref = m.vision_encoder(x).last_hidden_state
        P.split_qkv(m.vision_encoder)
        out = m.vision_encoder(x).last_hidden_state
    assert torch.allclose(ref, out, atol=1e-5)
    assert all(isinstance(layer.attn, P.SplitQKVAttention) for layer in m.vision_encoder.layers)


@pytest.mark.parametrize("ratio,scope", [(0.1, "global"), (0.5, "local"), (0.77, "global"), (0.95, "local")])
def test_pruned_sam_runs_and_masks_have_right_shape(ratio, scope):
    teacher = tiny_sam()
    m = copy.deepcopy(teacher)
    s = SlimSettings(ratio=ratio, importance="magnitude", step2_scope=scope, distill_steps=0)
    slim_encoder(m.vision_encoder, teacher.vision_encoder, lambda n, seed: images(n, seed), s)
    st = encoder_structure(m.vision_encoder)
    assert st["embed_dim"] == P.keep_count(64, ratio, 4) < 64
    assert all(q < 16 for q in st["qk_head_dim"]) and all(v < 16 for v in st["v_head_dim"])
    assert count_params(m.vision_encoder) < count_params(teacher.vision_encoder)
    d, rows = data_rows(3)
    with torch.no_grad():
        emb = m.get_image_embeddings(world.normalize(d["images"][d["image_index"][rows]]))
        assert emb.shape == (3, 64, 8, 8)           # the neck output keeps the decoder's width
        for prompt in ("box", "point"):
            masks = world.predict_masks(m, emb, d, rows, prompt)
            assert masks.shape == (3, 64, 64) and torch.isfinite(masks).all()
        out = m(pixel_values=images(2), input_boxes=torch.tensor([[[4.0, 5, 30, 40]]] * 2), multimask_output=False)
    assert out.pred_masks.shape == (2, 1, 1, 32, 32)


def test_disturbed_taylor_with_distillation_runs_and_lowers_loss():
    teacher = tiny_sam()
    m = copy.deepcopy(teacher)
    s = SlimSettings(ratio=0.5, importance="disturbed_taylor", importance_images=8, distill_images=32,
                     distill_steps=30, distill_batch=4, distill_lr=2e-3)
    info = slim_encoder(m.vision_encoder, teacher.vision_encoder, lambda n, seed: images(n, seed), s)
    assert info["distill1_loss"]["last"] < info["distill1_loss"]["first"]
    assert info["distill2_loss"]["steps"] == 30
    with torch.no_grad():
        assert m(pixel_values=images(1), input_boxes=torch.tensor([[[4.0, 5, 30, 40]]]),
                 multimask_output=False).pred_masks.shape == (1, 1, 1, 32, 32)


def test_disturbance_is_what_makes_taylor_informative():
    """Student == teacher: the plain distillation loss has zero gradient; the noise makes it non-zero."""
    teacher = tiny_sam()
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    x = images(4)
    disturbed_taylor_grads(student.vision_encoder, teacher.vision_encoder, x, noise_std=0.0, batch=4, seed=0)
    g0 = sum(float(p.grad.abs().sum()) for p in student.vision_encoder.parameters() if p.grad is not None)
    disturbed_taylor_grads(student.vision_encoder, teacher.vision_encoder, x, noise_std=0.01, batch=4, seed=0)
    g1 = sum(float(p.grad.abs().sum()) for p in student.vision_encoder.parameters() if p.grad is not None)
    assert g1 > 100 * g0        # g0 is round-off only (grad-mode kernels differ from no-grad ones)
    P.split_qkv(student.vision_encoder)
    disturbed_taylor_grads(student.vision_encoder, teacher.vision_encoder, x, noise_std=0.01, batch=4, seed=0)
    scores = P.channel_scores(P.embed_group(student.vision_encoder), "taylor")
    assert scores.shape == (64,) and (scores > 0).all()


def _subject(model, teacher):
    cfg = SlimSAMConfig(distill_steps=0, importance_images=4, importance_batch=4)
    return SamSubject(model=model, teacher=teacher, unlabeled_images=lambda n, seed: images(n, seed), cfg=cfg,
                      image_size=64)


def test_pruning_nothing_changes_nothing():
    teacher = tiny_sam()
    model = copy.deepcopy(teacher)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = images(2)
    box = torch.tensor([[[4.0, 5, 30, 40]]] * 2)
    with torch.no_grad():
        ref = teacher(pixel_values=x, input_boxes=box, multimask_output=False).pred_masks
    sub = SlimSAM().apply(_subject(model, teacher), {"ratio": 0.0}, RunContext())
    after = sub.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        out = sub.model(pixel_values=x, input_boxes=box, multimask_output=False).pred_masks
    assert torch.equal(ref, out)


def test_uniform_surgery_matches_a_native_smaller_config():
    """Local (uniform) pruning at 50% gives exactly the parameter count of a SamModel built with half
    the width and half the MLP (the split q/k/v hold the same weights as a fused qkv)."""
    teacher = tiny_sam()
    sub = _subject(copy.deepcopy(teacher), teacher)
    s = settings(sub.cfg, 0.5, importance="random", recover=False)
    s = SlimSettings(**{**s.__dict__, "step2_scope": "local"})
    slim_subject(sub, s)
    native = tiny_sam(hidden_size=32, mlp_dim=128)
    assert count_params(sub.model) == count_params(native)


def test_keep_count_matches_released_widths():
    assert P.keep_count(768, 0.5, 12) == 384 and P.keep_count(768, 0.77, 12) == 168
    assert P.keep_count(3072, 0.5, 12) == 1536 and P.keep_count(3072, 0.77, 12) == 696
    assert P.keep_count(64, 0.77, 1) == 14 and P.keep_count(10, 0.99, 4) == 4


def test_miou_is_mean_over_images_of_per_image_means():
    gt = torch.zeros(3, 4, 4, dtype=torch.bool)
    gt[:, :2, :2] = True                                   # 4 pixels each
    pred = gt.clone()
    pred[1] = False
    pred[1, 0, 0] = True                                   # IoU 1/4
    ious = mask_iou(pred, gt)
    assert torch.allclose(ious, torch.tensor([1.0, 0.25, 1.0], dtype=torch.float64))
    # image 0 holds masks 0 and 1 (mean 0.625), image 1 holds mask 2 (1.0): mIoU = 0.8125, not 0.75
    assert miou(pred, gt, torch.tensor([0, 0, 1])) == pytest.approx(0.8125)


def test_variants_cover_method_and_baselines():
    names = [v.name for v in SlimSAM().variants(SlimSAMConfig())]
    assert names[0] == "dense"
    assert "slimsam[ratio=0.5]" in names and "slimsam[ratio=0.77]" in names
    assert "sam_prune[importance=magnitude,ratio=0.77]" in names
    assert "sam_prune[importance=random,ratio=0.5]" in names
    assert "sam_prune[importance=disturbed_taylor,ratio=0.5,recover=False]" in names


def test_shapes_world_is_deterministic_and_prompts_lie_in_masks():
    d = world.shapes("test")
    assert d["images"].shape == (200, 3, 64, 64)
    p = d["points"].long()
    inside = d["masks"][torch.arange(len(p)), p[:, 1], p[:, 0]]
    assert inside.all()
    b = d["boxes"]
    assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
    world._dataset.cache_clear()
    assert torch.equal(world.shapes("test")["masks"], d["masks"])


@pytest.mark.slow
def test_recovery_restores_quality_on_the_zoo_sam():
    """Mini-world: at 77 % the pruned-and-distilled SAM beats the same pruning without recovery."""
    from benchmarks.tasks.segmentation import SegmentationTask

    cfg = SlimSAMConfig(eval_images=30, distill_steps=20, importance_images=16, distill_images=64)
    ctx = RunContext(progress=False)
    task = SegmentationTask(cfg, ctx)
    dense = task._miou(task.subject().model, "box")
    out = {}
    for recover in (False, True):
        sub = slim_subject(task.subject(), settings(cfg, 0.77, recover=recover))
        out[recover] = task._miou(sub.model, "box")
    assert dense > 0.3                      # a trained model, not a random one
    assert out[True] > out[False] + 0.05
