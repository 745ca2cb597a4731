"""Text-to-audio sampling task: quality and cost of a (possibly accelerated) AudioLDM-style pipeline.

- Mini-world (`model: zoo:audioldm_tones`): one clip per caption (balanced over the 12 sound classes)
  from fixed per-clip seeds (same seeds for every variant), at the main length `seconds`; quality with
  benchmarks.metrics.audio (FAD / KL / IS / CLAP-style score / classifier accuracy on the classifier
  embedding) plus mel PSNR against the reference variant's clips from the same seeds; latency of one
  sampling call of `latency_batch` clips (per clip; the pipeline stops after the VAE: the vocoder is not
  timed, metrics are computed on log-mels); MACs of the denoiser per clip (aten counter); params.
- Scaling study (`lengths`): for every length, latency per clip and, with `length_samples` > 0, accuracy
  and mel PSNR against the reference variant at that length; per-length speedups against the reference
  variant are added to `efficiency.scaling` and plotted into the run's artifacts (scaling.png).
- User weights (`model: hf:<path>`): a local AudioLDM / AudioLDM2 diffusers pipeline; efficiency and mel
  fidelity only unless `embedding_path` names the user's exported embedding model (VGGish / PANNs / CLAP).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .. import efficiency as eff
from ..api import Metric, Outcome, RunContext, Task, Variant, register_task
from ..config import BaseConfig, check_choice, check_positive
from ..errors import ConfigError


@dataclass(frozen=True)
class AudioConfig(BaseConfig):
    task: str = "audio"
    model: str = "zoo:audioldm_tones"
    scheduler: str = "ddim"
    steps: int = 20
    guidance_scale: float = 2.5
    seconds: float = 0.64              # main clip length: quality metrics and the record's latency
    num_samples: int = 48              # clips for quality (balanced over classes); 0: efficiency only
    batch_size: int = 12
    latency_batch: int = 1
    quality: tuple[str, ...] = ("fad", "kl", "is", "clap_score", "accuracy", "mel_psnr")
    lengths: tuple[float, ...] = ()    # scaling study: clip lengths in seconds
    length_samples: int = 0            # clips per scaling length for accuracy / mel PSNR (0: latency only)
    embedding_path: str = ""           # paper track: user's TorchScript embedding (VGGish / PANNs / CLAP)
    mac_counter: str = "aten"

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..metrics.audio import AUDIO_METRICS

        check_choice(self, "scheduler", ("ddim", "pndm", "dpm", "ddpm"))
        check_choice(self, "quality", AUDIO_METRICS)
        check_choice(self, "mac_counter", ("aten",))
        check_positive(self, "steps", "batch_size", "latency_batch", "seconds")
        if self.lengths:
            check_positive(self, "lengths")
        if self.num_samples < 0 or self.length_samples < 0:
            raise ConfigError("num_samples and length_samples must be >= 0")
        if not self.model.startswith(("zoo:", "hf:")):
            raise ConfigError(f"bad value {self.model!r} for key 'model': use zoo:<name> or hf:<path>")


@dataclass
class AudioSubject:
    pipe: Any
    steps: int
    guidance_scale: float
    undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.unet

    def release(self) -> None:
        while self.undo:
            self.undo.pop()()


@torch.no_grad()
def sample_mels(subject: AudioSubject, prompts: list[str], seconds: float, seed: int) -> torch.Tensor:
    """One clip per prompt (clip i uses seed + i), returned as log-mels [B, 1, frames, mels]."""
    from ..zoo.models.audio import generate_mels

    return generate_mels(subject.pipe, prompts, seconds, subject.steps, subject.guidance_scale, seed)


@contextlib.contextmanager
def _count_macs(denoiser: torch.nn.Module):
    """Denoiser MACs (aten). SDPA runs on its math backend while counting: the fused CPU kernels have no
    FLOP formula in torch's counter, so full attention would otherwise count as zero MACs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .diffusion import count_denoiser_macs

    with sdpa_kernel(SDPBackend.MATH), count_denoiser_macs(denoiser) as m:
        yield m


