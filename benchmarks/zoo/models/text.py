"""The mini-world of text: four news topics (AG-News-like), a teacher classifier and a generative LM.

The world is generated in code from a seed (no download): sentences from templates whose content
words come from a topic's vocabulary (world, sports, business, sci/tech), with cross-topic noise
(some content words from another topic or from everyday life), 1-2 sentences per document.

- `topics(split)`: the labelled corpus (train 3000 / test 600 documents, balanced).
- `lm_corpus()`: unlabeled text of the same world for the generative LM, like web text: 40 % everyday
  life (no topic), and the four topics in unequal shares (25/20/10/5 %).
- `WordTokenizer`: a word-level tokenizer built from the world's vocabulary (in code; saved as JSON).
- zoo `text_topics_teacher`: a small BERT classifier (4 layers, width 128) trained on `topics('train')`.
- zoo `text_topics_lm`: a small GPT-2 (2 layers, width 96) trained on `lm_corpus()` (no labels).
- `student_config()`: the smaller student architecture (1 layer, width 48), never trained here.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ZooContext, register_zoo

TOPICS = ("world", "sports", "business", "scitech")

_WORDS = {
    "world": {
        "N": "government minister president election parliament treaty embassy army rebels capital border "
             "refugees protest diplomat sanctions summit ceasefire province coalition militants".split(),
        "V": "signed condemned elected negotiated invaded protested vetoed deployed".split(),
        "A": "foreign military diplomatic national political regional".split()},
    "sports": {
        "N": "team coach match season goal striker championship league tournament player victory stadium "
             "fans final medal race pitcher quarterback title referee".split(),
        "V": "won defeated scored beat clinched tied trained drafted".split(),
        "A": "unbeaten olympic defending veteran star injured".split()},
    "business": {
        "N": "company shares profit market investors bank earnings merger stocks prices quarter revenue oil "
             "economy deal firm dollar sales retailer inflation".split(),
        "V": "rose fell acquired reported cut raised posted invested".split(),
        "A": "quarterly financial annual corporate fiscal wholesale".split()},
    "scitech": {
        "N": "software internet researchers computer space scientists chip network users device study planet "
             "virus data satellite robot browser genome telescope laptop".split(),
        "V": "launched discovered released developed tested unveiled hacked upgraded".split(),
        "A": "digital wireless mobile scientific online quantum".split()},
    "life": {   # everyday text: in the LM's corpus only, never a label
        "N": "weather garden kitchen dinner weekend family dog morning coffee neighbor holiday recipe children "
             "park bread rain friends music book street".split(),
        "V": "cooked walked enjoyed visited cleaned painted baked read".split(),
        "A": "sunny quiet warm cozy small happy".split()},
}
_FUNC = "the a in with for after before and of to said today this week on monday".split() + ["."]
_TEMPLATES = [
    "D A N V D N P D N .",
    "D N V D A N T .",
    "D N P D N V D N .",
    "N V D N and D N said T .",
    "D A N and D N V D N P D N .",
    "D N said D A N V T .",
]
_TIMES = ["today", "this week", "on monday", "after the week"]

SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]"]
PAD, UNK, BOS, EOS, CLS = range(5)
MAX_LEN = 40            # tokens per document, specials included

SPLITS = {"train": (0, 3000), "test": (1, 600)}
LM_DOCS = 8000
LM_MIX = {"life": 0.40, "world": 0.25, "sports": 0.20, "business": 0.10, "scitech": 0.05}
NOISE = {"own": 0.70, "life": 0.15, "other": 0.15}   # where a labelled document's content words come from


def vocabulary() -> list[str]:
    words = set(_FUNC)
    for t in _WORDS.values():
        for ws in t.values():
            words.update(ws)
    return SPECIALS + sorted(words)


class WordTokenizer:
    """Whitespace word tokenizer over a fixed vocabulary. `encode` gives ids without specials."""

    def __init__(self, vocab: list[str] | None = None):
        self.vocab = list(vocab or vocabulary())
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id, self.cls_id = PAD, UNK, BOS, EOS, CLS

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, UNK) for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(self.vocab[int(i)] for i in ids if int(i) >= len(SPECIALS))

    def content_ids(self) -> list[int]:
        return list(range(len(SPECIALS), len(self.vocab)))

    def classifier_batch(self, texts: list[str], max_len: int = MAX_LEN) -> dict:
        """[CLS] + words, padded: {'input_ids', 'attention_mask'} for the BERT classifiers."""
        rows = [[CLS] + self.encode(t)[: max_len - 1] for t in texts]
        return self.pad(rows, max_len)

    @staticmethod
    def pad(rows: list[list[int]], max_len: int = MAX_LEN) -> dict:
        ids = torch.full((len(rows), max_len), PAD, dtype=torch.long)
        mask = torch.zeros((len(rows), max_len), dtype=torch.long)
        for i, r in enumerate(rows):
            r = r[:max_len]
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"vocab": self.vocab}))

    @classmethod
    def load(cls, path: Path) -> "WordTokenizer":
        return cls(json.loads(Path(path).read_text())["vocab"])


# ---------------------------------------------------------------------------------------------
# the generated world

def _sentence(rng: np.random.Generator, topic: str, labelled: bool) -> str:
    others = [t for t in TOPICS if t != topic]
    out = []
    for sym in rng.choice(_TEMPLATES).split():
        if sym in ("N", "V", "A"):
            src = topic
            if labelled or topic != "life":
                u = rng.random()
                if u > NOISE["own"] + NOISE["life"]:
                    src = others[int(rng.integers(len(others)))] if topic != "life" else TOPICS[int(rng.integers(4))]
                elif u > NOISE["own"]:
                    src = "life"
            ws = _WORDS[src][sym]
            out.append(ws[int(rng.integers(len(ws)))])
        elif sym == "D":
            out.append("the" if rng.random() < 0.7 else "a")
        elif sym == "P":
            out.append(["in", "with", "for", "after", "before", "of", "to"][int(rng.integers(7))])
        elif sym == "T":
            out.append(_TIMES[int(rng.integers(len(_TIMES)))])
        else:
            out.append(sym)
    return " ".join(out)


def _document(rng: np.random.Generator, topic: str, labelled: bool) -> str:
    return " ".join(_sentence(rng, topic, labelled) for _ in range(int(rng.integers(1, 3))))


@lru_cache(maxsize=None)
def _topics(split: str, seed: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    off, n = SPLITS[split]
    rng = np.random.default_rng([seed, off])
    labels = [i % len(TOPICS) for i in range(n)]
    rng.shuffle(labels)
    return tuple(_document(rng, TOPICS[y], True) for y in labels), tuple(int(y) for y in labels)


def topics(split: str = "train", seed: int = 7) -> tuple[list[str], torch.Tensor]:
    """(documents, labels) of the labelled topic corpus (labels index TOPICS)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    texts, labels = _topics(split, seed)
    return list(texts), torch.tensor(labels, dtype=torch.long)


