"""A Llama whose layers may have different widths, so a pruned model round-trips through
`save_pretrained` / `from_pretrained`.

LLM-Pruner prunes only layers 4..29, so the layers end up with different head counts and MLP widths,
which `LlamaConfig` cannot express (official: the repo saves the whole module with `torch.save`).
`PrunedLlamaConfig` adds `layer_widths` (one {"heads", "kv_heads", "intermediate"} per layer, or None for
the dense width) and `PrunedLlamaForCausalLM` builds each layer at its width before weights load. Both
are registered with the Auto classes (`model_type = "effbench_pruned_llama"`); the weights stay in
safetensors. A hidden-size change (channel strategy) is uniform and lives in `hidden_size`, with
`head_dim` pinned in the config.
"""
from __future__ import annotations

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

MODEL_TYPE = "effbench_pruned_llama"


class PrunedLlamaConfig(LlamaConfig):
    model_type = MODEL_TYPE

    def __init__(self, layer_widths: list | None = None, **kwargs):
        self.layer_widths = layer_widths
        super().__init__(**kwargs)


class PrunedLlamaForCausalLM(LlamaForCausalLM):
    config_class = PrunedLlamaConfig

    def __init__(self, config: PrunedLlamaConfig):
        super().__init__(config)
        resize_layers(self, config)


def resize_layers(model: LlamaForCausalLM, config) -> None:
    """Rebuild q/k/v/o and gate/up/down of each layer at the widths in `config.layer_widths`."""
    widths = getattr(config, "layer_widths", None) or []
    hd = config.head_dim
    H = config.hidden_size
    for layer, w in zip(model.model.layers, widths):
        if not w:
            continue
        att, mlp = layer.self_attn, layer.mlp
        ab, mb = bool(config.attention_bias), bool(getattr(config, "mlp_bias", False))
        dev, dt = att.q_proj.weight.device, att.q_proj.weight.dtype
        kw = {"device": dev, "dtype": dt}
        att.q_proj = nn.Linear(H, w["heads"] * hd, bias=ab, **kw)
        att.k_proj = nn.Linear(H, w["kv_heads"] * hd, bias=ab, **kw)
        att.v_proj = nn.Linear(H, w["kv_heads"] * hd, bias=ab, **kw)
        att.o_proj = nn.Linear(w["heads"] * hd, H, bias=ab, **kw)
        mlp.gate_proj = nn.Linear(H, w["intermediate"], bias=mb, **kw)
        mlp.up_proj = nn.Linear(H, w["intermediate"], bias=mb, **kw)
        mlp.down_proj = nn.Linear(w["intermediate"], H, bias=mb, **kw)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = w["intermediate"]


def layer_widths(model: LlamaForCausalLM) -> list[dict]:
    hd = model.config.head_dim
    out = []
    for layer in model.model.layers:
        att, mlp = layer.self_attn, layer.mlp
        out.append({"heads": att.q_proj.out_features // hd, "kv_heads": att.k_proj.out_features // hd,
                    "intermediate": mlp.gate_proj.out_features})
    return out


def to_pruned_class(model: LlamaForCausalLM) -> PrunedLlamaForCausalLM:
    """Re-label a pruned Llama in place: config with per-layer widths, class that rebuilds them on load."""
    old = model.config
    d = old.to_dict()
    for k in ("model_type", "architectures", "transformers_version", "layer_widths"):
        d.pop(k, None)
    widths = layer_widths(model)
    cfg = PrunedLlamaConfig(layer_widths=widths, **d)
    cfg.architectures = ["PrunedLlamaForCausalLM"]
    try:
        cfg._attn_implementation = old._attn_implementation
    except Exception:
        pass
    for m in model.modules():
        if getattr(m, "config", None) is old:
            m.config = cfg
    model.__class__ = PrunedLlamaForCausalLM
    model.config = cfg
    return model


try:
    AutoConfig.register(MODEL_TYPE, PrunedLlamaConfig)
    AutoModelForCausalLM.register(PrunedLlamaConfig, PrunedLlamaForCausalLM)
except ValueError:  # already registered (module reloaded)
    pass
