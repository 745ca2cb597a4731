"""SlimSAM's alternate slimming (arXiv 2312.05284, Sec. 3): prune the embedding dim, distil; prune the
bottleneck (q/k/v dims, MLP hidden), distil. Shared by the method and the pruning baselines.

Distillation uses only unlabeled images and the original image encoder as teacher (no masks); the
prompt encoder and mask decoder are never touched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import prune as P

CRITERIA = ("disturbed_taylor", "magnitude", "random")


@dataclass(frozen=True)
class SlimSettings:
    ratio: float
    importance: str = "disturbed_taylor"   # disturbed_taylor | magnitude | random
    recover: bool = True                   # distil after each step
    step2_scope: str = "global"            # global (paper) | local (uniform per block)
    round_to: int = 0                      # 0: number of heads (paper: 12 for ViT-B)
    noise_std: float = 0.01                # paper: N(0, 0.01^2) added to the teacher embedding
    importance_images: int = 64
    importance_batch: int = 8
    distill_images: int = 256
    distill_steps: int = 60                # optimiser steps per distillation stage
    distill_batch: int = 8
    distill_lr: float = 1e-3
    seed: int = 0


def _embedding(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return encoder(x).last_hidden_state


def disturbed_taylor_grads(student: nn.Module, teacher: nn.Module, images: torch.Tensor, noise_std: float,
                           batch: int, seed: int) -> None:
    """Accumulate gradients of the disturbed loss, paper Eq. 5:
    L = MSE(student(x), teacher(x) + N(0, noise_std^2)). With student == teacher (step 1) the plain
    distillation loss has zero gradient; the noise makes the first-order Taylor scores informative."""
    g = torch.Generator().manual_seed(seed)
    student.zero_grad(set_to_none=True)
    student.train()
    n = len(images)
    for i in range(0, n, batch):
        x = images[i:i + batch]
        with torch.no_grad():
            t = _embedding(teacher, x)
            t = t + noise_std * torch.randn(t.shape, generator=g)
        loss = F.mse_loss(_embedding(student, x), t, reduction="mean") * (len(x) / n)
        loss.backward()


def _scores(groups: list[P.Group], criterion: str, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    crit = "taylor" if criterion == "disturbed_taylor" else criterion
    return [P.channel_scores(grp, crit, g) for grp in groups]


class _Capture:
    """Forward hooks that record module outputs (in call order)."""

    def __init__(self, modules: list[nn.Module]):
        self.out: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(lambda _m, _i, o: self.out.append(o[0] if isinstance(o, tuple) else o))
                        for m in modules]

    def pop(self) -> list[torch.Tensor]:
        out, self.out = self.out, []
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _epoch_weight(step: int, steps: int, epochs: int = 20) -> float:
    """Paper: a = (10 - epoch) / 11 for the first 10 of 20 epochs, then 0; epochs mapped onto steps."""
    epoch = step * epochs // max(steps, 1)
    return (10 - epoch) / 11 if epoch < 10 else 0.0


def distill(student: nn.Module, teacher: nn.Module, images: torch.Tensor, s: SlimSettings, stage: int,
            step1: nn.Module | None = None) -> list[float]:
    """Recover a pruned image encoder from the original one on unlabeled images (paper Sec. 3.4).

    stage 1 (embedding dim pruned): "bottleneck aligning": 0.5 * MSE(embedding) + 0.5 * MSE of the
      bottleneck features (MLP hidden activations of every block, unpruned in this stage) for the
      first half of training, then the embedding MSE alone.
    stage 2 (bottleneck pruned): "embedding aligning": (1 - a) * MSE(emb, original) +
      a * (MSE(block outputs, step-1 model) + MSE(emb, step-1 model)), a = (10 - epoch) / 11 -> 0.
    official: Adam 1e-4, 20 epochs over 10k images, ReduceLROnPlateau; mini-world: Adam `distill_lr`,
    `distill_steps` steps of `distill_batch` images (constant lr: too few steps to plateau).
    """
    if s.distill_steps <= 0:
        return []
    g = torch.Generator().manual_seed(s.seed + 100 * stage)
    opt = torch.optim.Adam(student.parameters(), lr=s.distill_lr)
    if stage == 1:
        cs, ct = _Capture([l.mlp.lin1 for l in student.layers]), _Capture([l.mlp.lin1 for l in teacher.layers])
    else:
        cs, ct = _Capture(list(student.layers)), _Capture(list(step1.layers))
    losses = []
    student.train()
    try:
        for step in range(s.distill_steps):
            x = images[torch.randint(0, len(images), (s.distill_batch,), generator=g)]
            a = _epoch_weight(step, s.distill_steps)
            with torch.no_grad():
                t_emb = _embedding(teacher, x)
                if stage == 2:
                    t_emb1 = _embedding(step1, x)
                t_feat = ct.pop()
            s_emb = _embedding(student, x)
            s_feat = cs.pop()
            emb_loss = F.mse_loss(s_emb, t_emb)
            if stage == 1:
                feat = sum(F.mse_loss(a_, b_) for a_, b_ in zip(s_feat, t_feat)) / len(s_feat)
                loss = 0.5 * emb_loss + 0.5 * feat if a > 0 else emb_loss
            else:
                feat = sum(F.mse_loss(a_, b_) for a_, b_ in zip(s_feat, t_feat)) / len(s_feat)
                loss = (1 - a) * emb_loss + a * (feat + F.mse_loss(s_emb, t_emb1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(emb_loss.detach()))
    finally:
        cs.remove()
        ct.remove()
    student.zero_grad(set_to_none=True)
    student.eval()
    return losses


def slim_encoder(encoder: nn.Module, teacher: nn.Module, unlabeled, s: SlimSettings) -> dict:
    """Prune `encoder` in place (it starts as a copy of `teacher`); returns what was done.

    `unlabeled(n, seed)` gives n unlabeled training images (pixel_values)."""
    if not 0.0 <= s.ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {s.ratio}")
    info: dict = {"ratio": s.ratio, "importance": s.importance, "recover": s.recover}
    if s.ratio == 0.0:
        return info        # pruning nothing changes nothing (not even the qkv split)
    if s.importance not in CRITERIA:
        raise ValueError(f"importance must be one of {CRITERIA}, got {s.importance!r}")
    P.split_qkv(encoder)
    teacher_enc = teacher
    heads = encoder.layers[0].attn.num_attention_heads
    round_to = s.round_to or heads
    need_grads = s.importance == "disturbed_taylor"
    imp_imgs = unlabeled(s.importance_images, s.seed + 1) if need_grads else None
    dis_imgs = unlabeled(s.distill_images, s.seed + 2) if (s.recover and s.distill_steps > 0) else None

    # ---- step 1: embedding dimension (local, round_to = heads; paper Sec. 3.2)
    if need_grads:
        disturbed_taylor_grads(encoder, teacher_enc, imp_imgs, s.noise_std, s.importance_batch, s.seed)
    emb_scores = _scores([P.embed_group(encoder)], s.importance, s.seed)[0]
    info["embed_dim"] = P.prune_embedding(encoder, emb_scores, s.ratio, round_to)
    encoder.zero_grad(set_to_none=True)
    if s.recover and dis_imgs is not None:
        info["distill1_loss"] = _ends(distill(encoder, teacher_enc, dis_imgs, s, stage=1))
    step1 = copy.deepcopy(encoder).eval()
    for p in step1.parameters():
        p.requires_grad_(False)

    # ---- step 2: q/k/v dims (all heads kept) and MLP hidden (global, z-score normalised)
    if need_grads:
        # reconstruction: the disturbed target is the original encoder's embedding + noise
        disturbed_taylor_grads(encoder, teacher_enc, imp_imgs, s.noise_std, s.importance_batch, s.seed + 7)
    groups = P.block_groups(encoder)
    scores = _scores(groups, s.importance, s.seed + 7)
    counts = P.plan_block_pruning(groups, scores, s.ratio, s.step2_scope, round_to)
    P.prune_blocks(encoder, scores, counts)
    encoder.zero_grad(set_to_none=True)
    if s.recover and dis_imgs is not None:
        info["distill2_loss"] = _ends(distill(encoder, teacher_enc, dis_imgs, s, stage=2, step1=step1))
    encoder.eval()
    return info


def _ends(losses: list[float]) -> dict:
    if not losses:
        return {}
    k = max(1, len(losses) // 10)
    return {"first": sum(losses[:k]) / k, "last": sum(losses[-k:]) / k, "steps": len(losses)}
