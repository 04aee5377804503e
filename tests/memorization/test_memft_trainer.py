"""MemFT through a real Trainer on a tiny Llama: accumulation equivalence, fallbacks, skipping, curriculum
step counts, hysteresis, retire-when-learned, resume equality, flags, and an end-to-end PhoneBook toy."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.memorization.memft_trainer import (
    ITEM_ID,
    memft_collator,
    memft_trainer_class,
)
from hf_fundamentals.integrations.trainer import trainer_extras
from hf_fundamentals.memorization import MemFTConfig, curriculum_total_steps, fidelity, token_losses

PROMPT, ANSWER, VOCAB = 3, 6, 48
SPLIT = 1 / VOCAB  # at init target probabilities scatter around 1/48: about half the tokens count as learned


def phonebook(n: int, seed: int = 0) -> Dataset:
    """n items: 3 'name' tokens (30..47) -> 6 'digit' tokens (3..12); loss on the digits only."""
    g = torch.Generator().manual_seed(seed)
    names = torch.randint(30, VOCAB, (n, PROMPT), generator=g)
    digits = torch.randint(3, 13, (n, ANSWER), generator=g)
    ids = torch.cat([names, digits], 1)
    labels = ids.clone()
    labels[:, :PROMPT] = -100
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist(), ITEM_ID: list(range(n))})


def items_of(ds: Dataset):
    return [(r[:PROMPT], r[PROMPT:]) for r in ds["input_ids"]]


def tiny_model(seed: int = 0, width: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=16,
    ))  # fmt: skip


def trainer(out, ds, memft, model=None, collator=None, **kw):
    from transformers import Trainer, TrainingArguments, default_data_collator

    settings = dict(
        output_dir=str(out), max_steps=3, per_device_train_batch_size=4, learning_rate=0.05, optim="sgd",
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, seed=3, lr_scheduler_type="constant",
        train_sampling_strategy="sequential", remove_unused_columns=False,
    )  # fmt: skip
    extra = {k: kw.pop(k) for k in ("memft_curriculum_epochs",) if k in kw}
    args = TrainingArguments(**{**settings, **kw})
    collator = collator or (
        lambda f: default_data_collator([{k: v for k, v in x.items() if k != ITEM_ID} for x in f])
    )
    cls = memft_trainer_class(Trainer)
    return cls(model=model or tiny_model(), args=args, train_dataset=ds, data_collator=collator, memft=memft,
               **extra)  # fmt: skip


def params(t):
    return {n: p.detach().clone() for n, p in t.model.named_parameters()}


@pytest.mark.parametrize("mode", ["ot", "sw_sliding", "sft"])
def test_accumulation_equals_one_big_batch(mode, tmp_path):
    ds = phonebook(12)
    cfg = MemFTConfig(mode, threshold=SPLIT)
    one = trainer(tmp_path / "a", ds, cfg)
    one.train()
    if mode == "ot":  # the halves of a window really differ in how many tokens are active
        assert 0.1 < one.state.log_history[0]["memft_active_ratio"] < 0.9
    two = trainer(tmp_path / "b", ds, cfg, per_device_train_batch_size=2, gradient_accumulation_steps=2)
    two.train()
    start = params(trainer(tmp_path / "c", ds, cfg))
    pa, pb = params(one), params(two)
    assert any(not torch.equal(pa[n], start[n]) for n in pa)
    for name in pa:
        torch.testing.assert_close(pb[name], pa[name], atol=1e-6, rtol=1e-5, msg=name)


def test_one_step_matches_the_hand_computed_update(tmp_path):
    from hf_fundamentals.memorization import memft_weights, token_losses

    ds = phonebook(4)
    t = trainer(tmp_path, ds, MemFTConfig("ot", threshold=SPLIT), max_steps=1, per_device_train_batch_size=2,
                gradient_accumulation_steps=2, max_grad_norm=0.0)  # fmt: skip
    ref = tiny_model()
    batch = torch.tensor(ds["input_ids"])
    labels = torch.tensor(ds["labels"])
    losses, mask, correct = token_losses(ref(input_ids=batch).logits, labels)
    w = memft_weights(losses, mask, correct, MemFTConfig("ot", threshold=SPLIT))
    assert 0 < w.sum() < mask.sum()
    ((losses * w).sum() / w.sum()).backward()
    t.train()
    for (name, p), q in zip(t.model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach() - 0.05 * q.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_empty_windows_fall_back_skip_or_stay_zero(tmp_path):
    ds = phonebook(8)
    nothing_active = 1e-9  # every token has p > 1e-9: nothing left to learn
    fallback = trainer(tmp_path / "f", ds, MemFTConfig("ot", threshold=nothing_active))
    start = params(fallback)
    fallback.train()
    assert any(not torch.equal(v, start[n]) for n, v in params(fallback).items())  # trained on the plain mean
    assert fallback.state.log_history[-2]["memft_fallback_steps"] == 3
    skip = trainer(tmp_path / "s", ds, MemFTConfig("ot_zero_bp", threshold=nothing_active, skip_empty_steps=True),
                   optim="adamw_torch")  # fmt: skip
    skip.train()
    assert all(torch.equal(v, start[n]) for n, v in params(skip).items())
    assert skip.state.log_history[-2]["memft_skipped_steps"] == 3
    assert skip.state.log_history[-2]["memft_active_ratio"] == 0.0


def test_curriculum_runs_exactly_the_reference_step_count(tmp_path):
    cfg = MemFTConfig("sw_curriculum", curriculum_epoch_boundaries=(2, 4, 6, 8, 10))
    ds = phonebook(20)
    t = trainer(tmp_path, ds, cfg, max_steps=-1, num_train_epochs=1, memft_curriculum_epochs=10)
    t.train()
    assert (
        t.state.global_step == curriculum_total_steps(20, 4, 10, cfg) == 2 * 1 + 2 * 2 + 2 * 3 + 2 * 4 + 2 * 5
    )


def test_hysteresis_tracks_items(tmp_path):
    from transformers import default_data_collator

    ds = phonebook(8)
    t = trainer(
        tmp_path, ds, MemFTConfig("ot", hysteresis_high=0.6), collator=memft_collator(default_data_collator)
    )
    t.train()
    assert sorted(t._memft_active) == list(range(8))
    assert all(len(v) == ANSWER for v in t._memft_active.values())
    # without the id column or the collator wrapper, the trainer adds both
    plain = trainer(tmp_path / "x", ds.remove_columns(ITEM_ID), MemFTConfig("ot", hysteresis_high=0.6),
                    remove_unused_columns=True)  # fmt: skip
    plain.train()
    assert sorted(plain._memft_active) == list(range(8))


def retire_trainer(out, ds, cfg, **kw):
    settings = dict(model=tiny_model(0, width=64), max_steps=-1, num_train_epochs=60, per_device_train_batch_size=4,
                    optim="adamw_torch", learning_rate=3e-3, logging_steps=10)  # fmt: skip
    return trainer(out, ds, cfg, **{**settings, **kw})


def test_retire_never_drops_an_item_below_threshold_and_stops_once_all_are_learned(tmp_path):
    ds = phonebook(16)
    cfg = MemFTConfig("sft", retire_after=2)
    t = retire_trainer(tmp_path, ds, cfg)
    book, decide, retired = t._memft_book, t._memft_book.visit_all, set()

    def checked_visit_all(visits):
        now = decide(visits)
        if now:  # still the weights that produced these visits' losses (the optimizer step comes after)
            rows = torch.tensor([ds[i]["input_ids"] for i in now])
            labels = torch.tensor([ds[i]["labels"] for i in now])
            with torch.no_grad():
                losses, mask, _ = token_losses(t.model(input_ids=rows).logits, labels)
            assert (losses[mask] <= cfg.learned_loss_threshold + 1e-5).all(), now
            retired.update(now)
        return now

    book.visit_all = checked_visit_all
    t.train()
    full_run = 60 * 16 // 4
    assert retired == set(range(16)) and book.all_retired
    assert t.state.global_step < 0.75 * full_run  # later epochs got shorter, and training stopped early
    fid = fidelity(t.model, items_of(ds), pad_id=0)
    assert fid.coverage == 1.0 and fid.exact_match == 1.0  # the final recheck ran on the final weights
    counts = t.memft_counts()
    assert counts["retired"] == 16 and 0 < counts["recheck_tokens"] < counts["train_tokens"]
    assert t.state.log_history[-2]["memft_retired"] >= 1
    with torch.no_grad():  # forgetting brings items back into sampling
        for p in t.model.parameters():
            p.add_(torch.randn_like(p))
    assert t._memft_recheck_retired() == list(range(16)) and not book.retired


def test_retire_resume_equals_an_uninterrupted_run(tmp_path):
    import json

    ds = phonebook(16)
    cfg = MemFTConfig("sft", retire_after=1)
    kw = dict(num_train_epochs=30, per_device_train_batch_size=2, gradient_accumulation_steps=2,
              save_strategy="steps", save_steps=5)  # fmt: skip
    full = retire_trainer(tmp_path / "full", ds, cfg, **kw)
    full.train()
    middle = (
        None  # inside an epoch, some items retired, after shortened epochs (so global_step // 4 is wrong)
    )
    for folder in sorted((tmp_path / "full").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        book = json.loads((folder / "memft_state.json").read_text())["retire"]
        step = int(folder.name.split("-")[1])
        if (0 < len(book["retired"]) < 16 and 0 < book["steps_in_epoch"] < len(book["plan"]) // 4
                and step != 4 * book["epoch"] + book["steps_in_epoch"]):  # fmt: skip
            middle = folder
            break
    assert middle is not None
    resumed = retire_trainer(tmp_path / "full", ds, cfg, **kw)
    resumed.train(resume_from_checkpoint=str(middle))
    assert resumed._memft_book.state_dict() == full._memft_book.state_dict()
    assert resumed.state.global_step == full.state.global_step
    for name, value in params(full).items():
        torch.testing.assert_close(params(resumed)[name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    ds = phonebook(16)
    cfg = MemFTConfig("sw_sliding", window=2)
    full = trainer(tmp_path / "full", ds, cfg, max_steps=6, optim="adamw_torch", learning_rate=1e-2,
                   save_strategy="steps", save_steps=3)  # fmt: skip
    full.train()
    resumed = trainer(tmp_path / "full", ds, cfg, max_steps=6, optim="adamw_torch", learning_rate=1e-2,
                      save_strategy="steps", save_steps=3)  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert resumed._memft_sliding.state_dict() == full._memft_sliding.state_dict()
    for name, value in params(full).items():
        torch.testing.assert_close(params(resumed)[name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_flags_build_the_trainer_class_and_refuse_apply(tmp_path):
    from transformers import Trainer, TrainingArguments

    hff = HffArguments(hff_memft="ot_zero_bp", memft_threshold=0.6, memft_skip_empty_steps=True)
    extras = trainer_extras(hff, TrainingArguments(output_dir=str(tmp_path), report_to=[]))
    cls = extras.trainer_class(Trainer)
    assert cls.__name__ == "MemFTTrainer"
    cfg = extras.trainer_kwargs()["memft"]
    assert (cfg.mode, cfg.threshold, cfg.skip_empty_steps) == ("ot_zero_bp", 0.6, True)
    with pytest.raises(ValueError, match="cannot be switched on in a built trainer"):
        extras.apply(object())
    with pytest.raises(ValueError, match="needs --memft_curriculum_epochs"):
        HffArguments(hff_memft="sw_curriculum")
    with pytest.raises(ValueError, match="--hff_memft 'fast'"):
        HffArguments(hff_memft="fast")
    retire = HffArguments(hff_memft="sft", memft_retire_after=2, memft_retire_recheck=False).memft_config()
    assert (retire.mode, retire.retire_after, retire.retire_recheck) == ("sft", 2, False)
    with pytest.raises(ValueError, match="own shuffled order"):
        HffArguments(hff_memft="ot", memft_retire_after=2, hff_order="saw", order_score="score")
    with pytest.raises(ValueError, match="--memft_retire_after set but --hff_memft is 'none'"):
        HffArguments(memft_retire_after=2)


@pytest.mark.slow
def test_phonebook_toy_ot_reaches_exact_recall(tmp_path):
    """OT trains a PhoneBook toy to full exact recall, as SFT does at the same step count.

    Our target was OT >= SFT at equal steps (a proposed test; arXiv 2605.30260 gives no such table); on this
    toy (full fine-tuning of a random 2-layer model) that held in 4 of 8 settings of steps x lr x seed and
    failed in the other 4 (see the MemFT note), so the test checks what does hold: both reach exact recall,
    and OT reports its active tokens going to zero.
    """
    ds = phonebook(24, seed=0)
    results = {}
    for mode in ("sft", "ot"):
        t = trainer(tmp_path / mode, ds, MemFTConfig(mode), model=tiny_model(0, width=64), max_steps=300,
                    per_device_train_batch_size=8, optim="adamw_torch", learning_rate=3e-3,
                    train_sampling_strategy="random", logging_steps=50)  # fmt: skip
        t.train()
        results[mode] = (fidelity(t.model, items_of(ds), pad_id=0, decode=True), t.state.log_history)
    for mode, (fid, _) in results.items():
        assert fid.exact_match == 1.0 and fid.exact_match_decoded == 1.0, mode
    ot_log = [h for h in results["ot"][1] if "memft_active_ratio" in h]
    assert ot_log[0]["memft_active_ratio"] > 0.5 and ot_log[-1]["memft_active_ratio"] < 0.05


def test_single_mlp_placement_wraps_one_module():
    from peft import get_peft_model

    from hf_fundamentals.integrations.memorization.lora import single_mlp_lora_config

    model = tiny_model()
    peft_model = get_peft_model(model, single_mlp_lora_config(model, r=2))
    wrapped = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert len(wrapped) == 1 and "layers.1.mlp.down_proj" in wrapped[0]
    with pytest.raises(ValueError, match="outside the model's 0..1"):
        single_mlp_lora_config(tiny_model(), r=2, layer=5)
