"""ESTrainer on a tiny random Llama with a character tokenizer: the reward rises, the step log replays to the
trained weights, resume equals an uninterrupted run, AWD composes (and replays), and bad settings fail
early."""

from __future__ import annotations

import json
import os

import es_dist_worker as tiny
import pytest
import torch

from hf_fundamentals.evolution import AnchoredDecay, MasterWeights, replay_steps
from hf_fundamentals.integrations.evolution.awd import AnchoredWeightDecayCallback
from hf_fundamentals.integrations.evolution.es_config import ESTrainingConfig
from hf_fundamentals.integrations.evolution.es_trainer import MASTER_FILE, ESTrainer, load_step_records

SETTINGS = dict(per_device_train_batch_size=4, population_size=8, sigma=0.02, alpha=0.02, report_to=[],
                use_cpu=True, save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True,
                generation_kwargs={"max_new_tokens": 6})  # fmt: skip


def trainer(out, steps=3, n_prompts=8, callbacks=None, reward_funcs=(tiny.count_target,), **kw):
    args = ESTrainingConfig(output_dir=str(out), max_steps=steps, **{**SETTINGS, **kw})
    return ESTrainer(model=tiny.model(), args=args, train_dataset=tiny.dataset(n_prompts),
                     processing_class=tiny.tokenizer(), reward_funcs=list(reward_funcs),
                     callbacks=callbacks)  # fmt: skip


def weights(t) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in t.model.named_parameters()}


def mean_reward(t) -> float:
    """Greedy reward of the current (unperturbed) weights on the whole dataset."""
    rows = t.train_dataset
    texts, ids, _ = t._generate(list(rows["prompt"]), gen_seed=0)
    return t._score(list(rows["prompt"]), texts, ids, {"target": list(rows["target"])})


def test_reward_rises_and_is_logged(tmp_path):
    t = trainer(tmp_path, steps=15, n_prompts=4, population_size=10)
    before = mean_reward(t)
    t.train()
    after = mean_reward(t)
    assert after >= before + 0.1, (before, after)  # measured: 0.0 -> 0.21
    logs = [h for h in t.state.log_history if "loss" in h]
    assert len(logs) == 15
    for h in logs:
        assert h["loss"] == pytest.approx(-h["reward/mean"], abs=1e-5)
        assert h["reward/min"] <= h["reward/mean"] <= h["reward/max"] and h["reward/std"] >= 0
        assert 0 < h["completion_length"] <= 6
        assert h["learning_rate"] == pytest.approx(0.02)
    assert not any(p.grad is not None for p in t.model.parameters())  # no gradients, ever
    assert t.optimizer.state_dict()["state"] == {}  # and no optimizer state


@pytest.mark.parametrize(
    "extra",
    [{}, {"mirrored": True, "reward_shaping": "centered_rank", "noise_mode": "shared_per_shape"},
     {"params_to_perturb": r"lm_head|layers\.0\.mlp"}],
    ids=["plain", "mirrored-rank-shared", "subset"],
)  # fmt: skip
def test_step_log_replays_to_trained_weights(extra, tmp_path):
    t = trainer(tmp_path, steps=4, **extra)
    start = weights(t)
    t.train()
    trained = weights(t)
    files = sorted(os.listdir(tmp_path / "es_updates"))
    assert files == [f"step_{i:06d}.json" for i in range(4)]
    records = load_step_records(str(tmp_path))
    assert len(records[0].seeds) == (4 if extra.get("mirrored") else 8)
    rebuilt = tiny.model()
    named = [(n, p) for n, p in rebuilt.named_parameters() if n in set(t.es_param_names)]
    replay_steps(named, records)
    for name, p in rebuilt.named_parameters():
        assert torch.equal(p, trained[name]), name
        if name not in t.es_param_names:
            assert torch.equal(p, start[name]), f"{name} is not perturbed but changed"
    assert any(not torch.equal(trained[n], start[n]) for n in trained)
    # save_model writes a normal HF checkpoint
    t.save_model(str(tmp_path / "final"))
    from transformers import LlamaForCausalLM

    loaded = LlamaForCausalLM.from_pretrained(str(tmp_path / "final"))
    for name, p in loaded.named_parameters():
        assert torch.equal(p, trained[name]), name


