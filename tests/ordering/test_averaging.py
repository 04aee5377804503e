"""Weight averaging: the core average is the average, the Trainer callback averages the right steps of a real
run, swaps the average in (evaluate/save see it), and a resumed run ends with the uninterrupted run's average."""

from __future__ import annotations

import order_dist_worker as worker
import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.ordering.averaging import (
    STATE_NAME,
    WeightAveragingCallback,
    load_average,
    resolve_every,
)
from hf_fundamentals.integrations.trainer import trainer_extras
from hf_fundamentals.ordering.averaging import WeightAverage


def test_core_last_k_and_ema_match_their_definitions():
    torch.manual_seed(0)
    seq = [torch.randn(3, 4) for _ in range(12)]
    last = WeightAverage("last_k", k=3, every=2, device="cpu")
    assert last.snapshot_steps(12) == [8, 10, 12]
    ema = WeightAverage("ema", decay=0.9, every=1, device=None)
    for step, w in enumerate(seq, start=1):
        if last.wants(step, 12):
            last.update([("w", w)], step)
        ema.update([("w", w)], step)
    torch.testing.assert_close(last.average()["w"], (seq[7] + seq[9] + seq[11]) / 3)
    assert last.steps == [8, 10, 12] and last.nbytes() == 3 * 4 * 4
    want = seq[0].clone()
    for n, w in enumerate(seq[1:], start=1):
        d = min(0.9, (1 + n) / (10 + n))
        want = d * want + (1 - d) * w
    torch.testing.assert_close(ema.average()["w"], want)
    # state round trip continues exactly; another configuration is refused
    again = WeightAverage("last_k", k=3, every=2)
    again.load_state_dict(last.state_dict())
    torch.testing.assert_close(again.average()["w"], last.average()["w"])
    with pytest.raises(ValueError, match="built with"):
        WeightAverage("last_k", k=4, every=2).load_state_dict(last.state_dict())
    with pytest.raises(RuntimeError, match="empty"):
        WeightAverage("ema").copy_to([("w", torch.zeros(3, 4))])


def test_default_interval_is_the_checkpoint_interval_or_a_fifth_of_the_run():
    args = TrainingArguments(output_dir="x", save_strategy="steps", save_steps=7, report_to=[], use_cpu=True)
    assert resolve_every("last_k", 0, 3, args, 100) == 7
    assert resolve_every("last_k", 0, 4, TrainingArguments(output_dir="x", save_strategy="no", report_to=[]),
                         100) == 5  # fmt: skip
    assert resolve_every("ema", 0, 5, args, 100) == 1 and resolve_every("last_k", 3, 5, args, 100) == 3


