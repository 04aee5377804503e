"""Worker for the two-process ordering test: train a tiny Llama and record the sample ids each rank consumes.

Run under ``python -m torch.distributed.run --standalone --nproc_per_node 2 order_dist_worker.py MODE OUT``;
each rank writes ``OUT.rank<r>.json`` with the sample ids of each of its micro-batches, in order.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

PER_DEVICE = 2
ACCUM = 2
STEPS = 4
ROWS = 40
SEQ = 8


def scores() -> np.ndarray:
    return np.random.default_rng(11).random(ROWS)


def dataset():
    from datasets import Dataset

    ids = (torch.arange(ROWS * SEQ).view(ROWS, SEQ) % 50 + 3).tolist()
    return Dataset.from_dict(
        {"sample_id": list(range(ROWS)), "input_ids": ids, "labels": ids, "score": scores().tolist()}
    )


class RecordingCollator:
    """Default collation, after taking each feature's ``sample_id`` out (the model must not see it)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, features):
        from transformers import default_data_collator

        self.batches.append([int(f["sample_id"]) for f in features])
        return default_data_collator([{k: v for k, v in f.items() if k not in ("sample_id", "score")}
                                      for f in features])  # fmt: skip


def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=SEQ,
    ))  # fmt: skip


def main(mode: str, out: str) -> None:
    from transformers import Trainer, TrainingArguments

    from hf_fundamentals.integrations.arguments import HffArguments
    from hf_fundamentals.integrations.ordering.sampler import OrderedTrainerMixin
    from hf_fundamentals.integrations.trainer import trainer_extras
    from hf_fundamentals.ordering import order_indices

    args = TrainingArguments(
        output_dir=os.path.dirname(out), max_steps=STEPS, per_device_train_batch_size=PER_DEVICE,
        gradient_accumulation_steps=ACCUM, learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
        remove_unused_columns=False, logging_steps=1, seed=5, ddp_backend="gloo",
    )  # fmt: skip
    collator = RecordingCollator()
    if mode == "extras":
        hff = HffArguments(
            hff_order="saw", order_score="score", order_num_sections=2, order_transition_ratio=0.2
        )
        extras = trainer_extras(hff, args)
        trainer = Trainer(model=model(), args=args, train_dataset=extras.prepare_train_dataset(dataset(), args),
                          data_collator=collator, **extras.as_kwargs())  # fmt: skip
    elif mode == "mixin":

        class OrderedTrainer(OrderedTrainerMixin, Trainer):
            pass

        trainer = OrderedTrainer(model=model(), args=args, train_dataset=dataset(), data_collator=collator,
                                 train_order=order_indices(scores(), "stair"))  # fmt: skip
    else:
        raise SystemExit(f"unknown mode {mode}")
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.state
    trainer.train()
    rank = trainer.accelerator.process_index
    with open(f"{out}.rank{rank}.json", "w") as fh:
        json.dump(collator.batches, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # leave the process group before exit: gloo torn down by interpreter exit can abort a rank
    # ("terminate called without an active exception") after the work is done
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
