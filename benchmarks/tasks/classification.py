"""Image classification under structural pruning (DepGraph, Isomorphic Pruning and their baselines).

Protocol per variant: top-1 of the dense model (before pruning), right after pruning, and after the
recovery stage; params and MACs (Torch-Pruning's counter at batch 1, the papers' convention); latency of a
`latency_batch` forward (runner's protocol, benchmarks.efficiency.timed). The recovery stage (fine-tuning
with optional KD from the dense teacher, `recover_*` keys) is run by the task, identically for every
variant, so methods and baselines are compared at the same budget.

Models (`model` key):
- zoo entries `resnet_digits`, `vit_digits`, `convnext_digits` (16x16 digits, benchmarks/zoo);
- paper architectures with random weights (`paper_arch` presets; params/MACs/latency only, accuracy is
  never reported): `resnet56_cifar10`, `vgg19_cifar100`, `deit_{base,small,tiny}_distilled`,
  `convnext_base`, `convnext_tiny`;
- the same paper architectures with the user's weights (`weights`) and data (`data`): CIFAR-10/100 from a
  local torchvision copy, ImageNet val/ through benchmarks/imagenet_eval.py and train/ (ImageFolders) for
  Taylor / Hessian batches.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..api import Metric, Outcome, RunContext, Task, Variant, register_task, seed_everything
from ..assets import local_path
from ..config import BaseConfig, check_choice, check_positive
from ..errors import ConfigError, MissingAssetError
from ..pruning import IMPORTANCES, SCOPES, TARGETS, PruneResult, build_arch, count, save_pruned

ZOO_MODELS = ("resnet_digits", "vit_digits", "convnext_digits")
WITH_BATCHNORM = ("resnet_digits", "resnet56_cifar10", "vgg19_cifar100")   # BN-scaling applies only here

# paper architectures: arch spec, input shape, classes, dataset of the paper's accuracy protocol
PAPER_ARCHS: dict[str, dict] = {
    "resnet56_cifar10": {"arch": {"kind": "cifar_resnet", "kwargs": {"depth": 56, "num_classes": 10}},
                         "input": [1, 3, 32, 32], "classes": 10, "dataset": "cifar10"},
    "vgg19_cifar100": {"arch": {"kind": "cifar_vgg", "kwargs": {"depth": 19, "num_classes": 100}},
                       "input": [1, 3, 32, 32], "classes": 100, "dataset": "cifar100"},
    "deit_base_distilled": {"arch": {"kind": "timm", "kwargs": {"name": "deit_base_distilled_patch16_224"}},
                            "input": [1, 3, 224, 224], "classes": 1000, "dataset": "imagenet"},
    "deit_small_distilled": {"arch": {"kind": "timm", "kwargs": {"name": "deit_small_distilled_patch16_224"}},
                             "input": [1, 3, 224, 224], "classes": 1000, "dataset": "imagenet"},
    "deit_tiny_distilled": {"arch": {"kind": "timm", "kwargs": {"name": "deit_tiny_distilled_patch16_224"}},
                            "input": [1, 3, 224, 224], "classes": 1000, "dataset": "imagenet"},
    "convnext_base": {"arch": {"kind": "timm", "kwargs": {"name": "convnext_base"}},
                      "input": [1, 3, 224, 224], "classes": 1000, "dataset": "imagenet"},
    "convnext_tiny": {"arch": {"kind": "timm", "kwargs": {"name": "convnext_tiny"}},
                      "input": [1, 3, 224, 224], "classes": 1000, "dataset": "imagenet"},
}
CIFAR_MEAN_STD = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
                  "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}


@dataclass(frozen=True)
class ClassificationConfig(BaseConfig):
    task: str = "classification"
    model: str = "resnet_digits"          # zoo entry or PAPER_ARCHS key
    weights: str | None = None            # paper track: state dict (.safetensors / .pth) of the dense model
    data: str | None = None               # paper track: CIFAR root (torchvision layout) or ImageNet root
    random_weights: bool = False          # paper_arch: random init, efficiency only
    # pruning (variant params override these defaults)
    ratios: tuple[float, ...] = (0.3, 0.6)
    target: str = "ratio"                 # ratio | macs | params
    speedups: tuple[float, ...] = ()      # used when target is macs / params
    iterative_steps: int = 1
    round_to: int | None = None
    head_ratio: float = 0.0
    head_dim_ratio: float | None = None
    drop_blocks: int = 0
    calib_batches: int = 4
    calib_batch_size: int = 32
    baselines: tuple[str, ...] = ("random", "l1", "l2", "bn_scale", "taylor", "hessian")
    baseline_scope: str = "local"         # ranking scope of the classic baselines
    # recovery (shared by every variant)
    recover_steps: int = 60               # 0 = no recovery
    recover_lr: float = 2e-3
    recover_batch: int = 64
    recover_kd: bool = True               # KD from the dense teacher (Isomorphic Pruning's recipe)
    kd_alpha: float = 0.5
    kd_temperature: float = 2.0
    # evaluation
    eval_batch: int = 256
    eval_limit: int = 0                   # paper track: evaluate only the first N images (0 = all)
    latency_batch: int = 64
    save_models: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "model", ZOO_MODELS + tuple(PAPER_ARCHS))
        check_choice(self, "target", TARGETS)
        check_choice(self, "baseline_scope", SCOPES)
        check_choice(self, "baselines", IMPORTANCES)
        check_positive(self, "calib_batches", "calib_batch_size", "recover_batch", "eval_batch", "latency_batch",
                       "iterative_steps")
        if any(not 0.0 <= r < 1.0 for r in self.ratios):
            raise ConfigError(f"ratios must be in [0, 1), got {self.ratios}")
        if self.target != "ratio" and not self.speedups:
            raise ConfigError(f"target {self.target!r} needs speedups (base/pruned {self.target}), e.g. [2.13]")
        if any(s < 1.0 for s in self.speedups):
            raise ConfigError(f"speedups must be >= 1, got {self.speedups}")
        if self.recover_steps < 0:
            raise ConfigError("recover_steps must be >= 0")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ConfigError("kd_alpha must be in [0, 1]")
        if self.model in ZOO_MODELS and self.random_weights:
            raise ConfigError("random_weights is for paper architectures (paper_arch); zoo models are trained")

    def amounts(self) -> list[dict]:
        """Variant params for each pruning amount: {'ratio': r} or {'speedup': s}."""
        if self.target == "ratio":
            return [{"ratio": r} for r in self.ratios]
        return [{"speedup": s} for s in self.speedups]

    def prune_defaults(self) -> dict:
        return {"target": self.target, "iterative_steps": self.iterative_steps, "round_to": self.round_to,
                "head_ratio": self.head_ratio, "head_dim_ratio": self.head_dim_ratio,
                "drop_blocks": self.drop_blocks, "calib_batches": self.calib_batches}


@dataclass
class PruneSubject:
    """What pruning methods and baselines receive: a model to prune in place plus what criteria need."""

    model: nn.Module
    arch: dict
    example_inputs: torch.Tensor
    num_classes: int
    calib: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]   # fixed training batches
    train_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # n shuffled batches (sparse training)
    defaults: dict = field(default_factory=dict)
    cfg: Any = None                       # the run's config (methods read their own keys from it)
    result: PruneResult | None = None
    log: Callable[[str], None] = print


def _batches(x: torch.Tensor, y: torch.Tensor, bs: int, n: int, seed: int) -> list:
    """n mini-batches of a seeded permutation (reshuffled when exhausted): deterministic per seed."""
    g = torch.Generator().manual_seed(seed)
    out, i = [], 0
    perm = torch.randperm(len(x), generator=g)
    while len(out) < n:
        if i + bs > len(x):
            perm, i = torch.randperm(len(x), generator=g), 0
        idx = perm[i:i + bs]
        i += bs
        out.append((x[idx], y[idx]))
    return out


@register_task("classification")
class ClassificationTask(Task):
    version = 1

    def __init__(self, cfg: ClassificationConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        self.device = _device(cfg.device)
        seed_everything(ctx.seed)
        if cfg.model in ZOO_MODELS:
            self._init_zoo()
        elif cfg.random_weights:
            self._init_random()
        else:
            self._init_paper()
        self.dense.eval().to(self.device)
        self.example_inputs = torch.randn(*self.input_shape, generator=torch.Generator().manual_seed(0))
        self.dense_top1 = self._accuracy(self.dense) if self.has_quality else None

    # -- models and data ------------------------------------------------------------------------

    def _init_zoo(self) -> None:
        from .. import zoo
        from ..zoo.data import digits

        entry = zoo.ZOO.get(self.cfg.model)
        self.arch = entry.recipe["arch"]
        size = entry.recipe["size"]
        self.dense = copy.deepcopy(zoo.load(self.cfg.model, progress=self.ctx.progress))
        from ..zoo import core as zoo_core

        self._model_id = f"zoo:{self.cfg.model}@{zoo_core.key(self.cfg.model)}"
        self.xtr, self.ytr = digits("train", size)
        self.xte, self.yte = digits("test", size)
        self.input_shape = [1, 1, size, size]
        self.num_classes = 10
        self.has_quality = True
        self.protocol = f"top1/digits-test/n={len(self.yte)}/{size}px"

    def _init_random(self) -> None:
        spec = PAPER_ARCHS[self.cfg.model]
        self.arch, self.input_shape, self.num_classes = spec["arch"], spec["input"], spec["classes"]
        torch.manual_seed(self.ctx.seed)
        self.dense = build_arch(self.arch)
        self._model_id = f"arch:{self.cfg.model}(random)"
        # calibration for data-driven criteria on random weights: seeded random inputs and labels
        g = torch.Generator().manual_seed(self.ctx.seed)
        n = self.cfg.calib_batches * self.cfg.calib_batch_size
        self.xtr = torch.randn(n, *self.input_shape[1:], generator=g)
        self.ytr = torch.randint(0, self.num_classes, (n,), generator=g)
        self.xte = self.yte = None
        self.has_quality = False
        self.protocol = ""

    def _init_paper(self) -> None:
        from ..safeio import load_tensors

        spec = PAPER_ARCHS[self.cfg.model]
        self.arch, self.input_shape, self.num_classes = spec["arch"], spec["input"], spec["classes"]
        wpath = local_path(self.cfg.weights, f"dense {self.cfg.model} weights (state dict)",
                           "pass --set weights=/path/to/model.safetensors (or a weights-only .pth) whose keys "
                           "match benchmarks.pruning / timm", env="EFFBENCH_CLS_WEIGHTS")
        dpath = local_path(self.cfg.data, f"{spec['dataset']} dataset",
                           "pass --set data=/path/to/root (CIFAR: torchvision layout, no download; ImageNet: "
                           "folder with train/ and val/ ImageFolders)", env="EFFBENCH_CLS_DATA")
        self.dense = build_arch(self.arch)
        state = load_tensors(wpath)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        self.dense.load_state_dict(state)
        self._model_id = f"arch:{self.cfg.model}@{wpath.name}"
        self.has_quality = True
        self._load_paper_data(spec["dataset"], dpath)

    def _load_paper_data(self, dataset: str, root: Path) -> None:
        if dataset.startswith("cifar"):
            import torchvision
            import torchvision.transforms as T

            mean, std = CIFAR_MEAN_STD[dataset]
            cls = torchvision.datasets.CIFAR10 if dataset == "cifar10" else torchvision.datasets.CIFAR100
            try:
                tr = cls(str(root), train=True, download=False)
                te = cls(str(root), train=False, download=False)
            except RuntimeError as e:
                raise MissingAssetError(f"{dataset} in torchvision layout", "put the extracted python version under "
                                        "the data folder (no download happens here)", [str(root)]) from e
            norm = T.Normalize(mean, std)

            def to_t(ds):
                x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div(255)
                return norm(x), torch.tensor(ds.targets)

            self.xtr, self.ytr = to_t(tr)
            self.xte, self.yte = to_t(te)
            if self.cfg.eval_limit:
                self.xte, self.yte = self.xte[: self.cfg.eval_limit], self.yte[: self.cfg.eval_limit]
            self.protocol = f"top1/{dataset}-test/n={len(self.yte)}"
            return
        # ImageNet: val/ through the shared evaluator (benchmarks/imagenet_eval.py, timm eval transforms);
        # train/ (ImageFolder) for Taylor batches, with the same eval transform (official prune.py)
        try:
            from .. import imagenet_eval
        except ImportError:
            raise MissingAssetError(
                "ImageNet evaluator (benchmarks/imagenet_eval.py)",
                "the paper track's ImageNet top-1 needs the shared evaluator, absent from this checkout "
                "(hook: ClassificationTask._load_paper_data)", [str(root)]) from None
        self.imagenet = imagenet_eval
        self.imagenet_val = root / "val" if (root / "val").is_dir() else root
        self.imagenet_train = root / "train"
        self.xtr = self.ytr = self.xte = self.yte = None
        self.protocol = "top1/imagenet-val/timm-eval"

    def _imagenet_batches(self, bs: int, n: int, seed: int) -> list:
        from torchvision.datasets import ImageFolder

        if not self.imagenet_train.is_dir():
            raise MissingAssetError("ImageNet train/ folder (Taylor / Hessian batches, recovery)",
                                    "pass --set data=/path/to/imagenet holding train/ and val/ ImageFolders",
                                    [str(self.imagenet_train)])
        tf, _ = self.imagenet.eval_transform(self.dense)
        ds = ImageFolder(str(self.imagenet_train), transform=tf)
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(ds), generator=g)[: bs * n].tolist()
        out = []
        for i in range(0, len(idx), bs):
            items = [ds[j] for j in idx[i:i + bs]]
            out.append((torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])))
        return out

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def task_id(self) -> str:
        return f"classification/{self.cfg.model}"

    # -- subjects -------------------------------------------------------------------------------

    def _calib(self) -> list:
        if self.xtr is None:   # ImageNet train/ folder
            return self._imagenet_batches(self.cfg.calib_batch_size, self.cfg.calib_batches, self.ctx.seed)
        return _batches(self.xtr, self.ytr, self.cfg.calib_batch_size, self.cfg.calib_batches, self.ctx.seed)

    def subject(self) -> PruneSubject:
        seed_everything(self.ctx.seed)
        model = copy.deepcopy(self.dense).eval()
        calib = self._calib()
        return PruneSubject(
            model=model, arch=self.arch, example_inputs=self.example_inputs.to(self.device),
            num_classes=self.num_classes, calib=lambda: calib,
            train_batches=lambda n: self._train_batches(n, self.cfg.calib_batch_size, self.ctx.seed + 1),
            defaults=self.cfg.prune_defaults(), cfg=self.cfg, log=self.ctx.log)

    def _train_batches(self, n: int, bs: int, seed: int) -> list:
        if self.xtr is None:
            return self._imagenet_batches(bs, n, seed)
        return _batches(self.xtr, self.ytr, bs, n, seed)

    # -- evaluation -----------------------------------------------------------------------------

    @torch.no_grad()
    def _accuracy(self, model: nn.Module) -> float:
        model.eval()
        if self.xte is None:
            m = self.imagenet.evaluate_imagefolder(model, root=str(self.imagenet_val), batch_size=self.cfg.eval_batch,
                                                   limit=self.cfg.eval_limit or None, device=self.device,
                                                   progress=self.ctx.progress)["top1"]
            self.protocol = m.protocol
            return float(m.value)
        correct = 0
        for i in range(0, len(self.xte), self.cfg.eval_batch):
            out = model(self.xte[i:i + self.cfg.eval_batch].to(self.device))
            correct += (out.argmax(1).cpu() == self.yte[i:i + self.cfg.eval_batch]).sum().item()
        return correct / len(self.xte)

    def recover(self, model: nn.Module) -> dict:
        """Fine-tune the pruned model for `recover_steps` mini-batches (AdamW, cosine), with KD from the
        dense teacher when `recover_kd`: loss = (1-a) CE + a T^2 KL(p_T(teacher) || p_T(student))
        (Hinton et al. 2015; Isomorphic Pruning fine-tunes with distillation). Same budget for every variant."""
        cfg = self.cfg
        if cfg.recover_steps == 0 or not self.has_quality:
            return {"steps": 0}
        seed_everything(self.ctx.seed)
        batches = self._train_batches(cfg.recover_steps, cfg.recover_batch, self.ctx.seed + 2)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.recover_lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, cfg.recover_steps))))
        teacher = self.dense if cfg.recover_kd else None
        model.train()
        last = 0.0
        for x, y in batches:
            x, y = x.to(self.device), y.to(self.device)
            logits = _logits(model(x))
            loss = F.cross_entropy(logits, y)
            if teacher is not None:
                with torch.no_grad():
                    t = _logits(teacher(x))
                T = cfg.kd_temperature
                kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
                loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = float(loss.detach())
        model.eval()
        return {"steps": cfg.recover_steps, "lr": cfg.recover_lr, "kd": cfg.recover_kd, "final_loss": last}

    def evaluate(self, subject: PruneSubject, variant: Variant, ctx: RunContext) -> Outcome:
        from ..efficiency import timed

        model = subject.model.eval()
        res = subject.result
        notes: dict[str, Any] = {}
        metrics: dict[str, Metric] = {}
        pruned = res is not None
        if self.has_quality:
            top1_pruned = self._accuracy(model)
            rec = self.recover(model) if pruned else {"steps": 0}
            top1 = self._accuracy(model) if rec["steps"] else top1_pruned
            proto = self.protocol
            metrics["top1"] = Metric(100 * top1, True, f"{proto}/recover={self.cfg.recover_steps}"
                                     f"{'+kd' if self.cfg.recover_kd else ''}", unit="%")
            metrics["top1_pruned"] = Metric(100 * top1_pruned, True, proto, unit="%")
            metrics["top1_dense"] = Metric(100 * self.dense_top1, True, proto, unit="%")
            notes["recovery"] = rec
        macs, params = count(model, subject.example_inputs)
        x = torch.randn(self.cfg.latency_batch, *self.input_shape[1:],
                        generator=torch.Generator().manual_seed(1)).to(self.device)
        lat, mem = timed(lambda: model(x), ctx.latency, self.device, per="batch")
        eff = {"params": params, "macs": macs, "macs_per": "image", "mac_counter": "torch_pruning",
               "latency": {**lat.to_dict(), "batch": self.cfg.latency_batch}, "peak_memory": mem}
        if pruned:
            notes["prune"] = res.to_dict()
            notes["params_ratio"] = res.base_params / max(1, res.params)
            notes["mac_ratio"] = res.base_macs / max(1, res.macs)
            if ctx.reference is not None and "latency" in ctx.reference.efficiency:
                notes["latency_speedup"] = ctx.reference.efficiency["latency"]["mean"] / lat.mean
            if self.cfg.save_models and ctx.artifact_dir is not None:
                save_pruned(model, Path(ctx.artifact_dir) / "pruned.safetensors", subject.arch,
                            list(self.input_shape), res, extra={"variant": variant.name})
                notes["saved"] = "pruned.safetensors (arch + pruning plan + weights; benchmarks.pruning.load_pruned)"
        if not self.has_quality:
            notes["quality"] = "random weights: efficiency only"
        return Outcome(metrics=metrics, efficiency=eff, notes=notes)

    def release(self, subject: Any) -> None:
        pass


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)):   # distilled DeiT in train mode: (cls head, distillation head)
        return (out[0] + out[1]) / 2
    return out


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