class _Recorder(TrainerCallback):
    """The trainable weights after every optimizer step (what the average should be built from)."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}


def _args(out, **kw):
    settings = dict(
        output_dir=str(out), max_steps=8, per_device_train_batch_size=2, learning_rate=5e-3, report_to=[],
        use_cpu=True, save_strategy="no", remove_unused_columns=False, logging_steps=1, seed=5,
        train_sampling_strategy="sequential",
    )  # fmt: skip
    return TrainingArguments(**{**settings, **kw})


def _train(args, callbacks, resume=None):
    recorder = _Recorder()
    trainer = Trainer(model=worker.model(), args=args, train_dataset=worker.dataset(),
                      eval_dataset=worker.dataset().select(range(8)), data_collator=worker.RecordingCollator(),
                      callbacks=[*callbacks, recorder])  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorder


def test_callback_averages_the_last_k_steps_of_a_real_run_and_swaps_it_in(tmp_path):
    cb = WeightAveragingCallback("last_k", k=3, every=2)
    trainer, rec = _train(_args(tmp_path), [cb])
    assert cb.average.steps == [4, 6, 8] and cb.swapped
    for name, p in trainer.model.named_parameters():
        want = (rec.weights[4][name] + rec.weights[6][name] + rec.weights[8][name]) / 3
        torch.testing.assert_close(p.detach(), want, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(p.detach(), rec.weights[8][name]), f"{name}: the average is the last step"
    # evaluate() and save_model() see the average
    averaged_eval = trainer.evaluate()["eval_loss"]
    trainer.save_model(str(tmp_path / "final"))
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(str(tmp_path / "final"))
    for name, p in saved.named_parameters():
        torch.testing.assert_close(p, dict(trainer.model.named_parameters())[name].detach())
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            p.copy_(rec.weights[8][name])
    assert trainer.evaluate()["eval_loss"] != averaged_eval


def test_ema_callback_on_the_model_device_and_no_swap(tmp_path):
    cb = WeightAveragingCallback("ema", decay=0.5, device="model", swap=False)
    trainer, rec = _train(_args(tmp_path, max_steps=4), [cb])
    assert not cb.swapped and cb.average.steps == [1, 2, 3, 4]
    name, p = next(iter(trainer.model.named_parameters()))
    torch.testing.assert_close(p.detach(), rec.weights[4][name])  # not swapped
    want = rec.weights[1][name]
    for n in (1, 2, 3):
        d = min(0.5, (1 + n) / (10 + n))
        want = d * want + (1 - d) * rec.weights[n + 1][name]
    torch.testing.assert_close(cb.average.average()[name], want)


def test_resume_from_a_checkpoint_ends_with_the_same_average(tmp_path):
    full_cb = WeightAveragingCallback("last_k", k=4, every=1)
    full, rec = _train(_args(tmp_path / "full", save_strategy="steps", save_steps=3), [full_cb])
    assert full_cb.average.steps == [5, 6, 7, 8]
    ckpt = tmp_path / "full" / "checkpoint-6"
    assert (ckpt / STATE_NAME).is_file()
    # resume from step 6: the average already holds steps 5 and 6 and continues with 7 and 8
    res_cb = WeightAveragingCallback("last_k", k=4, every=1)
    resumed, _ = _train(_args(tmp_path / "resumed", save_strategy="steps", save_steps=3), [res_cb],
                        resume=str(ckpt))  # fmt: skip
    assert res_cb.average.steps == [5, 6, 7, 8]
    want = dict(full.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p.detach(), want[name].detach(), atol=1e-6, rtol=1e-6)
    # load_average puts a checkpoint's partial average (steps 5 and 6) into a model
    for name, p in load_average(worker.model(), ckpt).named_parameters():
        torch.testing.assert_close(p.detach(), (rec.weights[5][name] + rec.weights[6][name]) / 2)
    # a run resumed with other settings is refused rather than silently wrong
    with pytest.raises(ValueError, match="built with"):
        _train(_args(tmp_path / "other", save_strategy="steps", save_steps=3),
               [WeightAveragingCallback("last_k", k=2, every=1)], resume=str(ckpt))  # fmt: skip


def test_flags_switch_averaging_on_alone_and_refuse_orphans(tmp_path):
    hff = HffArguments(hff_average="last_k", hff_average_k=2, hff_average_every=3)
    args = _args(tmp_path)
    extras = trainer_extras(hff, args)
    assert args.train_sampling_strategy == "sequential"  # set by _args; averaging alone changes no sampling
    cbs = [c for c in extras.callbacks if isinstance(c, WeightAveragingCallback)]
    assert len(cbs) == 1 and (cbs[0].k, cbs[0].every) == (2, 3)
    assert "weight average last_k" in hff.enabled_techniques()[0]
    with pytest.raises(ValueError, match="--hff_average_k set but --hff_average is 'none'"):
        HffArguments(hff_average_k=3)
    with pytest.raises(ValueError, match="--hff_ema_decay is for --hff_average ema"):
        HffArguments(hff_average="last_k", hff_ema_decay=0.9)
    with pytest.raises(ValueError, match="--hff_average_device"):
        HffArguments(hff_average="ema", hff_average_device="gpu")
    both = HffArguments(hff_order="saw", hff_average="ema")
    kinds = {type(c).__name__ for c in trainer_extras(both, _args(tmp_path)).callbacks}
    assert {"OrderGuardCallback", "WeightAveragingCallback"} <= kinds


def test_swap_with_load_best_model_at_end_is_refused(tmp_path):
    args = _args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                 load_best_model_at_end=True)  # fmt: skip
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        _train(args, [WeightAveragingCallback("ema")])
