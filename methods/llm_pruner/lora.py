"""LLM-Pruner's recovery stage (paper Sec. 3.3): LoRA on the pruned model through peft, then merged.

Official post_training.py: LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target q/k/v/o/gate/down/up,
bias="none"), causal-LM loss on every token of each (alpaca-format) prompt cut at 256 tokens, batch 64
(micro-batch 4 with gradient accumulation), lr 1e-4, 100 warm-up steps then linear decay (HF Trainer
default), 2 epochs. The adapters are merged into the weights at the end (`merge_and_unload`), so the
evaluated model has exactly the pruned model's parameter count (official: evaluated with the adapter
attached, which computes the same function).
"""
from __future__ import annotations

import math

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj"]


def lora_recover(model, tokenizer, texts: list[str], *, r: int = 8, alpha: int = 16, dropout: float = 0.05,
                 lr: float = 1e-4, epochs: float = 2.0, batch_size: int = 64, micro_batch: int = 4,
                 cutoff: int = 256, warmup_steps: int = 100, max_steps: int = 0, seed: int = 0,
                 bar=None) -> tuple[torch.nn.Module, dict]:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    pcfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=TARGETS, bias="none",
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, pcfg)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    steps_per_epoch = max(1, math.ceil(len(texts) / batch_size))
    total = max(1, int(round(steps_per_epoch * epochs)))
    if max_steps > 0:
        total = min(total, max_steps)
    warm = min(warmup_steps, max(1, total // 10))   # reconstruction: warm-up capped at 10% of short schedules
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    g = torch.Generator().manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    accum = max(1, batch_size // micro_batch)
    peft_model.train()
    losses = []
    order = torch.randperm(len(texts), generator=g).tolist()
    pos = 0
    it = range(total) if bar is None else bar(range(total), desc="lora")
    for _ in it:
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(accum):
            if pos + micro_batch > len(order):
                order, pos = torch.randperm(len(texts), generator=g).tolist(), 0
            batch = [texts[i] for i in order[pos:pos + micro_batch]]
            pos += micro_batch
            enc = [tokenizer(t, truncation=True, max_length=cutoff)["input_ids"] for t in batch]
            L = max(len(e) for e in enc)
            ids = torch.full((len(enc), L), pad, dtype=torch.long)
            labels = torch.full((len(enc), L), -100, dtype=torch.long)
            att = torch.zeros((len(enc), L), dtype=torch.long)
            for i, e in enumerate(enc):
                ids[i, :len(e)] = torch.tensor(e)
                labels[i, :len(e)] = torch.tensor(e)
                att[i, :len(e)] = 1
            out = peft_model(input_ids=ids.to(dev), attention_mask=att.to(dev), labels=labels.to(dev), use_cache=False)
            (out.loss / accum).backward()
            step_loss += out.loss.item() / accum
        opt.step()
        sched.step()
        losses.append(step_loss)
    peft_model.eval()
    merged = peft_model.merge_and_unload()
    merged.eval()
    info = {"lora_steps": total, "lora_trainable_params": trainable, "lora_r": r, "lora_alpha": alpha,
            "lora_lr": lr, "lora_batch_size": batch_size, "lora_micro_batch": micro_batch,
            "lora_first_loss": losses[0] if losses else None,
            "lora_last_loss": sum(losses[-5:]) / len(losses[-5:]) if losses else None}
    return merged, info
