"""Worker for the two-process MemFT test: 2 ranks x batch 2 must equal 1 process x batch 4.

``python -m torch.distributed.run --standalone --nproc_per_node 2 memft_dist_worker.py MODE OUT`` writes the
trained weights of rank r to ``OUT.rank<r>.pt``; ``reference(mode)`` trains the single-process run.
"""

from __future__ import annotations

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

    from hf_fundamentals.integrations.transformers.memft import memft_trainer_class
    from hf_fundamentals.memorization import MemFTConfig

    args = TrainingArguments(
        output_dir=out_dir, max_steps=STEPS, per_device_train_batch_size=per_device, learning_rate=0.05,
        optim="sgd", report_to=[], use_cpu=True, save_strategy="no", seed=3, lr_scheduler_type="constant",
        train_sampling_strategy="sequential", max_grad_norm=0.0, ddp_backend=backend, disable_tqdm=True,
    )  # fmt: skip
    trainer = memft_trainer_class(Trainer)(model=model(), args=args, train_dataset=dataset(),
                                           data_collator=default_data_collator,
                                           memft=MemFTConfig(mode, threshold=1 / VOCAB))  # fmt: skip
    trainer.train()
    return trainer


def reference(mode: str, out_dir: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in train(mode, out_dir, per_device=4).model.state_dict().items()}


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    trainer = train(mode, os.path.dirname(out), per_device=2, backend="gloo")
    assert trainer.accelerator.num_processes == 2
    torch.save(trainer.model.state_dict(), f"{out}.rank{trainer.accelerator.process_index}.pt")
