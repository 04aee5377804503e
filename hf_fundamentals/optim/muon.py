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

Distributed: with plain tensors and an initialized process group of several ranks (DDP), each rank
orthogonalizes every world_size-th matrix and broadcasts it, so the work is split and every rank ends with
identical weights. With FSDP2 ``DTensor`` parameters, an expert stack sharded on the expert dim is
orthogonalized locally (whole experts live on one rank); any other matrix is gathered whole to an owner
rank, orthogonalized there and scattered back, because Newton-Schulz on a shard computes a different
(wrong) update. Flattened parameters (FSDP1, DeepSpeed ZeRO) are refused at the first step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from hf_fundamentals.optim.newton_schulz import NS_METHODS, newton_schulz, regularized_polar, schatten_power

MODES = ("polar", "regularized", "htmuon")
ADJUST_LR = ("original", "match_rms_adamw", "spectral_norm", "none")
LAYOUTS = ("out_in", "in_out")
DISTRIBUTED = ("auto", "replicated", "none")
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
        adjust_lr: "match_rms_adamw", "original", "spectral_norm" or "none" (see :func:`lr_adjustment`).
        betas, eps: AdamW's.
        distributed: "auto" (split Newton-Schulz work across ranks when a process group of several ranks is
            initialized and parameters are replicated, as under DDP; DTensor parameters are always handled
            shard-correctly), "replicated" (same, and insist on it), "none" (every rank computes everything;
            for parameters that differ across ranks).
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
        reg_eps: float = 1e-2,
        reg_steps: int = 20,
        ht_power: float = 0.125,
        adjust_lr: str = "match_rms_adamw",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        distributed: str = "auto",
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
        if hasattr(p, "ds_id") or hasattr(p, "ds_shape"):
            raise RuntimeError(
                f"{where}: a parameter is managed by DeepSpeed ZeRO (it has ds_shape {getattr(p, 'ds_shape', '?')}"
                "); its tensor is a flat partition, so Muon cannot see the matrix. Use FSDP2 (fsdp_version: 2) "
                "or DDP with MuonAdamW, or DeepSpeed's own Muon."
            )
        if getattr(p, "_is_flat_param", False) or p.ndim < 2:
            raise RuntimeError(
                f"{where}: a Muon parameter has shape {tuple(p.shape)}; Muon needs whole matrices. A 1-D tensor "
                "here means a flattened parameter (FSDP1 flat params, DeepSpeed ZeRO): use FSDP2 "
                "(fsdp_version: 2) or DDP, or route this tensor to AdamW."
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
            else:
                self._adamw_group(group)
        self._muon(muon_work)
        return loss

    def _adamw_group(self, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("MuonAdamW's AdamW part does not support sparse gradients")
            grad = p.grad.float()
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(
                    p, dtype=torch.float32, memory_format=torch.preserve_format
                )
                state["exp_avg_sq"] = torch.zeros_like(
                    p, dtype=torch.float32, memory_format=torch.preserve_format
                )
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

    def _muon(self, work: list[tuple[dict[str, Any], Tensor]]) -> None:
        if not work:
            return
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        replicated: list[tuple[dict[str, Any], Tensor, Tensor]] = []
        sharded = 0  # DTensor matrices seen so far: the owner of the i-th is rank i % world on every rank
        for group, p in work:
            u = self._momentum_input(group, p)
            if _is_dtensor(p):
                self._apply(group, p, self._dtensor_update(group, p, u, sharded))
                sharded += 1
            elif world > 1 and self.distributed != "none":
                replicated.append((group, p, u))
            else:
                self._apply(group, p, orthogonalize(u, group))
        if replicated:
            self._replicated_step(replicated, world)

    def _replicated_step(self, items: list[tuple[dict[str, Any], Tensor, Tensor]], world: int) -> None:
        """DDP: every rank holds the same gradients; rank i % world computes matrix i, then broadcasts it."""
        rank = dist.get_rank()
        updates = []
        for i, (group, _p, u) in enumerate(items):
            owner = i % world
            out = orthogonalize(u, group) if owner == rank else torch.empty_like(u)
            updates.append(out)
        handles = [dist.broadcast(out, src=i % world, async_op=True) for i, out in enumerate(updates)]
        for handle in handles:
            handle.wait()
        for (group, p, _u), out in zip(items, updates, strict=True):
            self._apply(group, p, out)

    def _dtensor_update(self, group: dict[str, Any], p: Tensor, u: Tensor, index: int) -> Tensor:
        """Shard-correct Muon update for an FSDP2 DTensor parameter, returned as a DTensor like ``p``."""
        from torch.distributed.tensor import DTensor, Replicate, Shard

        mesh, placements = p.device_mesh, p.placements
        if mesh.ndim == 1 and placements[0] == Shard(0) and p.ndim >= 3 and not group["flatten"]:
            # expert stack sharded on the expert dim: each rank holds whole experts, no communication
            local = orthogonalize(u.to_local(), group)
            return DTensor.from_local(local, mesh, placements, shape=p.shape, stride=p.stride())
        if mesh.ndim == 1 and placements[0] == Shard(0):
            local = _owner_compute(u.to_local(), p.shape, mesh.get_group(), group, index)
            if local is not None:
                return DTensor.from_local(local, mesh, placements, shape=p.shape, stride=p.stride())
        full = orthogonalize(u.full_tensor(), group)
        replicated = DTensor.from_local(
            full, mesh, [Replicate()] * mesh.ndim, shape=p.shape, stride=p.stride()
        )
        return replicated.redistribute(mesh, placements)


def _shard_rows(n: int, world: int) -> list[int]:
    """Rows per rank under DTensor's Shard(0) (torch.chunk semantics: ceil-sized chunks, empty tails)."""
    size = -(-n // world)
    return [max(0, min(size, n - r * size)) for r in range(world)]


def _owner_compute(
    local: Tensor, shape: torch.Size, pg: Any, group: dict[str, Any], index: int
) -> Tensor | None:
    """Gather a Shard(0) matrix whole on one owner rank, orthogonalize it there, scatter the rows back."""
    world, rank = dist.get_world_size(pg), dist.get_rank(pg)
    rows = _shard_rows(shape[0], world)
    if local.shape[0] != rows[rank]:
        return None  # not the layout we expect: caller falls back to gathering everywhere
    owner = index % world
    owner_global = dist.get_global_rank(pg, owner)
    size = max(rows)
    padded = local.new_zeros((size, *local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(world)] if rank == owner else None
    dist.gather(padded, gathered, dst=owner_global, group=pg)
    pieces = None
    if rank == owner:
        full = torch.cat([piece[:r] for piece, r in zip(gathered, rows, strict=True)])
        out = orthogonalize(full, group)
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


def _map(block: Tensor, group: dict[str, Any]) -> Tensor:
    if group["mode"] == "polar":
        dtype = ns_dtype_for(group["ns_dtype"], block.device)
        out = newton_schulz(block, group["ns_method"], group["ns_steps"], dtype)
    elif group["mode"] == "regularized":
        out = regularized_polar(block, group["reg_eps"], group["reg_steps"])
    else:
        out = schatten_power(block, group["ht_power"])
    return out * lr_adjustment(group["adjust_lr"], block.size(-2), block.size(-1))


def orthogonalize(update: Tensor, group: dict[str, Any]) -> Tensor:
    """The Muon direction (fp32, same shape as ``update``) for one parameter under its group's settings.

    Reads the tensor as logical (out, in) matrices: transposed for ``layout="in_out"``, flattened for conv,
    batched over leading dims (experts), split into fused blocks along the output dim; each block gets its
    own map and its own lr adjustment from its own shape. Same-shape blocks go through one batched call.
    """
    m = update.float()
    if group["flatten"]:
        m = m.reshape(m.shape[0], -1)
    if group["layout"] == "in_out":
        m = m.mT
    blocks = _split_blocks(m, group)
    if len(blocks) > 1 and all(b.shape == blocks[0].shape for b in blocks):
        outs = list(_map(torch.stack(blocks), group).unbind(0))
    else:
        outs = [_map(b, group) for b in blocks]
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
