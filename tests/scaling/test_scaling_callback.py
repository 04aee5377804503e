"""The single-run Shannon law and ScalingLawCallback through a real Trainer on a tiny Llama."""

from __future__ import annotations

import json
import logging
import types

import numpy as np
import pytest
import torch

from hf_fundamentals.scaling import d_star, fit_law, get_law

TRUE = {"A": 0.4, "b": 1e-3, "beta": 0.5, "K": 1e-6, "delta": 0.8}


def test_single_run_law_gradient_matches_finite_differences():
    law = get_law("shannon_run")
    theta = law.to_theta(TRUE)
    u, v = np.zeros(4), np.log(np.array([1e4, 1e6, 1e8, 1e10]))
    _, grad = law.log_loss_and_grad(theta, u, v)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        fd = (law.log_loss(theta + e, u, v) - law.log_loss(theta - e, u, v)) / 2e-6
        np.testing.assert_allclose(grad[:, i], fd, rtol=1e-5, atol=1e-8)


def test_single_run_law_recovery_and_turning_point():
    law = get_law("shannon_run")
    tokens = np.logspace(5, 9, 24)
    rng = np.random.default_rng(0)
    loss = law.predict(TRUE, 1e6, tokens) * np.exp(0.003 * rng.standard_normal(tokens.size))
    held = tokens > 3e8
    fit = fit_law("shannon_run", np.full(tokens.size, 1e6), tokens, loss, heldout=held, n_starts=32)
    assert fit.r2_heldout > 0.9  # extrapolating past the turning point, 0.3% noise
    true_star = d_star(law, TRUE, 1e6)
    grid = np.logspace(5, 11, 200001)
    brute = grid[np.argmin(law.predict(TRUE, 1e6, grid))]
    assert true_star == pytest.approx(brute, rel=1e-3)
    assert fit.d_star(1e6) == pytest.approx(true_star, rel=0.1)
    assert d_star(law, {**TRUE, "delta": 0.3}, 1e6) is None  # δ < β: loss keeps falling


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _dataset(n: int, seed: int):
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(4, 17, (1,), generator=g))
        rows.append({"input_ids": torch.randint(3, 64, (length,), generator=g).tolist()})
    return Dataset.from_list(rows)