@pytest.mark.parametrize("master", [False, True], ids=["plain", "master-weights"])
def test_resume_equals_uninterrupted(master, tmp_path):
    # 8 prompts, 4 per step: 2 steps per epoch; the checkpoint at step 3 is in the middle of epoch 1
    full = trainer(tmp_path / "full", steps=6, master_weights=master)
    full.train()
    part = trainer(tmp_path / "part", steps=6, master_weights=master, save_strategy="steps", save_steps=3)
    part.train()
    checkpoint = tmp_path / "part" / "checkpoint-3"
    assert os.path.isfile(checkpoint / MASTER_FILE) == master
    resumed = trainer(tmp_path / "part", steps=6, master_weights=master, save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6
    want = weights(full)
    for name, p in weights(resumed).items():
        assert torch.equal(p, want[name]), name
    assert [r.seeds for r in load_step_records(str(tmp_path / "part"))] == [
        r.seeds for r in load_step_records(str(tmp_path / "full"))
    ]
    # epochs reshuffle (seed + epoch), so resuming in epoch 1 with epoch 0's order would show above
    sampler = full.get_train_dataloader().sampler
    full.state.epoch = 0.0
    first = list(sampler)
    full.state.epoch = 1.5
    assert list(sampler) != first and sorted(list(sampler)) == sorted(first) == list(range(8))


@pytest.mark.parametrize("lr", [0.02, None], ids=["lr=alpha", "lr-from-scheduler"])
def test_anchored_weight_decay_composes_and_replays(lr, tmp_path):
    plain = trainer(tmp_path / "plain", steps=5)
    start = weights(plain)
    plain.train()
    awd = AnchoredWeightDecayCallback(lam=10.0, lr=lr)
    decayed = trainer(tmp_path / "awd", steps=5, callbacks=[awd])
    decayed.train()

    def deviation(w):
        return sum(float((w[n] - start[n]).pow(2).sum()) for n in w) ** 0.5

    assert deviation(weights(decayed)) < 0.9 * deviation(weights(plain))
    records = load_step_records(str(tmp_path / "awd"))
    assert all(r.decay_kind == "l2" and r.decay_shrink == pytest.approx(0.2) for r in records)
    rebuilt = tiny.model()
    named = list(rebuilt.named_parameters())
    replay_steps(named, records, decay=AnchoredDecay(named, kind="l2", lam=10.0))
    want = weights(decayed)
    for name, p in named:
        torch.testing.assert_close(p, want[name], atol=0, rtol=0, msg=name)


def test_master_weights_track_the_update_in_bf16(tmp_path):
    t = trainer(tmp_path, steps=2, master_weights=True, sigma=1e-3, alpha=1e-3)
    t.model.to(torch.bfloat16)
    t.train()
    assert isinstance(t._es_master, MasterWeights)
    for name, p in t.es_named_params():
        assert p.dtype == torch.bfloat16
        assert torch.equal(p, t._es_master[name].to(torch.bfloat16)), name


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"mirrored": True, "population_size": 7}, "population must be even"),
     ({"population_size": 1}, "population must be an integer >= 2"),
     ({"sigma": 0.0}, "sigma"),
     ({"reward_shaping": "rank"}, "shaping 'rank' is not known"),
     ({"noise_mode": "lowrank"}, "noise_mode 'lowrank'"),
     ({"learning_rate": 1e-3}, "set alpha= instead"),
     ({"gradient_accumulation_steps": 2}, "gradient_accumulation_steps must be 1"),
     ({"max_grad_norm": 1.0}, "max_grad_norm must be 0"),
     ({"lr_scheduler_type": "linear"}, "constant alpha"),
     ({"weight_decay": 0.1}, "AnchoredWeightDecayCallback"),
     ({"params_to_perturb": "("}, "is not a regex"),
     ({"reward_weights": [float("nan")]}, "finite")],
)  # fmt: skip
def test_bad_settings_fail_early(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        ESTrainingConfig(output_dir=str(tmp_path), **{**SETTINGS, **kw})


def test_bad_trainer_inputs_fail_early(tmp_path):
    from datasets import Dataset

    args = ESTrainingConfig(output_dir=str(tmp_path), **SETTINGS)
    common = dict(model=tiny.model(), args=args, processing_class=tiny.tokenizer())
    with pytest.raises(ValueError, match="needs reward_funcs"):
        ESTrainer(train_dataset=tiny.dataset(), **common)
    with pytest.raises(ValueError, match="needs reward_funcs"):
        ESTrainer(train_dataset=tiny.dataset(), reward_funcs=[], **common)
    with pytest.raises(ValueError, match="'prompt' column"):
        ESTrainer(
            train_dataset=Dataset.from_dict({"text": ["a"]}), reward_funcs=[tiny.count_target], **common
        )
    with pytest.raises(ValueError, match="2 entries for 1 reward"):
        bad = ESTrainingConfig(output_dir=str(tmp_path), reward_weights=[1.0, 2.0], **SETTINGS)
        ESTrainer(train_dataset=tiny.dataset(), reward_funcs=[tiny.count_target], **{**common, "args": bad})
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        bad = ESTrainingConfig(output_dir=str(tmp_path), params_to_perturb="nothing_like_this", **SETTINGS)
        ESTrainer(train_dataset=tiny.dataset(), reward_funcs=[tiny.count_target], **{**common, "args": bad})
    with pytest.raises(ValueError, match="ESTrainingConfig"):
        from transformers import TrainingArguments

        ESTrainer(train_dataset=tiny.dataset(), reward_funcs=[tiny.count_target],
                  **{**common, "args": TrainingArguments(output_dir=str(tmp_path))})  # fmt: skip
    # a reward function that returns the wrong number of values fails at the first step, naming itself
    t = trainer(tmp_path / "short", steps=1, reward_funcs=[lambda prompts, completions, **kw: [1.0]])
    with pytest.raises(ValueError, match="returned 1 values for 4 prompts"):
        t.train()
    t = trainer(tmp_path / "awd", steps=1, master_weights=True, callbacks=[AnchoredWeightDecayCallback()])
    with pytest.raises(ValueError, match="master_weights with AnchoredWeightDecayCallback"):
        t.train()


def test_weighted_reward_functions_sum(tmp_path):
    def one(prompts, completions, **kw):
        return [1.0] * len(prompts)

    def maybe(prompts, completions, **kw):  # None: not applicable to that prompt
        return [None if i % 2 else 2.0 for i in range(len(prompts))]

    t = trainer(tmp_path, steps=1, reward_funcs=[one, maybe], reward_weights=[0.5, 3.0])
    t.train()
    record = json.loads((tmp_path / "es_updates" / "step_000000.json").read_text())
    # per prompt: 0.5 + 6 (even rows) or 0.5 (odd rows) → mean 3.5 for every member
    assert record["rewards"] == [pytest.approx(3.5)] * 8
    assert record["coefficients"] == [0.0] * 8  # equal rewards: z-scores are zero, no update


def test_tied_rewards_warn_once_and_are_counted(tmp_path, caplog):
    """Every member scoring the same gives a zero update: the run says so instead of silently not learning."""
    import logging

    def constant(prompts, completions, **_):
        return [0.0] * len(prompts)

    t = trainer(tmp_path, steps=3, reward_funcs=(constant,))
    before = weights(t)
    with caplog.at_level(logging.WARNING, logger="hf_fundamentals.integrations.evolution.es_trainer"):
        t.train()
    tied = [r for r in caplog.records if "rewards tied" in r.getMessage()]
    assert len(tied) == 1 and "the update is zero" in tied[0].getMessage()
    assert [h["reward/tied_iterations"] for h in t.state.log_history if "loss" in h] == [1.0, 2.0, 3.0]
    assert all(torch.equal(before[n], p) for n, p in weights(t).items())


def test_awd_in_es_anchors_only_the_perturbed_tensors_and_checkpoints_say_what_they_hold(tmp_path):
    from safetensors.torch import load_file

    awd = AnchoredWeightDecayCallback(lam=1.0)
    t = trainer(tmp_path, steps=2, callbacks=[awd], params_to_perturb=r"mlp\.down_proj", save_strategy="steps",
                save_steps=2)  # fmt: skip
    t.train()
    perturbed = set(t.es_param_names)
    assert perturbed and perturbed < {n for n, _ in t.model.named_parameters()}
    assert set(awd.decay.anchor) == perturbed  # the anchor holds what can drift, nothing else
    folder = tmp_path / "checkpoint-2"
    assert set(load_file(folder / "awd_anchor.safetensors")) == perturbed
    contents = json.loads((folder / "hff_contents.json").read_text())
    assert (
        "awd_anchor.safetensors" in contents
        and f"{len(perturbed)} tensors" in contents["awd_anchor.safetensors"]
    )
    assert any("es_updates" in key for key in contents)
