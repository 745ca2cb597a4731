"""Language-model task: perplexity, zero-shot accuracies through lm-eval, params, MACs and latency.

Models (`model` key):
- `zoo:<entry>`  a mini-world Llama (benchmarks/zoo/models/llm.py), evaluated on the local world_* tasks
                 and the held-out world text;
- `arch:llama-7b` LLaMA-7B's architecture built on the meta device (no weights, no memory): params and
                 MACs only, the paper's statistics table;
- `hf:<repo-or-path>` the user's weights (paper track), read from a local folder or the HF cache only;
                 datasets from the user's HF datasets cache (HF_DATASETS_OFFLINE=1), else MissingAssetError.

Protocols: accuracy = lm-eval 0-shot, `acc` for BoolQ/WinoGrande and `acc_norm` otherwise, no BOS
(LLM-Pruner's setting); PPL = token perplexity over the concatenated split in non-overlapping chunks of
`ppl_seq_len` tokens (benchmarks/lm/ppl.py, LLM-Pruner's protocol, not lm-eval's word perplexity);
MACs = aten count of one forward over `mac_seq_len` tokens, batch 1, attention matmuls included
(LLM-Pruner's statistics use 64 tokens); latency = that forward, per call.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from ..api import Metric, Outcome, RunContext, Task, Variant, register_task
from ..config import BaseConfig, check_choice, check_positive
from ..errors import ConfigError, MissingAssetError
from ..lm.lmeval import PAPER_TASKS, WORLD_TASKS

PPL_DATASETS = ("world_heldout", "wikitext2", "ptb")

LLAMA_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, head_dim=128, max_position_embeddings=2048,
                rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
ARCHS = {"llama-7b": LLAMA_7B}


@dataclass(frozen=True)
class LanguageModelConfig(BaseConfig):
    task: str = "language_model"
    model: str = "zoo:llama_world_mha"   # zoo:<entry> | arch:llama-7b | hf:<repo-or-local-path>
    lm_tasks: tuple[str, ...] = WORLD_TASKS
    lm_limit: int = 0                    # docs per task (0: all)
    lm_batch_size: int = 32
    lm_max_length: int = 256
    ppl_datasets: tuple[str, ...] = ("world_heldout",)
    ppl_seq_len: int = 128               # paper: 128
    ppl_max_chunks: int = 0              # 0: the whole split
    calib_dataset: str = "world"         # world | bookcorpus (paper)
    recovery_dataset: str = "world"      # world | alpaca-cleaned (paper)
    recovery_docs: int = 2000
    mac_seq_len: int = 64
    latency_seq_len: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        kind = self.model.split(":", 1)[0]
        if kind not in ("zoo", "arch", "hf") or ":" not in self.model:
            raise ConfigError(f"bad value {self.model!r} for key 'model': expected zoo:<entry>, arch:<name> or hf:<path>")
        if kind == "arch" and self.model.split(":", 1)[1] not in ARCHS:
            raise ConfigError(f"bad value {self.model!r} for key 'model'; allowed archs: {', '.join(ARCHS)}")
        check_choice(self, "lm_tasks", WORLD_TASKS + PAPER_TASKS)
        check_choice(self, "ppl_datasets", PPL_DATASETS)
        check_choice(self, "calib_dataset", ("world", "bookcorpus"))
        check_choice(self, "recovery_dataset", ("world", "alpaca-cleaned"))
        check_positive(self, "lm_batch_size", "lm_max_length", "ppl_seq_len", "mac_seq_len", "latency_seq_len",
                       "recovery_docs")


@dataclass
class LMSubject:
    """What methods transform: the model (replace it freely), its tokenizer and the data they may use."""

    model: Any
    tokenizer: Any
    cfg: Any                                   # the run's resolved config (method keys included)
    calibration: Callable[[int, int, int], Any] | None = None   # (n, seq_len, seed) -> LongTensor [n, seq_len]
    recovery_texts: Callable[[], list[str]] | None = None       # LoRA recovery documents
    arch_only: bool = False                    # meta-device architecture: structure only, no values
    notes: dict = field(default_factory=dict)  # what the method wants in the record (pruning plan, ...)
    undo: list = field(default_factory=list)


@contextlib.contextmanager
def meta_safe_masks():
    """transformers' packed-sequence check calls .item(), impossible on meta tensors: skip it (there is
    no packing in a single unpadded sequence)."""
    from unittest import mock

    import transformers.masking_utils as mu

    with mock.patch.object(mu, "find_packed_sequence_indices", lambda *a, **k: None):
        yield


def _hf_dataset_text(name: str) -> str:
    import os

    from datasets import load_dataset

    spec = {"wikitext2": ("wikitext", "wikitext-2-raw-v1", "test", "text"),
            "ptb": ("ptb_text_only", "penn_treebank", "validation", "sentence"),
            "bookcorpus": ("bookcorpus", None, "train", "text")}[name]
    old = os.environ.get("HF_DATASETS_OFFLINE")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        ds = load_dataset(spec[0], spec[1], split=spec[2])
    except Exception as e:
        raise MissingAssetError(
            f"dataset {spec[0]}/{spec[1]} split {spec[2]} ({type(e).__name__})",
            f"on a machine with network run `python -c \"import datasets; datasets.load_dataset('{spec[0]}', "
            f"{spec[1]!r}, split='{spec[2]}')\"` and copy ~/.cache/huggingface/datasets here (or set HF_DATASETS_CACHE)",
            [os.environ.get("HF_DATASETS_CACHE", "~/.cache/huggingface/datasets")]) from None
    finally:
        if old is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = old
    if name == "bookcorpus":
        return ds
    return "\n\n".join(ds[spec[3]])


@register_task("language_model")
class LanguageModelTask(Task):
    version = 1

    def __init__(self, cfg: LanguageModelConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        import torch

        kind, name = cfg.model.split(":", 1)
        self.kind, self.name_ = kind, name
        self._texts: dict[str, str] = {}
        if kind == "arch":
            self._model, self._tok = None, None
            return
        if kind == "zoo":
            from .. import zoo

            self._model, self._tok = zoo.load(name, progress=ctx.progress)
            from ..zoo.core import key as zoo_key

            self._zoo_key = zoo_key(name)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from ..assets import hf_model

            try:
                path = hf_model(name, f"LLaMA weights {name}")
            except MissingAssetError as e:
                raise MissingAssetError(e.what, f"download it where you have network (`huggingface-cli download {name}`) "
                                        "into the local Hugging Face cache, or point at a local copy with "
                                        "--set model=hf:/path/to/llama-7b-hf", e.looked) from None
            # paper: fp16 on GPU; on CPU fp32 (fp16 fails on CPU, LLM-Pruner #22)
            dtype = torch.float16 if ctx.device.startswith("cuda") else torch.float32
            self._model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).to(ctx.device)
            self._model.eval()
            self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # fail fast on every dataset the protocol needs
        for ds in cfg.ppl_datasets:
            self._texts[ds] = self._ppl_text(ds)
        if kind == "hf":
            from ..lm.lmeval import _manager_for, task_dict

            task_dict(list(cfg.lm_tasks), _manager_for(list(cfg.lm_tasks)))

    # ---- data ----------------------------------------------------------------------------------
    def _ppl_text(self, name: str) -> str:
        if name == "world_heldout":
            from ..lm.lmeval import TASK_DIR

            return (TASK_DIR / "data" / "world_heldout.txt").read_text()
        return _hf_dataset_text(name)

    def calibration(self, n: int, seq_len: int, seed: int):
        """n random windows of seq_len tokens (paper: 10 BookCorpus windows x 64 tokens, seed 42)."""
        import random

        import torch

        rng = random.Random(seed)
        if self.cfg.calib_dataset == "world":
            from ..lm import world
            from ..zoo.models.llm import pack

            stream = pack(self._tok, world.corpus(400, seed=42))
            starts = [rng.randrange(0, len(stream) - seq_len) for _ in range(n)]
            return torch.stack([stream[s:s + seq_len] for s in starts]).to(self.ctx.device)
        ds = _hf_dataset_text("bookcorpus")
        out = []
        while len(out) < n:   # official get_examples: random docs long enough for one window
            ids = self._tok(ds[rng.randrange(len(ds))]["text"], return_tensors="pt").input_ids[0]
            if ids.numel() > seq_len:
                s = rng.randrange(0, ids.numel() - seq_len)
                out.append(ids[s:s + seq_len])
        return torch.stack(out).to(self.ctx.device)

    def recovery_texts(self) -> list[str]:
        if self.cfg.recovery_dataset == "world":
            from ..lm import world

            return world.corpus(self.cfg.recovery_docs, seed=5)
        import os

        from datasets import load_dataset

        os.environ["HF_DATASETS_OFFLINE"] = "1"
        try:
            ds = load_dataset("yahma/alpaca-cleaned", split="train")
        except Exception as e:
            raise MissingAssetError(f"dataset yahma/alpaca-cleaned ({type(e).__name__})",
                                    "download it where you have network (datasets.load_dataset('yahma/alpaca-cleaned')) "
                                    "and copy the HF datasets cache here") from None
        # official post_training.py prompt template (alpaca, with/without input)
        out = []
        for r in ds:
            if r["input"]:
                p = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                     f"{r['instruction']}\n\n### Input:\n{r['input']}\n\n### Response:\n{r['output']}")
            else:
                p = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                     f"the request.\n\n### Instruction:\n{r['instruction']}\n\n### Response:\n{r['output']}")
            out.append(p)
        return out

    # ---- task contract -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        if self.kind == "zoo":
            return f"zoo:{self.name_}@{self._zoo_key}"
        if self.kind == "arch":
            return f"{self.name_}-arch(meta)"
        return f"hf:{self.name_}"

    @property
    def task_id(self) -> str:
        if self.kind == "arch":
            return f"language_model/{self.name_}-arch"
        return f"language_model/{self.name_}"

    def subject(self) -> LMSubject:
        if self.kind == "arch":
            import torch
            from transformers import LlamaConfig, LlamaForCausalLM

            with torch.device("meta"):
                model = LlamaForCausalLM(LlamaConfig(**ARCHS[self.name_]))
            return LMSubject(model, None, self.cfg, arch_only=True)
        return LMSubject(copy.deepcopy(self._model), self._tok, self.cfg, calibration=self.calibration,
                         recovery_texts=self.recovery_texts)

    def evaluate(self, subject: LMSubject, variant: Variant, ctx: RunContext) -> Outcome:
        import torch

        from ..efficiency import count_params, macs_aten, timed

        cfg = self.cfg
        model = subject.model
        model.eval()
        out = Outcome(notes=dict(subject.notes))
        params = count_params(model)
        if subject.arch_only:
            x = torch.zeros(1, cfg.mac_seq_len, dtype=torch.long, device="meta")
            with meta_safe_masks():
                macs = macs_aten(lambda: model(input_ids=x, use_cache=False))
            out.efficiency = {"params": params, "macs": macs, "macs_per": "forward", "mac_counter": "aten"}
            out.notes.update({"mac_seq_len": cfg.mac_seq_len, "weights": "none (meta device): params and MACs only"})
            return out
        dev = next(model.parameters()).device
        for ds in cfg.ppl_datasets:
            from ..lm.ppl import PROTOCOL_VERSION, protocol, token_perplexity

            ppl = token_perplexity(model, subject.tokenizer, self._texts[ds], seq_len=cfg.ppl_seq_len,
                                   max_chunks=cfg.ppl_max_chunks or None, device=dev)
            out.metrics[f"ppl_{ds}"] = Metric(ppl, False, protocol(ds, cfg.ppl_seq_len), PROTOCOL_VERSION, "token-ppl")
        from ..lm import lmeval

        res = lmeval.evaluate(model, subject.tokenizer, cfg.lm_tasks, batch_size=cfg.lm_batch_size,
                              max_length=cfg.lm_max_length, device=str(dev), limit=cfg.lm_limit or None)
        n = res["notes"]["lm_eval_n_samples"]
        for t, acc in res["accuracy"].items():
            eff_n = (n.get(t) or {}).get("effective")
            proto = f"lm-eval/{res['notes']['lm_eval_version']}/{t}/v{res['notes']['lm_eval_task_versions'][t]}/0-shot/{res['metric'][t]}/no-bos/n={eff_n}"
            out.metrics[f"acc_{t}"] = Metric(acc, True, proto, lmeval.PROTOCOL_VERSION, "fraction", res["stderr"][t])
        accs = list(res["accuracy"].values())
        out.metrics["acc_avg"] = Metric(sum(accs) / len(accs), True,
                                        f"mean of {len(accs)} lm-eval 0-shot accuracies: {','.join(res['accuracy'])}",
                                        lmeval.PROTOCOL_VERSION, "fraction")
        out.notes.update(res["notes"])
        g = torch.Generator().manual_seed(0)
        vocab = model.config.vocab_size
        xm = torch.randint(0, vocab, (1, cfg.mac_seq_len), generator=g).to(dev)
        xl = torch.randint(0, vocab, (1, cfg.latency_seq_len), generator=g).to(dev)
        macs = macs_aten(lambda: model(input_ids=xm, use_cache=False))
        lat, mem = timed(lambda: model(input_ids=xl, use_cache=False), ctx.latency, ctx.device, per="forward")
        out.efficiency = {"params": params, "macs": macs, "macs_per": "forward", "mac_counter": "aten",
                          "latency": lat.to_dict(), "peak_memory": mem}
        out.notes.update({"mac_seq_len": cfg.mac_seq_len, "latency_input": [1, cfg.latency_seq_len],
                          "dtype": str(next(model.parameters()).dtype)})
        return out

    def release(self, subject: LMSubject) -> None:
        for fn in subject.undo:
            fn()
