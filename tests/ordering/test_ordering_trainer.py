"""Ordering through real Trainer / SFTTrainer / GRPOTrainer objects: order kept, shuffle refused, exact resume."""

from __future__ import annotations

import order_dist_worker as worker
import pytest
import torch
from datasets import Dataset

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.ordering.sampler import (
    OrderedTrainerMixin,
    OrderGuardCallback,
    OrderShuffleError,
    preserve_order,
    shuffle_problems,
)
from hf_fundamentals.integrations.trainer import trainer_extras
from hf_fundamentals.ordering import order_indices


def _args(out, **kw):
    from transformers import TrainingArguments

    settings = dict(
        output_dir=str(out), max_steps=4, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no", remove_unused_columns=False,
        logging_steps=1, seed=5,
    )  # fmt: skip
    return TrainingArguments(**{**settings, **kw})


def _trainer(args, dataset, collator, cls=None, **kw):
    from transformers import Trainer

    return (cls or Trainer)(
        model=worker.model(), args=args, train_dataset=dataset, data_collator=collator, **kw
    )


def test_stock_trainer_shuffles_and_the_guard_refuses(tmp_path):
    ds = worker.dataset()
    trainer = _trainer(_args(tmp_path), ds, worker.RecordingCollator(), callbacks=[OrderGuardCallback()])
    with pytest.raises(OrderShuffleError, match="RandomSampler"):
        trainer.train()
    # allow_shuffle: a warning, and the run really is shuffled
    collator = worker.RecordingCollator()
    _trainer(_args(tmp_path), ds, collator, callbacks=[OrderGuardCallback(allow_shuffle=True)]).train()
    seen = [i for b in collator.batches[:8] for i in b]
    assert seen != list(range(16))


def test_flags_order_the_dataset_and_the_trainer_reads_it_in_order(tmp_path):
    args = _args(tmp_path)
    hff = HffArguments(hff_order="zigzag", order_layers=3, order_score="score")
    extras = trainer_extras(hff, args)
    assert args.train_sampling_strategy == "sequential"
    ordered = extras.prepare_train_dataset(worker.dataset(), args)
    collator = worker.RecordingCollator()
    _trainer(args, ordered, collator, **extras.as_kwargs()).train()
    want = order_indices(worker.scores(), "zigzag", layers=3)
    assert [i for b in collator.batches[:8] for i in b] == want[:16].tolist()


def test_missing_score_column_is_named_or_computed(tmp_path):
    args = _args(tmp_path)
    ds = worker.dataset().remove_columns("score")
    with pytest.raises(KeyError, match="--order_score 'score' is not a column"):
        trainer_extras(HffArguments(hff_order="saw"), args).prepare_train_dataset(ds, args)
    texts = Dataset.from_dict({"text": ["aaaa aaaa aaaa", "q8#z!k2@", "the cat sat"]})
    hff = HffArguments(hff_order="sorting", order_scorer="compression", order_score="ratio")
    ordered = trainer_extras(hff, args).prepare_train_dataset(texts, args)
    assert ordered["text"] == ["aaaa aaaa aaaa", "the cat sat", "q8#z!k2@"]


def test_resume_mid_epoch_continues_the_order(tmp_path):
    want = order_indices(worker.scores(), "saw").tolist()
    args = _args(tmp_path, max_steps=6, save_strategy="steps", save_steps=2)

    class OrderedTrainer(OrderedTrainerMixin, worker_trainer_base()):
        pass

    full = worker.RecordingCollator()
    _trainer(args, worker.dataset(), full, cls=OrderedTrainer, train_order=want).train()
    resumed = worker.RecordingCollator()
    trainer = _trainer(_args(tmp_path, max_steps=6, save_strategy="steps", save_steps=2), worker.dataset(),
                       resumed, cls=OrderedTrainer, train_order=want)  # fmt: skip
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    after = [i for b in resumed.batches[:8] for i in b]
    assert after == want[8:24]  # steps 3..6 (2 samples x 2 accumulation per step)
    assert [i for b in full.batches[:12] for i in b] == want[:24]


def worker_trainer_base():
    from transformers import Trainer

    return Trainer


def test_mixin_refuses_an_order_of_the_wrong_length(tmp_path):
    class OrderedTrainer(OrderedTrainerMixin, worker_trainer_base()):
        pass

    trainer = _trainer(_args(tmp_path), worker.dataset(), worker.RecordingCollator(), cls=OrderedTrainer,
                       train_order=[0, 1, 2])  # fmt: skip
    with pytest.raises(ValueError, match="train_order has 3 indices but the train dataset has 40 rows"):
        trainer.train()


