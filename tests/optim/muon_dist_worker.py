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


def train(
    model: nn.Module, opt: MuonAdamW, rank: int = 0, world: int = 1, steps: slice = slice(None)
) -> list[dict]:
    """Train on ``data()[steps]``, each rank on its share of every batch; returns each step's ns_stats."""
    stats = []
    for x, y in data()[steps]:
        shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        opt.zero_grad()
        nn.functional.mse_loss(model(x[shard]), y[shard]).backward()
        opt.step()
        stats.append(dict(opt.ns_stats))
    return stats


def reference() -> dict[str, torch.Tensor]:
    model = build()
    train(model, optimizer(model))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def reference_stats() -> dict:
    """ns_stats of one single-process step: the Newton-Schulz work the ranks split between them."""
    model = build()
    return train(model, optimizer(model), steps=slice(0, 1))[0]


def _fsdp2(model: Net, world: int) -> Net:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    for sub in (model.fused, model.hidden, model.experts, model.out):
        fully_shard(sub, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _full(state: dict) -> dict[str, torch.Tensor]:
    return {
        k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone() for k, v in state.items()
    }


def _refusals(rank: int, world: int) -> dict[str, str]:
    """The two distributed layouts MuonAdamW refuses: a non-replica plain weight, a Partial DTensor."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial

    errors = {}
    model = build()
    with torch.no_grad():
        model.hidden.weight.add_(rank)  # as if each rank held a different (tensor-parallel) shard
    opt = optimizer(model)
    try:
        train(model, opt, rank, world, steps=slice(0, 1))
    except RuntimeError as e:
        errors["non_replica"] = str(e)
    mesh = init_device_mesh("cpu", (world,))
    partial = nn.Parameter(DTensor.from_local(torch.randn(4, 6), mesh, [Partial()]))
    try:
        MuonAdamW([{"params": [partial], "use_muon": True}])
    except RuntimeError as e:
        errors["partial"] = str(e)
    return errors


def main(mode: str, out: str) -> None:
    """Modes: ddp, fsdp2 (train all steps), ddp_resume, fsdp2_resume (2 steps, state_dict round trip into a
    fresh model and optimizer, 2 more), ddp_nosplit (distributed="none": every rank computes everything),
    refusals (the layouts that must fail). Rank 0 saves every rank's result to OUT."""
    import copy

    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result: dict = {}
    if mode in ("ddp", "ddp_nosplit"):
        model = build()
        wrapped = nn.parallel.DistributedDataParallel(model)
        opt = optimizer(model)
        if mode == "ddp_nosplit":
            opt.distributed = "none"
        result["ns_stats"] = train(wrapped, opt, rank, world)
        result["state"] = _full(model.state_dict())
    elif mode == "fsdp2":
        model = _fsdp2(build(), world)
        opt = optimizer(model)  # built after sharding, on the DTensor parameters
        result["ns_stats"] = train(model, opt, rank, world)
        result["state"] = _full(model.state_dict())
    elif mode in ("ddp_resume", "fsdp2_resume"):
        half = STEPS // 2
        if mode == "ddp_resume":
            model = build()
            opt = optimizer(model)
            train(nn.parallel.DistributedDataParallel(model), opt, rank, world, steps=slice(0, half))
        else:
            model = _fsdp2(build(), world)
            opt = optimizer(model)
            train(model, opt, rank, world, steps=slice(0, half))
        saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
        del model, opt
        torch.manual_seed(123)  # a fresh model with other weights: everything must come from the checkpoint
        fresh = Net()
        if mode == "ddp_resume":
            fresh.load_state_dict(saved_model)
            opt = optimizer(fresh)
            opt.load_state_dict(saved_opt)
            train(nn.parallel.DistributedDataParallel(fresh), opt, rank, world, steps=slice(half, None))
        else:
            fresh = _fsdp2(fresh, world)
            fresh.load_state_dict(saved_model)
            opt = optimizer(fresh)
            opt.load_state_dict(saved_opt)
            train(fresh, opt, rank, world, steps=slice(half, None))
        result["state"] = _full(fresh.state_dict())
    elif mode == "refusals":
        result["errors"] = _refusals(rank, world)
    else:
        raise SystemExit(f"unknown mode {mode}")
    gathered = [None] * world
    dist.all_gather_object(gathered, result)
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
