"""Text classification for knowledge distillation (data-free or not): accuracy + efficiency.

Models (`model` = the teacher classifier, `generator` = a generative LM of the same vocabulary):
- `zoo:text_topics_teacher` + `zoo:text_topics_lm`: the mini-world (benchmarks/zoo/models/text.py):
  4-topic AG-News-like corpus, BERT teacher, GPT-2 generator; student = `student_config()`.
- `arch:bert-base`: BERT-base teacher (4 labels, AG News) with random weights and the student `arch:bert-4l-312`
  (TinyBERT-4 shape); params / MACs / latency only (reconstruction: the PromptDFD paper's exact
  teacher/student pair is not public).
- `hf:<path>`: the user's fine-tuned teacher; needs AG News (`data=`); fails fast when absent.

The subject hands the method the teacher, the generator, the tokenizer, a student factory and the
real training set **only through `real_train()`**: data-free methods must never call it (a test makes it
raise). Quality = accuracy on the test split (and agreement with the teacher); efficiency = params,
aten MACs of one forward of one `seq_len` sequence, latency of a `latency_batch` forward per sample.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..api import Metric, Outcome, RunContext, Task, Variant, register_task
from ..config import BaseConfig, check_choice, check_positive
from ..efficiency import count_params, macs_aten, macs_torch_pruning, timed
from ..errors import ConfigError, EffbenchError

ARCH_TEACHERS = {"bert-base": dict(hidden=768, layers=12, heads=12, intermediate=3072)}
ARCH_STUDENTS = {"bert-4l-312": dict(hidden=312, layers=4, heads=12, intermediate=1200)}
ARCH_VOCAB = 30522


@dataclass(frozen=True)
class TextClassificationConfig(BaseConfig):
    task: str = "text_classification"
    model: str = "zoo:text_topics_teacher"    # zoo:<entry> | arch:bert-base | hf:<path>
    generator: str = "zoo:text_topics_lm"     # zoo:<entry> | none | hf:<path>
    student: str = "mini"                     # mini (zoo world's student_config) | arch:bert-4l-312
    data: str = ""                            # paper track: AG News folder, or $EFFBENCH_AGNEWS
    eval_samples: int = 600                   # test documents (0: efficiency only)
    seq_len: int = 40
    latency_batch: int = 32
    mac_counter: str = "aten"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "mac_counter", ("torch_pruning", "aten"))
        check_positive(self, "seq_len", "latency_batch")
        if self.eval_samples < 0:
            raise ConfigError("eval_samples must be >= 0")
        if ":" not in self.model or self.model.split(":", 1)[0] not in ("zoo", "arch", "hf"):
            raise ConfigError(f"bad value {self.model!r} for key 'model': expected zoo:<entry>, arch:bert-base or hf:<path>")


class RealDataAccessed(RuntimeError):
    """Raised by a guarded `real_train` accessor (tests of data-free methods)."""


@dataclass
class TextSubject:
    model: Any                                # the classifier evaluated (a copy of the teacher until replaced)
    teacher: Any                              # shared, frozen: never mutate
    generator: Any                            # shared, frozen generative LM (None on arch: models)
    tokenizer: Any
    make_student: Callable[[int], Any]        # seed -> a fresh, untrained student
    real_train: Callable[[], list]            # the real training texts: data-free methods must not call it
    cfg: Any
    vocab_size: int
    num_classes: int
    info: dict = field(default_factory=dict)
    undo: list = field(default_factory=list)


@register_task("text_classification")
class TextClassificationTask(Task):
    version = 1

    def __init__(self, cfg: TextClassificationConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        kind, name = cfg.model.split(":", 1)
        self.kind, self.entry = kind, name
        self.test = None
        if kind == "zoo":
            from ..zoo import core as zoo
            from ..zoo.models import text as world

            self.world = world
            self.teacher = zoo.load(name, progress=ctx.progress).eval()
            self.generator = None
            if cfg.generator.startswith("zoo:"):
                self.generator = zoo.load(cfg.generator[4:], progress=ctx.progress).eval()
            elif cfg.generator not in ("none", ""):
                raise ConfigError(f"generator {cfg.generator!r} does not fit the zoo world; use zoo:text_topics_lm")
            self.tokenizer = world.WordTokenizer()
            self._key = zoo.key(name) + ("+" + zoo.key(cfg.generator[4:]) if self.generator is not None else "")
            self.vocab_size = len(self.tokenizer)
            if cfg.student != "mini":
                raise ConfigError("the zoo world's student is 'mini'")
            if cfg.eval_samples:
                texts, labels = world.topics("test")
                n = min(cfg.eval_samples, len(texts))
                self.test = (texts[:n], labels[:n])
        elif kind == "arch":
            from transformers import BertConfig, BertForSequenceClassification

            if name not in ARCH_TEACHERS:
                raise ConfigError(f"unknown teacher architecture {name!r}; valid: {', '.join(ARCH_TEACHERS)}")
            if cfg.student.removeprefix("arch:") not in ARCH_STUDENTS:
                raise ConfigError(f"unknown student {cfg.student!r}; valid: " + ", ".join(f"arch:{s}" for s in ARCH_STUDENTS))
            a = ARCH_TEACHERS[name]
            torch.manual_seed(ctx.seed)
            self.teacher = BertForSequenceClassification(BertConfig(
                vocab_size=ARCH_VOCAB, hidden_size=a["hidden"], num_hidden_layers=a["layers"],
                num_attention_heads=a["heads"], intermediate_size=a["intermediate"], num_labels=4)).eval()
            self.generator, self.tokenizer, self.world = None, None, None
            self.vocab_size = ARCH_VOCAB
            self._key = "random"
        else:
            from ..assets import hf_model, local_path

            path = hf_model(name, "a fine-tuned teacher classifier (e.g. textattack/bert-base-uncased-ag-news)")
            local_path(cfg.data or None, "AG News (train/test csv)",
                       "download AG News where you have network and pass --set data=/path/to/ag_news or set "
                       "$EFFBENCH_AGNEWS", env="EFFBENCH_AGNEWS")
            raise EffbenchError(f"teacher at {path} and AG News found, but the paper track of this task is not "
                                "implemented in this version (mini-world and paper_arch only)")
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        if self.generator is not None:
            for p in self.generator.parameters():
                p.requires_grad_(False)
        self._teacher_pred = None
        if self.test is not None:
            self._teacher_pred = self._predict(self.teacher, self.test[0])

    @property
    def model_id(self) -> str:
        if self.kind == "zoo":
            return f"zoo:{self.entry}@{self._key}"
        return f"{self.entry}-arch(random)"

    @property
    def task_id(self) -> str:
        return f"text_classification/{self.entry}"

    # -----------------------------------------------------------------------------------------
    def make_student(self, seed: int):
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(seed)
        if self.kind == "zoo":
            return BertForSequenceClassification(self.world.student_config())
        a = ARCH_STUDENTS[self.cfg.student.removeprefix("arch:")]
        return BertForSequenceClassification(BertConfig(
            vocab_size=ARCH_VOCAB, hidden_size=a["hidden"], num_hidden_layers=a["layers"],
            num_attention_heads=a["heads"], intermediate_size=a["intermediate"], num_labels=4))

    def real_train(self) -> list[str]:
        if self.kind != "zoo":
            raise EffbenchError("no real training data for random-weight architectures")
        return self.world.topics("train")[0]

    def subject(self) -> TextSubject:
        return TextSubject(model=copy.deepcopy(self.teacher), teacher=self.teacher, generator=self.generator,
                           tokenizer=self.tokenizer, make_student=self.make_student, real_train=self.real_train,
                           cfg=self.cfg, vocab_size=self.vocab_size,
                           num_classes=self.teacher.config.num_labels)

    # -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _predict(self, model, texts: list[str], batch: int = 200) -> torch.Tensor:
        model.eval()
        out = []
        for i in range(0, len(texts), batch):
            b = self.tokenizer.classifier_batch(texts[i:i + batch], self.cfg.seq_len)
            out.append(model(**b).logits.argmax(-1))
        return torch.cat(out)

    def _inputs(self, batch: int) -> dict:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(5, self.vocab_size, (batch, self.cfg.seq_len), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def evaluate(self, subject: TextSubject, variant: Variant, ctx: RunContext) -> Outcome:
        model = subject.model.eval()
        metrics = {}
        if self.test is not None:
            texts, labels = self.test
            pred = self._predict(model, texts)
            n = len(texts)
            metrics["accuracy"] = Metric(100 * float((pred == labels).float().mean()), True,
                                         f"accuracy/topics-test/n={n}/seq={self.cfg.seq_len}", unit="%")
            metrics["teacher_agreement"] = Metric(100 * float((pred == self._teacher_pred).float().mean()), True,
                                                  f"agreement/topics-test/n={n}", unit="%")
        one = self._inputs(1)
        if self.cfg.mac_counter == "aten":
            macs = macs_aten(lambda: model(**one))
        else:
            macs = macs_torch_pruning(model, one)
        inputs = self._inputs(self.cfg.latency_batch)
        lat, mem = timed(lambda: model(**inputs), ctx.latency, ctx.device, per="call")
        lat = lat.scaled(1.0 / self.cfg.latency_batch, per="sample")
        c = model.config
        eff = {"params": count_params(model), "macs": int(macs), "macs_per": "sample", "mac_counter": self.cfg.mac_counter,
               "latency": lat.to_dict(), "peak_memory": mem, "seq_len": self.cfg.seq_len}
        notes = dict(subject.info)
        notes["architecture"] = {"hidden": c.hidden_size, "layers": c.num_hidden_layers, "heads": c.num_attention_heads,
                                 "intermediate": c.intermediate_size}
        return Outcome(metrics=metrics, efficiency=eff, notes=notes)
