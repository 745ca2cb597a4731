"""SlimSAM: 0.1% Data Makes Segment Anything Slim (NeurIPS'24, arXiv 2312.05284; github.com/czg1225/SlimSAM).

Alternate slimming of SAM's image encoder with disturbed Taylor importance and distillation from the
original encoder on a small unlabeled image set (see slim.py / prune.py for the steps)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.tasks.segmentation import SamSubject, SegmentationConfig

from .slim import CRITERIA, SlimSettings, slim_encoder

BASELINES = ("magnitude", "random", "no_recovery")


@dataclass(frozen=True)
class SlimSAMConfig(SegmentationConfig):
    ratios: tuple[float, ...] = (0.5, 0.77)      # paper: SlimSAM-50 and SlimSAM-77 (same r in both steps)
    baselines: tuple[str, ...] = BASELINES       # pruning-criterion baselines (same recovery) + no recovery
    importance: str = "disturbed_taylor"
    step2_scope: str = "global"                  # global (paper, z-score normalised) | local (uniform)
    round_to: int = 0                            # 0: number of heads (paper: round_to=12 on ViT-B)
    noise_std: float = 0.01
    importance_images: int = 64                  # paper: 1000 images for the importance estimate
    importance_batch: int = 8
    distill_images: int = 256                    # paper: 10k SA-1B images (0.1% of SA-1B)
    distill_steps: int = 60                      # per stage
    distill_batch: int = 8
    distill_lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "baselines", BASELINES)
        check_choice(self, "importance", CRITERIA)
        check_choice(self, "step2_scope", ("global", "local"))
        check_positive(self, "noise_std", "importance_images", "importance_batch", "distill_images",
                       "distill_batch", "distill_lr")
        if any(not 0 < r < 1 for r in self.ratios):
            raise ConfigError(f"bad value {self.ratios!r} for key 'ratios': each must be in (0, 1)")
        if self.distill_steps < 0 or self.round_to < 0:
            raise ConfigError("distill_steps and round_to must be >= 0")


def settings(cfg: SlimSAMConfig, ratio: float, importance: str | None = None, recover: bool = True,
             seed: int = 0) -> SlimSettings:
    return SlimSettings(ratio=float(ratio), importance=importance or cfg.importance, recover=recover,
                        step2_scope=cfg.step2_scope, round_to=cfg.round_to, noise_std=cfg.noise_std,
                        importance_images=cfg.importance_images, importance_batch=cfg.importance_batch,
                        distill_images=cfg.distill_images, distill_steps=cfg.distill_steps,
                        distill_batch=cfg.distill_batch, distill_lr=cfg.distill_lr, seed=seed)


def slim_subject(subject: SamSubject, s: SlimSettings) -> SamSubject:
    info = slim_encoder(subject.model.vision_encoder, subject.teacher.vision_encoder, subject.unlabeled_images, s)
    subject.info.update(info)
    subject.model.eval()
    return subject


@register_method("slimsam")
class SlimSAM(Method):
    version = 1
    Config = SlimSAMConfig
    paper = {"title": "SlimSAM: 0.1% Data Makes Segment Anything Slim", "arxiv": "2312.05284",
             "code": "https://github.com/czg1225/SlimSAM"}

    def variants(self, cfg: SlimSAMConfig) -> list[Variant]:
        out = [Variant("dense", {}, kind="baseline")]          # reference: the unpruned SAM
        for r in cfg.ratios:
            out.append(Variant("slimsam", {"ratio": r}))
        for r in cfg.ratios:
            for b in cfg.baselines:
                if b == "no_recovery":
                    out.append(Variant("sam_prune", {"importance": cfg.importance, "ratio": r, "recover": False},
                                       kind="baseline"))
                else:
                    out.append(Variant("sam_prune", {"importance": b, "ratio": r}, kind="baseline"))
        return out

    def apply(self, subject: SamSubject, params: Mapping[str, Any], ctx: RunContext) -> SamSubject:
        return slim_subject(subject, settings(subject.cfg, params.get("ratio", 0.0), seed=ctx.seed))
