"""The shared lm-eval runner (benchmarks/lm): same numbers as a direct lm-eval call, shipped tasks, PPL protocol."""
from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.lm import lmeval, world
from benchmarks.lm.ppl import chunk_ids, token_perplexity


@pytest.fixture(scope="module")
def tiny():
    """A small random Llama with the mini-world tokenizer (mechanics only, no quality claims)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.zoo.models.llm import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, head_dim=8,
                                         max_position_embeddings=256, tie_word_embeddings=False)).eval()
    return model, tok


@pytest.fixture(autouse=True)
def _home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EFFBENCH_HOME", str(tmp_path_factory.getbasetemp() / "home"))


def test_shipped_task_files_match_the_world_generator():
    """The JSONL shipped in benchmarks/lm_tasks/data are exactly what benchmarks/lm/world.py generates."""
    tasks = world.build_tasks()
    assert set(tasks) == set(lmeval.WORLD_TASKS)
    for name, docs in tasks.items():
        lines = (lmeval.TASK_DIR / "data" / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(x) for x in lines] == [json.loads(json.dumps(d, sort_keys=True)) for d in docs]
        assert 100 <= len(docs) <= 200
    assert (lmeval.TASK_DIR / "data" / "world_heldout.txt").read_text() == world.heldout_text() + "\n"


def test_materialized_tasks_have_absolute_existing_paths():
    d = lmeval.materialize_world_tasks()
    for name in lmeval.WORLD_TASKS:
        text = (d / f"{name}.yaml").read_text()
        assert lmeval.PLACEHOLDER not in text
        path = text.split("test: ")[1].split("\n")[0].strip().strip('"')
        assert path.startswith("/") and path.endswith(f"{name}.jsonl")
        assert (lmeval.TASK_DIR / "data" / f"{name}.jsonl").samefile(path)
    assert lmeval.materialize_world_tasks() == d     # idempotent, content-addressed


@pytest.mark.timeout(300)
def test_runner_matches_a_direct_lm_eval_call(tiny):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tok = tiny
    names = list(lmeval.WORLD_TASKS)
    ours = lmeval.evaluate(model, tok, names, batch_size=16, limit=25)
    # the direct call: lm-eval's own objects, task names, a fresh TaskManager on the same YAML folder
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=16, max_length=256, device="cpu", add_bos_token=False)
    direct = simple_evaluate(model=lm, tasks=names, num_fewshot=0, limit=25, bootstrap_iters=0, log_samples=False,
                             task_manager=TaskManager(include_path=str(lmeval.materialize_world_tasks()),
                                                      include_defaults=False))
    for t in names:
        for key, value in direct["results"][t].items():
            if key.startswith("acc") and "stderr" not in key:
                assert ours["results"][t][key] == value, (t, key)
        assert ours["accuracy"][t] == direct["results"][t][f"{lmeval.metric_for(t)},none"]
    assert ours["metric"]["world_boolq"] == "acc" and ours["metric"]["world_piqa"] == "acc_norm"
    notes = ours["notes"]
    assert notes["lm_eval_version"] and notes["lm_eval_task_versions"]["world_boolq"] is not None
    assert notes["lm_eval_configs"]["world_arc_easy"]["doc_to_text"] == "Question: {{question}}\nAnswer:"
    assert notes["lm_eval_n_samples"]["world_piqa"]["effective"] == 25


def test_token_perplexity_follows_llm_pruners_protocol(tiny):
    model, tok = tiny
    text = world.heldout_text(60)
    ids = tok(text, return_tensors="pt").input_ids[0]
    chunks = chunk_ids(tok, text, 32)
    assert chunks.shape == (ids.numel() // 32, 32) and torch.equal(chunks.flatten(), ids[: chunks.numel()])
    # manual: each chunk scored alone, mean NLL over seq_len-1 predicted tokens per chunk
    with torch.no_grad():
        nll = [torch.nn.functional.cross_entropy(model(c[None]).logits[0, :-1], c[1:], reduction="none") for c in chunks]
    want = math.exp(torch.cat(nll).mean().item())
    assert token_perplexity(model, tok, text, seq_len=32, batch_size=3) == pytest.approx(want, rel=1e-5)
    # a model with all-zero logits has PPL = vocabulary size
    import copy

    flat = copy.deepcopy(model)
    torch.nn.init.zeros_(flat.lm_head.weight)
    assert token_perplexity(flat, tok, text, seq_len=32) == pytest.approx(len(tok), rel=1e-5)


@pytest.mark.timeout(120)
def test_paper_tasks_without_the_dataset_cache_raise_missing_asset(tmp_path, monkeypatch):
    from benchmarks.errors import MissingAssetError
    from benchmarks.tasks.language_model import _hf_dataset_text

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingAssetError, match="wikitext"):
        _hf_dataset_text("wikitext2")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_trained_dense_model_answers_above_chance():
    """The zoo MHA model (trained on the mini-world corpus) beats chance on the shipped tasks."""
    from benchmarks import zoo

    model, tok = zoo.load("llama_world_mha", progress=False)
    res = lmeval.evaluate(model, tok, lmeval.WORLD_TASKS)
    acc = res["accuracy"]
    above = [t for t in acc if acc[t] >= world.CHANCE[t] + 0.15]
    assert len(above) >= 5, acc
    assert sum(acc.values()) / 7 >= sum(world.CHANCE.values()) / 7 + 0.25, acc
