"""Muon through real Trainer / SFTTrainer / GRPOTrainer objects on tiny models, and exact resume."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.optim.factory import MuonFactory, muon_optimizer_cls_and_kwargs
from hf_fundamentals.integrations.trainer import trainer_extras
from hf_fundamentals.optim import MuonAdamW


def _lm_dataset(tokenizer, n=48, length=24):
    from conftest import TINY_TEXTS

    enc = tokenizer(TINY_TEXTS[:n], truncation=True, max_length=length, padding="max_length")
    ids = enc["input_ids"]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": enc["attention_mask"], "labels": ids})


def _trainer(tiny_llama_dir, out, max_steps=6, callbacks=(), **args):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    settings = dict(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=3e-3,
        weight_decay=0.1, logging_steps=1, save_strategy="steps", save_steps=3, report_to=[], use_cpu=True,
        seed=7, data_seed=7, lr_scheduler_type="cosine", warmup_steps=1,
    )  # fmt: skip
    targs = TrainingArguments(**{**settings, **args})
    return Trainer(
        model=model,
        args=targs,
        train_dataset=_lm_dataset(tok),
        optimizer_cls_and_kwargs=muon_optimizer_cls_and_kwargs(targs),
        callbacks=list(callbacks),
    )


def _losses(trainer):
    return [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]


def test_trainer_trains_with_muon_and_honours_no_decay(tiny_llama_dir, tmp_path):
    trainer = _trainer(tiny_llama_dir, tmp_path / "a", save_strategy="no")
    trainer.train()
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(opt, MuonAdamW)
    muon = [g for g in opt.param_groups if g["use_muon"]]
    assert muon and all(g["weight_decay"] == 0.1 and g["adjust_lr"] == "match_rms_adamw" for g in muon)
    norm_groups = [g for g in opt.param_groups if "norm" in g["role"]]
    assert norm_groups and all(g["weight_decay"] == 0.0 and not g["use_muon"] for g in norm_groups)
    assert all(g["lr"] < 3e-3 for g in opt.param_groups)  # the Trainer's cosine schedule drives every group
    losses = [loss for _, loss in _losses(trainer)]
    assert losses[-1] < losses[0]


def test_resume_from_checkpoint_gives_the_same_losses(tiny_llama_dir, tmp_path):
    from transformers import TrainerCallback

    full = _trainer(tiny_llama_dir, tmp_path / "full")
    full.train()

    class StopAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True

    first = _trainer(tiny_llama_dir, tmp_path / "split", callbacks=[StopAt3()])
    first.train()
    assert (tmp_path / "split" / "checkpoint-3" / "optimizer.pt").exists()
    second = _trainer(tiny_llama_dir, tmp_path / "split")
    second.train(resume_from_checkpoint=str(tmp_path / "split" / "checkpoint-3"))
    want = [x for x in _losses(full) if x[0] > 3]
    got = [x for x in _losses(second) if x[0] > 3]
    assert len(want) == 3 and [s for s, _ in got] == [s for s, _ in want]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], rel=1e-6, abs=1e-7)
    # the comparison can fail: resuming without the Muon/AdamW state gives other losses
    import shutil

    shutil.copytree(tmp_path / "split" / "checkpoint-3", tmp_path / "nostate" / "checkpoint-3")
    (tmp_path / "nostate" / "checkpoint-3" / "optimizer.pt").unlink()
    third = _trainer(tiny_llama_dir, tmp_path / "nostate")
    third.train(resume_from_checkpoint=str(tmp_path / "nostate" / "checkpoint-3"))
    fresh = [loss for s, loss in _losses(third) if s > 4]
    assert fresh != pytest.approx([loss for s, loss in want if s > 4], rel=1e-4)


def test_sft_trainer_with_lora_via_hff_arguments(tiny_llama_dir, tmp_path):
    from conftest import TINY_TEXTS
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to=[], use_cpu=True, max_length=32, save_strategy="no", logging_steps=1,
    )  # fmt: skip
    extras = trainer_extras(HffArguments(hff_optimizer="muon", muon_ns_method="polar_express"), args)
    trainer = SFTTrainer(
        model=str(tiny_llama_dir),
        args=args,
        train_dataset=Dataset.from_dict({"text": TINY_TEXTS[:32]}),
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
        **extras.as_kwargs(),
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    opt = trainer.optimizer.optimizer
    assert isinstance(opt, MuonAdamW)
    routed = {id(p): g["use_muon"] for g in opt.param_groups for p in g["params"]}
    named = dict(trainer.model.named_parameters())
    assert all(routed[id(p)] for n, p in named.items() if "lora_B" in n)
    assert all(not routed[id(p)] for n, p in named.items() if "lora_A" in n)
    assert all(id(p) not in routed for n, p in named.items() if "base_layer" in n)
    assert any(not torch.equal(before[n], named[n]) for n in before)


@pytest.mark.slow
def test_grpo_trainer_takes_muon_through_apply(tiny_llama_dir, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    def reward_len(completions, **kwargs):
        return [float(len(c)) for c in completions]

    args = GRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=8, learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
        logging_steps=1,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=str(tiny_llama_dir),
        reward_funcs=reward_len,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["The number 3 is", "The number 8 is"] * 4}),
    )
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer_extras(HffArguments(hff_optimizer="muon"), args).apply(trainer)
    trainer.train()
    opt = trainer.optimizer.optimizer
    assert isinstance(opt, MuonAdamW)
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(start[n], p)]
    assert any("proj" in n for n in moved)


def test_flags_that_cannot_take_effect_fail():
    with pytest.raises(ValueError, match="--muon_mode set but --hff_optimizer is 'none'"):
        HffArguments(muon_mode="regularized")
    with pytest.raises(ValueError, match="accepted: none, muon"):
        HffArguments(hff_optimizer="adamw")
    assert HffArguments(hff_optimizer="muon").enabled_techniques()[0].startswith("muon (polar")
    with pytest.raises(ValueError, match="TrainingArguments"):
        trainer_extras(HffArguments(hff_optimizer="muon"))


def test_deepspeed_is_refused(monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
        )
    )
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(RuntimeError, match="DeepSpeed"):
        MuonFactory()(model, lr=1e-3)


def test_model_without_matrices_is_an_error():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4))
    with pytest.raises(ValueError, match="use AdamW"):
        MuonFactory()(model, lr=1e-3)


def test_flags_parse_next_to_training_arguments():
    from transformers import HfArgumentParser, TrainingArguments

    parser = HfArgumentParser((TrainingArguments, HffArguments))
    targs, hff = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--hff_optimizer", "muon", "--muon_mode", "regularized", "--muon_reg_eps", "0.05",
         "--no_muon_nesterov", "--learning_rate", "2e-3"]
    )  # fmt: skip
    factory, kwargs = trainer_extras(hff, targs).optimizer_cls_and_kwargs
    assert factory is MuonFactory
    assert kwargs["mode"] == "regularized" and kwargs["reg_eps"] == 0.05 and kwargs["nesterov"] is False
    assert kwargs["lr"] == 2e-3 and kwargs["betas"] == (targs.adam_beta1, targs.adam_beta2)
