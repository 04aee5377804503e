"""Seeded ES noise: determinism, the iid and shared_per_shape modes, direction seeds, mirrored members."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from hf_fundamentals.evolution import (
    direction_seeds,
    member_direction,
    member_noise,
    tensor_noise,
    tensor_seed,
)


def test_same_arguments_rebuild_the_same_noise_bit_for_bit():
    a = tensor_noise(1234, "model.layers.0.mlp.up_proj.weight", (16, 8))
    torch.manual_seed(999)  # the global RNG must play no part
    _ = torch.randn(100)
    b = tensor_noise(1234, "model.layers.0.mlp.up_proj.weight", (16, 8))
    assert a.dtype == torch.float32 and a.shape == (16, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a, tensor_noise(1235, "model.layers.0.mlp.up_proj.weight", (16, 8)))
    assert not torch.equal(a, tensor_noise(1234, "model.layers.1.mlp.up_proj.weight", (16, 8)))
    assert not torch.equal(tensor_noise(1234, 0, (16, 8)), tensor_noise(1234, 1, (16, 8)))


def test_noise_is_standard_normal():
    x = tensor_noise(7, "w", (200, 100))
    assert abs(float(x.mean())) < 0.03
    assert abs(float(x.std()) - 1.0) < 0.03


def test_iid_mode_gives_same_shape_tensors_independent_noise():
    a = tensor_noise(55, "layers.0.q.weight", (64, 64), mode="iid")
    b = tensor_noise(55, "layers.1.q.weight", (64, 64), mode="iid")
    corr = float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
    assert abs(corr) < 0.05


def test_shared_per_shape_mode_gives_same_shape_tensors_identical_noise_as_the_paper():
    a = tensor_noise(55, "layers.0.q.weight", (64, 64), mode="shared_per_shape")
    b = tensor_noise(55, "layers.1.q.weight", (64, 64), mode="shared_per_shape")
    assert torch.equal(a, b)
    # kschweig/es-awd: every tensor's generator is seeded with the member seed itself
    ref = torch.randn((64, 64), generator=torch.Generator().manual_seed(55))
    assert torch.equal(a, ref)
    assert not torch.equal(a, tensor_noise(56, "layers.0.q.weight", (64, 64), mode="shared_per_shape"))


def test_noise_is_drawn_in_fp32_then_cast():
    ref = tensor_noise(3, "w", (5, 7))
    low = tensor_noise(3, "w", (5, 7), dtype=torch.bfloat16, device="cpu")
    assert low.dtype == torch.bfloat16
    assert torch.equal(low, ref.to(torch.bfloat16))


def test_tensor_seeds_are_stable_across_processes_and_versions():
    # Golden values: step logs written today must replay after an upgrade (and Python's salted hash()
    # must not be involved, or two processes would disagree).
    assert tensor_seed(123, "model.layers.0.mlp.up_proj.weight") == 3180619425883159499
    assert tensor_seed(123, 7) == 11002349382382457685
    assert tensor_seed(123, "anything", mode="shared_per_shape") == 123
    key = int.from_bytes(hashlib.blake2b(b"w", digest_size=8).digest(), "little")
    assert tensor_seed(9, "w") == int(np.random.SeedSequence([9, key]).generate_state(1, np.uint64)[0])


def test_direction_seeds_follow_rng_seed_plus_step():
    seeds = direction_seeds(42, 3, 6)
    assert seeds == [int(s) for s in np.random.default_rng(45).integers(0, 2**31, size=6)]
    assert seeds == direction_seeds(42, 3, 6)
    assert seeds != direction_seeds(42, 4, 6)
    assert len(set(seeds)) == 6


def test_mirrored_members_share_a_direction_with_opposite_signs():
    assert [member_direction(m, True) for m in range(4)] == [(0, 1), (0, -1), (1, 1), (1, -1)]
    assert [member_direction(m, False) for m in range(3)] == [(0, 1), (1, 1), (2, 1)]
    plus = member_noise(5, 2, 2, "w", (4, 3), population=6, mirrored=True)
    minus = member_noise(5, 2, 3, "w", (4, 3), population=6, mirrored=True)
    assert torch.equal(plus, -minus)
    assert torch.equal(plus, tensor_noise(direction_seeds(5, 2, 3)[1], "w", (4, 3)))
    other = member_noise(5, 2, 4, "w", (4, 3), population=6, mirrored=True)
    assert not torch.equal(plus, other)


def test_bad_noise_arguments_fail_early():
    with pytest.raises(ValueError, match="noise_mode 'correlated'"):
        tensor_noise(1, "w", (2,), mode="correlated")
    with pytest.raises(ValueError, match="tensor key"):
        tensor_seed(1, -3)
    with pytest.raises(ValueError, match="count"):
        direction_seeds(1, 0, 0)
    with pytest.raises(ValueError, match="member 6"):
        member_noise(1, 0, 6, "w", (2,), population=6)
