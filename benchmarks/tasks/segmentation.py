"""Promptable segmentation (Segment Anything): mIoU with box and point prompts + efficiency.

Models (`model` key):
- `zoo:sam_shapes`   mini-world: a small `SamModel` trained on synthetic shapes (benchmarks/zoo/models/sam.py);
                     quality = mIoU on the shapes test split with one box / one point prompt per mask.
- `arch:sam-vit-b`   SAM-B's architecture (transformers `SamConfig()` defaults: ViT-B, 1024x1024 input)
                     with random weights: params / MACs / latency only, never quality.
- `hf:<repo-or-path>` the user's SAM weights; quality needs an SA-1B shard (`data=`); fails fast with
                     MissingAssetError when either is absent.

Efficiency: `params` = all SamModel parameters; `params_modules` = parameters owned by Conv/Linear/
Norm/Embedding modules (the convention of module-hook counters such as thop, which leave out the free
`pos_embed` and relative-position tables); `macs` = Torch-Pruning's counter on one full forward (image
encoder + prompt encoder + mask decoder, one box prompt), which omits attention matmuls like the
SlimSAM paper's MAC column (SlimSAM #18); latency = that forward for `latency_batch` images, per image.
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

PROMPTS = ("box", "point")


@dataclass(frozen=True)
class SegmentationConfig(BaseConfig):
    task: str = "segmentation"
    model: str = "zoo:sam_shapes"    # zoo:<entry> | arch:sam-vit-b | hf:<repo-or-local-path>
    data: str = ""                   # paper track: folder of an SA-1B shard (jpg + json), or $EFFBENCH_SA1B
    eval_images: int = 200           # test images for mIoU (0: efficiency only)
    prompts: tuple[str, ...] = PROMPTS
    latency_batch: int = 1
    mac_counter: str = "torch_pruning"
    eval_batch: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "prompts", PROMPTS)
        check_choice(self, "mac_counter", ("torch_pruning", "aten"))
        check_positive(self, "latency_batch", "eval_batch")
        if self.eval_images < 0:
            raise ConfigError("eval_images must be >= 0")
        if not self.model.split(":", 1)[0] in ("zoo", "arch", "hf") or ":" not in self.model:
            raise ConfigError(f"bad value {self.model!r} for key 'model': expected zoo:<entry>, arch:sam-vit-b or hf:<path>")


@dataclass
class SamSubject:
    """What a compression method gets: `model` (a private SamModel copy, mutate freely), `teacher`
    (the original model, shared: never mutate), `unlabeled_images(n, seed)` -> pixel_values [n,3,S,S]
    (training images without masks, for calibration/distillation), `cfg` (the resolved method config)."""

    model: Any
    teacher: Any
    unlabeled_images: Callable[[int, int], torch.Tensor]
    cfg: Any
    image_size: int
    info: dict = field(default_factory=dict)     # set by methods: structure etc. (copied into record notes)
    undo: list = field(default_factory=list)


ARCHES = {"sam-vit-b": {}}


@register_task("segmentation")
class SegmentationTask(Task):
    version = 1

    def __init__(self, cfg: SegmentationConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        kind, name = cfg.model.split(":", 1)
        self.kind, self.entry = kind, name
        self.data = None
        if kind == "zoo":
            from ..zoo import core as zoo
            from ..zoo.models import sam as world

            self._world = world
            self.teacher = zoo.load(name, progress=ctx.progress).eval()
            self._key = zoo.key(name)
            self.image_size = self.teacher.config.vision_config.image_size
            if cfg.eval_images:
                test = world.shapes("test")
                n = min(cfg.eval_images, len(test["images"]))
                keep = test["image_index"] < n
                self.data = {"images": test["images"][:n], "masks": test["masks"][keep],
                             "boxes": test["boxes"][keep], "points": test["points"][keep],
                             "image_index": test["image_index"][keep]}
        elif kind == "arch":
            from transformers import SamConfig, SamModel

            if name not in ARCHES:
                raise ConfigError(f"unknown SAM architecture {name!r}; valid: {', '.join(ARCHES)}")
            torch.manual_seed(ctx.seed)
            self.teacher = SamModel(SamConfig(**ARCHES[name])).eval()
            self.image_size = self.teacher.config.vision_config.image_size
            self._key = "random"
        else:
            from ..assets import hf_model, local_path

            path = hf_model(name, "SAM weights (e.g. facebook/sam-vit-base)")
            local_path(cfg.data or None, "an SA-1B shard (images + annotation json)",
                       "download one SA-1B tar from https://ai.meta.com/datasets/segment-anything/ , unpack it "
                       "and pass --set data=/path/to/shard or set $EFFBENCH_SA1B", env="EFFBENCH_SA1B")
            raise EffbenchError(f"SAM weights at {path} and SA-1B found, but the SA-1B mIoU protocol is not "
                                "implemented in this version (mini-world and paper_arch only)")
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @property
    def model_id(self) -> str:
        if self.kind == "zoo":
            return f"zoo:{self.entry}@{self._key}"
        return f"{self.entry}-arch(random)"

    @property
    def task_id(self) -> str:
        return f"segmentation/{self.entry}"

    # -----------------------------------------------------------------------------------------
    def _unlabeled(self, n: int, seed: int) -> torch.Tensor:
        if self.kind == "zoo":
            imgs = self._world.shapes("train")["images"]
            idx = torch.randperm(len(imgs), generator=torch.Generator().manual_seed(seed))[:n]
            return self._world.normalize(imgs[idx])
        # random-weight architecture: there is no data; noise images only drive shapes and MAC counts
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, 3, self.image_size, self.image_size, generator=g)

    def subject(self) -> SamSubject:
        model = copy.deepcopy(self.teacher)
        for p in model.parameters():
            p.requires_grad_(True)
        return SamSubject(model=model, teacher=self.teacher, unlabeled_images=self._unlabeled, cfg=self.cfg,
                          image_size=self.image_size)

    # -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _miou(self, model, prompt: str) -> float:
        from ..metrics.segmentation import miou
        from ..zoo.models.sam import normalize, predict_masks

        d, bs = self.data, self.cfg.eval_batch
        emb = torch.cat([model.get_image_embeddings(normalize(d["images"][i:i + bs]))
                         for i in range(0, len(d["images"]), bs)])
        preds = []
        for s in range(0, len(d["masks"]), bs):
            rows = torch.arange(s, min(s + bs, len(d["masks"])))
            preds.append(predict_masks(model, emb[d["image_index"][rows]], d, rows, prompt) > 0)
        return miou(torch.cat(preds), d["masks"], d["image_index"])

    def _inputs(self, batch: int) -> dict:
        g = torch.Generator().manual_seed(0)
        s = self.image_size
        x = torch.randn(batch, 3, s, s, generator=g)
        box = torch.tensor([[[s * 0.2, s * 0.25, s * 0.6, s * 0.7]]]).repeat(batch, 1, 1)
        return {"pixel_values": x, "input_boxes": box, "multimask_output": False}

    def evaluate(self, subject: SamSubject, variant: Variant, ctx: RunContext) -> Outcome:
        from ..metrics.segmentation import protocol

        model = subject.model.eval()
        metrics = {}
        if self.data is not None:
            n_img, n_mask = len(self.data["images"]), len(self.data["masks"])
            for prompt in self.cfg.prompts:
                metrics[f"miou_{prompt}"] = Metric(100 * self._miou(model, prompt), True,
                                                   protocol(prompt, f"shapes-test@{self.entry}", n_img, n_mask),
                                                   unit="%")
        one = self._inputs(1)
        if self.cfg.mac_counter == "torch_pruning":
            macs = macs_torch_pruning(model, one)
        else:
            macs = macs_aten(lambda: model(**one))
        inputs = self._inputs(self.cfg.latency_batch)
        lat, mem = timed(lambda: model(**inputs), ctx.latency, ctx.device, per="call")
        lat = lat.scaled(1.0 / self.cfg.latency_batch, per="image")
        enc = model.vision_encoder
        eff = {"params": count_params(model), "params_modules": _module_params(model),
               "params_encoder": count_params(enc), "macs": int(macs), "macs_per": "image",
               "mac_counter": self.cfg.mac_counter, "latency": lat.to_dict(), "peak_memory": mem,
               "input_size": self.image_size}
        notes = dict(subject.info)
        notes["encoder_structure"] = encoder_structure(enc)
        return Outcome(metrics=metrics, efficiency=eff, notes=notes)


def _module_params(model: torch.nn.Module) -> int:
    """Parameters owned by Conv/Linear/LayerNorm/Embedding modules (what module-hook counters like
    thop report): free parameters such as SAM's pos_embed and rel-pos tables are left out."""
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Embedding)
    seen, total = set(), 0
    for m in model.modules():
        if isinstance(m, kinds):
            for p in m.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


def encoder_structure(encoder: torch.nn.Module) -> dict:
    """Widths of a SAM image encoder (fused-qkv or split q/k/v attention): embedding dim, per-block
    per-head q/k and v dims, MLP hidden."""
    qk, v = [], []
    for layer in encoder.layers:
        a = layer.attn
        h = a.num_attention_heads
        if hasattr(a, "qkv"):
            qk.append(a.qkv.out_features // 3 // h)
            v.append(a.qkv.out_features // 3 // h)
        else:
            qk.append(a.q.out_features // h)
            v.append(a.v.out_features // h)
    return {"embed_dim": int(encoder.patch_embed.projection.out_channels),
            "heads": int(encoder.layers[0].attn.num_attention_heads), "qk_head_dim": qk, "v_head_dim": v,
            "mlp_dim": [layer.mlp.lin1.out_features for layer in encoder.layers]}
