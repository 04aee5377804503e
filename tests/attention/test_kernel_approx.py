"""The Hub kernel repo ``kernels/hff-approx-attention``: loaded with the ``kernels`` library as users load it,
run by Triton's interpreter on CPU (``TRITON_INTERPRET=1``, set before the kernels are defined), and checked
against the PyTorch references and the analytic I/O model."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hf_fundamentals.attention import (  # noqa: E402
    band_blocks,
    blocksparse_kernel_io,
    dense_attention,
    exact_flash_io,
    key_block_summaries,
)

REPO = Path(__file__).resolve().parents[2] / "kernels" / "hff-approx-attention"
pytestmark = pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # the interpreter evaluates both where-branches


@pytest.fixture(scope="module")
def kern():
    from kernels import get_local_kernel

    module = get_local_kernel(REPO)
    saved = module.settings()
    yield module
    module.configure(**saved)


def _qkv(b=2, h=4, h_kv=2, n_q=40, n_k=40, d=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n_q, d, generator=g, dtype=dtype)
    k = torch.randn(b, h_kv, n_k, d, generator=g, dtype=dtype)
    v = torch.randn(b, h_kv, n_k, d, generator=g, dtype=dtype)
    return q, k, v


def _sink_dominated(n=96, d=16, h=2, seed=0, needle=None):
    """Queries share a direction u; key 0 is a strong sink along u, the rest are small: most blocks are provably
    negligible. ``needle=(key_pos, query_pos, strength)`` plants a key aligned with one query."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g)
    u = u / u.norm()
    q = 3.0 * u + 0.3 * torch.randn(1, h, n, d, generator=g)
    k = 0.3 * torch.randn(1, h, n, d, generator=g)
    k[:, :, 0] = 6.0 * u
    v = torch.randn(1, h, n, d, generator=g)
    if needle is not None:
        kp, qp, strength = needle
        k[:, :, kp] = strength * q[:, :, qp] / q[:, :, qp].norm(dim=-1, keepdim=True)
    return q, k, v


def _value_range(v, causal, n_q):
    if causal:
        hi = torch.cummax(v, dim=-2).values[..., -n_q:, :]
        lo = torch.cummin(v, dim=-2).values[..., -n_q:, :]
        return hi - lo
    return (v.amax(-2, keepdim=True) - v.amin(-2, keepdim=True)).expand(*v.shape[:-2], n_q, v.shape[-1])


def test_repo_layout_and_metadata():
    import json

    for variant, backend in (("torch-cuda", "cuda"), ("torch-cpu", "cpu")):
        meta = json.loads((REPO / "build" / variant / "metadata.json").read_text())
        assert meta["name"] == "hff-approx-attention" and meta["backend"]["type"] == backend
        assert meta["python-depends"] == []
        assert (REPO / "build" / variant / "hff_approx_attention" / "__init__.py").is_file()
    assert (REPO / "README.md").is_file()


def test_exports_what_transformers_needs(kern):
    assert kern.supports_flash_attn is True and callable(kern.flash_attn_forward)
    with pytest.raises(TypeError, match="unknown settings"):
        kern.configure(epsilon=1e-3)
    with pytest.raises(ValueError, match="power of two"):
        kern.configure(block=48)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n_q", "n_k"), [(40, 40), (17, 70), (1, 33)])
def test_flash_matches_dense(kern, causal, n_q, n_k):
    q, k, v = _qkv(n_q=n_q, n_k=n_k, d=24)
    pad = torch.ones(2, n_k, dtype=torch.bool)
    pad[1, :5] = False  # left padding in the second sequence
    out = kern.flash_forward(q, k, v, scale=0.3, causal=causal, key_padding_mask=pad, block_q=16, block_k=16)
    ref = dense_attention(q, k, v, scaling=0.3, causal=causal, key_padding_mask=pad)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def test_flash_static_cache_offset(kern):
    """Causal at an explicit offset (a static cache whose tail is still empty)."""
    q, k, v = _qkv(n_q=8, n_k=48)
    out = kern.flash_forward(q, k, v, scale=0.25, causal=True, offset=20, block_q=16, block_k=16)
    ref = dense_attention(q, k[:, :, :28], v[:, :, :28], scaling=0.25, causal=True)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def test_summary_kernel_matches_reference(kern):
    q, k, v = _qkv(n_k=70)
    pad = torch.rand(2, 70, generator=torch.Generator().manual_seed(1)) > 0.3
    n_kb = math.ceil(70 / 16)
    centre = torch.empty(4, n_kb, 16)
    radius = torch.empty_like(centre)
    count = torch.empty(4, n_kb, dtype=torch.int32)
    kr = pad.to(torch.int8)
    kern._blocksparse._summary_kernel[(n_kb, 4)](
        k, kr, centre, radius, count, torch.zeros(6, dtype=torch.int64),
        k.stride(0), k.stride(1), k.stride(2), kr.stride(0), 70, 2, n_kb,
        D=16, DP=16, BLOCK=16, HAS_KR=True, COUNT_IO=False,
    )  # fmt: skip
    kmin, kmax = key_block_summaries(k, 16, pad[:, None, :].expand(2, 2, 70))
    torch.testing.assert_close(centre, (0.5 * (kmin + kmax)).reshape(4, n_kb, 16))
    torch.testing.assert_close(radius, (0.5 * (kmax - kmin)).reshape(4, n_kb, 16))
    real = torch.nn.functional.pad(pad, (0, n_kb * 16 - 70)).reshape(2, n_kb, 16).sum(-1)
    torch.testing.assert_close(count, real.to(torch.int32).repeat_interleave(2, 0))


