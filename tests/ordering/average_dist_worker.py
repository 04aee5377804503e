"""Worker for the two-process averaging test: DDP on gloo with a last-k WeightAveragingCallback.

Run under ``python -m torch.distributed.run --standalone --nproc_per_node 2 average_dist_worker.py OUT``; each
rank writes ``OUT.rank<r>.pt`` with its final (averaged) weights and the weights it saw after every step.
"""

from __future__ import annotations

import os
import sys

import order_dist_worker as data
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_fundamentals.integrations.ordering.averaging import WeightAveragingCallback


class Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}


def main(out: str) -> None:
    args = TrainingArguments(
        output_dir=os.path.dirname(out), max_steps=6, per_device_train_batch_size=2, learning_rate=5e-3,
        report_to=[], use_cpu=True, save_strategy="steps", save_steps=5, remove_unused_columns=False, seed=5,
        ddp_backend="gloo", train_sampling_strategy="sequential",
    )  # fmt: skip
    recorder = Recorder()
    averaging = WeightAveragingCallback("last_k", k=3, every=2)
    trainer = Trainer(model=data.model(), args=args, train_dataset=data.dataset(),
                      data_collator=data.RecordingCollator(), callbacks=[averaging, recorder])  # fmt: skip
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.state
    trainer.train()
    rank = trainer.accelerator.process_index
    final = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    torch.save({"final": final, "steps": recorder.weights, "averaged": averaging.average.steps},
               f"{out}.rank{rank}.pt")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
    # leave the process group before exit: gloo torn down by interpreter exit can abort a rank
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
