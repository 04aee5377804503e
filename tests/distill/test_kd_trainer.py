"""KDTrainer on a tiny Llama: logs ce/kd/teacher_ce, alpha 0 trains exactly like the plain Trainer, teacher =
student gives KD 0, gradient accumulation, tokenizer/vocabulary guards, the head probe, and the HffArguments flags."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_TEXTS

from hf_fundamentals.distill import KDConfig
from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.distill.kd_trainer import (
    KDTrainer,
    KDTrainerMixin,
    check_same_tokenizer,
    kd_trainer_class,
)


def save_teacher(tokenizer_dir, out, hidden=48, layers=1, vocab_extra=0, seed=1):
    """A Llama teacher of another size sharing the tiny tokenizer (optionally a padded head)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok) + vocab_extra, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
        pad_token_id=2,
    )).save_pretrained(out)  # fmt: skip
    tok.save_pretrained(out)
    return out


def other_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator([t.upper() for t in TINY_TEXTS], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")  # fmt: skip


def parts(tiny_llama_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ds = Dataset.from_dict({"text": TINY_TEXTS[:32]}).map(
        lambda b: tok(b["text"]), batched=True, remove_columns=["text"]
    )
    return (
        tok,
        ds,
        DataCollatorForLanguageModeling(tok, mlm=False),
        LlamaForCausalLM.from_pretrained(tiny_llama_dir),
    )


def args(out, **kw):
    from transformers import TrainingArguments

    settings = dict(
        output_dir=str(out), max_steps=3, per_device_train_batch_size=4, learning_rate=0.05, optim="sgd",
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, seed=0, lr_scheduler_type="constant",
        train_sampling_strategy="sequential",
    )  # fmt: skip
    return TrainingArguments(**{**settings, **kw})


def test_trains_and_logs_ce_kd_teacher_ce(tiny_llama_dir, tmp_path):
    tok, ds, collator, student = parts(tiny_llama_dir)
    teacher_dir = save_teacher(tiny_llama_dir, tmp_path / "teacher")
    trainer = KDTrainer(model=student, args=args(tmp_path / "run", eval_strategy="steps", eval_steps=3),
                        train_dataset=ds, eval_dataset=ds.select(range(8)), processing_class=tok,
                        data_collator=collator, teacher_model=str(teacher_dir),
                        kd=KDConfig(alpha=0.3, temperature=2.0))  # fmt: skip
    assert not trainer.teacher_model.training
    assert not any(p.requires_grad for p in trainer.teacher_model.parameters())
    assert trainer.teacher_model.config.hidden_size == 48
    trainer.train()
    steps = [r for r in trainer.state.log_history if "loss" in r]
    assert len(steps) == 3
    for r in steps:
        assert {"ce", "kd", "teacher_ce"} <= set(r) and r["kd"] > 0
        # the logged loss is the mix of the logged terms (one micro-batch per step)
        assert r["loss"] == pytest.approx(0.7 * r["ce"] + 0.3 * 4.0 * r["kd"], rel=1e-4)
    assert steps[-1]["ce"] < steps[0]["ce"]  # the student learns
    assert len({r["teacher_ce"] for r in steps}) == 3  # teacher fixed, batches differ
    (ev,) = [r for r in trainer.state.log_history if "eval_loss" in r]
    assert {"eval_ce", "eval_kd", "eval_teacher_ce"} <= set(ev)
    assert ev["eval_loss"] == pytest.approx(0.7 * ev["eval_ce"] + 1.2 * ev["eval_kd"], rel=1e-4)


def test_alpha_zero_trains_exactly_like_the_plain_trainer(tiny_llama_dir, tmp_path):
    """Same data, same init, gradient accumulation on: the weights after 3 steps agree to float precision."""
    from transformers import Trainer

    tok, ds, collator, student = parts(tiny_llama_dir)
    plain_model, kd_model = copy.deepcopy(student), copy.deepcopy(student)
    a = args(tmp_path / "a", per_device_train_batch_size=2, gradient_accumulation_steps=2)
    plain = Trainer(model=plain_model, args=a, train_dataset=ds, data_collator=collator, processing_class=tok)
    plain.train()
    kd = KDTrainer(model=kd_model, args=a, train_dataset=ds, data_collator=collator, processing_class=tok,
                   teacher_model=copy.deepcopy(student), teacher_processing_class=tok,
                   kd=KDConfig(alpha=0.0))  # fmt: skip
    kd.train()
    for (name, p), q in zip(plain_model.named_parameters(), kd_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    losses = [[r["loss"] for r in t.state.log_history if "loss" in r] for t in (plain, kd)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert [r["ce"] for r in kd.state.log_history if "ce" in r] == pytest.approx(losses[1], rel=1e-4)


def test_teacher_equal_to_student_gives_kd_zero_at_init(tiny_llama_dir, tmp_path):
    tok, ds, collator, student = parts(tiny_llama_dir)
    trainer = KDTrainer(model=student, args=args(tmp_path, max_steps=1), train_dataset=ds, data_collator=collator,
                        processing_class=tok, teacher_model=copy.deepcopy(student),
                        teacher_processing_class=tok, kd=KDConfig(alpha=0.5, kl="reverse"))  # fmt: skip
    trainer.train()
    (first,) = [r for r in trainer.state.log_history if "loss" in r]
    assert first["kd"] == 0.0 and first["teacher_ce"] == pytest.approx(first["ce"])


def test_gradient_accumulation_gives_the_same_update(tiny_llama_dir, tmp_path):
    """bs 4 x GA 1 and bs 2 x GA 2 take the same step: the loss is normalized over the window's tokens."""
    tok, ds, collator, student = parts(tiny_llama_dir)
    teacher = save_teacher(tiny_llama_dir, tmp_path / "teacher")
    models = []
    for bs, ga in ((4, 1), (2, 2)):
        model = copy.deepcopy(student)
        KDTrainer(model=model, args=args(tmp_path / f"{bs}", max_steps=2, per_device_train_batch_size=bs,
                                         gradient_accumulation_steps=ga),
                  train_dataset=ds, data_collator=collator, processing_class=tok, teacher_model=str(teacher),
                  kd=KDConfig(alpha=0.6)).train()  # fmt: skip
        models.append(model)
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_mismatched_tokenizers_fail_clearly(tiny_llama_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, ds, collator, student = parts(tiny_llama_dir)
    other = other_tokenizer()
    with pytest.raises(ValueError, match="tokenizers differ: vocabularies of"):
        check_same_tokenizer(tok, other)
    teacher = LlamaForCausalLM(LlamaConfig(vocab_size=len(other), hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=4))  # fmt: skip
    with pytest.raises(ValueError, match="tokenizers differ"):
        KDTrainer(model=student, args=args(tmp_path), train_dataset=ds, data_collator=collator,
                  processing_class=tok, teacher_model=teacher, teacher_processing_class=other)  # fmt: skip
    with (
        pytest.raises(ValueError, match="logit distillation needs one vocabulary"),
        pytest.warns(UserWarning),
    ):
        KDTrainer(model=student, args=args(tmp_path), train_dataset=ds, data_collator=collator,
                  processing_class=tok, teacher_model=teacher)  # fmt: skip


def test_same_vocabulary_split_differently_fails(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    lower = AutoTokenizer.from_pretrained(tiny_llama_dir)
    from tokenizers import normalizers

    lower.backend_tokenizer.normalizer = normalizers.Lowercase()
    with pytest.raises(ValueError, match="split text differently"):
        check_same_tokenizer(tok, lower)


def test_padded_teacher_head_is_cut_to_the_tokenizer(tiny_llama_dir, tmp_path):
    tok, ds, collator, student = parts(tiny_llama_dir)
    teacher = save_teacher(tiny_llama_dir, tmp_path / "teacher", vocab_extra=20)
    trainer = KDTrainer(model=student, args=args(tmp_path, max_steps=1), train_dataset=ds, data_collator=collator,
                        processing_class=tok, teacher_model=str(teacher))  # fmt: skip
    assert trainer.kd_vocab_size == len(tok)
    trainer.train()
    assert [r["kd"] for r in trainer.state.log_history if "kd" in r][0] > 0


def test_head_probe_refuses_logits_it_cannot_reproduce(tiny_llama_dir, tmp_path):
    """Llama's forward ignores final_logit_softcapping; LMHead would apply it: the first batch catches that."""
    tok, ds, collator, student = parts(tiny_llama_dir)
    teacher = copy.deepcopy(student)
    teacher.config.final_logit_softcapping = 0.5
    trainer = KDTrainer(model=student, args=args(tmp_path, max_steps=1), train_dataset=ds, data_collator=collator,
                        processing_class=tok, teacher_model=teacher, teacher_processing_class=tok)  # fmt: skip
    with pytest.raises(ValueError, match="the teacher .LlamaForCausalLM. computes logits its head does not"):
        trainer.train()


def test_hff_arguments_flags(tiny_llama_dir):
    from transformers import Trainer

    with pytest.raises(ValueError, match=r"--kd_alpha set but --hff_kd_teacher is not"):
        HffArguments(kd_alpha=0.3)
    with pytest.raises(ValueError, match=r"--kd_\* flags: kl 'jsd'"):
        HffArguments(hff_kd_teacher="x", kd_kl="jsd")
    with pytest.raises(ValueError, match="alpha"):
        HffArguments(hff_kd_teacher="x", kd_alpha=2.0)
    with pytest.raises(ValueError, match="--kd_teacher_dtype 'int8'"):
        HffArguments(hff_kd_teacher="x", kd_teacher_dtype="int8")
    with pytest.raises(ValueError, match="--hff_kd_teacher and --hff_memft"):
        HffArguments(hff_kd_teacher="x", hff_memft="ot")
    hff = HffArguments(hff_kd_teacher=str(tiny_llama_dir), kd_alpha=0.4, kd_kl="reverse", kd_chunk_size=64)
    assert hff.kd_config() == KDConfig(alpha=0.4, temperature=1.0, kl="reverse", chunk_size=64)
    assert kd_trainer_class(KDTrainer) is KDTrainer
    assert any(t.startswith("distillation from") and "alpha 0.4" in t for t in hff.enabled_techniques())
    assert HffArguments().kd_config() is None

    from hf_fundamentals.integrations.trainer import trainer_extras

    extras = trainer_extras(hff)
    cls = extras.trainer_class(Trainer)
    assert issubclass(cls, Trainer) and issubclass(cls, KDTrainerMixin)
    kwargs = extras.trainer_kwargs()
    assert kwargs["teacher_model"] == str(tiny_llama_dir) and kwargs["kd"].kl == "reverse"
    with pytest.raises(ValueError, match="cannot be switched on in a built trainer"):
        extras.apply(object())


def test_es_refuses_a_teacher():
    from hf_fundamentals.integrations.cli.es import ESScriptArguments, build_trainer

    with pytest.raises(ValueError, match="ES has none"):
        build_trainer(ESScriptArguments(dataset_name="x.jsonl"), None, HffArguments(hff_kd_teacher="x"))