def test_select_blocks_budget(kern):
    """Skips the lightest candidates while their total stays within eps/(1-eps); band blocks always kept."""
    logw = torch.log(torch.tensor([[[0.001, 0.004, 0.02, 0.5, float("nan")]]]))
    logw[..., -1] = float("-inf")  # not visible
    band = torch.tensor([[False, False, False, False, True]])
    kept, log_s = kern.select_blocks(logw, band.expand(1, 1, 5), eps=0.01)
    assert kept.tolist() == [[[False, False, True, True, True]]]
    assert math.isclose(float(log_s.exp()), 0.005, rel_tol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_blocksparse_eps0_is_exact(kern, causal):
    q, k, v = _qkv(n_q=50, n_k=50)
    res = kern.blocksparse_forward(q, k, v, scale=0.25, eps=0.0, causal=causal, block=16)
    assert res.kept_fraction == 1.0 and float(res.mass_bound.max()) == 0.0
    torch.testing.assert_close(
        res.output, dense_attention(q, k, v, scaling=0.25, causal=causal), atol=2e-5, rtol=1e-4
    )


@pytest.mark.parametrize("causal", [False, True])
def test_blocksparse_is_exact_softmax_over_its_kept_blocks(kern, causal):
    """Kernel-vs-reference parity: the output is the exact softmax restricted to the blocks it reports kept."""
    q, k, v = _sink_dominated(n=96)
    res = kern.blocksparse_forward(q, k, v, scale=1.0, eps=1e-2, causal=causal, block=16)
    assert res.kept_fraction < 0.9  # blocks were skipped, else this test checks nothing
    keep_keys = res.kept.repeat_interleave(16, dim=-1).repeat_interleave(16, dim=-2)[..., :96, :96]
    logits = q @ k.transpose(-1, -2)
    allowed = keep_keys[0]
    if causal:
        allowed = allowed & torch.ones(96, 96, dtype=torch.bool).tril()
    ref = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1) @ v
    torch.testing.assert_close(res.output, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("case", ["random", "sink", "needle", "padded"])
def test_certified_bound_holds(kern, causal, case):
    """|out − exact| <= mass_bound·(max v − min v) and mass_bound <= eps, including a planted far needle (peaky
    attention a block summary must not miss) and left padding."""
    eps = 1e-2
    pad = None
    if case == "random":
        q, k, v = _qkv(b=1, h=2, h_kv=1, n_q=80, n_k=80, seed=3)
        q = 2.5 * q
    elif case == "sink":
        q, k, v = _sink_dominated(n=112, seed=1)
    elif case == "needle":
        q, k, v = _sink_dominated(n=112, seed=2, needle=(20, 100, 6.0))
    else:
        q, k, v = _sink_dominated(n=112, seed=4)
        pad = torch.ones(1, 112, dtype=torch.bool)
        pad[0, :9] = False
    res = kern.blocksparse_forward(q, k, v, scale=1.0, eps=eps, causal=causal, key_padding_mask=pad, block=16)
    exact = dense_attention(q, k, v, scaling=1.0, causal=causal, key_padding_mask=pad)
    vv = v if pad is None else v.masked_fill(~pad[:, None, :, None], float("nan"))
    rng = _value_range(torch.nan_to_num(vv, nan=0.0), causal, q.shape[2])
    err = (res.output - exact).abs()
    assert float(res.mass_bound.max()) <= eps + 1e-6
    assert bool((err <= res.mass_bound[..., None] * rng + 1e-5).all())
    if case == "needle":  # the block holding the needle is kept for the query it serves
        assert bool(res.kept[0, :, 100 // 16, 20 // 16].all())
        assert res.kept_fraction < 1.0


def test_io_counts_match_the_model(kern):
    """The words the kernels load and store (instrumented, interpreter) equal the analytic I/O model."""
    n, d, bq = 96, 16, 16
    q, k, v = _qkv(b=1, h=1, h_kv=1, n_q=n, n_k=n, d=d)
    for causal in (False, True):
        io = torch.zeros(6, dtype=torch.int64)
        kern.flash_forward(q, k, v, scale=0.25, causal=causal, block_q=bq, block_k=bq, io=io)
        model = exact_flash_io(n, d, M=4 * bq * d, block_q=bq, block_k=bq, causal=causal)
        assert io[:4].tolist() == [model.reads["Q"], model.reads["K"], model.reads["V"], model.writes["O"]]

    q, k, v = _sink_dominated(n=n, d=d, h=1)
    for causal in (False, True):
        io = torch.zeros(6, dtype=torch.int64)
        res = kern.blocksparse_forward(
            q, k, v, scale=1.0, eps=1e-2, causal=causal, block=16, tile_blocks=2, io=io
        )
        kept = res.kept[0, 0].sum(-1).tolist()
        model = blocksparse_kernel_io(n, d, 16, kept, causal=causal, tile_blocks=2)
        assert io[0] == model.reads["Q"] and io[1] == model.reads["K"] and io[2] == model.reads["V"]
        assert io[3] == model.writes["O"]
        kernel_side = (
            model.writes["summaries"] + model.reads["summaries"] + model.writes["scores"]
            + model.reads["lists"] + model.reads["log_s"]
        )  # fmt: skip
        assert io[4] == kernel_side
        assert io[5] == model.reads["log_z"] + model.writes["log_z"] + model.writes["mass_bound"]
        assert res.kept_fraction < 1.0


def test_band_blocks_match_the_kernels(kern):
    for causal in (False, True):
        band = kern._blocksparse._band(50, 70, 16, causal, 20, "cpu")
        model = band_blocks(50, 70, 16, causal)
        assert [torch.nonzero(row).flatten().tolist() for row in band] == model


# ----------------------------------------------------------------------------------- through transformers
def _tiny(family: str):
    import transformers as tf

    common = dict(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
    )  # fmt: skip
    config = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "mistral": tf.MistralConfig}[family](**common)
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_loads_by_attn_implementation_with_local_kernels(kern, family, monkeypatch):
    """``attn_implementation="<org>/hff-approx-attention"`` resolved offline through ``LOCAL_KERNELS``, on a
    padded batch: same logits as sdpa on the real tokens (exact mode and blocksparse at eps=0)."""
    import kernels.load as kload

    repo_id = "hff-test/hff-approx-attention"
    monkeypatch.setenv("LOCAL_KERNELS", f"{repo_id}={REPO}")
    kload._parse_local_kernel_overrides.cache_clear()
    model = _tiny(family)
    ids = torch.randint(3, 100, (2, 40), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_attn_implementation(repo_id)
    assert model.config._attn_implementation == repo_id
    try:
        for mode, eps in (("exact", 1e-3), ("blocksparse", 0.0), ("blocksparse", 1e-3)):
            kern.configure(mode=mode, eps=eps, min_seq_len=0, block=16)
            with torch.no_grad():
                out = model(input_ids=ids, attention_mask=mask).logits
            real = mask.bool()
            torch.testing.assert_close(out[real], ref[real], atol=1e-4, rtol=1e-4)
            stats = model.model.layers[0].self_attn._hff_kernel_stats
            assert stats["path"] == ("exact" if mode == "exact" or eps == 0.0 else "blocksparse")
    finally:
        kload._parse_local_kernel_overrides.cache_clear()


def test_per_model_settings_in_the_config_override_the_module_wide_ones(kern):
    """A module whose config carries ``hff_attention`` (as hf_fundamentals' set_attention writes it) runs with
    that model's eps / block_size / min_seq_len, whatever the module-wide settings say."""
    from types import SimpleNamespace

    kern.configure(mode="blocksparse", eps=1e-3, min_seq_len=4096, block=64)
    q, k, v = _sink_dominated(n=96)
    plain = SimpleNamespace(is_causal=True, training=False)
    kern.flash_attn_forward(plain, q, k, v, None)
    assert plain._hff_kernel_stats["path"] == "exact"  # 96 keys < the module-wide min_seq_len
    per_model = SimpleNamespace(
        is_causal=True, training=False,
        config=SimpleNamespace(hff_attention={"eps": 1e-2, "block_size": 16, "min_seq_len": 0}),
    )  # fmt: skip
    kern.flash_attn_forward(per_model, q, k, v, None)
    stats = per_model._hff_kernel_stats
    assert stats["path"] == "blocksparse" and float(stats["max_mass_bound"]) <= 1e-2


def test_unsupported_calls_fall_back_or_refuse(kern, caplog):
    module = torch.nn.Module()
    module.is_causal = True
    module.training = True
    q, k, v = _qkv(b=1, n_q=20, n_k=20)
    with pytest.raises(ValueError, match="attention_dropout=0"):
        kern.flash_attn_forward(module, q, k, v, None, dropout=0.1)
    module.training = False
    band = torch.ones(20, 20, dtype=torch.bool).tril() & ~torch.ones(20, 20, dtype=torch.bool).tril(-5)
    out, _ = kern.flash_attn_forward(module, q, k, v, band[None, None], scaling=0.25)
    assert module._hff_kernel_stats["path"] == "sdpa"
    ref = dense_attention(q, k, v, scaling=0.25, causal=True)  # rows 0..4 see the same keys as the band
    torch.testing.assert_close(out.transpose(1, 2)[:, :, :5], ref[:, :, :5], atol=2e-5, rtol=1e-4)
