"""`clip_digits`: a tiny image-text CLIP (transformers `CLIPModel`) trained contrastively on 16x16
digits and synthetic captions, for CLIP Score in the mini-world. Also home of the mini-world's
captions and of the in-code `CLIPTokenizer` (byte-level vocabulary plus whole-word merges for the
caption words; no download) that the text-to-image model shares.

Captions: "a handwritten seven", "a handwritten seven, thick stroke", "the digit seven, thin stroke",
... Stroke thickness comes from the image's ink (mean intensity) relative to its class: lowest third
"thin", highest third "thick", middle unspecified.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ZooContext, register_zoo
from ..data import DIGIT_NAMES

TEMPLATES = ("a handwritten {d}", "the digit {d}", "a drawing of a {d}", "a {d}")
EXTRA_WORDS = ("a", "handwritten", "the", "digit", "drawing", "of", "thick", "thin", "stroke", "number")

RECIPE = {
    "size": 16,
    "hidden": 64,
    "layers": 2,
    "heads": 2,
    "patch": 4,
    "projection_dim": 64,
    "steps": 400,
    "batch_size": 128,
    "lr": 1e-3,
    "seed": 0,
}


# ---------------------------------------------------------------------------------------------
# captions

def caption(label: int, thickness: str | None = None, template: int = 0) -> str:
    """The mini-world caption of a digit: `caption(7, "thick")` -> "a handwritten seven, thick stroke"."""
    text = TEMPLATES[template % len(TEMPLATES)].format(d=DIGIT_NAMES[int(label)])
    return f"{text}, {thickness} stroke" if thickness else text


def prompt(label: int) -> str:
    """The evaluation prompt for a requested digit (template 0, no thickness)."""
    return caption(label)


def thickness_labels(images: torch.Tensor, labels: torch.Tensor) -> list[str | None]:
    """'thin' / None / 'thick' by per-class tertiles of ink (mean intensity)."""
    ink = images.flatten(1).mean(1).numpy()
    y = labels.numpy()
    out: list[str | None] = [None] * len(y)
    for c in range(10):
        idx = np.where(y == c)[0]
        if len(idx) == 0:
            continue
        lo, hi = np.quantile(ink[idx], [1 / 3, 2 / 3])
        for i in idx:
            out[i] = "thin" if ink[i] < lo else "thick" if ink[i] > hi else None
    return out


def random_captions(labels: torch.Tensor, thick: list[str | None], g: torch.Generator) -> list[str]:
    """Training captions: random template, thickness mentioned with probability 1/2."""
    t = torch.randint(0, len(TEMPLATES), (len(labels),), generator=g).tolist()
    use = (torch.rand(len(labels), generator=g) < 0.5).tolist()
    return [caption(int(y), th if u else None, k) for y, th, u, k in zip(labels.tolist(), thick, use, t)]


# ---------------------------------------------------------------------------------------------
# tokenizer built in code

def _byte_chars() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 bytes (GPT-2/CLIP convention)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_tokenizer_files(folder: Path, words=tuple(DIGIT_NAMES) + EXTRA_WORDS) -> tuple[Path, Path]:
    """vocab.json + merges.txt: specials, 256 byte characters (with and without </w>) and left-to-right
    merges that make each caption word a single token."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in _byte_chars():
            vocab[c + suffix] = len(vocab)
    merges: list[tuple[str, str]] = []
    for w in sorted(set(words)):
        sym = list(w[:-1]) + [w[-1] + "</w>"]
        while len(sym) > 1:
            pair = (sym[0], sym[1])
            if pair not in merges:
                merges.append(pair)
            sym = [sym[0] + sym[1]] + sym[2:]
            vocab.setdefault(sym[0], len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder / "vocab.json", folder / "merges.txt"


def build_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    v, m = write_tokenizer_files(folder)
    return CLIPTokenizer(str(v), str(m))


def text_config(vocab_size: int, recipe: dict):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=recipe["hidden"], intermediate_size=2 * recipe["hidden"],
                          num_hidden_layers=recipe["layers"], num_attention_heads=recipe["heads"],
                          max_position_embeddings=77, projection_dim=recipe["projection_dim"],
                          bos_token_id=0, eos_token_id=1, pad_token_id=1)


