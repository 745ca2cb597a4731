"""Token perplexity following LLM-Pruner's protocol (LLMPruner/evaluator/ppl.py, paper Table 1).

The split's texts are joined with "\\n\\n" and tokenized once; the ids are cut into non-overlapping
chunks of `seq_len` tokens (the tail shorter than a chunk is dropped); each chunk is scored on its own
(no context carried over); PPL = exp(mean token NLL over all predicted positions, seq_len-1 per chunk).
This is token-level perplexity: it is NOT lm-eval's `word_perplexity` (which normalises by words and
uses rolling windows) and the two must never share a column.
"""
from __future__ import annotations

import math

PROTOCOL_VERSION = 1


def protocol(dataset: str, seq_len: int) -> str:
    return f"token-ppl/llm-pruner/{dataset}/concat-nonoverlap/seq_len={seq_len}"


def chunk_ids(tokenizer, text: str, seq_len: int):
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    n = ids.numel() // seq_len
    if n == 0:
        raise ValueError(f"text has {ids.numel()} tokens, fewer than one chunk of {seq_len}")
    return ids[: n * seq_len].view(n, seq_len).to(torch.long)


def token_perplexity(model, tokenizer, text: str, seq_len: int = 128, batch_size: int = 8,
                     max_chunks: int | None = None, device=None) -> float:
    import torch

    chunks = chunk_ids(tokenizer, text, seq_len)
    if max_chunks is not None:
        chunks = chunks[:max_chunks]
    device = device or next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(chunks), batch_size):
            x = chunks[i:i + batch_size].to(device)
            logits = model(input_ids=x, use_cache=False).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                    x[:, 1:].reshape(-1), reduction="sum")
            total += nll.item()
            count += x[:, 1:].numel()
    model.train(was_training)
    return math.exp(total / count)
