"""PromptDFD: Prompting to Distill: Boosting Data-Free Knowledge Distillation via Reinforced Prompt
(IJCAI-ECAI'22, arXiv 2205.07523). No public code: the prompter, reward, generation and loss details
are our reconstruction (see synth.py, distill.py and README.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.api import Method, RunContext, Variant, register_method
from benchmarks.config import check_choice, check_positive
from benchmarks.errors import ConfigError
from benchmarks.tasks.text_classification import TextClassificationConfig, TextSubject

from .distill import distill_on_texts
from .synth import random_token_texts, synthesize, train_prompter

SOURCES = {"unconditioned": "dfd_unconditioned", "random_tokens": "dfd_random_tokens", "kd_real": "kd_real_data"}


@dataclass(frozen=True)
class PromptDFDConfig(TextClassificationConfig):
    baselines: tuple[str, ...] = tuple(SOURCES)
    synthetic_samples: int = 2000        # texts the student is distilled on (0: no training, efficiency only)
    prompter_iters: int = 40             # REINFORCE updates of the topic prompter
    prompter_per_class: int = 16         # samples per class per update
    prompter_lr: float = 0.5
    diversity_weight: float = 0.1        # lambda of the diversity term of the reward
    entropy_weight: float = 0.001
    gen_temperature: float = 1.0
    distill_epochs: int = 4
    distill_batch: int = 32
    distill_lr: float = 2.0e-3
    temperature: float = 4.0             # KD temperature T (loss scaled by T^2)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "baselines", SOURCES)
        check_positive(self, "prompter_per_class", "prompter_lr", "gen_temperature", "distill_batch",
                       "distill_lr", "temperature")
        for k in ("synthetic_samples", "prompter_iters", "distill_epochs", "diversity_weight", "entropy_weight"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k} must be >= 0")


def distill_subject(subject: TextSubject, source: str, ctx: RunContext) -> TextSubject:
    """Replace subject.model by a student distilled from the teacher on texts from `source`:
    `prompter` (PromptDFD), `unconditioned`, `random_tokens` (data-free), or `real` (reads the real
    training set through subject.real_train: the only source that may)."""
    cfg, tok = subject.cfg, subject.tokenizer
    seed = ctx.seed
    student = subject.make_student(seed)
    info: dict = {"source": source, "data_free": source != "real"}
    n = cfg.synthetic_samples
    texts: list[str] = []
    if n > 0:
        if source == "prompter":
            prompter, hist = train_prompter(subject.teacher, subject.generator, tok, subject.num_classes,
                                            cfg.prompter_iters, cfg.prompter_per_class, cfg.prompter_lr,
                                            cfg.diversity_weight, cfg.entropy_weight, cfg.seq_len,
                                            cfg.gen_temperature, seed + 1)
            info["prompter"] = {"reward_first": hist[0]["reward"] if hist else None,
                                "reward_last": hist[-1]["reward"] if hist else None,
                                "confidence_first": hist[0]["confidence"] if hist else None,
                                "confidence_last": hist[-1]["confidence"] if hist else None,
                                "top_prompts": [[tok.vocab[i] for i in row] for row in prompter.top(5)]}
            texts = synthesize(subject.generator, tok, n, cfg.seq_len, cfg.gen_temperature, seed + 2,
                               prompter=prompter, num_classes=subject.num_classes)
        elif source == "unconditioned":
            texts = synthesize(subject.generator, tok, n, cfg.seq_len, cfg.gen_temperature, seed + 2)
        elif source == "random_tokens":
            texts = random_token_texts(tok, n, cfg.seq_len, seed + 2)
        elif source == "real":
            texts = list(subject.real_train())
        else:
            raise ValueError(f"unknown source {source!r}")
        info["examples"] = texts[:3]
        info["distill"] = distill_on_texts(student, subject.teacher, tok, texts, cfg.distill_epochs,
                                           cfg.distill_batch, cfg.distill_lr, cfg.temperature, cfg.seq_len, seed + 3)
    subject.model = student.eval()
    subject.info.update(info)
    return subject


@register_method("promptdfd")
class PromptDFD(Method):
    version = 1
    Config = PromptDFDConfig
    paper = {"title": "Prompting to Distill: Boosting Data-Free Knowledge Distillation via Reinforced Prompt",
             "arxiv": "2205.07523", "code": "not public"}

    def variants(self, cfg: PromptDFDConfig) -> list[Variant]:
        out = [Variant("dense", {}, kind="baseline"), Variant("promptdfd", {})]   # reference = the teacher
        out += [Variant(SOURCES[b], {}, kind="baseline") for b in cfg.baselines]
        return out

    def apply(self, subject: TextSubject, params: Mapping[str, Any], ctx: RunContext) -> TextSubject:
        return distill_subject(subject, "prompter", ctx)