def build_clip(vocab_size: int, recipe: dict):
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    vc = CLIPVisionConfig(hidden_size=recipe["hidden"], intermediate_size=2 * recipe["hidden"],
                          num_hidden_layers=recipe["layers"], num_attention_heads=recipe["heads"],
                          image_size=recipe["size"], patch_size=recipe["patch"], num_channels=1,
                          projection_dim=recipe["projection_dim"])
    cfg = CLIPConfig(text_config=text_config(vocab_size, recipe).to_dict(), vision_config=vc.to_dict(),
                     projection_dim=recipe["projection_dim"])
    return CLIPModel(cfg)


def build_processor(tokenizer, size: int = 16):
    from transformers import CLIPImageProcessor, CLIPProcessor

    ip = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                            image_mean=[0.5], image_std=[0.5], do_convert_rgb=False)
    return CLIPProcessor(image_processor=ip, tokenizer=tokenizer)


def _emb(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, x: torch.Tensor, y: torch.Tensor) -> float:
    t = tokenizer([prompt(c) for c in range(10)], return_tensors="pt", padding=True)
    te = F.normalize(_emb(model.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])), dim=-1)
    ie = F.normalize(_emb(model.get_image_features(pixel_values=x * 2 - 1)), dim=-1)
    return float(((ie @ te.T).argmax(-1) == y).float().mean())


def load_clip(path: Path):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(path)).eval().requires_grad_(False)
    return model, CLIPProcessor.from_pretrained(str(path))


@register_zoo("clip_digits", RECIPE, load=load_clip, cost=30,
              describe="tiny image-text CLIP (CLIPModel) on 16x16 digits + captions, for CLIP Score")
def train(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from ..data import digits

    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    g = torch.Generator().manual_seed(recipe["seed"])
    tok = build_tokenizer(out / "_tok")
    model = build_clip(len(tok), recipe)
    xtr, ytr = digits("train", recipe["size"])
    xte, yte = digits("test", recipe["size"])
    thick = thickness_labels(xtr, ytr)
    # every caption the recipe can produce, tokenised once: (template, thickness) per digit
    bank = [caption(c, th, k) for c in range(10) for k in range(len(TEMPLATES)) for th in (None, "thin", "thick")]
    bank_tok = tok(bank, return_tensors="pt", padding=True)
    bank_idx = {c: i for i, c in enumerate(bank)}
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=recipe["steps"], pct_start=0.1)
    bs = recipe["batch_size"]
    model.train()
    for step in ctx.bar(range(recipe["steps"]), desc="clip_digits"):
        idx = torch.randperm(len(xtr), generator=g)[:bs]
        caps = random_captions(ytr[idx], [thick[i] for i in idx.tolist()], g)
        ci = torch.tensor([bank_idx[c] for c in caps])
        t = {"input_ids": bank_tok["input_ids"][ci], "attention_mask": bank_tok["attention_mask"][ci]}
        img = xtr[idx]
        shift = torch.randint(-1, 2, (2,), generator=g).tolist()   # small translation augmentation
        img = torch.roll(img, shifts=shift, dims=(2, 3))
        out_ = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], pixel_values=img * 2 - 1)
        # same-caption pairs are positives too (many duplicates in a batch): soft targets
        same = (ci[:, None] == ci[None, :]).float()
        tgt = same / same.sum(1, keepdim=True)
        li = out_.logits_per_image
        loss = (torch.sum(-tgt * F.log_softmax(li, -1), -1).mean() + torch.sum(-tgt * F.log_softmax(li.T, -1), -1).mean()) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    proc = build_processor(tok, recipe["size"])
    model.save_pretrained(str(out), safe_serialization=True)
    proc.save_pretrained(str(out))
    import shutil

    shutil.rmtree(out / "_tok", ignore_errors=True)
    acc = zero_shot_accuracy(model, tok, xte, yte)
    with torch.no_grad():
        from benchmarks.metrics.clip_score import CLIPScorer

        scorer = CLIPScorer(model, proc, "clip_digits")
        right = scorer.score(xte, [prompt(int(c)) for c in yte])
        wrong = scorer.score(xte, [prompt(int((c + 1) % 10)) for c in yte])
    return {"quality": {"zero_shot_acc": acc, "clip_score_matched": right, "clip_score_mismatched": wrong}}