@lru_cache(maxsize=None)
def _lm_corpus(seed: int, n: int) -> tuple[str, ...]:
    rng = np.random.default_rng([seed, 99])
    names, probs = list(LM_MIX), np.array(list(LM_MIX.values()))
    return tuple(_document(rng, names[int(rng.choice(len(names), p=probs))], False) for _ in range(n))


def lm_corpus(seed: int = 7, n: int = LM_DOCS) -> list[str]:
    """Unlabeled documents of the same world (for the generative LM)."""
    return list(_lm_corpus(seed, n))


# ---------------------------------------------------------------------------------------------
# models

def classifier_config(hidden: int, layers: int, heads: int, intermediate: int, vocab_size: int | None = None):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size or len(vocabulary()), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=MAX_LEN,
                      type_vocab_size=1, num_labels=len(TOPICS), pad_token_id=PAD,
                      hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


TEACHER = {"hidden": 128, "layers": 4, "heads": 4, "intermediate": 256}
STUDENT = {"hidden": 48, "layers": 1, "heads": 2, "intermediate": 96}
LM = {"n_embd": 96, "n_layer": 2, "n_head": 4}


def student_config():
    return classifier_config(**STUDENT)


def lm_config(arch: dict = LM):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(vocabulary()), n_positions=MAX_LEN, bos_token_id=BOS, eos_token_id=EOS,
                      pad_token_id=PAD, **arch)


