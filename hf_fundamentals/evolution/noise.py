"""Seeded ES noise, rebuilt on demand one tensor at a time (nothing but integer seeds is ever stored).

Two levels of seeds:

* **direction seeds**: the integers of one ES iteration, one per noise direction (``population`` of them, or
  ``population // 2`` with mirrored sampling), drawn from ``numpy.random.default_rng(seed + step)`` (our
  choice, as VsonicV/es-at-scale seeds iteration ``t`` with ``RNG(global_seed + t)``). They are what a step
  log records, so replaying never depends on how they were drawn.
* **tensor seeds**: what seeds the CPU ``torch.Generator`` for one parameter tensor of one direction.

Noise modes (the same-seed-per-tensor correlation is VsonicV/es-at-scale issue #46; the ``_iid`` scripts of
VsonicV/es-fine-tuning-paper fix it):

* ``"iid"`` (default): every tensor gets its own stream, seeded by mixing (direction seed, tensor key) through
  ``numpy.random.SeedSequence``. The tensor key is the parameter's *name* (hashed with BLAKE2b) or an integer
  index. Our choice (the ``_iid`` scripts add the tensor index to the seed): names keep a tensor's noise the
  same when other tensors are added to or dropped from the perturbed set, or listed in another order, and
  mixing avoids the ``seed + index`` collisions between neighbouring seeds.
* ``"shared_per_shape"``: the paper's reproduction mode (kschweig/es-awd and the original
  VsonicV/es-fine-tuning-paper scripts):
  every tensor's generator is seeded with the direction seed itself, so tensors of the same shape get
  identical noise within a member. As in those scripts, tensors of other shapes draw from the start of the
  same stream too (on CPU a tensor of the same number of elements gets the same values, reshaped). A
  third mode, ``cached_per_shape`` (kschweig/es-awd ``--caching``), is the same noise memoized per shape,
  so it is not a separate mode here.

Noise is always drawn in fp32 on the CPU (same values on every device and dtype) and then moved; bitwise
equality with vLLM runs is out of reach anyway (the vLLM engines of kschweig/es-awd
``distributed_utils.py`` perturb vLLM's fused tensors, e.g. ``qkv_proj``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

NOISE_MODES = ("iid", "shared_per_shape")
SEED_HIGH = 2**31  # direction seeds are drawn from [0, 2**31): JSON-safe and accepted by every RNG


def check_noise_mode(mode: str) -> str:
    """Return ``mode`` if it is a known noise mode; raise a ValueError naming the accepted ones otherwise."""
    if mode not in NOISE_MODES:
        raise ValueError(f"noise_mode {mode!r} is not known; accepted: {', '.join(NOISE_MODES)}")
    return mode


def direction_seeds(seed: int, step: int, count: int) -> list[int]:
    """The ``count`` direction seeds of ES iteration ``step``: ``default_rng(seed + step)`` (our design)."""
    if count < 1:
        raise ValueError(f"count (noise directions per step) must be >= 1; got {count}")
    if step < 0:
        raise ValueError(f"step must be >= 0; got {step}")
    rng = np.random.default_rng(int(seed) + int(step))
    return [int(s) for s in rng.integers(0, SEED_HIGH, size=count)]


def tensor_key(key: int | str) -> int:
    """A stable non-negative integer for a tensor key: the index itself, or 64 bits of BLAKE2b of the name
    (Python's ``hash`` is salted per process, so it would break cross-process determinism)."""
    if isinstance(key, str):
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")
    if isinstance(key, bool) or not isinstance(key, int | np.integer) or key < 0:
        raise ValueError(f"tensor key must be a parameter name or an index >= 0; got {key!r}")
    return int(key)


def tensor_seed(direction_seed: int, key: int | str, mode: str = "iid") -> int:
    """The generator seed for one tensor of one direction (see the module docstring for the two modes)."""
    check_noise_mode(mode)
    if direction_seed < 0:
        raise ValueError(f"direction seed must be >= 0; got {direction_seed}")
    if mode == "shared_per_shape":
        return int(direction_seed)
    entropy = [int(direction_seed), tensor_key(key)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def tensor_noise(
    direction_seed: int,
    key: int | str,
    shape: Sequence[int] | torch.Size,
    *,
    mode: str = "iid",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rebuild the standard-normal noise of one tensor for one direction: fp32 on a seeded CPU generator,
    then moved to ``device`` and cast to ``dtype``. The same arguments give the same tensor, bit for bit."""
    gen = torch.Generator(device="cpu").manual_seed(tensor_seed(direction_seed, key, mode))
    noise = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype) if device is not None or dtype != torch.float32 else noise


def member_noise(
    seed: int,
    step: int,
    member: int,
    key: int | str,
    shape: Sequence[int] | torch.Size,
    *,
    population: int,
    mirrored: bool = False,
    mode: str = "iid",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The signed noise ``±ε`` that population member ``member`` of iteration ``step`` adds (before ``σ``) to
    one tensor, from the base seed alone. Mirrored: members ``2k`` and ``2k+1`` share direction ``k`` with
    signs ``+`` and ``-`` (mirrored sampling as in kschweig/es-awd ``es.py``)."""
    if not 0 <= member < population:
        raise ValueError(f"member {member} outside 0..{population - 1}")
    direction, sign = member_direction(member, mirrored)
    count = population // 2 if mirrored else population
    noise = tensor_noise(
        direction_seeds(seed, step, count)[direction], key, shape, mode=mode, device=device, dtype=dtype
    )
    return noise if sign > 0 else -noise


def member_direction(member: int, mirrored: bool) -> tuple[int, int]:
    """``(direction index, sign)`` of a population member: ``(m, +1)``, or ``(m // 2, ±1)`` when mirrored."""
    if member < 0:
        raise ValueError(f"member index must be >= 0; got {member}")
    if mirrored:
        return member // 2, 1 if member % 2 == 0 else -1
    return member, 1