@register_task("audio")
class AudioTask(Task):
    version = 1

    def __init__(self, cfg: AudioConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        kind, _, name = cfg.model.partition(":")
        self.kind, self.source = kind, name
        if kind == "zoo":
            from .. import zoo

            self.pipe = zoo.load(name, progress=ctx.progress)
            self._model_id = zoo.model_id(name)
        else:
            from diffusers import DiffusionPipeline

            from ..assets import hf_model

            path = hf_model(name, what=f"AudioLDM / AudioLDM2 diffusers pipeline {name!r}")
            self.pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
            self._model_id = f"hf:{name}"
        self.pipe = self.pipe.to(ctx.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.embedding = None
        if cfg.embedding_path:
            from ..assets import local_path
            from ..metrics.audio import TorchScriptEmbedding

            p = local_path(cfg.embedding_path, "audio embedding model (VGGish / PANNs / CLAP, TorchScript)",
                           "export the model with torch.jit.script/trace to a local file and pass --set embedding_path=...")
            self.embedding = TorchScriptEmbedding(str(p), name=p.stem)
        from ..zoo.models.audio import CLASSES, caption

        n = cfg.num_samples
        self.labels = [i % len(CLASSES) for i in range(n)]
        self.prompts = [caption(l) for l in self.labels]

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def task_id(self) -> str:
        c = self.cfg
        return f"audio/{self.source}/{c.scheduler}{c.steps}/len{c.seconds:g}s/n{c.num_samples}"

    def subject(self) -> AudioSubject:
        from .diffusion import make_scheduler

        pipe = type(self.pipe)(**self.pipe.components)
        pipe.scheduler = make_scheduler(self.cfg.scheduler, self.pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        return AudioSubject(pipe, self.cfg.steps, self.cfg.guidance_scale)

    def release(self, subject: AudioSubject) -> None:
        subject.release()

    # -----------------------------------------------------------------------------------------
    def evaluate(self, subject: AudioSubject, variant: Variant, ctx: RunContext) -> Outcome:
        cfg, out = self.cfg, Outcome()
        seed = ctx.seed * 100_003
        ref_payload = ctx.reference.payload if ctx.reference is not None else None
        payload: dict[str, Any] = {}
        if cfg.num_samples:
            mels = torch.cat([sample_mels(subject, self.prompts[i:i + cfg.batch_size], cfg.seconds, seed + i)
                              for i in ctx.bar(range(0, cfg.num_samples, cfg.batch_size), desc="sampling")])
            payload["main"] = mels
            out.metrics.update(self._quality(mels, cfg.seconds, ref_payload, "main"))
        one = (self.prompts or ["a mid tone"])[: cfg.latency_batch]
        one = (one * cfg.latency_batch)[: cfg.latency_batch]
        with torch.inference_mode(), _count_macs(subject.denoiser) as m:
            sample_mels(subject, one[:1], cfg.seconds, seed)
        lat, mem = eff.timed(lambda: sample_mels(subject, one, cfg.seconds, seed), ctx.latency, ctx.device)
        e = out.efficiency
        e["params"] = eff.count_params(subject.denoiser)
        e["macs"], e["macs_per"], e["mac_counter"] = m["macs"], "sample", "aten(denoiser)"
        e["macs_per_step"] = m["macs"] / max(m["calls"], 1)
        e["latency"] = lat.scaled(1.0 / len(one), per="sample").to_dict()
        e["peak_memory"] = mem
        if cfg.lengths:
            e["scaling"] = self._scaling(subject, ctx, seed, payload, ref_payload)
            self._plot(e["scaling"], ctx, variant)
        out.payload = payload
        out.notes.update(steps=subject.steps, seconds=cfg.seconds, latency_excludes="vocoder (metrics use log-mels)")
        return out

    def _quality(self, mels: torch.Tensor, seconds: float, ref_payload: Any, key: str,
                 labels: list[int] | None = None, names: tuple[str, ...] | None = None) -> dict[str, Metric]:
        from ..metrics.audio import audio_quality, mel_psnr

        labels = labels if labels is not None else self.labels[: len(mels)]
        names = names or self.cfg.quality
        ref = ref_payload.get(key) if isinstance(ref_payload, dict) else None
        if self.kind == "zoo" or self.embedding is not None:
            from ..zoo.models.audio import caption

            return audio_quality(mels, labels, [caption(l) for l in labels], seconds, names=names,
                                 embedding=self.embedding, reference=ref)
        res = {}
        if "mel_psnr" in names and ref is not None and ref.shape == mels.shape:
            res["mel_psnr"] = Metric(mel_psnr(mels, ref), True, f"mel_psnr/vs-reference-variant/n={len(mels)}", 1, "dB")
        return res

    def _scaling(self, subject: AudioSubject, ctx: RunContext, seed: int, payload: dict, ref_payload: Any) -> dict:
        cfg = self.cfg
        ref_scaling = ctx.reference.efficiency.get("scaling", {}) if ctx.reference is not None else {}
        rows: dict[str, dict] = {}
        for length in ctx.bar(cfg.lengths, desc="lengths"):
            key = f"{length:g}s"
            row: dict[str, Any] = {"seconds": length}
            if cfg.length_samples:
                labels = [i % 12 for i in range(cfg.length_samples)]
                from ..zoo.models.audio import caption

                mels = sample_mels(subject, [caption(l) for l in labels], length, seed + 7)
                payload[key] = mels
                q = self._quality(mels, length, ref_payload, key, labels, names=("accuracy", "mel_psnr"))
                row.update({k: v.value for k, v in q.items()})
            lat = eff.measure_latency(lambda: sample_mels(subject, ["a mid tone"], length, seed), device=ctx.device,
                                      per="sample", **{**ctx.latency, "min_reps": min(ctx.latency.get("min_reps", 3), 3)})
            row["latency"] = lat.mean
            row["latency_std"] = lat.std
            row["latency_n"] = len(lat.values)
            if key in ref_scaling and ref_scaling[key].get("latency"):
                row["speedup"] = ref_scaling[key]["latency"] / lat.mean
            rows[key] = row
        return rows

    def _plot(self, scaling: dict, ctx: RunContext, variant: Variant) -> None:
        if ctx.artifact_dir is None or ctx.reference is None:
            return
        ref = ctx.reference.efficiency.get("scaling", {})
        pts = [(r["seconds"], r["speedup"]) for k, r in scaling.items() if "speedup" in r and k in ref]
        if not pts:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        xs = [p[0] for p in pts]
        ax[0].plot(xs, [ref[f"{x:g}s"]["latency"] for x in xs], "o-", label="reference")
        ax[0].plot(xs, [scaling[f"{x:g}s"]["latency"] for x in xs], "s-", label=variant.name)
        ax[0].set(xlabel="audio length (s)", ylabel="latency per clip (s)", xscale="log", yscale="log")
        ax[0].legend(fontsize=7)
        ax[1].plot(xs, [p[1] for p in pts], "o-")
        ax[1].axhline(1.0, color="grey", lw=0.8)
        ax[1].set(xlabel="audio length (s)", ylabel="speedup vs reference", xscale="log")
        for a in ax:
            a.minorticks_off()
            a.set_xticks(xs)
            a.set_xticklabels([f"{x:g}" for x in xs])
        fig.tight_layout()
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(ctx.artifact_dir / "scaling.png", dpi=120)
        plt.close(fig)
