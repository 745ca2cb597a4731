"""Audio quality metrics on a pluggable embedding: FAD, KL, Inception-style score, CLAP-style score.

- **FAD** (Kilgour et al. 2019): Fréchet distance between Gaussians fitted to embeddings of generated and
  reference audio; computed by `benchmarks.metrics.fid.frechet_from_features`, the same function as the
  image FID (one implementation).
- **KL** (AudioLDM protocol): mean over generated clips of KL(p_ref || p_gen) between the classifier's
  label distributions of the clip and of its paired reference clip (same caption / class).
- **IS**: exp(E_x KL(p(y|x) || p(y))) over generated clips.
- **CLAP-style score**: 100 * mean(max(cos(audio embedding, text embedding), 0)).

Embeddings: `ClassifierEmbedding` (default, mini-world) wraps the zoo `audio_classifier` (log-mel CNN,
64-d pooled features, 12-class softmax); its "text" embedding of a caption is the unit-norm mean feature
of reference clips of the caption's class (reconstruction: a class prototype stands in for CLAP's text
tower, which the mini-world does not have). Paper track: `TorchScriptEmbedding` loads the user's exported
VGGish / PANNs / CLAP model (`torch.jit.load` of a local file) through benchmarks.assets; nothing is
downloaded.
Protocol strings name the embedding, sample count and reference set so numbers are compared only like
with like.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch

from ..api import Metric
from .fid import frechet_from_features

VERSION = 1
AUDIO_METRICS = ("fad", "kl", "is", "clap_score", "accuracy", "mel_psnr")


class AudioEmbedding(Protocol):
    name: str

    def features(self, mels: torch.Tensor) -> torch.Tensor: ...          # [N, D]

    def probs(self, mels: torch.Tensor) -> torch.Tensor: ...             # [N, K]

    def text_features(self, prompts: Sequence[str]) -> torch.Tensor: ...  # [N, D]


class ClassifierEmbedding:
    """The mini-world audio classifier as embedding (inputs: normalised log-mels [N, 1, frames, mels])."""

    name = "audio-classifier"

    def __init__(self, model: torch.nn.Module | None = None, batch: int = 32):
        if model is None:
            from .. import zoo

            model = zoo.load("audio_classifier")
        self.model, self.batch = model.eval(), batch
        self._protos: dict[tuple[int, float], torch.Tensor] = {}

    @torch.no_grad()
    def features(self, mels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model.features(mels[i:i + self.batch].float()) for i in range(0, len(mels), self.batch)])

    @torch.no_grad()
    def probs(self, mels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(mels[i:i + self.batch].float()).softmax(-1) for i in range(0, len(mels), self.batch)])

    def text_features(self, prompts: Sequence[str], seconds: float = 0.64) -> torch.Tensor:
        from ..zoo.models.audio import label_of_caption

        out = []
        for p in prompts:
            lab = label_of_caption(p)
            if lab is None:
                raise ValueError(f"caption {p!r} names no mini-world sound class")
            out.append(self._prototype(lab, seconds))
        return torch.stack(out)

    def _prototype(self, label: int, seconds: float) -> torch.Tensor:
        key = (label, round(seconds, 3))
        if key not in self._protos:
            mels = reference_mels([label] * 16, seconds, seed=777)
            self._protos[key] = torch.nn.functional.normalize(self.features(mels).mean(0), dim=0)
        return self._protos[key]


class TorchScriptEmbedding:
    """A user-exported embedding model (VGGish / PANNs / CLAP audio tower) taking log-mels or waveforms,
    returning (features, logits) or features; loaded from a local file only."""

    def __init__(self, path: str, name: str = "user-embedding"):
        self.model, self.name = torch.jit.load(path, map_location="cpu").eval(), name

    @torch.no_grad()
    def _run(self, x: torch.Tensor):
        out = self.model(x)
        return out if isinstance(out, (tuple, list)) else (out, None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._run(x)[1]
        if logits is None:
            raise ValueError(f"{self.name} returns no label logits: KL / IS need a tagging model (PANNs)")
        return logits.softmax(-1)

    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        raise ValueError(f"{self.name} has no text tower: CLAP-style score needs a CLAP model")


# ---------------------------------------------------------------------------------------------

def fad(gen_features, ref_features) -> float:
    """Fréchet Audio Distance: the shared Fréchet implementation on audio embeddings."""
    return frechet_from_features(gen_features, ref_features)


def kl_divergence(p_ref: torch.Tensor, p_gen: torch.Tensor, eps: float = 1e-6) -> float:
    """Mean paired KL(p_ref || p_gen) (AudioLDM's KL with a tagging classifier)."""
    p, q = p_ref.double().clamp_min(eps), p_gen.double().clamp_min(eps)
    p, q = p / p.sum(-1, keepdim=True), q / q.sum(-1, keepdim=True)
    return float((p * (p.log() - q.log())).sum(-1).mean())


def inception_score(probs: torch.Tensor, eps: float = 1e-12) -> float:
    p = probs.double().clamp_min(eps)
    marg = p.mean(0, keepdim=True)
    return float(torch.exp((p * (p.log() - marg.log())).sum(-1).mean()))


def clap_score(audio_features: torch.Tensor, text_features: torch.Tensor) -> float:
    a = torch.nn.functional.normalize(audio_features.double(), dim=-1)
    t = torch.nn.functional.normalize(text_features.double(), dim=-1)
    return float(100.0 * (a * t).sum(-1).clamp_min(0).mean())


def mel_psnr(mels: torch.Tensor, ref: torch.Tensor, peak: float | None = None) -> float:
    """PSNR (dB) of normalised log-mels against the reference variant's mels from the same seeds."""
    ref = ref.double()
    mse = float(((mels.double() - ref) ** 2).mean())
    peak = peak if peak is not None else float(ref.max() - ref.min())
    return float("inf") if mse == 0 else 10.0 * np.log10(peak ** 2 / mse)


def reference_mels(labels: Sequence[int], seconds: float, seed: int) -> torch.Tensor:
    """Real (synthesised) mini-world clips for the given classes: the reference set."""
    from ..zoo.models.audio import log_mel, synth

    rng = np.random.default_rng(seed)
    waves = np.stack([synth(int(l), seconds, rng) for l in labels])
    return torch.cat([log_mel(waves[i:i + 64]) for i in range(0, len(waves), 64)])


def audio_quality(mels: torch.Tensor, labels: Sequence[int], prompts: Sequence[str], seconds: float,
                  names: Sequence[str] = ("fad", "kl", "is", "clap_score", "accuracy"),
                  embedding: AudioEmbedding | None = None, reference: torch.Tensor | None = None,
                  n_reference: int = 240, ref_seed: int = 4242) -> dict[str, Metric]:
    """Quality of generated mini-world mels [N, 1, frames, mels] with captions `prompts` / classes `labels`.

    FAD uses `n_reference` real clips (balanced over classes) of the same length; KL pairs clip i with a
    real clip of class labels[i]; `reference` (mels of the reference variant) enables mel_psnr."""
    emb = embedding or ClassifierEmbedding()
    n = len(mels)
    tag = f"{emb.name}/n={n}/len={seconds:g}s"
    out: dict[str, Metric] = {}
    feats = emb.features(mels) if {"fad", "clap_score"} & set(names) else None
    probs = emb.probs(mels) if {"kl", "is", "accuracy"} & set(names) else None
    n_cls = probs.shape[1] if probs is not None else 12
    if "fad" in names:
        ref_labels = [i % n_cls for i in range(n_reference)]
        ref_feats = emb.features(reference_mels(ref_labels, seconds, ref_seed))
        out["fad"] = Metric(fad(feats, ref_feats), False, f"fad/{tag}/ref=synth{n_reference}", VERSION)
    if "kl" in names:
        paired = emb.probs(reference_mels(list(labels), seconds, ref_seed + 1))
        out["kl"] = Metric(kl_divergence(paired, probs), False, f"kl/{tag}/paired-synth", VERSION)
    if "is" in names:
        out["is"] = Metric(inception_score(probs), True, f"is/{tag}", VERSION)
    if "accuracy" in names:
        acc = (probs.argmax(1) == torch.as_tensor(list(labels))).double().mean().item()
        out["accuracy"] = Metric(acc, True, f"accuracy/{tag}", VERSION)
    if "clap_score" in names:
        text = emb.text_features(list(prompts)) if not isinstance(emb, ClassifierEmbedding) else \
            emb.text_features(list(prompts), seconds=min(seconds, 0.64))
        out["clap_score"] = Metric(clap_score(feats, text), True, f"clap_score/{tag}/text=class-prototype", VERSION)
    if "mel_psnr" in names and reference is not None and reference.shape == mels.shape:
        out["mel_psnr"] = Metric(mel_psnr(mels, reference), True, f"mel_psnr/vs-reference-variant/n={n}/len={seconds:g}s",
                                 VERSION, unit="dB")
    return out


def _register() -> None:
    from ..api import METRICS, register_metric

    for name, hib, unit, text in (
            ("fad", False, "", "Fréchet Audio Distance on the audio embedding (shared Fréchet implementation)"),
            ("kl", False, "nats", "paired KL(p_ref || p_gen) of the embedding classifier's label distributions"),
            ("clap_score", True, "", "100 * max(cos(audio, text), 0) in the embedding space (CLAP-style)"),
            ("mel_psnr", True, "dB", "log-mel PSNR against the reference variant's clips from the same seeds")):
        if name not in METRICS._items:
            register_metric(name, hib, unit, text)


_register()
