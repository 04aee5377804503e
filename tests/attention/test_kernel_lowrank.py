"""The random-feature (FAVOR+) low-rank kernel of ``kernels/hff-approx-attention``: loaded with the ``kernels``
library, run by Triton's interpreter on CPU (``TRITON_INTERPRET=1``, set before the kernels are defined), and
checked against the PyTorch reference (``lowrank_attention(feature_map="random")``) and the I/O models."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hf_fundamentals.attention.io_model import lowrank_io, lowrank_kernel_io  # noqa: E402
from hf_fundamentals.attention.lowrank import lowrank_attention, random_projection  # noqa: E402

REPO = Path(__file__).resolve().parents[2] / "kernels" / "hff-approx-attention"
pytestmark = pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # the interpreter evaluates both where-branches


@pytest.fixture(scope="module")
def kern():
    from kernels import get_local_kernel

    return get_local_kernel(REPO)


def _qkv(b=2, h=4, h_kv=2, n_q=40, n_k=40, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n_q, d, generator=g)
    k = torch.randn(b, h_kv, n_k, d, generator=g)
    v = torch.randn(b, h_kv, n_k, d, generator=g)
    return q, k, v


def _reference(q, k, v, *, rank, seed, scale, causal, pad=None):
    return lowrank_attention(
        q, k, v, feature_map="random", rank=rank, seed=seed, scaling=scale, causal=causal,
        key_padding_mask=pad, chunk_size=16,
    )  # fmt: skip


def test_exported(kern):
    assert "lowrank_forward" in kern.__all__ and callable(kern.lowrank_forward)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n_q", "n_k"), [(40, 40), (17, 70), (50, 20)])
def test_matches_reference_gqa_padding(kern, causal, n_q, n_k):
    """GQA (4 query heads on 2 kv heads), left padding, n_q != n_k, D = 24, rank 40 (three rank chunks of 16
    in the non-causal state pass); omega is the reference's own draw, so the outputs agree to rounding."""
    q, k, v = _qkv(n_q=n_q, n_k=n_k)
    pad = torch.ones(2, n_k, dtype=torch.bool)
    pad[1, :5] = False
    rank, seed, scale = 40, 3, 0.3
    omega = random_projection(q.shape[-1], rank, seed=seed)
    out = kern.lowrank_forward(
        q, k, v, scale=scale, omega=omega, causal=causal, key_padding_mask=pad, chunk=16, rank_chunk=16
    )
    ref = _reference(q, k, v, rank=rank, seed=seed, scale=scale, causal=causal, pad=pad)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    if causal and n_q > n_k:
        assert (out[:, :, : n_q - n_k] == 0).all()  # queries before the first key see nothing


def test_default_chunks_and_static_cache_offset(kern):
    """Default chunk sizes (one rank chunk, one query block); causal at an explicit offset (a static cache whose
    tail is still empty) equals the reference on the filled keys; a fully padded sequence gives zeros."""
    q, k, v = _qkv(b=2, h=2, h_kv=1, n_q=8, n_k=48, d=16)
    rank, seed = 24, 1
    omega = random_projection(16, rank, seed=seed)
    out = kern.lowrank_forward(q, k, v, scale=0.25, omega=omega, causal=True, offset=20)
    ref = _reference(q, k[:, :, :28], v[:, :, :28], rank=rank, seed=seed, scale=0.25, causal=True)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)

    pad = torch.ones(2, 48, dtype=torch.bool)
    pad[1] = False
    for causal in (False, True):
        out = kern.lowrank_forward(q, k, v, scale=0.25, omega=omega, causal=causal, key_padding_mask=pad)
        ref = _reference(q, k, v, rank=rank, seed=seed, scale=0.25, causal=causal, pad=pad)
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
        assert (out[1] == 0).all()


