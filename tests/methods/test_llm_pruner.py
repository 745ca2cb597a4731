"""LLM-Pruner: structure discovery, importance, pruning of MHA/GQA Llamas, save/load, LoRA, paper arch counts.

Tiny random Llamas built in code check mechanics only (shapes, counts, identities); quality claims come
from the trained zoo models in the slow end-to-end test."""
from __future__ import annotations

import pytest
import torch

from methods.llm_pruner.pruning import attention_groups, calibrate, group_importance, mlp_groups, prune_llama


def tiny_llama(kv_heads: int = 8, layers: int = 4, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=120, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=8, num_key_value_heads=kv_heads, head_dim=8, max_position_embeddings=128,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def calib(n: int = 4, L: int = 16):
    return torch.randint(0, 120, (n, L), generator=torch.Generator().manual_seed(1))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kv_heads", [8, 4])
@pytest.mark.parametrize("criterion", ["element1", "element2", "vector", "l2", "random"])
def test_block_pruning_mha_gqa_keeps_generation(kv_heads, criterion):
    m = tiny_llama(kv_heads)
    n0 = sum(p.numel() for p in m.parameters())
    info = prune_llama(m, criterion=criterion, ratio=0.25, layer_start=1, layer_end=3, calib_samples=calib())
    w = info["widths_after"]
    rep = 8 // kv_heads
    # layers outside [1, 3) untouched; inside: int(n * 0.75) KV groups kept, each with its query heads
    assert w[0] == w[3] == {"heads": 8, "kv_heads": kv_heads, "intermediate": 128}
    for i in (1, 2):
        assert w[i] == {"heads": rep * int(kv_heads * 0.75), "kv_heads": int(kv_heads * 0.75), "intermediate": 96}
        assert m.model.layers[i].self_attn.num_key_value_groups == rep
    hd, H = 8, 64
    removed_heads = 8 - rep * int(kv_heads * 0.75)
    removed_kv = kv_heads - int(kv_heads * 0.75)
    expect = 2 * (2 * removed_heads * hd * H + 2 * removed_kv * hd * H + 3 * 32 * H)
    assert n0 - sum(p.numel() for p in m.parameters()) == expect
    x = torch.randint(1, 120, (2, 6), generator=torch.Generator().manual_seed(5))   # no pad id (0)
    g = m.generate(x, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0, output_logits=True,
                   return_dict_in_generate=True)
    out = g.sequences
    assert out.shape == (2, 11) and torch.equal(out[:, :6], x)
    with torch.no_grad():
        # incremental decoding with the per-layer KV cache equals a full forward on the pruned model
        full = m(out[:, :-1], use_cache=False).logits[:, -1]
    torch.testing.assert_close(full, g.logits[-1], atol=1e-5, rtol=1e-5)
    assert torch.equal(full.argmax(-1), out[:, -1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kv_heads", [8, 4])
def test_channel_strategy_prunes_hidden_size(kv_heads):
    m = tiny_llama(kv_heads)
    prune_llama(m, strategy="channel", criterion="element1", ratio=0.2, calib_samples=calib())
    # 64 * 0.8 = 51.2 kept, rounded to a multiple of the 8 heads -> 48
    assert m.config.hidden_size == 48 and m.config.head_dim == 8
    assert m.model.embed_tokens.weight.shape == (120, 48) and m.lm_head.weight.shape == (120, 48)
    assert all(layer.input_layernorm.weight.shape == (48,) for layer in m.model.layers)
    out = m.generate(torch.randint(1, 120, (1, 4)), max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 7)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy,kv_heads", [("block", 8), ("block", 4), ("channel", 4)])
def test_pruned_model_roundtrips_save_load(tmp_path, strategy, kv_heads):
    from transformers import AutoModelForCausalLM

    from methods.llm_pruner.model import PrunedLlamaForCausalLM

    m = tiny_llama(kv_heads)
    prune_llama(m, strategy=strategy, criterion="element2", ratio=0.25, layer_start=1, layer_end=3,
                calib_samples=calib())
    m.save_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*.bin"))
    m2 = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(m2, PrunedLlamaForCausalLM)
    assert m2.config.layer_widths == m.config.layer_widths
    x = torch.randint(0, 120, (2, 12))
    with torch.no_grad():
        assert torch.equal(m(x).logits, m2(x).logits)


def test_importance_matches_the_papers_formulas():
    """element1 = sum|w*g| per head over q/k/v rows + o columns; element2 subtracts 1/2 w*F*w with F the mean
    per-sample squared gradient; vector = |sum(w*g)|; 'first' uses the root (q_proj) only."""
    m = tiny_llama(8)
    x = calib()
    c1 = calibrate(m, x, "element1")
    c2 = calibrate(m, x, "element2")
    layer = m.model.layers[1]
    att = layer.self_attn
    members, n = attention_groups(layer, 8)
    assert n == 8 and [mm.name for mm, _ in members] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    # independent gradient + Fisher
    w = att.q_proj.weight
    m.zero_grad()
    m(input_ids=x, labels=x, use_cache=False).loss.backward()
    g = w.grad.detach().clone()
    F = torch.zeros_like(w)
    for j in range(len(x)):
        m.zero_grad()
        m(input_ids=x[j:j + 1], labels=x[j:j + 1], use_cache=False).loss.backward()
        F += w.grad.detach() ** 2 / len(x)
    m.zero_grad(set_to_none=True)
    torch.testing.assert_close(c1["grad"][w], g)
    torch.testing.assert_close(c2["fisher"][w], F)
    h = 3
    sl = slice(h * 8, (h + 1) * 8)

    def head_score(lin, rows: bool, crit):
        W = lin.weight.detach()
        G = c2["grad"][lin.weight]
        s = W * G
        if crit == "element2":
            s = s - 0.5 * W * c2["fisher"][lin.weight] * W
        s = s[sl] if rows else s[:, sl]
        return (s.sum(1).abs().sum() if crit == "vector" else s.abs().sum()) if rows else \
               (s.sum(0).abs().sum() if crit == "vector" else s.abs().sum())

    for crit in ("element1", "element2", "vector"):
        imp = group_importance(members, crit, "sum", c2, n)
        want = sum(head_score(lin, r, crit) for lin, r in
                   ((att.q_proj, True), (att.k_proj, True), (att.v_proj, True), (att.o_proj, False)))
        torch.testing.assert_close(imp[h], want)
    first = group_importance(members, "element1", "first", c2, n)
    torch.testing.assert_close(first[h], head_score(att.q_proj, True, "element1"))
    mm, n_mlp = mlp_groups(layer)
    assert n_mlp == 128 and group_importance(mm, "l2", "max", {}, n_mlp).shape == (128,)


@pytest.mark.timeout(60)
def test_taylor_beats_random_on_loss_after_pruning():
    """On the same calibration batch, first-order Taylor pruning (which targets that loss) changes it less
    than the average of random pruning."""
    x = calib(8, 24)

    def loss_after(crit, seed=0):
        m = tiny_llama(8, seed=3)
        prune_llama(m, criterion=crit, ratio=0.5, layer_start=0, layer_end=4, calib_samples=x, seed=seed)
        with torch.no_grad():
            return m(input_ids=x, labels=x, use_cache=False).loss.item()

    base = tiny_llama(8, seed=3)
    with torch.no_grad():
        l0 = base(input_ids=x, labels=x, use_cache=False).loss.item()
    taylor = abs(loss_after("element1") - l0)
    rand = sum(abs(loss_after("random", s) - l0) for s in range(4)) / 4
    assert taylor < rand


def test_paper_arch_llama7b_counts():
    """LLaMA-7B on the meta device: 20% block-wise (ratio 0.25, layers 4..29) = papers.md 9 exactly; MACs of
    a 64-token forward within 0.5% of the paper's 424.02G / 339.60G."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.efficiency import count_params, macs_aten
    from benchmarks.tasks.language_model import LLAMA_7B, meta_safe_masks

    with torch.device("meta"):
        m = LlamaForCausalLM(LlamaConfig(**LLAMA_7B))
    x = torch.zeros(1, 64, dtype=torch.long, device="meta")
    assert count_params(m) == 6_738_415_616
    with meta_safe_masks():
        dense = macs_aten(lambda: m(input_ids=x, use_cache=False))
    info = prune_llama(m, criterion="structure", ratio=0.25, layer_start=4, layer_end=30)
    assert count_params(m) == 5_422_977_024
    assert info["widths_after"][4] == {"heads": 24, "kv_heads": 24, "intermediate": 8256}
    assert info["widths_after"][30] == {"heads": 32, "kv_heads": 32, "intermediate": 11008}
    with meta_safe_masks():
        pruned = macs_aten(lambda: m(input_ids=x, use_cache=False))
    assert abs(dense / 424.02e9 - 1) < 0.005 and abs(pruned / 339.60e9 - 1) < 0.005


@pytest.mark.timeout(120)
def test_lora_recovery_merges_and_lowers_loss():
    from benchmarks.zoo.models.llm import build_tokenizer
    from methods.llm_pruner.lora import lora_recover
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.lm import world

    tok = build_tokenizer()
    torch.manual_seed(0)
    m = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                     max_position_embeddings=128, tie_word_embeddings=False))
    prune_llama(m, criterion="l2", ratio=0.25, layer_start=0, layer_end=2)
    n = sum(p.numel() for p in m.parameters())
    texts = world.corpus(64, seed=5)
    merged, info = lora_recover(m, tok, texts, lr=1e-2, epochs=1.0, batch_size=8, micro_batch=8, warmup_steps=1)
    assert type(merged).__name__ == "PrunedLlamaForCausalLM"
    assert sum(p.numel() for p in merged.parameters()) == n
    assert not any("lora" in k for k in merged.state_dict())
    assert info["lora_steps"] == 8 and info["lora_last_loss"] < info["lora_first_loss"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_end_to_end(tmp_path):
    """Runner + trained zoo model: dense, one criterion with LoRA and the channel baseline write ok records
    with perplexity, every task's accuracy, their average, params, MACs and latency."""
    from benchmarks.runner import run

    s = run("llm-pruner", "smoke", ["criteria=[element1]", "baselines=[llm_channel]", "lora=[true]", "lm_limit=30",
                                     "recovery_docs=64"], out=tmp_path, tracker="none", progress=False,
            log=lambda *_: None)
    recs = {r.variant: r for r in s.written}
    assert set(recs) == {"llm_dense", "llm_pruner[criterion=element1,lora=True]", "llm_channel[lora=True]"}
    for r in recs.values():
        assert r.status == "ok", r.error
        assert {"ppl_world_heldout", "acc_avg", "acc_world_boolq", "acc_world_openbookqa"} <= set(r.metrics)
        assert r.efficiency["params"] > 0 and r.efficiency["macs"] > 0 and r.efficiency["latency"]["n"] >= 3
        assert r.notes["lm_eval_version"]
    dense, pruned = recs["llm_dense"], recs["llm_pruner[criterion=element1,lora=True]"]
    assert pruned.efficiency["params"] < dense.efficiency["params"]
    assert pruned.notes["pruning"]["widths_after"][1]["heads"] == 6
    assert pruned.notes["lora"]["lora_steps"] > 0
