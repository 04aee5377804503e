"""Worker for the two-process MemFT test: 2 ranks x batch 2 must equal 1 process x batch 4.

``python -m torch.distributed.run --standalone --nproc_per_node 2 memft_dist_worker.py MODE OUT`` writes the
trained weights of rank r to ``OUT.rank<r>.pt`` (and, for ``retire``, its retire book to
``OUT.rank<r>.json``); ``reference(mode)`` trains the single-process run.
"""

from __future__ import annotations

import json
import os
import sys

import torch

VOCAB, PROMPT, ANSWER, ROWS, STEPS = 48, 3, 6, 16, 3


def dataset():
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.randint(30, VOCAB, (ROWS, PROMPT), generator=g),
                     torch.randint(3, 13, (ROWS, ANSWER), generator=g)], 1)  # fmt: skip
    labels = ids.clone()
    labels[:, :PROMPT] = -100
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=16,
    ))  # fmt: skip


def train(mode: str, out_dir: str, per_device: int, backend: str | None = None):
    from transformers import Trainer, TrainingArguments, default_data_collator

    from hf_fundamentals.integrations.memorization.memft_trainer import memft_trainer_class
    from hf_fundamentals.memorization import MemFTConfig

    # retire: SFT loss, an item leaves sampling after one visit with every token above 0.05; 8 epochs
    retire = mode == "retire"
    config = (
        MemFTConfig("sft", threshold=0.05, retire_after=1)
        if retire
        else MemFTConfig(mode, threshold=1 / VOCAB)
    )
    args = TrainingArguments(
        output_dir=out_dir, max_steps=-1 if retire else STEPS, num_train_epochs=8, learning_rate=0.05,
        per_device_train_batch_size=per_device, optim="sgd", report_to=[], use_cpu=True, save_strategy="no",
        seed=3, lr_scheduler_type="constant", train_sampling_strategy="sequential", max_grad_norm=0.0,
        ddp_backend=backend, disable_tqdm=True,
    )  # fmt: skip
    trainer = memft_trainer_class(Trainer)(model=model(), args=args, train_dataset=dataset(),
                                           data_collator=default_data_collator, memft=config)  # fmt: skip
    trainer.train()
    return trainer


def reference(mode: str, out_dir: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    trainer = train(mode, out_dir, per_device=4)
    book = trainer._memft_book.state_dict() if trainer._memft_book is not None else None
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, book


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    trainer = train(mode, os.path.dirname(out), per_device=2, backend="gloo")
    assert trainer.accelerator.num_processes == 2
    rank = trainer.accelerator.process_index
    torch.save(trainer.model.state_dict(), f"{out}.rank{rank}.pt")
    if trainer._memft_book is not None:
        with open(f"{out}.rank{rank}.json", "w") as fh:
            json.dump(trainer._memft_book.state_dict(), fh)
    # leave the process group before exit: gloo torn down by interpreter exit can abort a rank
    # ("terminate called without an active exception") after the work is done
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
