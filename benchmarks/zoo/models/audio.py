"""Mini-world audio: synthetic captioned sounds, a tiny AudioLDM pipeline and an audio classifier.

Data (generated in code, 16 kHz): four families (tone, chirp, noise burst, rhythm) x three registers
(low, mid, high) = 12 classes, with random pitch inside the register, random onset/duration, harmonic
timbre and level. Captions name register and family ("a high chirp"). Audio is represented as a 32-bin
log-mel spectrogram, 100 frames per second (hop 160), normalised to about zero mean / unit scale.

- `audio_classifier` (zoo entry): a small CNN on log-mels -> 12 classes; its pooled 64-d features are the
  default embedding of the audio metrics (benchmarks/metrics/audio.py), its softmax the label distribution.
- `audioldm_tones` (zoo entry): a diffusers `AudioLDMPipeline` with tiny components: AutoencoderKL on mels
  (x4 down, 8 latent channels), AudioLDM-style UNet (text embedding as class embedding, attention at the
  two lower resolutions, frequency width 8 at the first attention level as in AudioLDM), CLAP text
  encoder + in-memory RobertaTokenizer, an untrained tiny SpeechT5HifiGan vocoder (metrics work on mels;
  the vocoder only makes `output_type="np"` run). Trained from scratch: VAE; text encoder (to separate the
  13 captions incl. the empty one), then frozen; UNet with 10% caption dropout for classifier-free guidance.
"""
from __future__ import annotations

import json
import math
from pathlib import Path


import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import ZooContext, register_zoo

SR = 16000
HOP = 160
N_FFT = 512
N_MELS = 32
FAMILIES = ("tone", "chirp", "noise burst", "rhythm")
REGISTERS = ("low", "mid", "high")
REGISTER_HZ = {"low": (150.0, 400.0), "mid": (500.0, 1200.0), "high": (1600.0, 3600.0)}
CLASSES = [f"{r} {f}" for f in FAMILIES for r in REGISTERS]       # label = 3 * family + register
MEL_MEAN, MEL_STD = -6.0, 3.0                                      # fixed normalisation of log-mels


def caption(label: int) -> str:
    return f"a {CLASSES[label]}"


def label_of_caption(text: str) -> int | None:
    t = text.lower()
    for i, c in enumerate(CLASSES):
        if c in t:
            return i
    return None


# ---------------------------------------------------------------------------------------------
# synthesis

