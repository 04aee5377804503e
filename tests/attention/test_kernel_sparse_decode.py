"""The Hub kernel repo ``kernels/hff-sparse-decode-attention``, loaded with the ``kernels`` library as users load
it, run by Triton's interpreter on CPU (``TRITON_INTERPRET=1``, set before the kernels are defined), against the
PyTorch reference ``hf_fundamentals.attention.sparse_decode``: page scores, kept pages, outputs and the certified
dropped-mass bound, with GQA, left padding, a partial last page, cache buffers with spare capacity and top_p = 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hf_fundamentals.attention.sparse_decode import (  # noqa: E402
    dense_decode_attention,
    exact_dropped_mass,
    page_scores,
    page_summaries,
    sparse_decode_attention,
)

REPO = Path(__file__).resolve().parents[2] / "kernels" / "hff-sparse-decode-attention"
DEV = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # the interpreter evaluates both where-branches


@pytest.fixture(scope="module")
def kern():
    from kernels import get_local_kernel

    return get_local_kernel(REPO)


def test_repo_layout_and_metadata():
    for variant, backend in (("torch-cuda", "cuda"), ("torch-cpu", "cpu")):
        meta = json.loads((REPO / "build" / variant / "metadata.json").read_text())
        assert meta["name"] == "hff-sparse-decode-attention" and meta["backend"]["type"] == backend
        assert (REPO / "build" / variant / "hff_sparse_decode_attention" / "__init__.py").is_file()


def _case(seed, b=2, h_q=6, h_kv=2, n=93, d=16, cap=None, pad=True, peaky=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h_q, d, generator=g)
    k = torch.randn(b, h_kv, n, d, generator=g)
    v = torch.randn(b, h_kv, n, d, generator=g)
    if peaky:
        u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
        q = 4 * u + 0.2 * q
        k[:, :, 40] = 5 * u
    valid = None
    if pad:
        valid = torch.ones(b, n, dtype=torch.bool)
        valid[1, :21] = False
    cap = cap or n
    kb, vb = torch.zeros(b, h_kv, cap, d), torch.zeros(b, h_kv, cap, d)
    kb[:, :, :n], vb[:, :, :n] = k, v
    return q, k, v, kb, vb, valid


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_page_scores_match_the_reference(kern, alpha):
    q, k, *_ = _case(0)
    lo, hi = page_summaries(k, 8)
    ub, sc = kern.page_scores(q.to(DEV), lo.to(DEV), hi.to(DEV), 0.25, alpha)
    ub_ref, sc_ref = page_scores(q, lo, hi, 0.25, alpha)
    assert torch.allclose(ub.cpu(), ub_ref, atol=1e-5) and torch.allclose(sc.cpu(), sc_ref, atol=1e-5)


@pytest.mark.parametrize(
    ("seed", "top_p", "cap", "pad", "peaky"),
    [
        (1, 0.9, None, True, False),
        (2, 0.5, 128, True, True),
        (3, 0.99, 96, False, False),
        (4, 1.0, None, True, False),
    ],
)
def test_kernel_matches_the_reference_step(kern, seed, top_p, cap, pad, peaky):
    q, k, v, kb, vb, valid = _case(seed, cap=cap, pad=pad, peaky=peaky)
    n = k.shape[2]
    lo, hi = page_summaries(k, 8)
    kw = dict(page_size=8, scaling=0.25, top_p=top_p, window=10, max_fraction=0.3, alpha=0.5)
    ref = sparse_decode_attention(q, kb, vb, n=n, kmin=lo, kmax=hi, key_valid=valid, **kw)
    dev = lambda t: None if t is None else t.to(DEV)  # noqa: E731
    res = kern.sparse_decode(dev(q), dev(kb), dev(vb), dev(lo), dev(hi), n=n, key_valid=dev(valid), **kw)
    assert torch.equal(res.keep.cpu(), ref.keep)
    assert torch.allclose(res.output.cpu(), ref.output, atol=1e-5)
    assert torch.allclose(res.mass_bound.cpu(), ref.mass_bound, atol=1e-5)
    exact = exact_dropped_mass(q, k, res.keep.cpu(), 8, key_valid=valid, scaling=0.25)
    assert (exact <= res.mass_bound.cpu() + 1e-5).all()
    if top_p >= 1.0:
        dense = dense_decode_attention(q, k, v, key_valid=valid, scaling=0.25)
        assert torch.allclose(res.output.cpu(), dense, atol=1e-5)


def test_page_size_must_be_a_power_of_two(kern):
    q, k, v, *_ = _case(0, pad=False)
    lo, hi = page_summaries(k, 6)
    with pytest.raises(ValueError, match="power of two"):
        kern.sparse_decode(q.to(DEV), k.to(DEV), v.to(DEV), lo.to(DEV), hi.to(DEV), page_size=6)
