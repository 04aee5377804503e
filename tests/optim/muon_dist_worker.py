"""Two-process Muon runs (DDP or FSDP2 on gloo), and the single-process reference they must equal.

Run by tests/optim/test_muon_distributed.py as ``torchrun --nproc_per_node 2 muon_dist_worker.py MODE OUT``.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from hf_fundamentals.optim import MuonAdamW

STEPS = 4
BATCH = 8


class Experts(nn.Module):
    """A 3-D expert stack [E, out, in] (Qwen3-MoE layout) applied densely."""

    def __init__(self, n: int = 4, d_in: int = 12, d_out: int = 10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, d_out, d_in) / d_in**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bi,eoi->bo", x, self.weight) / self.weight.shape[0]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fused = nn.Linear(12, 9)  # "qkv" with blocks (5, 2, 2); 9 rows shard unevenly over 2 ranks
        self.hidden = nn.Linear(9, 12)
        self.experts = Experts()
        self.out = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.experts(torch.tanh(self.hidden(torch.tanh(self.fused(x))))))


def build() -> Net:
    torch.manual_seed(0)
    return Net()


def data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 12, generator=g), torch.randn(BATCH, 3, generator=g)) for _ in range(STEPS)]


def optimizer(model: Net) -> MuonAdamW:
    return MuonAdamW(
        [
            {"params": [model.fused.weight], "use_muon": True, "split_sizes": (5, 2, 2)},
            {"params": [model.hidden.weight, model.experts.weight], "use_muon": True},
            {"params": [model.out.weight], "use_muon": False},
            {"params": [m.bias for m in (model.fused, model.hidden, model.out)], "use_muon": False},
        ],
        lr=0.02,
        weight_decay=0.1,
        ns_dtype="float32",
    )


def train(model: nn.Module, opt: MuonAdamW, rank: int = 0, world: int = 1) -> None:
    for x, y in data():
        shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        opt.zero_grad()
        nn.functional.mse_loss(model(x[shard]), y[shard]).backward()
        opt.step()


def reference() -> dict[str, torch.Tensor]:
    model = build()
    train(model, optimizer(model))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(mode: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build()
    if mode == "ddp":
        wrapped = nn.parallel.DistributedDataParallel(model)
        opt = optimizer(model)
        train(wrapped, opt, rank, world)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    elif mode == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for sub in (model.fused, model.hidden, model.experts, model.out):
            fully_shard(sub, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = optimizer(model)  # built after sharding, on the DTensor parameters
        train(model, opt, rank, world)
        state = {k: v.full_tensor().detach().clone() for k, v in model.state_dict().items()}
    else:
        raise SystemExit(f"unknown mode {mode}")
    gathered = [None] * world
    dist.all_gather_object(gathered, state)
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