def test_deliberate_reordering_is_refused_unless_allowed(tmp_path):
    args = _args(tmp_path, train_sampling_strategy="group_by_length")
    with pytest.raises(OrderShuffleError, match="group_by_length"):
        preserve_order(args)
    preserve_order(args, allow_shuffle=True)
    assert args.train_sampling_strategy == "group_by_length"
    with pytest.raises(OrderShuffleError, match="group_by_length"):
        trainer_extras(
            HffArguments(hff_order="saw"), _args(tmp_path, train_sampling_strategy="group_by_length")
        )


def test_sft_trainer_reads_the_ordered_dataset_in_order(tiny_llama_dir, tmp_path):
    from conftest import TINY_TEXTS
    from trl import SFTConfig, SFTTrainer

    texts = TINY_TEXTS[:24]
    ds = Dataset.from_dict({"text": texts, "score": [float(len(t)) for t in texts]})
    args = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, report_to=[],
                     use_cpu=True, save_strategy="no", shuffle_dataset=True, max_length=32)  # fmt: skip
    assert "shuffle_dataset=True (TRL shuffles the dataset; needs False)" in shuffle_problems(args)
    extras = trainer_extras(HffArguments(hff_order="saw", order_score="score"), args)
    assert args.shuffle_dataset is False and not shuffle_problems(args)
    ordered = extras.prepare_train_dataset(ds, args)
    trainer = SFTTrainer(model=str(tiny_llama_dir), args=args, train_dataset=ordered, **extras.as_kwargs())
    rows = [row for batch in trainer.get_train_dataloader() for row, m in
            zip(batch["input_ids"], batch["attention_mask"], strict=True) for row in [row[m.bool()]]]  # fmt: skip
    tokenized = [torch.tensor(r) for r in trainer.train_dataset["input_ids"]]
    assert all(torch.equal(a, b) for a, b in zip(rows, tokenized, strict=True))
    tok = trainer.processing_class
    want = [texts[i] for i in order_indices([float(len(t)) for t in texts], "saw")]
    assert [tok.decode(r, skip_special_tokens=True) for r in tokenized[:3]] == want[:3]
    trainer.train()  # the guard passes


def test_sft_trainer_built_shuffled_is_refused_by_apply(tiny_llama_dir, tmp_path):
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_dict({"text": ["a b c", "d e f"] * 4})
    args = SFTConfig(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True, shuffle_dataset=True)
    trainer = SFTTrainer(model=str(tiny_llama_dir), args=args, train_dataset=ds)
    with pytest.raises(OrderShuffleError, match="shuffled its dataset when it was built"):
        trainer_extras(HffArguments(hff_order="saw")).apply(trainer)


@pytest.mark.slow
def test_grpo_trainer_keeps_prompt_order(tiny_llama_dir, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    prompts = [f"The number {i} is" for i in range(8)]
    ds = Dataset.from_dict({"prompt": prompts, "score": [float(i % 4) for i in range(8)]})

    def reward_len(completions, **kwargs):
        return [float(len(c)) for c in completions]

    def build(args):
        return GRPOTrainer(
            model=str(tiny_llama_dir), reward_funcs=reward_len, args=args, train_dataset=ordered
        )

    settings = dict(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=4,
                    max_completion_length=4, report_to=[], use_cpu=True, save_strategy="no")  # fmt: skip
    hff = HffArguments(hff_order="sorting", order_score="score")
    default_args = GRPOConfig(**settings)
    assert default_args.shuffle_dataset is True
    ordered = trainer_extras(hff).prepare_train_dataset(ds)
    shuffled = build(default_args)
    with pytest.raises(OrderShuffleError, match="RepeatSampler has shuffle=True"):
        OrderGuardCallback().on_train_begin(shuffled.args, None, None,
                                            train_dataloader=shuffled.get_train_dataloader())  # fmt: skip
    trainer_extras(hff).apply(shuffled)  # a built GRPOTrainer is switched to sequential in place
    for trainer in (shuffled, build(preserve_order(GRPOConfig(**settings)))):
        sampled = list(trainer._get_train_sampler())[:16]  # positions in the ordered dataset
        assert sampled == [
            i for i in range(4) for _ in range(4)
        ]  # each prompt num_generations times, in order
        want = order_indices(ds["score"], "sorting").tolist()
        assert [ordered["prompt"][i] for i in sampled[::4]] == [prompts[i] for i in want[:4]]
        OrderGuardCallback().on_train_begin(trainer.args, None, None,
                                            train_dataloader=trainer.get_train_dataloader())  # fmt: skip
