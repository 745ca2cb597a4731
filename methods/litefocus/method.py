"""LiteFocus (Yuanshi et al.; Interspeech 2024, arXiv 2407.10468; https://github.com/Yuanshi9815/LiteFocus).

Training-free acceleration of long-audio synthesis with latent diffusion: self-attention over the
time-frequency latent tokens is replaced by same-frequency focus (each query attends to every token of its
own frequency index) plus cross-frequency compensation (a small random token subset, ratio r = 0.1),
under one joint softmax (Sec. 2). Cross-attention is unchanged. Implementation: a diffusers attention
processor (methods/litefocus/processor.py) installed with one call and removed with one call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice
from benchmarks.errors import ConfigError
from benchmarks.tasks.audio import AudioConfig, AudioSubject

from .processor import SCOPES, enable_litefocus


@dataclass(frozen=True)
class LiteFocusConfig(AudioConfig):
    ratios: tuple[float, ...] = (0.1,)      # cross-frequency compensation ratio r (paper: 0.1)
    scope: str = "official"                 # official: first attention level (LDM input_blocks 4,5 /
                                            # output_blocks 6,7,8); all: every transformer
    fewer_steps: tuple[int, ...] = ()       # baseline: full attention with fewer steps

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "scope", SCOPES)
        if any(not 0.0 <= r <= 1.0 for r in self.ratios):
            raise ConfigError(f"ratios {self.ratios} must lie in [0, 1]")
        if any(s >= self.steps or s <= 0 for s in self.fewer_steps):
            raise ConfigError(f"fewer_steps {self.fewer_steps} must lie in 1..steps-1 (steps={self.steps})")


@register_method("litefocus")
class LiteFocus(Method):
    version = 1
    Config = LiteFocusConfig
    paper = {"title": "LiteFocus: Accelerated Diffusion Inference for Long Audio Synthesis", "arxiv": "2407.10468",
             "code": "https://github.com/Yuanshi9815/LiteFocus", "venue": "Interspeech 2024"}

    def variants(self, cfg: LiteFocusConfig) -> list[Variant]:
        out = [Variant("full_attention", {}, "baseline")]
        out += [Variant("litefocus", {"ratio": r, "scope": cfg.scope}) for r in cfg.ratios]
        out += [Variant("fewer_steps", {"steps": s}, "baseline") for s in cfg.fewer_steps]
        return out

    def apply(self, subject: AudioSubject, params: Mapping[str, Any], ctx: RunContext) -> AudioSubject:
        handle = enable_litefocus(subject.denoiser, ratio=float(params["ratio"]), seed=ctx.seed,
                                  scope=str(params.get("scope", "official")))
        if not handle.processors:
            raise ConfigError("LiteFocus found no self-attention to replace in this UNet")
        subject.undo.append(handle.disable)
        return subject
