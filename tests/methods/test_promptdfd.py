"""PromptDFD (reconstruction): reward from the teacher, data-free variants never read real data, KD loss.
Tiny random models built in code: mechanics only, never quality."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks.api import RunContext
from benchmarks.tasks.text_classification import RealDataAccessed, TextSubject
from benchmarks.zoo.models import text as world
from methods.promptdfd.distill import kd_loss
from methods.promptdfd.method import PromptDFD, PromptDFDConfig, distill_subject
from methods.promptdfd.synth import TopicPrompter, generate, synthesize, teacher_reward, train_prompter


def tiny_teacher(seed=0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(world.classifier_config(32, 1, 2, 64)).eval()


def tiny_lm(seed=0):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(world.lm_config({"n_embd": 32, "n_layer": 1, "n_head": 2})).eval()


def make_subject(real_train, **cfg):
    from transformers import BertForSequenceClassification

    tok = world.WordTokenizer()
    teacher = tiny_teacher()
    c = PromptDFDConfig(synthetic_samples=24, prompter_iters=2, prompter_per_class=2, distill_epochs=1,
                        distill_batch=8, seq_len=16, **cfg)

    def student(seed):
        torch.manual_seed(seed)
        return BertForSequenceClassification(world.student_config())

    return TextSubject(model=teacher, teacher=teacher, generator=tiny_lm(), tokenizer=tok, make_student=student,
                       real_train=real_train, cfg=c, vocab_size=len(tok), num_classes=4)


def test_reward_is_teacher_confidence_plus_diversity():
    tok = world.WordTokenizer()
    texts = ["the team won the match today .", "the bank posted a quarterly profit .",
             "researchers launched a satellite .", "the minister signed the treaty ."]
    batch = tok.classifier_batch(texts, 16)
    classes = torch.tensor([1, 2, 3, 0])
    teacher = tiny_teacher()
    r = teacher_reward(teacher, batch, classes, diversity_weight=0.5)
    with torch.no_grad():
        out = teacher(**batch, output_hidden_states=True)
    conf = torch.softmax(out.logits, -1)[torch.arange(4), classes]
    h = F.normalize(out.hidden_states[-1][:, 0], dim=-1)
    sim = h @ h.T
    div = torch.stack([1 - (sim[i].sum() - sim[i, i]) / 3 for i in range(4)])
    assert torch.allclose(r.confidence, conf, atol=1e-6)
    assert torch.allclose(r.diversity, div, atol=1e-6)
    assert torch.allclose(r.total, conf + 0.5 * div, atol=1e-6)
    # the reward comes from the teacher: another teacher gives another reward
    r2 = teacher_reward(tiny_teacher(seed=1), batch, classes, diversity_weight=0.5)
    assert not torch.allclose(r.total, r2.total)
    # identical samples have no diversity
    same = tok.classifier_batch([texts[0]] * 3, 16)
    assert torch.allclose(teacher_reward(teacher, same, torch.tensor([1, 1, 1]), 1.0).diversity, torch.zeros(3), atol=1e-5)


def test_prompter_moves_towards_rewarded_prompts(monkeypatch):
    """REINFORCE raises the probability of the prompt whose samples the teacher rewards."""
    import methods.promptdfd.synth as S

    tok = world.WordTokenizer()
    target = tok.index["team"]

    def fake_reward(teacher, batch, classes, w):
        hit = (batch["input_ids"][:, 1] == target).float()
        return S.Rewards(hit, hit, torch.zeros_like(hit))

    monkeypatch.setattr(S, "teacher_reward", fake_reward)
    prompter, hist = train_prompter(None, tiny_lm(), tok, 1, iters=40, per_class=32, lr=0.2, diversity_weight=0.0,
                                    entropy_weight=0.0, max_len=6, temperature=1.0, seed=0)
    p = torch.softmax(prompter.logits[0].detach(), -1)
    assert int(prompter.pool[p.argmax()]) == target
    assert float(p.max()) > 5.0 / len(prompter.pool)


def test_samples_are_prompt_plus_continuation():
    tok = world.WordTokenizer()
    g = torch.Generator().manual_seed(0)
    prompter = TopicPrompter(4, tok.content_ids())
    texts = synthesize(tiny_lm(), tok, 8, 12, 1.0, seed=0, prompter=prompter, num_classes=4)
    assert len(texts) == 8 and all(t for t in texts)
    ids = generate(tiny_lm(), torch.tensor([[tok.bos_id, tok.index["team"]]] * 3), 10, 1.0, g,
                   tok.bos_id, tok.eos_id, tok.pad_id)
    assert all(seq[0] == tok.index["team"] and len(seq) <= 9 for seq in ids)


def test_data_free_variants_never_read_the_real_training_set():
    def forbidden():
        raise RealDataAccessed("data-free variant read the real training set")

    ctx = RunContext(seed=0, progress=False)
    for source in ("prompter", "unconditioned", "random_tokens"):
        sub = make_subject(forbidden)
        out = distill_subject(sub, source, ctx)
        assert out.model is not sub.teacher and out.info["data_free"] and out.info["distill"]["steps"] > 0
    # the method itself (what the runner calls) too
    sub = PromptDFD().apply(make_subject(forbidden), {}, ctx)
    assert sub.info["source"] == "prompter"
    # ... while the data-driven upper bound does read it
    with pytest.raises(RealDataAccessed):
        distill_subject(make_subject(forbidden), "real", ctx)
    real = make_subject(lambda: world.topics("train")[0][:20])
    assert distill_subject(real, "real", ctx).info["distill"]["samples"] == 20


def test_kd_loss_is_t_squared_kl():
    t = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    assert float(kd_loss(t, t, 4.0)) == pytest.approx(0.0, abs=1e-6)
    s = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    T = 3.0
    pt, ps = torch.softmax(t / T, -1), torch.softmax(s / T, -1)
    manual = float((pt * (pt.log() - ps.log())).sum()) * T * T
    assert float(kd_loss(s, t, T)) == pytest.approx(manual, rel=1e-5)


def test_variants():
    names = [v.name for v in PromptDFD().variants(PromptDFDConfig())]
    assert names == ["dense", "promptdfd", "dfd_unconditioned", "dfd_random_tokens", "kd_real_data"]


def test_text_world_is_deterministic_and_balanced():
    x, y = world.topics("test")
    assert len(x) == 600 and torch.bincount(y).tolist() == [150] * 4
    world._topics.cache_clear()
    assert world.topics("test")[0] == x
    tok = world.WordTokenizer()
    assert tok.decode(tok.encode(x[0])) == x[0]


@pytest.mark.slow
def test_zoo_world_teacher_and_distillation_on_real_text():
    """Mini-world: the trained teacher is accurate and a student distilled on real text learns from it."""
    from benchmarks.tasks.text_classification import TextClassificationTask

    cfg = PromptDFDConfig(eval_samples=200, synthetic_samples=300, distill_epochs=2)
    task = TextClassificationTask(cfg, RunContext(progress=False))
    texts, labels = task.test
    teacher_acc = float((task._predict(task.teacher, texts) == labels).float().mean())
    sub = distill_subject(task.subject(), "real", RunContext(progress=False))
    student_acc = float((task._predict(sub.model, texts) == labels).float().mean())
    assert teacher_acc > 0.9
    assert student_acc > 0.5                # chance is 0.25