TEACHER_RECIPE = {"arch": TEACHER, "seed": 0, "data_seed": 7, "epochs": 6, "batch_size": 32, "lr": 1e-3}
LM_RECIPE = {"arch": LM, "seed": 0, "data_seed": 7, "docs": LM_DOCS, "epochs": 4, "batch_size": 32, "lr": 2e-3}


@torch.no_grad()
def accuracy(model, texts: list[str], labels: torch.Tensor, tok: WordTokenizer | None = None, batch: int = 200) -> float:
    tok = tok or WordTokenizer()
    model.eval()
    hits = 0
    for i in range(0, len(texts), batch):
        b = tok.classifier_batch(texts[i:i + batch])
        hits += int((model(**b).logits.argmax(-1) == labels[i:i + batch]).sum())
    return hits / len(texts)


def load_classifier(path: Path):
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(str(path)).eval()


def load_lm(path: Path):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(str(path)).eval()


@register_zoo("text_topics_teacher", TEACHER_RECIPE, load=load_classifier, cost=75,
              describe="BERT classifier (4x128) on the 4-topic mini-world corpus")
def train_teacher(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from transformers import BertForSequenceClassification

    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    tok = WordTokenizer()
    texts, labels = topics("train", recipe["data_seed"])
    model = BertForSequenceClassification(classifier_config(**recipe["arch"])).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.01)
    bs, n = recipe["batch_size"], len(texts)
    steps = recipe["epochs"] * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(recipe["seed"])
    enc = tok.classifier_batch(texts)
    for _ in ctx.bar(range(recipe["epochs"]), desc="teacher"):
        perm = torch.randperm(n, generator=g)
        model.train()
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]).logits,
                                   labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    te, tl = topics("test", recipe["data_seed"])
    q = {"test_acc": accuracy(model, te, tl, tok), "train_acc": accuracy(model, texts, labels, tok)}
    model.save_pretrained(str(out))
    tok.save(out / "vocab.json")
    return {"quality": q}


@register_zoo("text_topics_lm", LM_RECIPE, load=load_lm, cost=70,
              describe="GPT-2 (2x96) trained on unlabeled text of the 4-topic mini-world")
def train_lm(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    tok = WordTokenizer()
    docs = lm_corpus(recipe["data_seed"], recipe["docs"])
    rows = [[BOS] + tok.encode(d)[: MAX_LEN - 2] + [EOS] for d in docs]
    enc = tok.pad(rows)
    model = GPT2LMHeadModel(lm_config(recipe["arch"])).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.01)
    bs, n = recipe["batch_size"], len(rows)
    steps = recipe["epochs"] * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(recipe["seed"])
    for _ in ctx.bar(range(recipe["epochs"]), desc="lm"):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            ids, mask = enc["input_ids"][idx], enc["attention_mask"][idx]
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    held = [[BOS] + tok.encode(d)[: MAX_LEN - 2] + [EOS] for d in lm_corpus(recipe["data_seed"] + 1, 400)]
    h = tok.pad(held)
    with torch.no_grad():
        nll = model(input_ids=h["input_ids"], attention_mask=h["attention_mask"],
                    labels=h["input_ids"].masked_fill(h["attention_mask"] == 0, -100)).loss
    model.save_pretrained(str(out))
    tok.save(out / "vocab.json")
    return {"quality": {"heldout_ppl": float(torch.exp(nll)), "final_loss": float(loss)}}