def _collate(features):
    """Right-pads to the longest row; labels -100 on padding."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros(len(features), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, f in enumerate(features):
        ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[i, : len(f["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def _counting(n: int, seed: int):
    """Learnable rows: a fixed bigram map (next = 3 + (7·(t − 3) + 5) mod 61) from a random first token, with
    every 4th token random, so the loss has a floor above 0."""
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = [int(torch.randint(3, 64, (1,), generator=g))]
        for i in range(1, 16):
            nxt = 3 + (7 * (ids[-1] - 3) + 5) % 61
            ids.append(int(torch.randint(3, 64, (1,), generator=g)) if i % 4 == 0 else nxt)
        rows.append({"input_ids": ids})
    return Dataset.from_list(rows)


def _trainer(tmp_path, callback, *, steps=8, accumulation=2, include="non_padding", scheduler="linear",
             eval_steps=1, data=None, lr=3e-3):  # fmt: skip
    from transformers import Trainer, TrainingArguments

    train, held = data if data is not None else (_dataset(60, 0), _dataset(8, 1))
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=3,
        gradient_accumulation_steps=accumulation, per_device_eval_batch_size=4, eval_strategy="steps",
        eval_steps=eval_steps, logging_steps=eval_steps, learning_rate=lr, report_to=[], use_cpu=True,
        save_strategy="no", include_num_input_tokens_seen=include, dataloader_drop_last=False, seed=0,
        disable_tqdm=True, lr_scheduler_type=scheduler, warmup_steps=2,
    )  # fmt: skip
    return Trainer(
        model=_tiny_llama(), args=args, train_dataset=train, eval_dataset=held,
        data_collator=_collate, callbacks=[callback],
    )  # fmt: skip


def test_callback_counts_real_tokens_under_padding_and_accumulation(tmp_path):
    """D is the number of non-padding tokens the optimizer steps consumed (3 rows x 2 accumulation per step)."""
    from hf_fundamentals.integrations.scaling.callback import ScalingLawCallback

    cb = ScalingLawCallback(min_points=6, output_file=None, fit_kwargs={"n_starts": 8})
    trainer = _trainer(tmp_path, cb, steps=3)
    seen = []
    original = trainer.training_step

    def spy(model, inputs, *a, **kw):
        seen.append(int(inputs["attention_mask"].sum()))
        return original(model, inputs, *a, **kw)

    trainer.training_step = spy
    trainer.train()
    assert len(seen) == 6  # 3 steps x 2 micro-batches
    padded = sum(int(m) for m in seen)
    assert [p.tokens for p in cb.points] == [float(sum(seen[: 2 * (i + 1)])) for i in range(3)]
    assert cb.points[-1].tokens == padded
    assert all(p.n_params == sum(q.numel() for q in trainer.model.parameters()) for p in cb.points)


def test_callback_refits_reports_and_restores_perturbed_weights(tmp_path, caplog):
    from hf_fundamentals.integrations.scaling.callback import JSONL, ScalingLawCallback

    cb = ScalingLawCallback(min_points=6, perturb="quant:4", perturb_batches=2, fit_kwargs={"n_starts": 8})
    trainer = _trainer(tmp_path, cb, steps=7, accumulation=1)
    trainer.train()
    assert len(cb.points) == 7 and all(p.perturbed_loss is not None for p in cb.points)
    assert len(cb.reports) == 2
    report = cb.reports[-1]
    assert report.predicted_final_loss is not None and report.perturbed is not None
    lines = [json.loads(x) for x in (tmp_path / JSONL).read_text().splitlines()]
    assert [x["step"] for x in lines] == [6, 7]
    assert any("scaling/predicted_final_loss" in h for h in trainer.state.log_history)
    # the perturbation is undone exactly
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    from hf_fundamentals.integrations.scaling.callback import perturb_weights_, restore_weights_

    saved = perturb_weights_(model, "noise", 0.1)
    assert not torch.equal(
        model.model.layers[0].mlp.up_proj.weight, before["model.layers.0.mlp.up_proj.weight"]
    )
    restore_weights_(model, saved)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_callback_warns_near_the_turning_point(caplog):
    """Points sampled from a U-shaped run past 90% of its D*: one warning."""
    from hf_fundamentals.integrations.scaling.callback import ScalingLawCallback, ScalingPoint

    law = get_law("shannon_run")
    star = d_star(law, TRUE, 1e6)
    cb = ScalingLawCallback(law="shannon_run", min_points=6, output_file=None, fit_kwargs={"n_starts": 32})
    tokens = np.geomspace(star / 300, star * 0.97, 12)
    cb.points = [
        ScalingPoint(i, float(t), 1e6, float(law.predict(TRUE, 1e6, t))) for i, t in enumerate(tokens)
    ]
    report = cb.refit(final_tokens=star * 2)
    assert report.d_star == pytest.approx(star, rel=0.05)
    assert report.fraction_of_d_star > 0.9
    assert report.predicted_final_loss > float(law.predict(TRUE, 1e6, star))
    state = types.SimpleNamespace(log_history=[], global_step=12, is_world_process_zero=True)
    args = types.SimpleNamespace(output_dir=None)
    with caplog.at_level(logging.WARNING, logger="hf_fundamentals.integrations.scaling.callback"):
        cb._emit(args, state, report)
        cb._emit(args, state, report)
    assert sum("turning point" in r.message for r in caplog.records) == 1


def test_callback_clear_errors(tmp_path):
    from hf_fundamentals.integrations.scaling.callback import ScalingLawCallback

    with pytest.raises(ValueError, match="noise"):
        ScalingLawCallback(perturb="gauss:0.1")
    with pytest.raises(ValueError, match="min_points"):
        ScalingLawCallback(min_points=3)
    with pytest.raises(ValueError, match="law must be one of"):
        ScalingLawCallback(law="kaplan")
    with pytest.raises(ValueError, match="need at least"):
        ScalingLawCallback().refit()
    trainer = _trainer(tmp_path, ScalingLawCallback(), steps=1, include="no")
    with pytest.raises(ValueError, match="include_num_input_tokens_seen"):
        trainer.train()


def test_callback_records_the_scheduler_lrs_and_forecasts_the_final_loss(tmp_path):
    """A cosine run on learnable rows: the LRs recorded are transformers' cosine schedule; the report at 80% of the
    run (first evaluation dropped) forecasts the last evaluation's loss within 5%, inside its interval; the fit file
    it writes is what `hff scaling predict --schedule` reads. (This toy drops from 3.8 to 1.5 nats in 60 steps, a
    shape the law fits poorly early on: its 40% forecasts are far off, see benchmarks/scaling_forecast.py for a
    real one.)"""
    from hf_fundamentals.integrations.cli.main import main
    from hf_fundamentals.integrations.scaling.callback import FIT_FILE, JSONL, ScalingLawCallback
    from hf_fundamentals.scaling import load_annealing, lr_schedule

    # refits start at the 12th evaluation (step 48), the first report checked: the earlier refits cost ~60% of
    # this test's time and nothing below reads them
    cb = ScalingLawCallback(min_points=12, min_step=8, fit_kwargs={"n_boot": 30})
    trainer = _trainer(tmp_path, cb, steps=60, accumulation=1, scheduler="cosine", eval_steps=4,
                       data=(_counting(200, 0), _counting(16, 1)), lr=2e-2)  # fmt: skip
    trainer.train()
    np.testing.assert_allclose(cb.lrs, lr_schedule("cosine", 60, 2e-2, warmup_steps=2), rtol=1e-9)
    early = next(r for r in cb.reports if r.step == 48)
    final = cb.points[-1].loss
    assert early.law == "annealing" and early.final_step == 60 and early.future_lr == "scheduler"
    assert early.predicted_final_lo <= final <= early.predicted_final_hi
    assert abs(early.predicted_final_loss / final - 1) < 0.05, (early.predicted_final_loss, final)
    assert cb.points[0].loss > 1.1 * final  # the run learned something to forecast
    assert set(early.identifiability) == {"L0", "A", "alpha", "C"}
    lines = [json.loads(x) for x in (tmp_path / JSONL).read_text().splitlines()]
    assert "scaling/predicted_final_hi" in lines[0] and "scaling/identifiability" in lines[0]
    fit = load_annealing(tmp_path / FIT_FILE)
    assert fit.steps[-1] == 60
    assert main(["scaling", "predict", str(tmp_path / FIT_FILE), "--schedule", "constant", "--steps", "60",
                 "--peak_lr", "2e-2", "--warmup", "2"]) == 0  # fmt: skip
