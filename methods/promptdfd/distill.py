"""Knowledge distillation of a classifier on a given set of (unlabeled) texts: T^2 * KL(teacher || student).

reconstruction (PromptDFD publishes no loss): Hinton et al.'s soft-target loss with temperature T,
scaled by T^2; no hard labels (there are none in data-free distillation, and `kd_real_data` uses only
the teacher's outputs too, so the baselines differ only in their inputs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def teacher_logits(teacher, enc: dict, batch: int = 256) -> torch.Tensor:
    teacher.eval()
    out = []
    for i in range(0, len(enc["input_ids"]), batch):
        out.append(teacher(input_ids=enc["input_ids"][i:i + batch],
                           attention_mask=enc["attention_mask"][i:i + batch]).logits.float())
    return torch.cat(out)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean", log_target=True) * t * t


def distill_on_texts(student, teacher, tok, texts: list[str], epochs: int, batch: int, lr: float,
                     temperature: float, max_len: int, seed: int) -> dict:
    """Train `student` in place on `texts` to match `teacher`. Returns a short history."""
    if not texts:
        return {"steps": 0}
    enc = tok.classifier_batch(texts, max_len)
    t_logits = teacher_logits(teacher, enc)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    n = len(texts)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    student.train()
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            s = student(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]).logits
            loss = kd_loss(s, t_logits[idx], temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    student.eval()
    k = max(1, len(losses) // 10)
    return {"steps": len(losses), "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
            "samples": n}
