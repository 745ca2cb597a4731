"""CLIP Score (Hessel et al. 2021) as torchmetrics defines it: max(mean_i 100 * cos(E_img(x_i), E_txt(p_i)), 0).

Works with any transformers `CLIPModel` + `CLIPProcessor`: the zoo's `clip_digits` (mini-world, the
default) or a local Hugging Face CLIP folder on the paper track (e.g. a snapshot of
openai/clip-vit-large-patch14, torchmetrics' default). Images are passed to the processor as uint8
(as torchmetrics does); captions are truncated to the text model's max positions.
transformers 5 returns `BaseModelOutputWithPooling` from `get_image_features`/`get_text_features`
(torchmetrics' CLIPScore then fails with "no attribute 'norm'"): the projected embeddings are its
`pooler_output`; `CLIPScoreModel` is the drop-in wrapper that makes torchmetrics work again.
"""
from __future__ import annotations

from functools import lru_cache

import torch

VERSION = 1


def _emb(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def clip_model_wrapper(model):
    """Wrap a transformers-5 CLIPModel so that get_*_features return tensors (torchmetrics' contract)."""

    class CLIPScoreModel(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m
            self.config = m.config

        def get_image_features(self, *a, **k):
            return _emb(self.m.get_image_features(*a, **k))

        def get_text_features(self, *a, **k):
            return _emb(self.m.get_text_features(*a, **k))

    return CLIPScoreModel(model)


class CLIPScorer:
    def __init__(self, model, processor, name: str):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        chans = model.config.vision_config.num_channels
        self.channels = chans
        self.max_len = model.config.text_config.max_position_embeddings
        self.protocol = f"{name}/uint8/100*max(mean cos,0)"

    @torch.no_grad()
    def image_embeds(self, images, batch: int = 64) -> torch.Tensor:
        from .extractors import to_nchw

        x = to_nchw(images)
        if x.shape[1] != self.channels:
            x = x.mean(1, keepdim=True) if self.channels == 1 else x.expand(-1, self.channels, -1, -1)
        u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        out = []
        for i in range(0, len(u8), batch):
            pv = self.processor(images=list(u8[i:i + batch]), return_tensors="pt")["pixel_values"]
            out.append(_emb(self.model.get_image_features(pixel_values=pv)))
        return torch.cat(out).double()

    @torch.no_grad()
    def text_embeds(self, prompts: list[str], batch: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(prompts), batch):
            t = self.processor(text=prompts[i:i + batch], return_tensors="pt", padding=True)
            ids, mask = t["input_ids"][:, :self.max_len], t["attention_mask"][:, :self.max_len]
            out.append(_emb(self.model.get_text_features(input_ids=ids, attention_mask=mask)))
        return torch.cat(out).double()

    def cosines(self, images, prompts: list[str]) -> torch.Tensor:
        a, b = self.image_embeds(images), self.text_embeds(list(prompts))
        if len(a) != len(b):
            raise ValueError(f"{len(a)} images for {len(b)} prompts")
        return torch.nn.functional.cosine_similarity(a, b, dim=-1)

    def score(self, images, prompts: list[str]) -> float:
        return float(max(100 * self.cosines(images, prompts).mean().item(), 0.0))


@lru_cache(maxsize=None)
def get_clip(name: str = "clip_digits") -> CLIPScorer:
    """`clip_digits` (zoo) or a local Hugging Face CLIP folder / cached hub id (never downloads)."""
    if name == "clip_digits":
        from ..zoo import core

        model, processor = core.load("clip_digits")
        return CLIPScorer(model, processor, f"clip_digits@{core.key('clip_digits')}")
    from transformers import CLIPModel, CLIPProcessor

    from ..assets import hf_model

    path = hf_model(name, "a CLIP model for CLIP Score (e.g. openai/clip-vit-large-patch14)")
    return CLIPScorer(CLIPModel.from_pretrained(str(path)), CLIPProcessor.from_pretrained(str(path)), f"hf:{name}")
