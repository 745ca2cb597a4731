"""Synthetic text for data-free distillation: a generative LM, a reinforced topic prompter, the reward.

PromptDFD (arXiv 2205.07523) publishes only its outline (papers.md section 11): a pre-trained
generative LM gives the language prior, a *reinforced topic prompter* chooses topic prompts, a sample
is prompt + generated continuation, and the student is distilled on these samples. Everything below
that the paper leaves open is our **reconstruction** (labelled so):

- reconstruction: the prompter is a per-class categorical policy pi(p | c) over a pool of single-word
  prompts (the generator's content vocabulary), logits initialised to zero (uniform).
- reconstruction: reward of a sample x drawn for class c = teacher confidence p_T(c | x) +
  lambda * diversity(x), diversity(x) = 1 - mean cosine similarity of the teacher's [CLS] feature of x
  to those of the other samples of the same batch ("teacher confidence and diversity").
- reconstruction: REINFORCE with a per-class mean-reward baseline, Adam on the logits, a small
  entropy bonus against early collapse.
- reconstruction: generation = ancestral sampling (temperature `gen_temperature`) from [BOS] + prompt
  until [EOS] or `max_len` tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@torch.no_grad()
def generate(lm, prefixes: torch.Tensor, max_len: int, temperature: float, g: torch.Generator,
             bos: int, eos: int, pad: int) -> list[list[int]]:
    """Sample continuations of equal-length `prefixes` [B, L0] (starting with BOS); returns the token ids
    of every sample without specials (prompt included)."""
    lm.eval()
    ids = prefixes.clone()
    done = torch.zeros(len(ids), dtype=torch.bool)
    while ids.shape[1] < max_len and not bool(done.all()):
        logits = lm(input_ids=ids).logits[:, -1].float()
        logits[:, pad] = -float("inf")
        logits[:, bos] = -float("inf")
        probs = torch.softmax(logits / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=g)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        done |= nxt == eos
        ids = torch.cat([ids, nxt[:, None]], dim=1)
    out = []
    for row in ids.tolist():
        seq = []
        for t in row[1:]:
            if t in (eos, pad):
                break
            seq.append(t)
        out.append(seq)
    return out


class TopicPrompter(nn.Module):
    """pi(prompt | class): one categorical distribution over the prompt pool per target class."""

    def __init__(self, num_classes: int, pool: list[int]):
        super().__init__()
        self.pool = torch.tensor(pool, dtype=torch.long)
        self.logits = nn.Parameter(torch.zeros(num_classes, len(pool)))

    def sample(self, classes: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(pool indices, log-probabilities) of one prompt per entry of `classes`."""
        logp = torch.log_softmax(self.logits[classes], dim=-1)
        idx = torch.multinomial(logp.detach().exp(), 1, generator=g)[:, 0]
        return idx, logp.gather(1, idx[:, None])[:, 0]

    def entropy(self) -> torch.Tensor:
        logp = torch.log_softmax(self.logits, dim=-1)
        return -(logp.exp() * logp).sum(-1).mean()

    def top(self, k: int = 5) -> list[list[int]]:
        return [self.pool[self.logits[c].topk(k).indices].tolist() for c in range(len(self.logits))]


@dataclass
class Rewards:
    total: torch.Tensor        # [B]
    confidence: torch.Tensor   # [B] p_T(c | x)
    diversity: torch.Tensor    # [B]


@torch.no_grad()
def teacher_reward(teacher, batch: dict, classes: torch.Tensor, diversity_weight: float) -> Rewards:
    """The prompter's reward, computed from the teacher only (reconstruction, see module docstring):
    r = p_T(c | x) + lambda * (1 - mean_{j != i} cos(h_i, h_j)), h = teacher's last-layer [CLS] state."""
    teacher.eval()
    out = teacher(**batch, output_hidden_states=True)
    conf = torch.softmax(out.logits.float(), dim=-1).gather(1, classes[:, None])[:, 0]
    h = F.normalize(out.hidden_states[-1][:, 0].float(), dim=-1)
    n = len(h)
    if n > 1:
        sim = h @ h.T
        div = 1 - (sim.sum(1) - sim.diagonal()) / (n - 1)
    else:
        div = torch.zeros(n)
    return Rewards(conf + diversity_weight * div, conf, div)


def _prefixes(prompts: torch.Tensor | None, n: int, bos: int) -> torch.Tensor:
    col = torch.full((n, 1), bos, dtype=torch.long)
    return col if prompts is None else torch.cat([col, prompts[:, None]], dim=1)


def train_prompter(teacher, lm, tok, num_classes: int, iters: int, per_class: int, lr: float,
                   diversity_weight: float, entropy_weight: float, max_len: int, temperature: float,
                   seed: int) -> tuple[TopicPrompter, list[dict]]:
    """REINFORCE on the per-class prompt policy (reconstruction). Returns the prompter and a history."""
    g = torch.Generator().manual_seed(seed)
    prompter = TopicPrompter(num_classes, tok.content_ids())
    opt = torch.optim.Adam(prompter.parameters(), lr=lr)
    history = []
    classes = torch.arange(num_classes).repeat_interleave(per_class)
    for it in range(iters):
        idx, logp = prompter.sample(classes, g)
        seqs = generate(lm, _prefixes(prompter.pool[idx], len(idx), tok.bos_id), max_len, temperature, g,
                        tok.bos_id, tok.eos_id, tok.pad_id)
        batch = tok.pad([[tok.cls_id] + s[: max_len - 1] for s in seqs], max_len)
        r = teacher_reward(teacher, batch, classes, diversity_weight)
        base = torch.zeros(num_classes).index_add_(0, classes, r.total) / torch.bincount(classes, minlength=num_classes)
        adv = r.total - base[classes]
        loss = -(adv * logp).mean() - entropy_weight * prompter.entropy()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"iter": it, "reward": float(r.total.mean()), "confidence": float(r.confidence.mean()),
                        "diversity": float(r.diversity.mean())})
    return prompter, history


def synthesize(lm, tok, n: int, max_len: int, temperature: float, seed: int, prompter: TopicPrompter | None = None,
               num_classes: int = 1, batch: int = 64) -> list[str]:
    """n synthetic texts: prompted by `prompter` (classes balanced) or unconditioned ([BOS] only)."""
    g = torch.Generator().manual_seed(seed)
    texts: list[str] = []
    classes = torch.arange(n) % num_classes
    for s in range(0, n, batch):
        c = classes[s:s + batch]
        if prompter is not None:
            with torch.no_grad():
                idx, _ = prompter.sample(c, g)
            pre = _prefixes(prompter.pool[idx], len(c), tok.bos_id)
        else:
            pre = _prefixes(None, len(c), tok.bos_id)
        texts += [tok.decode(q) for q in generate(lm, pre, max_len, temperature, g, tok.bos_id, tok.eos_id, tok.pad_id)]
    return texts


def random_token_texts(tok, n: int, max_len: int, seed: int) -> list[str]:
    """n texts of uniformly random content tokens, lengths uniform in [4, max_len - 1]."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(tok.content_ids())
    lens = torch.randint(4, max_len, (n,), generator=g)
    return [tok.decode(pool[torch.randint(0, len(pool), (int(k),), generator=g)].tolist()) for k in lens]
