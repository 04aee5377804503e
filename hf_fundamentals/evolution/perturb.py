"""In-place perturb / exact restore of parameters, one tensor at a time (as in Qiu et al., arXiv 2509.24372,
VsonicV/es-fine-tuning-paper ``countdown/es_fine-tuning_countdown_iid.py``).

A member's model is ``θ + σε``: each tensor is perturbed in place with its noise rebuilt from the seed, the
reward is measured, and each tensor is put back. The paper restores by subtracting ``σε`` again, which is not
an identity in fp16/bf16 (nor always in fp32): ``round(round(θ + σε) − σε) ≠ θ`` wherever the first rounding
lost bits (a binade crossing, a tie, or |θ| small next to σε). kschweig/es-awd copes by replaying every
perturb/restore call during evaluation (``evaluation/utils.py::replay_perturb_restore``), and with processes
evaluating different members the copies of θ would even drift apart. Here restore is exact instead.

Our design (exactness is our requirement; no source gives a method): a **sparse fix-up list**. While
perturbing one tensor we compute, in the same kernel the restore will use, what the subtraction would give
back, compare it bit for bit with the original, and keep only the positions where it differs (flat index +
original value). Restore subtracts and then writes those few originals back. Memory stays close to the ES
budget of "one model copy plus one noise tensor" (VsonicV/es-fine-tuning-paper): a few transient one-tensor
buffers while a tensor is perturbed, plus the fix-ups held while the member is evaluated. Measured at σ = 1e-3
on weights of std 0.02, about 5% of the elements need one, in bf16, fp16 and fp32 alike; at 6 bytes each
(int32 position + bf16 value) that is about 15% of a bf16 perturbed set (the tests bound the fraction).
Keeping a copy of each perturbed tensor would also be exact, but all tensors of a member stay perturbed while
its reward is measured, so that is a second full copy. With :class:`MasterWeights` no fix-ups are needed:
perturbed = round(master + σε) and restored = round(master), exact by construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from hf_fundamentals.evolution.master import MasterWeights, write_master_
from hf_fundamentals.evolution.noise import tensor_noise

_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass
class RestoreFix:
    """The positions (flat indices) where subtracting the noise would not give the original bits back, and
    the original values there."""

    index: torch.Tensor
    value: torch.Tensor

    def __len__(self) -> int:
        return int(self.index.numel())


def shifted(values: torch.Tensor, noise: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """``round_dtype(values + scale · noise)`` computed in fp32: the one kernel perturb, restore and the
    fix-up check share, so a restore reproduces exactly what the check predicted."""
    return torch.add(values.float(), noise, alpha=scale).to(dtype)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise bitwise equality (so -0.0 ≠ +0.0 and a NaN equals itself)."""
    bits = _BITS[a.element_size()]
    return a.contiguous().view(bits) == b.contiguous().view(bits)


def _check_float(param: torch.Tensor, name: str = "parameter") -> None:
    if not param.is_floating_point():
        raise ValueError(f"{name} has dtype {param.dtype}; ES perturbs floating-point tensors only")


def perturb_tensor_(param: torch.Tensor, noise: torch.Tensor, scale: float) -> RestoreFix:
    """``param ← round(param + scale·noise)`` in place; returns the fix-ups that make :func:`restore_tensor_`
    bit-exact."""
    _check_float(param)
    with torch.no_grad():
        new = shifted(param, noise, scale, param.dtype)
        back = shifted(new, noise, -scale, param.dtype)
        wrong = ~same_bits(back, param).reshape(-1)
        index = wrong.nonzero().squeeze(1)
        if param.numel() < 2**31:  # int32 positions: 6 bytes per fix-up in bf16 instead of 10
            index = index.to(torch.int32)
        value = param.reshape(-1)[index].clone()
        param.copy_(new)
    return RestoreFix(index, value)


def restore_tensor_(param: torch.Tensor, noise: torch.Tensor, scale: float, fix: RestoreFix) -> None:
    """Undo :func:`perturb_tensor_` exactly: subtract ``scale·noise`` and write the fix-ups back."""
    with torch.no_grad():
        back = shifted(param, noise, -scale, param.dtype)
        if len(fix):
            back.view(-1)[fix.index] = fix.value
        param.copy_(back)


def _check_names(params: Sequence[tuple[str, torch.Tensor]]) -> None:
    seen: set[str] = set()
    for name, param in params:
        if name in seen:
            raise ValueError(f"parameter name {name!r} appears twice; noise is keyed by name")
        seen.add(name)
        _check_float(param, f"parameter {name!r}")


@contextmanager
def perturbed(
    params: Sequence[tuple[str, torch.Tensor]],
    direction_seed: int,
    sigma: float,
    *,
    sign: int = 1,
    mode: str = "iid",
    master: MasterWeights | None = None,
) -> Iterator[None]:
    """Perturb every named tensor by ``sign·σ·ε`` (noise keyed by name) for the body of the ``with`` block,
    and restore them bit-exactly on exit, also when the body raises. Noise is rebuilt for the restore, so
    only one noise tensor exists at a time."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1; got {sign}")
    params = list(params)
    _check_names(params)
    scale = float(sign) * float(sigma)
    fixes: list[tuple[str, torch.Tensor, RestoreFix | None]] = []
    try:
        with torch.no_grad():
            for name, param in params:
                noise = tensor_noise(direction_seed, name, param.shape, mode=mode, device=param.device)
                if master is not None:
                    param.copy_(shifted(master[name].to(param.device), noise, scale, param.dtype))
                    fixes.append((name, param, None))
                else:
                    fixes.append((name, param, perturb_tensor_(param, noise, scale)))
        yield
    finally:
        with torch.no_grad():
            for name, param, fix in fixes:
                if fix is None:
                    write_master_(param, master[name])  # type: ignore[index]
                else:
                    noise = tensor_noise(direction_seed, name, param.shape, mode=mode, device=param.device)
                    restore_tensor_(param, noise, scale, fix)