def synth(label: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One clip of class `label`; events repeat to fill long clips (one event every ~1.3 s)."""
    fam, reg = FAMILIES[label // 3], REGISTERS[label % 3]
    n = int(round(seconds * SR))
    out = np.zeros(n, dtype=np.float64)
    period = 0.64
    starts = np.arange(0.0, max(seconds, 1e-3), period)
    lo, hi = REGISTER_HZ[reg]
    for s0 in starts:
        win = min(period, seconds - s0)
        dur = rng.uniform(0.45, 0.9) * win
        onset = s0 + rng.uniform(0.0, win - dur)
        i0, m = int(onset * SR), int(dur * SR)
        if m < 16:
            continue
        t = np.arange(m) / SR
        f0 = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        harm = rng.integers(1, 4)
        if fam == "tone":
            sig = sum((0.6 ** k) * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 6.28)) for k in range(harm))
        elif fam == "chirp":
            f1 = f0 * rng.uniform(1.4, 2.0)
            phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * dur))
            sig = sum((0.6 ** k) * np.sin((k + 1) * phase) for k in range(harm))
        elif fam == "noise burst":
            spec = np.fft.rfft(rng.standard_normal(m))
            freqs = np.fft.rfftfreq(m, 1 / SR)
            band = np.exp(-0.5 * (np.log(np.maximum(freqs, 1.0) / f0) / 0.25) ** 2)
            sig = np.fft.irfft(spec * band, n=m)
            sig /= np.abs(sig).max() + 1e-9
        else:  # rhythm: short pips at 4-8 Hz
            rate = rng.uniform(4.0, 8.0)
            gate = ((t * rate) % 1.0) < 0.35
            sig = np.sin(2 * np.pi * f0 * t) * gate
        env = np.minimum(1.0, np.minimum(t, dur - t) / 0.01)
        out[i0:i0 + m] += rng.uniform(0.3, 0.9) * sig * env
    out += 0.003 * rng.standard_normal(n)
    return out.astype(np.float32)


def _mel_fb() -> torch.Tensor:
    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel2hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    pts = mel2hz(np.linspace(hz2mel(0.0), hz2mel(SR / 2), N_MELS + 2))
    freqs = np.linspace(0, SR / 2, N_FFT // 2 + 1)
    fb = np.zeros((N_MELS, len(freqs)))
    for i in range(N_MELS):
        l, c, r = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((freqs - l) / (c - l), (r - freqs) / (r - c)), 0, None)
    return torch.tensor(fb, dtype=torch.float32)


_FB: list[torch.Tensor] = []


def log_mel(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    """[B, S] or [S] waveform -> normalised log-mel [B, 1, frames, 64] (frames = S // HOP)."""
    w = torch.as_tensor(wave, dtype=torch.float32)
    if w.dim() == 1:
        w = w[None]
    if not _FB:
        _FB.append(_mel_fb())
    frames = w.shape[-1] // HOP
    spec = torch.stft(w, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs() ** 2
    mel = torch.einsum("mf,bft->btm", _FB[0], spec)[:, :frames]
    return ((torch.log(mel + 1e-5) - MEL_MEAN) / MEL_STD).unsqueeze(1)


def make_dataset(n_per_class: int, seconds: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    rng.shuffle(labels)
    waves = np.stack([synth(int(l), seconds, rng) for l in labels])
    mels = torch.cat([log_mel(waves[i:i + 256]) for i in range(0, len(waves), 256)])
    return mels, torch.as_tensor(labels)


# ---------------------------------------------------------------------------------------------
# classifier (metric embedding)

class AudioClassifier(nn.Module):
    """Log-mel CNN: features() -> [B, 64] pooled embedding, forward() -> logits over CLASSES."""

    def __init__(self, width: int = 32, emb: int = 64, classes: int = len(CLASSES)):
        super().__init__()
        c = width
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, emb, 3, padding=1), nn.BatchNorm2d(emb), nn.ReLU())
        self.head = nn.Linear(emb, classes)
        self.config = {"width": width, "emb": emb, "classes": classes}

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.net(mel)
        return h.mean(dim=2).amax(dim=-1)           # mean over time, max over frequency: any length

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(mel))


CLS_RECIPE = {"n_per_class": 100, "seconds": 0.64, "epochs": 6, "batch": 64, "lr": 3e-3, "seed": 0, "width": 16}


def load_classifier(path: Path) -> AudioClassifier:
    from ...safeio import load_tensors, read_metadata

    cfg = read_metadata(path / "model.safetensors")["config"]
    m = AudioClassifier(**cfg)
    m.load_state_dict(load_tensors(path / "model.safetensors"))
    return m.eval()


@register_zoo("audio_classifier", CLS_RECIPE, load=load_classifier, cost=10,
              describe="log-mel CNN on the 12 synthetic sound classes (audio metric embedding)")
def train_classifier(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from ...safeio import save_module

    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    x, y = make_dataset(recipe["n_per_class"], recipe["seconds"], recipe["seed"])
    xt, yt = make_dataset(30, recipe["seconds"], recipe["seed"] + 1)
    model = AudioClassifier(width=recipe["width"])
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    g = torch.Generator().manual_seed(recipe["seed"])
    for _ in ctx.bar(range(recipe["epochs"]), desc="audio_classifier"):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(recipe["batch"]):
            xb = x[idx]
            shift = int(torch.randint(0, 20, (1,), generator=g))          # time-shift augmentation
            xb = torch.roll(xb, shift, dims=2)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    save_module(model, out / "model.safetensors", model.config)
    return {"quality": {"test_acc": acc}}


# ---------------------------------------------------------------------------------------------
# tiny AudioLDM pipeline

def _tokenizer(max_length: int = 24):
    from transformers import RobertaTokenizer

    # byte-level alphabet (GPT-2 convention): printable bytes map to themselves, the rest to 256+
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in keep]
    alphabet = [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def build_audioldm(seed: int = 0, unet_channels: tuple[int, ...] = (16, 32, 32), text_dim: int = 32):
    """Random tiny AudioLDMPipeline (offline). Latents: [B, 8, frames/4, 8]."""
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    tok = _tokenizer()
    text = ClapTextModelWithProjection(ClapTextConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        projection_dim=text_dim, max_position_embeddings=tok.model_max_length + 4, pad_token_id=1,
        type_vocab_size=1))
    vae = AutoencoderKL(in_channels=1, out_channels=1, block_out_channels=(8, 16, 16), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        latent_channels=8, norm_num_groups=4, sample_size=64)
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=(16, 8), in_channels=8, out_channels=8, block_out_channels=unet_channels, layers_per_block=1,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=unet_channels, attention_head_dim=2, norm_num_groups=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=text_dim,
        class_embeddings_concat=True)
    voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=N_MELS, sampling_rate=SR, upsample_initial_channel=64, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[10, 8, 4, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                          beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    for m in (text, vae, unet, voc):
        m.eval()                                                   # no dropout unless training
    pipe = AudioLDMPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched, vocoder=voc)
    pipe.set_progress_bar_config(disable=True)
    return pipe


LDM_RECIPE = {"n_per_class": 60, "seconds": 0.64, "seed": 0, "vae_steps": 200, "vae_batch": 16, "vae_lr": 3e-3,
              "kl_weight": 1e-6, "text_steps": 300, "text_lr": 3e-3, "unet_steps": 800, "unet_batch": 16, "unet_lr": 2e-3,
              "drop": 0.1}


