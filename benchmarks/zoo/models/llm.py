"""Mini-world language models: small LlamaForCausalLM trained on the synthetic world of benchmarks/lm/world.py.

Two entries share one recipe shape: `llama_world_mha` (8 query heads, 8 KV heads) and `llama_world_gqa`
(8 query heads, 4 KV heads, grouped-query attention). The tokenizer is built in code (word-level
`tokenizers` model wrapped in `PreTrainedTokenizerFast`, BOS added by a template post-processor) and saved
next to the weights, so `AutoTokenizer.from_pretrained(folder)` and `LlamaForCausalLM.from_pretrained(folder)`
reload both offline. Quality recorded in the manifest: held-out token perplexity (LLM-Pruner protocol, see
benchmarks/lm/ppl.py) and the final training loss.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..core import ZooContext, register_zoo

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def build_tokenizer():
    """Word-level tokenizer over the mini-world vocabulary (lower-cased, split on whitespace/punctuation)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from benchmarks.lm import world

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for w in world.vocabulary():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)   # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=256, padding_side="right")


def _config(recipe: dict, vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=recipe["hidden"], intermediate_size=recipe["intermediate"],
                       num_hidden_layers=recipe["layers"], num_attention_heads=recipe["heads"],
                       num_key_value_heads=recipe["kv_heads"], head_dim=recipe["hidden"] // recipe["heads"],
                       max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
                       bos_token_id=1, eos_token_id=2, pad_token_id=3, use_cache=True)


def pack(tok, docs: list[str]):
    """<s> doc </s> <s> doc </s> ... as one token stream (the pre-training layout)."""
    import torch

    ids: list[int] = []
    for d in docs:
        ids += tok(d)["input_ids"] + [tok.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


def train_lm(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from benchmarks.api import seed_everything
    from benchmarks.lm import world
    from benchmarks.lm.ppl import token_perplexity

    torch.set_num_threads(1)
    seed_everything(recipe["seed"])
    tok = build_tokenizer()
    model = LlamaForCausalLM(_config(recipe, len(tok)))
    stream = pack(tok, world.corpus(recipe["docs"], seed=0))
    L, B, steps = recipe["seq_len"], recipe["batch"], recipe["steps"]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.01, betas=(0.9, 0.95))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(recipe["seed"])
    model.train()
    losses = []
    for step in ctx.bar(range(steps), desc=f"train {recipe['name']}"):
        starts = torch.randint(0, len(stream) - L - 1, (B,), generator=g)
        x = torch.stack([stream[s:s + L] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ppl = token_perplexity(model, tok, world.heldout_text(), seq_len=128)
    return {"quality": {"heldout_ppl": ppl, "final_train_loss": sum(losses[-20:]) / len(losses[-20:])},
            "params": sum(p.numel() for p in model.parameters())}


def load_lm(folder: Path):
    """(model, tokenizer), eval mode, fp32, from the local folder only."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(folder, local_files_only=True)
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tok


BASE = {"hidden": 96, "intermediate": 256, "layers": 6, "heads": 8, "seq_len": 64, "batch": 32,
        "steps": 700, "lr": 3e-3, "docs": 8000, "seed": 0}
MHA = dict(BASE, name="llama_world_mha", kv_heads=8)
GQA = dict(BASE, name="llama_world_gqa", kv_heads=4)

register_zoo("llama_world_mha", MHA, load=load_lm, cost=150,
             describe="LlamaForCausalLM 6x96, 8 heads (MHA), word-level tokenizer, mini-world corpus")(train_lm)
register_zoo("llama_world_gqa", GQA, load=load_lm, cost=150,
             describe="LlamaForCausalLM 6x96, 8 query / 4 KV heads (GQA), word-level tokenizer, mini-world corpus")(train_lm)
