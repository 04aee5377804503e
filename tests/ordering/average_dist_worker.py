"""Worker for the two-process averaging test: DDP on gloo with a last-k WeightAveragingCallback.

Run under ``python -m torch.distributed.run --standalone --nproc_per_node 2 average_dist_worker.py MODE OUT``;
each rank writes ``OUT.rank<r>.pt`` with its final (averaged) weights and the weights it saw after every step.
Modes: ``ddp`` (the Trainer on gloo) and ``fsdp2`` (``fully_shard`` on gloo, a plain loop driving the callback's
events, then a resume from the per-rank state files).
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


def _full(model) -> dict[str, torch.Tensor]:
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
            for n, p in model.named_parameters()}  # fmt: skip


def fsdp2(out: str) -> None:
    from types import SimpleNamespace

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = data.model()
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rows = torch.tensor(data.dataset()["input_ids"])
    args = SimpleNamespace(deepspeed=None, load_best_model_at_end=False, save_strategy="no", save_steps=0,
                           output_dir=os.path.dirname(out), should_save=rank == 0, process_index=rank,
                           resume_from_checkpoint=None)  # fmt: skip
    state = SimpleNamespace(global_step=0, max_steps=6, stateful_callbacks={})
    averaging = WeightAveragingCallback("last_k", k=3, every=2)
    averaging.on_train_begin(args, state, None, model=model)
    steps = {}
    for step in range(1, 7):
        batch = rows[(step - 1) * 4 + 2 * rank : (step - 1) * 4 + 2 * rank + 2]
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
        opt.zero_grad()
        state.global_step = step
        averaging.on_step_end(args, state, None, model=model)
        steps[step] = _full(model)
        if step == 4:
            averaging.on_save(args, state, None, model=model)
    averaging.on_train_end(args, state, None, model=model)
    resumed = WeightAveragingCallback("last_k", k=3, every=2)
    resumed.on_train_begin(args, SimpleNamespace(global_step=4, max_steps=6, stateful_callbacks={}), None,
                           model=model)  # fmt: skip
    files = sorted(os.listdir(os.path.join(os.path.dirname(out), "checkpoint-4")))
    torch.save({"final": _full(model), "steps": steps, "averaged": averaging.average.steps,
                "resumed_steps": resumed.average.steps, "files": files,
                "local_bytes": averaging.average.nbytes()}, f"{out}.rank{rank}.pt")  # fmt: skip


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
    (fsdp2 if sys.argv[1] == "fsdp2" else main)(sys.argv[2])
    # leave the process group before exit: gloo torn down by interpreter exit can abort a rank
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
