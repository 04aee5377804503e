"""``MuonAdamW``: Muon on matrix parameters and AdamW on the rest, in one ``torch.optim.Optimizer``.

One optimizer (not two chained) because the Trainer's LR scheduler, ``state_dict``/resume and accelerate's
FSDP2 parameter swap all act on ``optimizer.param_groups``. Each group says ``use_muon``; Muon groups also
carry how to read their tensors as logical matrices (``layout``, ``split_sizes``/``split_interleave``,
``flatten``), which :func:`hf_fundamentals.optim.routing.muon_param_groups` fills in from the model.

Muon step for a parameter W with gradient G (all in fp32; ``.grad`` is never modified):
    B <- lerp(B, G, 1 - momentum)                 (EMA momentum, torch/Keller convention)
    U <- lerp(G, B, momentum) if nesterov else B
    O <- map(U) per logical matrix (per expert, per fused block), times the lr adjustment of its shape
    W <- W (1 - lr * weight_decay) - lr * O       (decay uses the unadjusted lr, as every reference does)

Batching: the map runs once per shape group. Every logical matrix (expert, fused block) is turned wide
(rows <= cols; the map commutes with transposition), and all matrices of one shape and one setting are
stacked into a single batched call, so the 28 hidden matrices of a 4-layer Llama (q/k/v/o square, gate/up/down
192x512 once turned wide) make 2 calls instead of 28. The AdamW part goes through torch's foreach AdamW for
fp32 parameters.

Distributed: with plain tensors and an initialized process group of several ranks (DDP), the matrices are
assigned to ranks by Newton-Schulz cost (longest first, to the least-loaded rank; an expert stack is cut into
chunks of experts first), each rank runs its share batched and broadcasts the results, so every rank ends
with identical weights. With FSDP2 ``DTensor``
parameters, an expert stack sharded on the expert dim is orthogonalized locally (whole experts live on one
rank); any other matrix is gathered whole to its owner rank (same cost-balanced assignment), orthogonalized
there and scattered back, because Newton-Schulz on a shard computes a different (wrong) update. Flattened
parameters (FSDP1, DeepSpeed ZeRO), DTensor placements other than Shard/Replicate, and plain parameters
that differ across ranks (a hand-made tensor-parallel shard) are refused at the first step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from hf_fundamentals.optim.newton_schulz import (
    NS_METHODS,
    newton_schulz,
    regularized_polar,
    schatten_power,
)

logger = logging.getLogger("hf_fundamentals.optim")

MODES = ("polar", "regularized", "htmuon")
ADJUST_LR = ("original", "match_rms_adamw", "spectral_norm", "none")
LAYOUTS = ("out_in", "in_out")
DISTRIBUTED = ("auto", "replicated", "none")
GRAM_NS = ("auto", "on", "off")
_DTYPES = {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def ns_dtype_for(name: str, device: torch.device) -> torch.dtype:
    """The Newton-Schulz dtype: ``auto`` is bf16 on accelerators and fp32 on CPU.

    CPUs without native bf16 matmul run bf16 NS about 10x slower than fp32 (measured in benchmarks/optim.py:
    2.0 s vs 0.2 s per step on a 2.5M-parameter model), so bf16 there costs time and buys nothing.
    """
    dtype = _DTYPES[name]
    if dtype is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return dtype


def lr_adjustment(adjust_lr: str | None, fan_out: int, fan_in: int) -> float:
    """Factor applied to Muon's update of a (fan_out x fan_in) logical matrix.

    ``original`` (Keller, torch default): sqrt(max(1, out/in)). ``match_rms_adamw`` (Moonlight): 0.2 *
    sqrt(max(out, in)), which makes the update RMS about AdamW's, so AdamW-tuned lr and weight decay carry
    over. ``spectral_norm`` (dion): sqrt(out/in). ``none``: 1.
    """
    if adjust_lr in (None, "none"):
        return 1.0
    if adjust_lr == "original":
        return math.sqrt(max(1.0, fan_out / fan_in))
    if adjust_lr == "match_rms_adamw":
        return 0.2 * math.sqrt(max(fan_out, fan_in))
    if adjust_lr == "spectral_norm":
        return math.sqrt(fan_out / fan_in)
    raise ValueError(f"adjust_lr={adjust_lr!r} is not known; accepted: {', '.join(ADJUST_LR)}")


def _is_dtensor(t: Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(t, DTensor)


class MuonAdamW(torch.optim.Optimizer):
    """Muon for groups with ``use_muon=True``, AdamW for the others; state per parameter.

    Args:
        params: parameter groups, each a dict with ``params`` and ``use_muon`` (required: routing is a
            decision, see :func:`~hf_fundamentals.optim.routing.muon_param_groups`), and optionally any
            default below plus ``layout`` ("out_in": weight is (out, in) like nn.Linear; "in_out": GPT-OSS /
            Llama4 experts, Conv1D), ``split_sizes`` (fused blocks along the output dim, e.g. q/k/v sizes),
            ``split_interleave`` (k blocks interleaved row by row, GPT-OSS gate/up), ``flatten`` (conv
            weights read as (out, in*kh*kw)) and ``role`` (a label for reports).
        lr: learning rate of both parts (with ``adjust_lr="match_rms_adamw"`` one lr serves both).
        weight_decay: decoupled weight decay, multiplied by the unadjusted lr.
        momentum, nesterov: Muon momentum (EMA) and Nesterov input.
        mode: "polar" (Newton-Schulz, Muon), "regularized" (smoothed polar map with ``reg_eps``) or
            "htmuon" (U S^p V^T with ``ht_power``).
        ns_method, ns_steps, ns_dtype: the Newton-Schulz schedule ("quintic" or "polar_express"), its
            number of steps and its dtype ("auto": bf16 on GPU, fp32 on CPU where bf16 matmul is ~10x
            slower; or "bfloat16", "float16", "float32").
        gram_ns: Gram Newton-Schulz (the iteration on the small Gram side, restarted every 3 steps) for
            matrices where it saves FLOPs (aspect ratio above 2.5 at 5 steps). "auto": when NS runs in fp32,
            where it matches plain NS to 2e-5; "on" (also in bf16); "off".
        adjust_lr: "match_rms_adamw", "original", "spectral_norm" or "none" (see :func:`lr_adjustment`).
        betas, eps: AdamW's.
        distributed: "auto" (split Newton-Schulz work across ranks when a process group of several ranks is
            initialized and parameters are replicated, as under DDP; DTensor parameters are always handled
            shard-correctly), "replicated" (same, and insist on it), "none" (every rank computes everything;
            for parameters that differ across ranks).
        batched: one map call per shape group (default); False runs one call per parameter (the reference
            the batched path is tested against).
        foreach: torch's foreach AdamW for fp32 parameters (default); False: a per-parameter loop.
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        *,
        momentum: float = 0.95,
        nesterov: bool = True,
        mode: str = "polar",
        ns_method: str = "quintic",
        ns_steps: int = 5,
        ns_dtype: str = "auto",
        gram_ns: str = "auto",
        reg_eps: float = 1e-2,
        reg_steps: int = 20,
        ht_power: float = 0.125,
        adjust_lr: str = "match_rms_adamw",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        distributed: str = "auto",
        batched: bool = True,
        foreach: bool = True,
    ) -> None:
        if distributed not in DISTRIBUTED:
            raise ValueError(f"distributed={distributed!r}; accepted: {', '.join(DISTRIBUTED)}")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            mode=mode,
            ns_method=ns_method,
            ns_steps=ns_steps,
            ns_dtype=ns_dtype,
            gram_ns=gram_ns,
            reg_eps=reg_eps,
            reg_steps=reg_steps,
            ht_power=ht_power,
            adjust_lr=adjust_lr,
            betas=tuple(betas),
            eps=eps,
            layout="out_in",
            split_sizes=None,
            split_interleave=None,
            flatten=False,
            role="",
        )
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            raise ValueError(
                "MuonAdamW takes parameter groups with an explicit use_muon (which matrices get Muon is a "
                "decision, not a shape rule); build them with "
                "hf_fundamentals.optim.muon_param_groups(model) or pass [{'params': [...], 'use_muon': True}, ...]"
            )
        self.distributed = distributed
        self.batched = batched
        self.foreach = foreach
        self.ns_stats: dict[str, Any] = {}
        """Newton-Schulz work of the last step on this rank: matrices, tensors, map calls, est. FLOPs, seconds."""
        self._announced = False
        self._checked_replicas = False
        super().__init__(groups, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's Muon settings before adding it (errors name the group and the value)."""
        if "use_muon" not in param_group:
            raise ValueError(
                f"parameter group {len(self.param_groups)} has no 'use_muon'; every group must say whether it "
                "is trained by Muon (matrices) or AdamW (embeddings, heads, norms, biases, routers)"
            )
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        where = f"parameter group {len(self.param_groups) - 1} ({group.get('role') or 'no role'})"
        checks = {
            "mode": MODES,
            "ns_method": NS_METHODS,
            "adjust_lr": ADJUST_LR,
            "layout": LAYOUTS,
            "ns_dtype": tuple(_DTYPES),
            "gram_ns": GRAM_NS,
        }
        for key, accepted in checks.items():
            if group[key] not in accepted and not (key == "adjust_lr" and group[key] is None):
                raise ValueError(f"{where}: {key}={group[key]!r}; accepted: {', '.join(accepted)}")
        if not 0.0 <= group["momentum"] < 1.0:
            raise ValueError(f"{where}: momentum must be in [0, 1), got {group['momentum']}")
        if group["lr"] < 0 or group["weight_decay"] < 0:
            raise ValueError(f"{where}: lr and weight_decay must be >= 0")
        if group["lr"] * group["weight_decay"] >= 1.0:
            raise ValueError(
                f"{where}: lr * weight_decay = {group['lr'] * group['weight_decay']} >= 1 would flip or zero "
                "the weights every step (decoupled decay multiplies by 1 - lr * wd)"
            )
        if group["split_sizes"] is not None and group["split_interleave"] is not None:
            raise ValueError(f"{where}: set split_sizes or split_interleave, not both")
        if group["use_muon"]:
            for p in group["params"]:
                self._check_muon_param(p, where)

    @staticmethod
    def _check_muon_param(p: Tensor, where: str) -> None:
        if any(hasattr(p, a) for a in ("ds_id", "ds_status", "ds_shape")) or p.numel() == 0:
            # DeepSpeed ZeRO-3 (zero.Init) replaces each parameter's data by an empty placeholder and keeps the
            # real shape in ds_shape; Muon on it would see nothing (github.com/deepspeedai/DeepSpeed/issues/8438: Muon became SGD).
            shape = tuple(getattr(p, "ds_shape", None) or p.shape)
            raise RuntimeError(
                f"{where}: a Muon parameter of shape {shape} is partitioned by DeepSpeed ZeRO (ds_status "
                f"{getattr(p, 'ds_status', 'n/a')}, local tensor {tuple(p.shape)}); Muon needs the whole matrix "
                "and cannot orthogonalize a ZeRO partition. Build the model without deepspeed.zero.Init and use "
                "DDP or FSDP2 (fsdp_version: 2) with MuonAdamW, or DeepSpeed's own Muon on ZeRO stage 1/2."
            )
        if getattr(p, "_is_flat_param", False) or p.ndim < 2:
            raise RuntimeError(
                f"{where}: a Muon parameter has shape {tuple(p.shape)}; Muon needs whole matrices. A 1-D tensor "
                "here means a flattened parameter (FSDP1 flat params, DeepSpeed ZeRO): use FSDP2 "
                "(fsdp_version: 2) or DDP, or route this tensor to AdamW."
            )
        if _is_dtensor(p):
            from torch.distributed.tensor import Replicate, Shard

            odd = [pl for pl in p.placements if type(pl) not in (Shard, Replicate)]
            if odd:
                raise RuntimeError(
                    f"{where}: a Muon parameter is a DTensor with placements {tuple(p.placements)}; MuonAdamW "
                    "understands Shard(d) and Replicate (FSDP2 fully_shard, replicate). Use FSDP2 without "
                    "tensor parallelism on Muon matrices, or route this tensor to AdamW."
                )

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch's signature, kept exactly
        """Perform one optimization step (AdamW groups first, then Muon groups)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        muon_work: list[tuple[dict[str, Any], Tensor]] = []
        for index, group in enumerate(self.param_groups):
            if group["use_muon"]:
                where = f"parameter group {index} ({group.get('role') or 'no role'})"
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    self._check_muon_param(p, where)
                    if p.grad.is_sparse:
                        raise RuntimeError(f"{where}: Muon does not support sparse gradients")
                    muon_work.append((group, p))
        if not self._announced:  # after the checks, so a refused layout fails with its own message
            self._announced = True
            if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
                none = not any(g["use_muon"] and g["params"] for g in self.param_groups)
                # no Muon parameter at all means this is plain AdamW: say so louder than the usual summary
                logger.log(logging.WARNING if none else logging.INFO, self.describe_routing())
        for group in self.param_groups:
            if not group["use_muon"]:
                self._adamw_group(group)
        self._muon(muon_work)
        return loss

    def describe_routing(self) -> str:
        """One line: what goes to Muon and AdamW (tensors, values, roles), lr scaling, map, batching."""
        muon_n = muon_values = adam_n = adam_values = 0
        muon_roles: set[str] = set()
        adam_roles: set[str] = set()
        scales: list[float] = []
        lrs: set[float] = set()
        shapes: set[tuple] = set()
        settings = None
        for group in self.param_groups:
            params = list(group["params"])
            values = sum(p.numel() for p in params)
            roles = {r for r in str(group.get("role") or "").split(",") if r}
            if group["use_muon"]:
                muon_n += len(params)
                muon_values += values
                muon_roles |= roles
                lrs.add(float(group["lr"]))
                settings = group
                for p in (p for p in params if p.ndim >= 2):
                    for _batch, rows, cols in _logical_shapes(tuple(p.shape), group):
                        scales.append(lr_adjustment(group["adjust_lr"], rows, cols))
                        shapes.add((min(rows, cols), max(rows, cols)))
            else:
                adam_n += len(params)
                adam_values += values
                adam_roles |= roles
        adam = f"AdamW {adam_n} tensors / {adam_values:,} values" + (
            f" ({','.join(sorted(adam_roles))})" if adam_roles else ""
        )
        if settings is None or not scales:
            return f"MuonAdamW routing: Muon 0 tensors (every parameter trains with AdamW); {adam}"
        lr = ",".join(f"{v:g}" for v in sorted(lrs))
        scale = (
            f"x{min(scales):.3g}" if min(scales) == max(scales) else f"x{min(scales):.3g}..{max(scales):.3g}"
        )
        mode = settings["mode"]
        if mode == "polar":
            mode = f"{settings['ns_method']} x{settings['ns_steps']} ns_dtype={settings['ns_dtype']}"
            mode += f" gram_ns={settings['gram_ns']}"
        return (
            f"MuonAdamW routing: Muon {muon_n} tensors / {muon_values:,} values"
            + (f" ({','.join(sorted(muon_roles))})" if muon_roles else "")
            + f", lr {lr} scaled {scale} (adjust_lr={settings['adjust_lr']}), {mode}, "
            + f"{len(shapes)} shape groups{' batched' if self.batched else ''}; {adam}"
        )

    def _adamw_group(self, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        fast: tuple[list[Tensor], ...] = ([], [], [], [], [])
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("MuonAdamW's AdamW part does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(
                    p, dtype=torch.float32, memory_format=torch.preserve_format
                )
                state["exp_avg_sq"] = torch.zeros_like(
                    p, dtype=torch.float32, memory_format=torch.preserve_format
                )
            if self.foreach and p.dtype == torch.float32 and p.grad.dtype == torch.float32:
                for bucket, t in zip(
                    fast, (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"]), strict=True
                ):
                    bucket.append(t)
                continue
            grad = p.grad.float()
            state["step"] += 1
            step = float(state["step"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias1 = 1 - beta1**step
            bias2 = 1 - beta2**step
            denom = (exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(eps)
            if wd:
                p.mul_(1 - lr * wd)
            update = exp_avg / denom
            p.add_(update.to(p.dtype), alpha=-lr / bias1)
        if fast[0]:
            # torch's own multi-tensor AdamW (same update as the loop above, one kernel per op for all tensors)
            from torch.optim.adam import adam

            adam(
                *fast[:4],
                [],
                fast[4],
                foreach=True,
                decoupled_weight_decay=True,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=lr,
                weight_decay=wd,
                eps=eps,
                maximize=False,
            )

    def _momentum_input(self, group: dict[str, Any], p: Tensor) -> Tensor:
        state = self.state[p]
        grad = p.grad.float()
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(
                p, dtype=torch.float32, memory_format=torch.preserve_format
            )
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - group["momentum"])
        return grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf.clone()

    def _apply(self, group: dict[str, Any], p: Tensor, update: Tensor) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        if wd:
            p.mul_(1 - lr * wd)
        p.add_(update.to(p.dtype), alpha=-lr)

    def _orthogonalize(self, items: list[tuple[dict[str, Any], Tensor, Tensor]]) -> list[Tensor]:
        """Muon directions for (group, p, u) items on this rank, batched per shape group; records ns_stats."""
        started = time.perf_counter()
        groups, updates = [it[0] for it in items], [it[2] for it in items]
        if self.batched:
            outs, calls = orthogonalize_many(updates, groups, return_calls=True)
        else:
            outs, calls = [orthogonalize(u, g) for u, g in zip(updates, groups, strict=True)], len(items)
        stats = self.ns_stats
        stats["tensors"] += len(items)
        stats["matrices"] += sum(
            b for g, u in zip(groups, updates, strict=True) for b, _, _ in _logical_shapes(tuple(u.shape), g)
        )
        stats["flops"] += sum(ns_cost(tuple(u.shape), g) for g, u in zip(groups, updates, strict=True))
        stats["calls"] += calls
        stats["seconds"] += time.perf_counter() - started
        return outs

    def _muon(self, work: list[tuple[dict[str, Any], Tensor]]) -> None:
        self.ns_stats = {"tensors": 0, "matrices": 0, "flops": 0.0, "calls": 0, "seconds": 0.0}
        if not work:
            return
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        local: list[tuple[dict[str, Any], Tensor, Tensor]] = []
        replicated: list[tuple[dict[str, Any], Tensor, Tensor]] = []
        sharded: list[tuple[dict[str, Any], Tensor, Tensor]] = []
        for group, p in work:
            u = self._momentum_input(group, p)
            if _is_dtensor(p):
                sharded.append((group, p, u))
            elif world > 1 and self.distributed != "none":
                replicated.append((group, p, u))
            else:
                local.append((group, p, u))
        if local:
            for (group, p, _u), out in zip(local, self._orthogonalize(local), strict=True):
                self._apply(group, p, out)
        if replicated:
            self._replicated_step(replicated, world)
        if sharded:
            # expert stacks sharded on the expert dim are computed locally by every rank: they load no owner
            costs = [0.0 if _experts_local(p, g) else ns_cost(tuple(p.shape), g) for g, p, _u in sharded]
            owners = balanced_owners(costs, world)
            for (group, p, u), owner in zip(sharded, owners, strict=True):
                self._apply(group, p, self._dtensor_update(group, p, u, owner))

    def _check_replicated(self, items: list[tuple[dict[str, Any], Tensor, Tensor]]) -> None:
        """Once: plain parameters must be identical on every rank (DDP) for the split to be correct."""
        self._checked_replicas = True
        sums = torch.stack([p.detach().double().sum() for _g, p, _u in items])
        lo, hi = sums.clone(), sums.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        if not torch.equal(lo, hi):
            bad = int((lo != hi).nonzero()[0])
            raise RuntimeError(
                f"MuonAdamW: Muon parameter {bad} (shape {tuple(items[bad][1].shape)}) differs across ranks, so it "
                "is not a DDP replica: a hand-sharded (tensor-parallel) weight is a layout Muon cannot "
                "orthogonalize. Use FSDP2 DTensors or DDP, or pass distributed='none' if each rank trains its "
                "own model."
            )

    def _replicated_step(self, items: list[tuple[dict[str, Any], Tensor, Tensor]], world: int) -> None:
        """DDP: every rank holds the same gradients; each orthogonalizes its cost-balanced share, then broadcasts.

        The unit of work is a tensor, or a contiguous chunk of experts of a 3-D (or higher) expert stack, so
        one large MoE stack is split across ranks instead of landing on one of them.
        """
        if not self._checked_replicas:
            self._check_replicated(items)
        rank = dist.get_rank()
        units: list[tuple[int, slice]] = []
        for i, (group, _p, u) in enumerate(items):
            if u.ndim >= 3 and not group["flatten"] and u.shape[0] > 1:
                bounds = [
                    round(k * u.shape[0] / min(world, u.shape[0])) for k in range(min(world, u.shape[0]) + 1)
                ]
                units += [(i, slice(a, b)) for a, b in zip(bounds, bounds[1:], strict=False)]
            else:
                units.append((i, slice(None)))
        costs = [ns_cost(tuple(items[i][2][sl].shape), items[i][0]) for i, sl in units]
        owners = balanced_owners(costs, world)
        updates: list[Tensor] = [torch.empty_like(u, dtype=torch.float32) for _g, _p, u in items]
        mine = [k for k, owner in enumerate(owners) if owner == rank]
        work = [(items[units[k][0]][0], None, items[units[k][0]][2][units[k][1]]) for k in mine]
        for k, out in zip(mine, self._orthogonalize(work), strict=True):
            i, sl = units[k]
            updates[i][sl] = out
        handles = [
            dist.broadcast(updates[i][sl], src=owners[k], async_op=True) for k, (i, sl) in enumerate(units)
        ]
        for handle in handles:
            handle.wait()
        for (group, p, _u), out in zip(items, updates, strict=True):
            self._apply(group, p, out)

    def _dtensor_update(self, group: dict[str, Any], p: Tensor, u: Tensor, owner: int) -> Tensor:
        """Shard-correct Muon update for an FSDP2 DTensor parameter, returned as a DTensor like ``p``."""
        from torch.distributed.tensor import DTensor, Replicate, Shard

        mesh, placements = p.device_mesh, p.placements
        if _experts_local(p, group):
            # expert stack sharded on the expert dim: each rank holds whole experts, no communication
            local = self._orthogonalize([(group, p, u.to_local())])[0]
            return DTensor.from_local(local, mesh, placements, shape=p.shape, stride=p.stride())
        if mesh.ndim == 1 and placements[0] == Shard(0):
            local = _owner_compute(u.to_local(), p.shape, mesh.get_group(), group, owner, self._orthogonalize)
            if local is not None:
                return DTensor.from_local(local, mesh, placements, shape=p.shape, stride=p.stride())
        # any other Shard/Replicate layout: gather the whole matrix everywhere (correct, not split)
        full = self._orthogonalize([(group, p, u.full_tensor())])[0]
        replicated = DTensor.from_local(
            full, mesh, [Replicate()] * mesh.ndim, shape=p.shape, stride=p.stride()
        )
        return replicated.redistribute(mesh, placements)


def _experts_local(p: Tensor, group: dict[str, Any]) -> bool:
    """A DTensor expert stack sharded on the expert dim (1-D mesh, Shard(0)): whole experts on each rank."""
    from torch.distributed.tensor import Shard

    return p.device_mesh.ndim == 1 and p.placements[0] == Shard(0) and p.ndim >= 3 and not group["flatten"]


def _logical_shapes(shape: tuple[int, ...], group: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(batch, rows, cols) of each logical block a tensor of ``shape`` is read as under ``group``."""
    if group["flatten"]:
        shape = (shape[0], math.prod(shape[1:]))
    rows, cols = (shape[-1], shape[-2]) if group["layout"] == "in_out" else (shape[-2], shape[-1])
    batch = math.prod(shape[:-2])
    if group["split_sizes"] is not None:
        return [(batch, r, cols) for r in group["split_sizes"]]
    if group["split_interleave"] is not None:
        k = group["split_interleave"]
        return [(batch, rows // k, cols)] * k
    return [(batch, rows, cols)]


def ns_cost(shape: tuple[int, ...], group: dict[str, Any]) -> float:
    """Estimated FLOPs of one Muon map of a tensor of ``shape`` (Newton-Schulz on the wide side)."""
    steps = group["ns_steps"] if group["mode"] == "polar" else group.get("reg_steps", 20)
    total = 0.0
    for batch, rows, cols in _logical_shapes(shape, group):
        m, n = min(rows, cols), max(rows, cols)
        total += batch * steps * (4.0 * m * m * n + 2.0 * m**3)
    return total


def balanced_owners(costs: list[float], world: int) -> list[int]:
    """Rank of each item: longest-processing-time first, each to the least-loaded rank (ties: lowest rank).

    Deterministic from the costs alone, so every rank computes the same assignment without communicating.
    """
    loads = [0.0] * world
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        owners[i] = rank
        loads[rank] += costs[i]
    return owners


def _shard_rows(n: int, world: int) -> list[int]:
    """Rows per rank under DTensor's Shard(0) (torch.chunk semantics: ceil-sized chunks, empty tails)."""
    size = -(-n // world)
    return [max(0, min(size, n - r * size)) for r in range(world)]


def _owner_compute(
    local: Tensor, shape: torch.Size, pg: Any, group: dict[str, Any], owner: int, compute: Any
) -> Tensor | None:
    """Gather a Shard(0) matrix whole on one owner rank, orthogonalize it there, scatter the rows back."""
    world, rank = dist.get_world_size(pg), dist.get_rank(pg)
    rows = _shard_rows(shape[0], world)
    if local.shape[0] != rows[rank]:
        return None  # not the layout we expect: caller falls back to gathering everywhere
    owner_global = dist.get_global_rank(pg, owner)
    size = max(rows)
    padded = local.new_zeros((size, *local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(world)] if rank == owner else None
    dist.gather(padded, gathered, dst=owner_global, group=pg)
    pieces = None
    if rank == owner:
        full = torch.cat([piece[:r] for piece, r in zip(gathered, rows, strict=True)])
        out = compute([(group, None, full)])[0]
        pieces, start = [], 0
        for r in rows:
            piece = out.new_zeros((size, *out.shape[1:]))
            piece[:r] = out[start : start + r]
            pieces.append(piece)
            start += r
    received = torch.empty_like(padded)
    dist.scatter(received, pieces, src=owner_global, group=pg)
    return received[: rows[rank]].contiguous()


def _split_blocks(m: Tensor, group: dict[str, Any]) -> list[Tensor]:
    sizes, interleave = group["split_sizes"], group["split_interleave"]
    if sizes is not None:
        if sum(sizes) != m.size(-2):
            raise ValueError(
                f"split_sizes {tuple(sizes)} sum to {sum(sizes)}, but the matrix has {m.size(-2)} output rows "
                f"(role {group.get('role') or '?'})"
            )
        return list(torch.split(m, list(sizes), dim=-2))
    if interleave is not None:
        if m.size(-2) % interleave:
            raise ValueError(f"split_interleave={interleave} does not divide {m.size(-2)} output rows")
        return [m[..., i::interleave, :] for i in range(interleave)]
    return [m]


def _map_key(group: dict[str, Any], device: torch.device) -> tuple:
    """The settings that define a group's map: blocks with equal keys (and shapes) share one batched call."""
    if group["mode"] == "polar":
        dtype = ns_dtype_for(group["ns_dtype"], device)
        gram_ns = group.get("gram_ns", "auto")
        gram = gram_ns == "on" or (gram_ns == "auto" and dtype == torch.float32)
        return ("polar", group["ns_method"], group["ns_steps"], dtype, gram)
    if group["mode"] == "regularized":
        return ("regularized", group["reg_eps"], group["reg_steps"])
    return ("htmuon", group["ht_power"])


def _raw_map(block: Tensor, key: tuple) -> Tensor:
    """The map (no lr adjustment) of each trailing 2-D slice of ``block``."""
    if key[0] == "polar":
        return newton_schulz(block, key[1], key[2], key[3], gram=key[4])
    if key[0] == "regularized":
        return regularized_polar(block, key[1], key[2])
    return schatten_power(block, key[1])


def _map(block: Tensor, group: dict[str, Any]) -> Tensor:
    out = _raw_map(block, _map_key(group, block.device))
    return out * lr_adjustment(group["adjust_lr"], block.size(-2), block.size(-1))


def _logical_view(update: Tensor, group: dict[str, Any]) -> tuple[Tensor, list[Tensor]]:
    m = update.float()
    if group["flatten"]:
        m = m.reshape(m.shape[0], -1)
    if group["layout"] == "in_out":
        m = m.mT
    return m, _split_blocks(m, group)


def _assemble(outs: list[Tensor], m: Tensor, update: Tensor, group: dict[str, Any]) -> Tensor:
    if len(outs) == 1:
        out = outs[0]
    elif group["split_interleave"] is not None:
        out = torch.empty_like(m)
        for i, o in enumerate(outs):
            out[..., i :: len(outs), :] = o
    else:
        out = torch.cat(outs, dim=-2)
    if group["layout"] == "in_out":
        out = out.mT
    return out.reshape(update.shape).contiguous()


def orthogonalize(update: Tensor, group: dict[str, Any]) -> Tensor:
    """The Muon direction (fp32, same shape as ``update``) for one parameter under its group's settings.

    Reads the tensor as logical (out, in) matrices: transposed for ``layout="in_out"``, flattened for conv,
    batched over leading dims (experts), split into fused blocks along the output dim; each block gets its
    own map and its own lr adjustment from its own shape. Same-shape blocks go through one batched call.
    This is the per-parameter path; :func:`orthogonalize_many` batches across parameters.
    """
    m, blocks = _logical_view(update, group)
    if len(blocks) > 1 and all(b.shape == blocks[0].shape for b in blocks):
        outs = list(_map(torch.stack(blocks), group).unbind(0))
    else:
        outs = [_map(b, group) for b in blocks]
    return _assemble(outs, m, update, group)


def orthogonalize_many(
    updates: list[Tensor], groups: list[dict[str, Any]], return_calls: bool = False
) -> Any:
    """``[orthogonalize(u, g) for u, g in ...]`` with one map call per (wide shape, map settings, device).

    Each logical block is turned wide (rows <= cols; every map commutes with transposition) and flattened
    to a stack of 2-D slices; same-shape stacks are concatenated and mapped at once, then split back, turned
    back and scaled by the lr adjustment of their own (out, in) shape. With ``return_calls``, also returns
    the number of map calls made.
    """
    views = [_logical_view(u, g) for u, g in zip(updates, groups, strict=True)]
    buckets: dict[tuple, list[tuple[int, int, Tensor]]] = {}
    for i, ((_m, blocks), group) in enumerate(zip(views, groups, strict=True)):
        for j, block in enumerate(blocks):
            wide = block.mT if block.size(-2) > block.size(-1) else block
            flat = wide.reshape(-1, *wide.shape[-2:])
            key = (_map_key(group, block.device), tuple(flat.shape[-2:]), block.device)
            buckets.setdefault(key, []).append((i, j, flat))
    results: list[list[Tensor | None]] = [[None] * len(blocks) for _m, blocks in views]
    for key, entries in buckets.items():
        stacked = torch.cat([e[2] for e in entries]) if len(entries) > 1 else entries[0][2]
        outs = _raw_map(stacked.contiguous(), key[0]).split([e[2].size(0) for e in entries])
        for (i, j, _flat), out in zip(entries, outs, strict=True):
            block = views[i][1][j]
            rows, cols = block.shape[-2:]
            if rows > cols:
                out = out.reshape(*block.shape[:-2], cols, rows).mT
            else:
                out = out.reshape(block.shape)
            results[i][j] = out * lr_adjustment(groups[i]["adjust_lr"], rows, cols)
    done = [
        _assemble(outs, m, u, g) for (m, _b), outs, u, g in zip(views, results, updates, groups, strict=True)
    ]
    return (done, len(buckets)) if return_calls else done