def test_rejects_bad_arguments(kern):
    q, k, v = _qkv(b=1, h=1, h_kv=1, n_q=4, n_k=4, d=128)
    with pytest.raises(ValueError, match="MAX_CAUSAL_STATE"):
        kern.lowrank_forward(q, k, v, scale=0.1, omega=torch.randn(512, 128), causal=True)
    with pytest.raises(ValueError, match="omega must be"):
        kern.lowrank_forward(q, k, v, scale=0.1, omega=torch.randn(16, 64))
    with pytest.raises(ValueError, match="rank_chunk"):
        kern.lowrank_forward(q, k, v, scale=0.1, omega=torch.randn(16, 128), rank_chunk=24)


def _other(model) -> int:
    """The words the kernels count in the "other" slot: omega, state and the running k maxima."""
    keys = ("omega", "state", "k_max")
    return sum(model.reads.get(x, 0) for x in keys) + sum(model.writes.get(x, 0) for x in keys)


def _count(kern, n, d, rank, causal, rank_chunk=None, chunk=64, heads=2):
    q, k, v = _qkv(b=1, h=heads, h_kv=heads, n_q=n, n_k=n, d=d, seed=5)
    io = torch.zeros(6, dtype=torch.int64)
    omega = random_projection(d, rank, seed=0)
    kern.lowrank_forward(
        q, k, v, scale=d**-0.5, omega=omega, causal=causal, chunk=chunk, rank_chunk=rank_chunk, io=io
    )
    assert int(io[4]) == 0  # no padding mask
    return [int(x) // heads for x in io]  # per (batch, head)


def test_io_matches_the_paper_model_where_its_assumptions_hold(kern):
    """``lowrank_io`` with M chosen so that the state fits (p = 1) or needs p = 4 chunks: Q, K, V and O words
    agree with the kernel where the model's schedule is the kernel's (one query block for the non-causal
    readout); beyond that the kernel reads ω and the per-chunk k maxima, and (p > 1) reads Q once instead of p
    times with no partial outputs in slow memory, as ``lowrank_kernel_io`` documents."""
    n, d, rank = 40, 16, 64
    sw = rank * (d + 1)
    for causal in (False, True):
        got = _count(kern, n, d, rank, causal)
        model = lowrank_io(n, d, rank, M=2 * sw, causal=causal)
        assert model.params["state_chunks"] == 1
        assert got[:4] == [model.reads["Q"], model.reads["K"], model.reads["V"], model.writes["O"]]
        state = model.reads.get("state", 0) + model.writes.get("state", 0)
        extra = rank * d * (1 if causal else 2) + (0 if causal else 2)  # omega per program, k max write+read
        assert got[5] == state + extra
    # state does not fit: 4 rank chunks of 16
    got = _count(kern, n, d, rank, False, rank_chunk=16)
    model = lowrank_io(n, d, rank, M=2 * math.ceil(sw / 4), causal=False)
    assert model.params["state_chunks"] == 4
    assert got[1:4] == [model.reads["K"], model.reads["V"], model.writes["O"]]
    assert got[0] == n * d < model.reads["Q"] and "O_partial" in model.reads


@pytest.mark.parametrize(
    ("n", "d", "rank", "causal", "rank_chunk", "chunk"),
    [
        (40, 16, 64, False, 16, 16),
        (40, 12, 20, False, None, 64),
        (40, 16, 64, True, None, 16),
        (33, 12, 20, True, None, 16),
    ],
)
def test_io_matches_the_kernel_model_exactly(kern, n, d, rank, causal, rank_chunk, chunk):
    got = _count(kern, n, d, rank, causal, rank_chunk=rank_chunk, chunk=chunk)
    block_q = min(chunk, max(16, 1 << (n - 1).bit_length()))
    model = lowrank_kernel_io(n, d, rank, causal=causal, rank_chunk=rank_chunk, block_q=block_q)
    assert got[:4] == [model.reads["Q"], model.reads["K"], model.reads["V"], model.writes["O"]]
    assert got[5] == _other(model)