def load_audioldm(path: Path):
    from diffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(str(path / "pipeline"), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


@register_zoo("audioldm_tones", LDM_RECIPE, load=load_audioldm, depends=("audio_classifier",), cost=150,
              describe="tiny AudioLDM (diffusers) trained on captioned synthetic tones/chirps/noise/rhythms")
def train_audioldm(recipe: dict, out: Path, ctx: ZooContext) -> dict:
    from diffusers import DDPMScheduler

    torch.set_num_threads(1)
    seed = recipe["seed"]
    pipe = build_audioldm(seed)
    mels, labels = make_dataset(recipe["n_per_class"], recipe["seconds"], seed + 10)
    g = torch.Generator().manual_seed(seed)
    # 1) VAE on mels
    vae = pipe.vae.train()
    opt = torch.optim.Adam(vae.parameters(), lr=recipe["vae_lr"])
    for _ in ctx.bar(range(recipe["vae_steps"]), desc="audio vae"):
        xb = mels[torch.randint(0, len(mels), (recipe["vae_batch"],), generator=g)]
        post = vae.encode(xb).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        loss = F.mse_loss(rec, xb) + recipe["kl_weight"] * post.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(mels[i:i + 128]).latent_dist.mean for i in range(0, len(mels), 128)])
        rec_err = F.mse_loss(vae.decode(lat[:64]).sample, mels[:64]).item()
    scale = float(1.0 / lat.std())
    vae.register_to_config(scaling_factor=scale)
    lat = lat * scale
    # 2) text encoder: trained to tell the 12 captions and the empty one apart (13-way head on the
    #    normalised projection), then frozen, as AudioLDM freezes CLAP (reconstruction: no CLAP here)
    unet, text, tok = pipe.unet.train(), pipe.text_encoder.train(), pipe.tokenizer
    caps = [caption(i) for i in range(len(CLASSES))] + [""]
    ids = tok(caps, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    head = nn.Linear(text.config.projection_dim, len(caps))
    opt = torch.optim.Adam(list(text.parameters()) + list(head.parameters()), lr=recipe["text_lr"])
    target = torch.arange(len(caps))
    for _ in ctx.bar(range(recipe["text_steps"]), desc="audio text encoder"):
        emb = F.normalize(text(input_ids=ids.input_ids, attention_mask=ids.attention_mask).text_embeds, dim=-1)
        loss = F.cross_entropy(head(emb) * 10.0, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    text.eval().requires_grad_(False)
    with torch.no_grad():
        table = F.normalize(text(input_ids=ids.input_ids, attention_mask=ids.attention_mask).text_embeds, dim=-1)
    text_sep = float((table @ table.T).fill_diagonal_(-1).max())
    # 3) UNet (AudioLDM conditioning: the normalised text embedding is the class embedding)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=recipe["unet_lr"], weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe["unet_steps"])
    for _ in ctx.bar(range(recipe["unet_steps"]), desc="audio unet"):
        idx = torch.randint(0, len(lat), (recipe["unet_batch"],), generator=g)
        x0, y = lat[idx], labels[idx].clone()
        y[torch.rand(len(y), generator=g) < recipe["drop"]] = len(CLASSES)        # "" caption for CFG
        emb = table[y]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(x0),), generator=g)
        pred = unet(noise_sched.add_noise(x0, noise, t), t, encoder_hidden_states=None, class_labels=emb).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
    unet.eval(), text.eval()
    pipe.save_pretrained(str(out / "pipeline"), safe_serialization=True)
    # quality: classifier accuracy of generated clips (CFG 2.5, 20 DDIM steps), one per class x 4
    clf = load_classifier(ctx.deps["audio_classifier"])
    acc = sample_accuracy(pipe, clf, per_class=4, steps=20, guidance=2.5)
    (out / "classes.json").write_text(json.dumps(CLASSES))
    return {"quality": {"vae_recon_mse": rec_err, "gen_class_acc": acc, "text_max_cos": text_sep},
            "latent_scale": scale}


@torch.no_grad()
def generate_mels(pipe, prompts: list[str], seconds: float, steps: int, guidance: float, seed: int) -> torch.Tensor:
    """Sample latents with the pipeline's own loop, decode to normalised log-mels [B, 1, frames, 64]."""
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    pipe.mel_spectrogram_to_waveform = lambda mel: mel            # stop after the VAE: metrics use mels
    try:
        out = pipe(prompt=prompts, audio_length_in_s=seconds, num_inference_steps=steps, guidance_scale=guidance,
                   generator=gens, output_type="pt").audios
    finally:
        del pipe.mel_spectrogram_to_waveform
    return out.float()


@torch.no_grad()
def sample_accuracy(pipe, clf, per_class: int, steps: int, guidance: float, seconds: float = 0.64) -> float:
    labels = [i for i in range(len(CLASSES)) for _ in range(per_class)]
    mels = generate_mels(pipe, [caption(i) for i in labels], seconds, steps, guidance, seed=1234)
    return (clf(mels).argmax(1) == torch.tensor(labels)).float().mean().item()
