"""The orthogonalization maps: batched = looped, close to U V^T, regularized and HTMuon match their SVD forms."""

from __future__ import annotations

import pytest
import torch

from hf_fundamentals.optim.newton_schulz import (
    newton_schulz,
    normalize_fp32,
    regularized_polar,
    schatten_power,
    singular_value_range,
)


def _svd_target(g: torch.Tensor, fn) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(normalize_fp32(g), full_matrices=False)
    return (u * fn(s).unsqueeze(-2)) @ vh


@pytest.mark.parametrize("method", ["quintic", "polar_express"])
@pytest.mark.parametrize("shape", [(4, 24, 40), (3, 40, 24)])
def test_batched_equals_loop(method, shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    batched = newton_schulz(g, method, 5, torch.float32)
    looped = torch.stack([newton_schulz(m, method, 5, torch.float32) for m in g])
    torch.testing.assert_close(batched, looped, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("method,low,high", [("quintic", 0.6, 1.25), ("polar_express", 0.8, 1.2)])
def test_singular_values_near_one(method, low, high):
    g = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    lo, hi = singular_value_range(newton_schulz(g, method))
    assert low < lo <= hi < high


def test_transpose_equivariant():
    g = torch.randn(30, 50, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        newton_schulz(g.T, dtype=torch.float32), newton_schulz(g, dtype=torch.float32).T
    )


def test_tiny_matrices_are_still_normalized():
    """A fixed 1e-7 guard would leave a matrix of norm 1e-9 unnormalized and return ~0; ours does not."""
    g = 1e-9 * torch.randn(16, 32, generator=torch.Generator().manual_seed(3))
    lo, _ = singular_value_range(newton_schulz(g, dtype=torch.float32))
    assert lo > 0.5
    assert torch.count_nonzero(newton_schulz(torch.zeros(4, 8))) == 0


def test_fp16_scale_gradients_do_not_overflow():
    g = (1e4 * torch.randn(32, 64, generator=torch.Generator().manual_seed(4))).half()
    assert torch.isinf(torch.linalg.matrix_norm(g)).all()  # the norm in fp16 overflows
    out = newton_schulz(g, dtype=torch.bfloat16)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("eps", [1e-1, 1e-2, 1e-3])
def test_regularized_polar_matches_svd(eps):
    g = torch.randn(48, 96, generator=torch.Generator().manual_seed(5)) @ torch.diag(
        torch.logspace(0, -3, 96)
    )
    out = regularized_polar(g, eps)
    ref = _svd_target(g, lambda s: s / (s**2 + eps * s[0] ** 2).sqrt())
    torch.testing.assert_close(out, ref, atol=5e-4, rtol=1e-2)
    # singular values within 1% of s / sqrt(s^2 + eps s_max^2), as the docstring promises
    s = torch.linalg.svdvals(g)
    got = torch.linalg.svdvals(out)
    assert ((got / (s / (s**2 + eps * s[0] ** 2).sqrt())) - 1).abs().max() < 0.01


@pytest.mark.parametrize("shape", [(64, 256), (512, 512)])
def test_regularized_eps_means_the_same_for_every_shape(shape):
    """A well-conditioned (gaussian) matrix keeps nearly unit steps whatever its size."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(9))
    s = torch.linalg.svdvals(regularized_polar(g, 1e-2))
    assert s.max() == pytest.approx(1 / 1.01**0.5, rel=1e-3)
    assert s.min() > (0.0 if shape[0] == shape[1] else 0.3)


def test_regularized_polar_tends_to_polar_and_damps_small_directions():
    g = torch.randn(32, 64, generator=torch.Generator().manual_seed(6))
    polar = _svd_target(g, torch.ones_like)
    assert (regularized_polar(g, 1e-5, steps=40) - polar).abs().max() < 1e-2
    s_large = torch.linalg.svdvals(regularized_polar(g, 1.0))
    assert s_large.max() < 0.75  # with eps = 1 even the top direction gets 1/sqrt(2)
    assert torch.count_nonzero(regularized_polar(torch.zeros(2, 6, 4), 1e-2)) == 0


def test_regularized_polar_batched_and_wide_tall():
    g = torch.randn(3, 20, 12, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(
        regularized_polar(g, 1e-2), torch.stack([regularized_polar(m, 1e-2) for m in g])
    )
    torch.testing.assert_close(
        regularized_polar(g[0].T, 1e-2), regularized_polar(g[0], 1e-2).T, atol=1e-6, rtol=1e-5
    )
    with pytest.raises(ValueError, match="eps > 0"):
        regularized_polar(g, 0.0)


def test_schatten_power_endpoints():
    g = torch.randn(20, 30, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(schatten_power(g, 0.0), _svd_target(g, torch.ones_like), atol=1e-5, rtol=1e-4)
    top = torch.linalg.matrix_norm(g, ord=2)
    torch.testing.assert_close(schatten_power(g, 1.0), g / top, atol=1e-5, rtol=1e-4)
    mid = torch.linalg.svdvals(schatten_power(g, 0.5))
    s = torch.linalg.svdvals(g)
    torch.testing.assert_close(mid, (s / s[0]).sqrt(), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="power"):
        schatten_power(g, 1.5)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="polar_express"):
        newton_schulz(torch.randn(3, 3), "cubic")
