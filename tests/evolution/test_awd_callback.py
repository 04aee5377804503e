"""AnchoredWeightDecayCallback in a real Trainer: the l2 closed form after an SGD step, l1, LoRA-only anchors,
resume keeps the base-model anchor, and a clear error for lr·λ >= 1."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from hf_fundamentals.integrations.evolution.awd import ANCHOR_FILE, AnchoredWeightDecayCallback

VOCAB = 48


def data(n: int = 8) -> Dataset:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (n, 8), generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16))  # fmt: skip


def trainer(out, callbacks, net=None, **kw):
    from transformers import Trainer, TrainingArguments, default_data_collator

    settings = dict(output_dir=str(out), max_steps=1, per_device_train_batch_size=4, learning_rate=0.05, optim="sgd",
                    lr_scheduler_type="constant", report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
                    seed=0, train_sampling_strategy="sequential", max_grad_norm=0.0, disable_tqdm=True)  # fmt: skip
    args = TrainingArguments(**{**settings, **kw})
    return Trainer(model=net or model(), args=args, train_dataset=data(), data_collator=default_data_collator,
                   callbacks=callbacks)  # fmt: skip


def weights(t):
    return {n: p.detach().clone() for n, p in t.model.named_parameters()}


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_one_step_is_the_closed_form(kind, tmp_path):
    start = weights(trainer(tmp_path / "s", []))
    plain = trainer(tmp_path / "p", [])
    plain.train()
    lam = 2.0 if kind == "l2" else 0.02  # shrink 0.1 (l2) or a 1e-3 soft threshold (l1)
    awd = trainer(tmp_path / "a", [AnchoredWeightDecayCallback(lam=lam, kind=kind)])
    awd.train()
    s = 0.05 * lam
    for name, p1 in weights(plain).items():
        d = p1 - start[name]
        want = (
            start[name] + (1 - s) * d if kind == "l2" else start[name] + d.sign() * (d.abs() - s).clamp(min=0)
        )
        torch.testing.assert_close(weights(awd)[name], want, atol=1e-6, rtol=1e-5, msg=name)
    logged = awd.state.log_history[0]
    assert logged["awd/shrink"] == pytest.approx(s)
    assert logged["awd/deviation_after"] < logged["awd/deviation_before"]


def test_anchor_survives_resume_and_only_trainable_parameters_are_anchored(tmp_path):
    from peft import LoraConfig, get_peft_model

    def run(out, resume=None):
        net = get_peft_model(
            model(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
        cb = AnchoredWeightDecayCallback(lam=4.0)
        t = trainer(out, [cb], net=net, max_steps=4, save_strategy="steps", save_steps=2)
        t.train(resume_from_checkpoint=resume)
        return t, cb

    full, cb = run(tmp_path / "run")
    assert set(cb.decay.anchor) == {n for n, p in full.model.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in cb.decay.anchor)
    assert (tmp_path / "run" / "checkpoint-2" / ANCHOR_FILE).is_file()
    resumed, cb2 = run(tmp_path / "run", resume=str(tmp_path / "run" / "checkpoint-2"))
    for name, value in cb.decay.anchor.items():  # the base weights, not the checkpoint's
        torch.testing.assert_close(cb2.decay.anchor[name], value)
    for name, value in weights(full).items():
        torch.testing.assert_close(weights(resumed)[name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_refuses_a_shrink_of_one_or_more_before_training(tmp_path):
    t = trainer(tmp_path, [AnchoredWeightDecayCallback(lam=20.0)])  # 0.05 * 20 = 1
    with pytest.raises(ValueError, match="lambda=20"):
        t.train()


def test_flags_add_the_callback():
    from hf_fundamentals.integrations.arguments import HffArguments
    from hf_fundamentals.integrations.trainer import trainer_extras

    hff = HffArguments(hff_awd="l1", awd_lambda=0.01, awd_exclude="embed")
    (cb,) = [c for c in trainer_extras(hff).callbacks if isinstance(c, AnchoredWeightDecayCallback)]
    assert (cb.kind, cb.lam, cb.exclude) == ("l1", 0.01, "embed")
    assert "anchored weight decay l1 (lambda 0.01)" in hff.enabled_techniques()
    with pytest.raises(ValueError, match="--awd_lambda set but --hff_awd is 'none'"):
        HffArguments(awd_lambda=1.0)
    with pytest.raises(ValueError, match="--hff_awd 'l3'"):
        HffArguments(hff_awd="l3")


def test_grpo_step_is_the_closed_form(tmp_path):
    """Inside TRL's GRPOTrainer (SGD, one step): the AWD run ends at θ0 + (1 − lr·λ)(θ_plain − θ0)."""
    import es_dist_worker as tiny
    from trl import GRPOConfig, GRPOTrainer

    def longer(prompts, completions, **_):  # any reward that differs between completions
        return [float(sum(map(ord, c)) % 97) for c in completions]

    def grpo(out, callbacks):
        args = GRPOConfig(output_dir=str(out), max_steps=1, learning_rate=0.05, optim="sgd", per_device_train_batch_size=4,
                          num_generations=4, max_completion_length=6, lr_scheduler_type="constant", warmup_steps=0,
                          weight_decay=0.0, max_grad_norm=0.0, beta=0.0, report_to=[], use_cpu=True, save_strategy="no",
                          logging_steps=1, seed=0, disable_tqdm=True)  # fmt: skip
        data = Dataset.from_dict({"prompt": ["ab", "cd", "ef", "gh"]})
        return GRPOTrainer(model=tiny.model(), args=args, reward_funcs=[longer], train_dataset=data,
                           processing_class=tiny.tokenizer(), callbacks=callbacks)  # fmt: skip

    start = weights(grpo(tmp_path / "s", []))
    plain = grpo(tmp_path / "p", [])
    plain.train()
    awd = grpo(tmp_path / "a", [AnchoredWeightDecayCallback(lam=2.0)])
    awd.train()
    moved = 0
    for name, p1 in weights(plain).items():
        moved += int(not torch.equal(p1, start[name]))
        torch.testing.assert_close(weights(awd)[name], start[name] + 0.9 * (p1 - start[name]), atol=1e-6, rtol=1e-5,
                                   msg=name)  # fmt: skip
    assert moved > 0  # the GRPO step changed weights, so the comparison is not vacuous
    assert awd.state.log_history[0]["awd/shrink"] == pytest.approx(0.1)
