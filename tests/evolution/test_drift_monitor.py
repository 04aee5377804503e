"""DriftMonitorCallback in a real Trainer and in ESTrainer on a tiny random Llama: rows at the check steps,
KL 0 at step 0 and > 0 once weights moved, drift equal to a hand computation, the AWD anchor reused, the
history file and plot written; and the derived signals (forgetting peak warning, recovery) on hand-made
histories."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import es_dist_worker as tiny
import pytest
import torch
from datasets import Dataset

from hf_fundamentals.evolution import drift_signals
from hf_fundamentals.integrations.evolution.awd import AnchoredWeightDecayCallback
from hf_fundamentals.integrations.evolution.drift import HISTORY_FILE, DriftMonitorCallback
from hf_fundamentals.integrations.evolution.es_config import ESTrainingConfig
from hf_fundamentals.integrations.evolution.es_trainer import ESTrainer

KL_PROMPTS = ["hello", "the cat", "why?"]
TEXTS = ["aaaa bbbb cccc", "the cat sat on", "12 x 3 is 36!", "why? why not.", "go go go go", "sun is hot"]


def data() -> Dataset:
    tok = tiny.tokenizer()
    ids = [
        tok(t)["input_ids"][:12] + [tok.pad_token_id] * (12 - len(tok(t)["input_ids"][:12])) for t in TEXTS
    ]
    labels = [[i if i != tok.pad_token_id else -100 for i in row] for row in ids]
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def sft_trainer(out, callbacks, steps=5, **kw):
    from transformers import Trainer, TrainingArguments, default_data_collator

    settings = dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=2, learning_rate=0.05,
                    optim="sgd", lr_scheduler_type="constant", report_to=[], use_cpu=True, save_strategy="no",
                    logging_steps=100, seed=0, max_grad_norm=0.0, disable_tqdm=True)  # fmt: skip
    return Trainer(model=tiny.model(), args=TrainingArguments(**{**settings, **kw}), train_dataset=data(),
                   data_collator=default_data_collator, processing_class=tiny.tokenizer(),
                   callbacks=callbacks)  # fmt: skip


def scripted(values, seen=None):
    """A probe returning ``values`` in turn; records (training mode, grad enabled) at each call."""
    calls = iter(values)

    def fn(model, tokenizer):
        if seen is not None:
            seen.append((model.training, torch.is_grad_enabled(), tokenizer is not None))
        return next(calls)

    return fn


def test_sft_rows_kl_drift_logs_file_plot_and_warning(tmp_path):
    seen: list[tuple[bool, bool, bool]] = []
    # checks at steps 0, 2, 4 and 5 (train end): the target peaks at 4, where the prior mean is lowest
    monitor = DriftMonitorCallback(every=2, kl_prompts=KL_PROMPTS, kl_max_new_tokens=8,
                                   probes={"prior": scripted([0.8, 0.7, 0.4, 0.5], seen)},
                                   target=scripted([0.1, 0.3, 0.9, 0.6]), plot_path=str(tmp_path / "drift.png"))  # fmt: skip
    t = sft_trainer(tmp_path / "run", [monitor])
    start = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    with pytest.warns(UserWarning, match="peak of forgetting"):
        t.train()
    h = monitor.history
    assert [r["step"] for r in h] == [0, 2, 4, 5]
    assert monitor.anchor_source == "snapshot"
    assert h[0]["kl_to_base"] == pytest.approx(0.0, abs=1e-6) and h[0]["drift_global"] == 0.0
    assert h[-1]["kl_to_base"] > 1e-4 and h[-1]["drift_global"] > 0
    # drift against the initial weights, by hand
    sq = {n: float((p.detach() - start[n]).double().square().sum()) for n, p in t.model.named_parameters()}
    norm0 = math.sqrt(sum(float(p.double().square().sum()) for p in start.values()))
    assert h[-1]["drift_global"] == pytest.approx(math.sqrt(sum(sq.values())), rel=1e-6)
    assert h[-1]["drift_relative"] == pytest.approx(math.sqrt(sum(sq.values())) / norm0, rel=1e-6)
    layer0 = math.sqrt(sum(v for n, v in sq.items() if "layers.0." in n))
    assert h[-1]["drift_per_layer"]["layers.0"] == pytest.approx(layer0, rel=1e-6)
    # probes ran in eval mode without grad, with the tokenizer; the model is back in train mode
    assert seen == [(False, False, True)] * 4 and t.model.training
    assert [r["probe/prior"] for r in h] == [0.8, 0.7, 0.4, 0.5] and h[2]["forgetting"] == pytest.approx(0.4)
    # the checks on steps 2, 4, 5 reached the Trainer logs (logging_steps=100 would log none of them)
    logged = {r["step"]: r for r in t.state.log_history if "drift/kl_to_base" in r}
    assert sorted(logged) == [2, 4, 5]
    assert logged[4]["drift/target"] == 0.9 and logged[4]["drift/global"] == pytest.approx(
        h[2]["drift_global"]
    )
    # derived signals, warning, file, plot
    s = monitor.summary()
    assert (s["t_val"], s["t_forget"]) == (4, 4) and len(monitor.warnings) == 1
    saved = json.load(open(tmp_path / "run" / HISTORY_FILE))
    assert [r["step"] for r in saved["history"]] == [0, 2, 4, 5] and saved["summary"]["t_val"] == 4
    assert os.path.getsize(tmp_path / "drift.png") > 1000


def test_direct_hooks_restore_mode_and_see_weight_changes(tmp_path):
    """No trainer: the hooks snapshot θ0, KL is 0 on unchanged weights, > 0 after a hand edit, mode restored."""
    model, tok = tiny.model(), tiny.tokenizer()
    monitor = DriftMonitorCallback(every=1, kl_prompts=KL_PROMPTS, kl_max_new_tokens=6)
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = SimpleNamespace(global_step=0, max_steps=3, is_world_process_zero=True)
    model.train()
    monitor.on_train_begin(args, state, None, model=model)
    monitor.on_step_begin(args, state, None, model=model, processing_class=tok)
    assert model.training
    state.global_step = 1
    monitor.on_step_end(args, state, SimpleNamespace(should_log=False), model=model, processing_class=tok)
    assert monitor.history[1]["kl_to_base"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5 * torch.randn_like(model.lm_head.weight))
    model.eval()
    state.global_step = 2
    monitor.on_step_end(args, state, SimpleNamespace(should_log=False), model=model, processing_class=tok)
    assert not model.training  # restored to what it was (eval)
    row = monitor.history[-1]
    assert row["kl_to_base"] > 1e-3
    assert row["drift_per_layer"]["lm_head"] == pytest.approx(row["drift_global"], rel=1e-6)


def test_exact_kl_equals_the_full_vocabulary_kl_by_hand(tmp_path):
    """kl_estimator="exact": the row's KL is Σ_v p0 (log p0 − log pθ) over the base continuation positions,
    recomputed here from a θ0 copy; it is >= 0 at every small edit, where the sampled one can go negative."""
    import copy

    model, tok = tiny.model(), tiny.tokenizer()
    base = copy.deepcopy(model).eval()
    monitor = DriftMonitorCallback(every=1, kl_prompts=KL_PROMPTS, kl_max_new_tokens=6, kl_estimator="exact")
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = SimpleNamespace(global_step=0, max_steps=9, is_world_process_zero=True)
    monitor.on_train_begin(args, state, None, model=model)
    monitor.on_step_begin(args, state, None, model=model, processing_class=tok)
    assert monitor.history[0]["kl_to_base"] == pytest.approx(0.0, abs=1e-7)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-3 * torch.randn(p.shape, generator=gen))
        state.global_step = step
        monitor.on_step_end(args, state, SimpleNamespace(should_log=False), model=model, processing_class=tok)
        ids, attn, mask = (monitor._kl[k] for k in ("input_ids", "attention_mask", "mask"))
        with torch.no_grad():
            lp0 = torch.log_softmax(base(input_ids=ids, attention_mask=attn).logits[:, :-1], -1)[mask]
            lp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits[:, :-1], -1)[mask]
        want = float((lp0.exp() * (lp0 - lp)).sum(-1).mean())
        row = monitor.history[-1]
        assert want > 0
        assert row["kl_to_base"] == pytest.approx(want, rel=1e-3, abs=1e-9)
        assert "kl_to_base_sampled" in row
    with pytest.raises(ValueError, match="kl_estimator"):
        DriftMonitorCallback(kl_estimator="k3")


@pytest.mark.parametrize("awd_first", [True, False])
def test_reuses_the_awd_anchor(awd_first, tmp_path):
    awd = AnchoredWeightDecayCallback(lam=2.0)  # shrink 0.1 at lr 0.05
    monitor = DriftMonitorCallback(every=1)
    t = sft_trainer(tmp_path / "awd", [awd, monitor] if awd_first else [monitor, awd], steps=2)
    t.train()
    assert monitor.anchor_source == "awd" and monitor.anchor is awd.decay.anchor
    assert [r["step"] for r in monitor.history] == [0, 1, 2]
    want = awd.decay.deviation_norm([(n, p) for n, p in t.model.named_parameters() if p.requires_grad])
    assert monitor.history[-1]["drift_global"] == pytest.approx(want, rel=1e-6) and want > 0
    assert monitor.history[0]["kl_to_base"] is None and monitor.history[0]["target"] is None


def test_es_trainer(tmp_path):
    monitor = DriftMonitorCallback(every=1, kl_prompts=KL_PROMPTS, kl_max_new_tokens=6)
    args = ESTrainingConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, population_size=4,
                            sigma=0.02, alpha=0.05, report_to=[], use_cpu=True, save_strategy="no",
                            logging_steps=1, seed=0, disable_tqdm=True, generation_kwargs={"max_new_tokens": 4})  # fmt: skip
    t = ESTrainer(model=tiny.model(), args=args, train_dataset=tiny.dataset(4), processing_class=tiny.tokenizer(),
                  reward_funcs=[tiny.count_target], callbacks=[monitor])  # fmt: skip
    t.train()
    h = monitor.history
    assert [r["step"] for r in h] == [0, 1, 2]
    assert h[0]["kl_to_base"] == pytest.approx(0.0, abs=1e-6) and h[-1]["kl_to_base"] != pytest.approx(
        0.0, abs=1e-7
    )
    assert h[-1]["drift_global"] > 0
    assert [r["step"] for r in t.state.log_history if "drift/global" in r] == [1, 2]


def rows(steps, target, prior):
    return [{"step": s, "target": v, "prior_mean": p} for s, v, p in zip(steps, target, prior, strict=True)]


STEPS = [0, 25, 50, 75, 100]


def test_signals_warn_when_peaks_coincide():
    s = drift_signals(rows(STEPS, [0.0, 0.2, 0.5, 0.3, 0.2], [0.6, 0.55, 0.4, 0.5, 0.58]), every=25)
    assert (s["t_val"], s["t_forget"]) == (50, 50) and s["max_forgetting"] == pytest.approx(0.2)
    assert s["warning"] and "peak of forgetting" in s["warning"]
    assert [f for _, f in s["forgetting"]] == pytest.approx([0.0, 0.05, 0.2, 0.1, 0.02])
    # one interval apart still warns (|t_val - t_forget| <= every)
    s = drift_signals(rows(STEPS, [0.0, 0.2, 0.3, 0.5, 0.2], [0.6, 0.55, 0.4, 0.5, 0.58]), every=25)
    assert (s["t_val"], s["t_forget"]) == (75, 50) and s["warning"]


def test_signals_quiet_when_peaks_apart_or_nothing_forgotten():
    s = drift_signals(rows(STEPS, [0.0, 0.2, 0.3, 0.4, 0.6], [0.6, 0.3, 0.4, 0.5, 0.58]), every=25)
    assert (s["t_val"], s["t_forget"]) == (100, 25) and s["warning"] is None
    s = drift_signals(rows(STEPS, [0.0, 0.2, 0.5, 0.3, 0.2], [0.6, 0.6, 0.7, 0.65, 0.6]), every=25)
    assert s["t_forget"] is None and s["warning"] is None and s["recovery"] is None


def test_recovery_formula():
    steps = [0, 25, 50, 75, 100, 125, 150]
    h = rows(steps, [0.1, 0.2, 0.3, 0.4, 0.8, 0.7, 0.6], [0.6, 0.5, 0.4, 0.45, 0.5, 0.55, 0.58])
    s = drift_signals(h, every=25)
    # t_val = 100, read at the check nearest 120 after it: 125; P0 = 0.6, Pmin = 0.4
    assert s["t_val"] == 100 and s["recovery_step"] == 125 and s["recovery_at"] == pytest.approx(120)
    assert s["recovery"] == pytest.approx((0.55 - 0.4) / (0.6 - 0.4))
    assert drift_signals(h[:5], every=25)["recovery"] is None  # training stopped at t_val: no later check


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="every"):
        DriftMonitorCallback(every=0)
    with pytest.raises(ValueError, match="probe 'x'"):
        DriftMonitorCallback(probes={"x": 1.0})
    with pytest.raises(ValueError, match="every"):
        drift_signals([], every=0)
