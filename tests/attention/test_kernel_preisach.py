"""The Hub kernel repo ``kernels/hff-preisach-attention``: loaded with the ``kernels`` library as users load it,
run by Triton's interpreter on CPU (``TRITON_INTERPRET=1``, set before the kernels are defined), and checked
against the PyTorch reference ``hf_fundamentals.attention.preisach`` (relay states, anchors, final carry, and the
density / value layer outputs), with padding, ties, several relay tiles, GQA and queries aligned to the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hf_fundamentals.attention.preisach import (  # noqa: E402
    PreisachAttention,
    preisach_attention,
    relay_states_parallel,
    relay_states_sequential,
)

REPO = Path(__file__).resolve().parents[2] / "kernels" / "hff-preisach-attention"
DEV = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # the interpreter evaluates both where-branches


@pytest.fixture(scope="module")
def kern():
    from kernels import get_local_kernel

    return get_local_kernel(REPO)


def _relays(heads, r_count, seed, grid=False):
    g = torch.Generator().manual_seed(seed + 100)
    x = 4.0 * torch.rand(heads, r_count, 2, generator=g) - 2.0
    alpha, beta = x.amax(-1), x.amin(-1) - 1e-3
    if grid:  # thresholds on the drives' half-integer lattice: every drive/threshold tie occurs
        alpha, beta = torch.round(alpha * 2) / 2, torch.round(beta * 2) / 2 - 0.5
    return alpha, beta


def test_repo_layout_and_metadata():
    for variant, backend in (("torch-cuda", "cuda"), ("torch-cpu", "cpu")):
        meta = json.loads((REPO / "build" / variant / "metadata.json").read_text())
        assert meta["name"] == "hff-preisach-attention" and meta["backend"]["type"] == backend
        assert meta["python-depends"] == [] and meta["license"] == "apache-2.0"
        assert (REPO / "build" / variant / "hff_preisach_attention" / "__init__.py").is_file()
    cpu_pkg = REPO / "build" / "torch-cpu" / "hff_preisach_attention"
    assert cpu_pkg.is_symlink() and cpu_pkg.resolve() == (
        REPO / "build" / "torch-cuda" / "hff_preisach_attention"
    )
    assert "hff-preisach-attention" in (REPO / "README.md").read_text()


def test_exports(kern):
    assert callable(kern.relay_scan) and callable(kern.preisach_forward)
    assert kern.RelayCarry._fields == ("up", "anchor", "anchor_drive")


@pytest.mark.parametrize(
    ("lead", "n", "r_count", "block_r", "padded", "grid"),
    [
        ((2, 3), 50, 20, None, True, False),  # n not a multiple of the chunk, padding
        ((1, 2), 37, 40, 16, False, True),  # three relay tiles (the last one partial), ties
        ((3,), 1, 5, None, False, False),  # a single token
        ((2, 2), 64, 9, None, True, True),  # ties and padding, n a multiple of the chunk
    ],
)
def test_relay_scan_matches_reference(kern, lead, n, r_count, block_r, padded, grid):
    seed = n + r_count
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(*lead, n, generator=g)
    if grid:
        u = torch.round(u * 2) / 2
    alpha, beta = _relays(lead[-1], r_count, seed, grid=grid)
    real = (torch.rand(lead[0], *([1] * (len(lead) - 1)), n, generator=g) > 0.25) if padded else None
    res = kern.relay_scan(
        u.to(DEV), alpha.to(DEV), beta.to(DEV), real=None if real is None else real.to(DEV),
        return_anchors=True, block_t=16, block_r=block_r,
    )  # fmt: skip
    s_ref, a_ref = relay_states_parallel(u, alpha, beta, real=real, return_anchors=True)
    assert res.states.dtype == torch.int8 and res.states.shape == (*lead, n, r_count)
    assert torch.equal(res.states.cpu(), s_ref) and torch.equal(res.anchors.cpu(), a_ref)
    assert torch.equal(s_ref, relay_states_sequential(u, alpha, beta, real=real))
    # the final carry is the last row, with the drive at the anchor
    assert torch.equal(res.final.up.cpu(), s_ref[..., -1, :] > 0)
    assert torch.equal(res.final.anchor.cpu(), a_ref[..., -1, :])
    drv = torch.gather(u, -1, a_ref[..., -1, :].clamp(min=0))
    drv = torch.where(s_ref[..., -1, :] > 0, drv, torch.full_like(drv, float("-inf")))
    assert torch.equal(res.final.anchor_drive.cpu(), drv)


def test_relay_scan_degenerate_and_by_hand(kern):
    """α = β = u reads +1 (the up test first); a relay holds between its thresholds; states-only mode."""
    u = torch.tensor([[0.0, 1.0, 0.5, -1.0, 0.5, 1.0, 1.0, 0.2]])
    alpha = torch.tensor([[1.0, 0.5]])
    beta = torch.tensor([[-1.0, 0.5]])
    res = kern.relay_scan(u.to(DEV), alpha.to(DEV), beta.to(DEV), return_anchors=True, block_t=16)
    assert res.states[0, :, 0].tolist() == [-1, 1, 1, -1, -1, 1, 1, 1]
    assert res.states[0, :, 1].tolist() == [-1, 1, 1, -1, 1, 1, 1, -1]
    assert res.anchors[0, :, 0].tolist() == [-1, 1, 1, -1, -1, 5, 6, 6]  # ties go to the later token
    only = kern.relay_scan(u.to(DEV), alpha.to(DEV), beta.to(DEV), block_t=16)
    assert only.anchors is None and torch.equal(only.states, res.states)
    assert only.final.anchor.tolist() == [[-1, -1]]  # anchors are not tracked without return_anchors


@pytest.mark.parametrize("variant", ["density", "value"])
@pytest.mark.parametrize(("n_q", "block_r"), [(40, None), (7, 16)])
def test_layer_forward_matches_reference(kern, variant, n_q, block_r):
    """GQA (4 query heads on 2 kv heads), left padding, queries aligned to the end of the keys, value dim != head
    dim, a trained-looking gate; block_r=16 splits the 20 relays over two tiles (atomic accumulation)."""
    b, h, h_kv, n, d, d_v, r_count = 2, 4, 2, 40, 16, 24, 20
    g = torch.Generator().manual_seed(n_q)
    q = torch.randn(b, h, n, d, generator=g)[:, :, -n_q:]
    k = torch.randn(b, h_kv, n, d, generator=g)
    v = torch.randn(b, h_kv, n, d_v, generator=g)
    layer = PreisachAttention(h, d, r_count, value_dim=d_v, variant=variant, relay_mode="ste", seed=3)
    if variant == "value":
        with torch.no_grad():
            layer.gate.normal_(generator=g)
    pad = torch.ones(b, n, dtype=torch.bool)
    pad[1, :5] = False
    with torch.no_grad():
        ref, state = layer(q, k, v, key_padding_mask=pad, return_state=True)  # STE forward = hard relays
        params = {name: p for name, p in layer._params().items()}
    out, final = kern.preisach_forward(
        q.to(DEV), k.to(DEV), v.to(DEV), **{nm: None if p is None else p.detach().to(DEV) for nm, p in params.items()},
        variant=variant, key_padding_mask=pad.to(DEV), eps=layer.eps, return_final=True, block_t=16, block_r=block_r,
    )  # fmt: skip
    assert out.shape == (b, h, n_q, d_v) and out.dtype == q.dtype
    torch.testing.assert_close(out.cpu(), ref, atol=2e-6, rtol=1e-5)
    assert torch.equal(
        out[1, :, : max(0, 5 - (n - n_q))].cpu(), torch.zeros_like(out[1, :, : max(0, 5 - (n - n_q))])
    )
    assert torch.equal(final.up.cpu(), state.relays.up)
    assert torch.equal(final.anchor.cpu(), state.relays.anchor)
    assert torch.equal(final.anchor_drive.cpu(), state.relays.anchor_drive)


def test_layer_forward_with_drive_signal_ties_and_bf16(kern):
    """A given drive signal on a half-integer lattice with thresholds on it (ties), bfloat16 q/k/v."""
    b, h, n, d, r_count = 1, 2, 33, 16, 16
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(torch.bfloat16) for _ in range(3))
    sig = torch.round(2 * torch.randn(b, h, n, generator=g)) / 2
    alpha, beta = _relays(h, r_count, 7, grid=True)
    gap = torch.log(torch.expm1(alpha - beta))  # softplus⁻¹(α − β): β is recovered to float32 rounding
    density = torch.randn(h, r_count, d, generator=g)
    for variant in ("density", "value"):
        kw = dict(drive=None, alpha=alpha, gap=gap, density=density, variant=variant, drive_signal=sig)
        ref = preisach_attention(q, k, v, relay_mode="hard", **kw)
        out = kern.preisach_forward(q.to(DEV), k.to(DEV), v.to(DEV), block_t=16, **{
            nm: x.to(DEV) if isinstance(x, torch.Tensor) else x for nm, x in kw.items()
        })  # fmt: skip
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.cpu().float(), ref.float(), atol=1e-2, rtol=1e-2)


def test_errors(kern, monkeypatch):
    u = torch.randn(2, 10)
    with pytest.raises(ValueError, match="one shape"):
        kern.relay_scan(u, torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="power of two"):
        kern.relay_scan(u, torch.zeros(2, 3), torch.zeros(2, 3), block_r=24)
    q = torch.randn(1, 2, 8, 16)
    params = dict(drive=torch.randn(2, 16), alpha=torch.zeros(2, 4), gap=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="variant"):
        kern.preisach_forward(q, q, q, **params, density=torch.zeros(2, 4, 16), variant="softmax")
    with pytest.raises(ValueError, match="density must be"):
        kern.preisach_forward(q, q, q, **params, density=torch.zeros(2, 5, 16))
    if not torch.cuda.is_available():
        monkeypatch.delenv("TRITON_INTERPRET")
        with pytest.raises(RuntimeError, match="CUDA"):
            kern.relay_scan(u, torch.zeros(2, 3), torch.zeros(2, 3))
