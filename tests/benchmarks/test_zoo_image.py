"""Image zoo entries (issue 4): fast checks of the code paths; the trained models are in
test_zoo_image_slow.py."""
from __future__ import annotations

import pytest
import torch

from benchmarks.zoo import ZOO
from benchmarks.zoo.models.clip import build_tokenizer, caption, prompt, thickness_labels
from benchmarks.zoo.models.digits_cnn import DigitsCNN

IMAGE_MODELS = ("digits_cnn", "ddpm_digits", "clip_digits", "vae_digits", "t2i_digits", "dit_digits")


def test_image_entries_registered_with_dependencies():
    for n in IMAGE_MODELS:
        e = ZOO.get(n)
        assert e.describe and callable(e.train) and callable(e.load)
    assert "digits_cnn" in ZOO.get("ddpm_digits").depends
    assert set(ZOO.get("t2i_digits").depends) >= {"clip_digits", "vae_digits"}
    assert "vae_digits" in ZOO.get("dit_digits").depends
    assert ZOO.get("dit_digits").recipe["num_embeds_ada_norm"] == 1000   # DiTPipeline's null class id


def test_captions_and_in_code_tokenizer(tmp_path):
    assert caption(7, "thick") == "a handwritten seven, thick stroke"
    assert prompt(0) == "a handwritten zero"
    tok = build_tokenizer(tmp_path)
    toks = tok.convert_ids_to_tokens(tok("a handwritten seven, thick stroke")["input_ids"])
    assert toks == ["<|startoftext|>", "a</w>", "handwritten</w>", "seven</w>", ",</w>", "thick</w>", "stroke</w>",
                    "<|endoftext|>"]
    # unknown words still tokenise (byte-level characters)
    assert len(tok("zebra 42")["input_ids"]) > 3


def test_thickness_tertiles_per_class():
    x = torch.linspace(0, 1, 30).view(30, 1, 1, 1).expand(30, 1, 4, 4)
    y = torch.tensor([0, 1] * 15)
    th = thickness_labels(x, y)
    for c in (0, 1):
        got = [th[i] for i in range(30) if y[i] == c]
        assert got[:5] == ["thin"] * 5 and got[-5:] == ["thick"] * 5 and got[7] is None


def test_digits_cnn_accepts_any_size_and_channels():
    torch.manual_seed(0)
    m = DigitsCNN().eval()
    x = torch.rand(2, 1, 16, 16)
    big = torch.nn.functional.interpolate(x, size=(32, 32), mode="nearest")   # exact 2x upsampling
    with torch.no_grad():
        f16, f32 = m.features(x), m.features(big)
        frgb = m.features(x.expand(-1, 3, -1, -1))
    assert f16.shape == (2, 64) and m(x).shape == (2, 10)
    assert torch.allclose(frgb, f16, atol=1e-6)
    assert torch.allclose(f32, f16, atol=0.2 * f16.abs().max().item() + 1e-6)
