"""hff_blocksparse / hff_lowrank through transformers' AttentionInterface on tiny models built from configs."""

from __future__ import annotations

import logging
import types

import pytest
import torch

import hf_fundamentals.integrations.attention.approx as hfa
from hf_fundamentals.integrations.attention.approx import (
    BLOCKSPARSE,
    LOWRANK,
    AttentionSettings,
    blocksparse_attention_forward,
    configure_attention,
    last_call_stats,
    lowrank_attention_forward,
    model_error_bound,
    register_attention,
    set_attention,
    set_attention_settings,
    settings_of,
)
from hf_fundamentals.integrations.attention.masks import mask_structure

LOGGER = "hf_fundamentals.integrations.attention.approx"
COMMON = dict(
    vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=None,
)  # fmt: skip


def _config(family: str, **extra):
    import transformers as tf

    if family == "llama":
        return tf.LlamaConfig(**COMMON, **extra)
    if family == "qwen2":
        return tf.Qwen2Config(**COMMON, **extra)
    if family == "qwen3":
        return tf.Qwen3Config(**COMMON, head_dim=8, **extra)
    if family == "mistral":
        return tf.MistralConfig(**COMMON, head_dim=8, **extra)
    if family == "qwen3_moe":
        return tf.Qwen3MoeConfig(
            **COMMON, head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
            decoder_sparse_step=1, **extra,
        )  # fmt: skip
    raise ValueError(family)


def _model(family: str, **extra):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(family, **extra), attn_implementation="sdpa")
    return model.eval()


def _attn_modules(model):
    return [layer.self_attn for layer in model.model.layers]


def _logits(model, impl, **inputs):
    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits


@pytest.fixture(autouse=True)
def _registered():
    register_attention()
    hfa._warned.clear()


def _ids(batch=2, n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, n), generator=g)


# ------------------------------------------------------------------------------------------------ registration
def test_registration_is_idempotent_and_listed():
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    first = register_attention()
    assert register_attention() == first == [BLOCKSPARSE, LOWRANK]
    for name, fn in ((BLOCKSPARSE, blocksparse_attention_forward), (LOWRANK, lowrank_attention_forward)):
        assert "/" not in name and "flash" not in name and "sdpa" not in name
        assert AttentionInterface._global_mapping[name] is fn
        assert AttentionMaskInterface._global_mapping[name] is sdpa_mask
        assert name in ALL_ATTENTION_FUNCTIONS.valid_keys()
    model = _model("llama")
    assert set_attention(model, "lowrank") == LOWRANK
    assert model.config._attn_implementation == LOWRANK
    with pytest.raises(ValueError, match="kind"):
        set_attention(model, "dense")


def test_settings_are_per_model_validated_and_saved(tmp_path):
    from transformers import AutoModelForCausalLM

    a, b = _model("llama"), _model("llama")
    s = set_attention_settings(a, eps=0.0, block_size=8, min_seq_len=0)
    assert (s.eps, s.block_size, s.min_seq_len) == (0.0, 8, 0) and settings_of(
        a.model.layers[0].self_attn
    ) == s
    assert (
        settings_of(b.model.layers[0].self_attn) == AttentionSettings()
    )  # the other model keeps the defaults
    assert set_attention_settings(a, eps=0.2).block_size == 8  # merged into what the model has
    for bad in (dict(eps=2.0), dict(block_size=0), dict(min_seq_len=-1), dict(feature_map="cos")):
        with pytest.raises(ValueError):
            set_attention_settings(b, **bad)
    with pytest.raises(TypeError, match="unknown attention settings"):
        set_attention_settings(b, epsilon=0.1)
    a.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=BLOCKSPARSE)
    assert settings_of(again.model.layers[1].self_attn) == AttentionSettings(
        eps=0.2, block_size=8, min_seq_len=0
    )
    with pytest.raises(TypeError, match=r"set_attention\(model, 'blocksparse'"):
        configure_attention(eps=1e-3)


# ------------------------------------------------------------------------------------------- exact agreement
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral", "qwen3_moe"])
def test_blocksparse_eps0_matches_sdpa(family):
    model = _model(family)
    set_attention_settings(model, eps=0.0, block_size=8, min_seq_len=0)
    ids = _ids()
    left = torch.ones_like(ids)
    left[1, :5] = 0
    right = torch.ones_like(ids)
    right[0, -7:] = 0
    for mask in (None, left, right):
        inputs = dict(input_ids=ids) if mask is None else dict(input_ids=ids, attention_mask=mask)
        ref = _logits(model, "sdpa", **inputs)
        out = _logits(model, BLOCKSPARSE, **inputs)
        assert all(m._hff_last_bound.path == "blocksparse" for m in _attn_modules(model))
        assert float(model_error_bound(model)) == 0.0
        real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        torch.testing.assert_close(out[real], ref[real], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_generate_with_cache_matches_sdpa(family):
    model = _model(family)
    set_attention_settings(model, eps=0.0, block_size=8, min_seq_len=0)
    ids = _ids(n=12, seed=3)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding, as generate expects
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    model.set_attn_implementation("sdpa")
    ref = model.generate(ids, attention_mask=mask, **kw)
    model.set_attn_implementation(BLOCKSPARSE)
    out = model.generate(ids, attention_mask=mask, **kw)
    stats = last_call_stats()
    assert stats.path == "blocksparse" and stats.n_q == 1 and stats.n_k > 12  # a decode step over the cache
    assert out.shape == ref.shape == (2, 20)
    assert torch.equal(out, ref)


# ---------------------------------------------------------------------------------------- certified bound
def _stub(causal=True, **settings):
    """An attention module stand-in; its config carries ``settings`` (the model's ``hff_attention``)."""
    config = types.SimpleNamespace(hff_attention=settings or None)
    return types.SimpleNamespace(is_causal=causal, num_key_value_groups=2, config=config)


def _clustered(shape, n, generator, block=8):
    """Rows in runs of ``block`` around a random centre each: block summaries are tight, so blocks get skipped."""
    centres = torch.randn(*shape, -(-n // block), 1, 16, generator=generator)
    noise = 0.05 * torch.randn(*shape, -(-n // block), block, 16, generator=generator)
    return (centres + noise).reshape(*shape, -1, 16)[..., -n:, :]


def _qkv(n_q=96, n_k=96, sharp=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = _clustered((2, 2), n_k, g)
    v = torch.randn(2, 2, n_k, 16, generator=g)
    q = sharp * _clustered((2, 4), n_q, g)
    return q, k, v


@pytest.mark.parametrize("n_q", [96, 1])
def test_blocksparse_eps_positive_within_certified_bound(n_q):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    SETTINGS = dict(eps=0.05, block_size=8, min_seq_len=0)
    q, k, v = _qkv(n_q=n_q)
    # key padding on batch row 1 (its last 10 keys are padding), so the mask is materialized
    pad = torch.ones(2, 96, dtype=torch.bool)
    pad[1, -10:] = False
    mask = sdpa_mask(2, n_q, 96, q_offset=96 - n_q, attention_mask=pad)
    assert mask is not None
    for m in (None, mask):
        module = _stub(**SETTINGS)
        out, w = blocksparse_attention_forward(module, q, k, v, m)
        exact, _ = sdpa_attention_forward(module, q, k, v, m)
        stats = module._hff_last_bound
        assert w is None and out.shape == (2, n_q, 4, 16) and out.is_contiguous()
        assert stats is last_call_stats() and stats.path == "blocksparse"
        assert stats.kept_fraction < 1.0  # blocks were skipped, so the bound is doing work
        bound = float(stats.max_error_bound)
        assert 0.0 < bound and float(stats.max_mass_bound) <= 0.05
        assert (out - exact).abs().max().item() <= bound + 1e-6


def test_static_cache_offset_mask_drops_unseen_keys():
    """A causal mask not aligned to the end of the keys (static cache) drops the keys nobody sees."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    SETTINGS = dict(eps=0.0, block_size=4, min_seq_len=0)
    q, k, v = _qkv(n_q=5, n_k=20, sharp=1.0)
    pad = torch.ones(2, 20, dtype=torch.bool)
    pad[0, :2] = False
    mask = sdpa_mask(2, 5, 20, q_offset=6, attention_mask=pad)
    assert mask_structure(mask, 5, 20)[:2] == (True, 11)
    out, _ = blocksparse_attention_forward(_stub(**SETTINGS), q, k, v, mask)
    exact, _ = sdpa_attention_forward(_stub(**SETTINGS), q, k, v, mask)
    assert last_call_stats().path == "blocksparse"
    torch.testing.assert_close(out, exact, atol=1e-5, rtol=0)


def test_no_mask_longer_keys_follow_sdpa_upper_left_crop():
    """mask=None with n_k > n_q > 1 (empty static-cache prefill): sdpa's is_causal crops the keys to n_q."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    SETTINGS = dict(eps=0.0, block_size=4, min_seq_len=0)
    q, k, v = _qkv(n_q=6, n_k=16, sharp=1.0)
    out, _ = blocksparse_attention_forward(_stub(**SETTINGS), q, k, v, None)
    exact, _ = sdpa_attention_forward(_stub(**SETTINGS), q, k, v, None)
    assert last_call_stats().path == "blocksparse"
    torch.testing.assert_close(out, exact, atol=1e-5, rtol=0)


def test_mask_structure_recognition():
    from transformers.masking_utils import sdpa_mask, sliding_window_causal_mask_function

    pad = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    causal = sdpa_mask(2, 6, 6, attention_mask=pad, allow_is_causal_skip=False)
    causal_flag, n_keep, kpm = mask_structure(causal, 6, 6)
    assert causal_flag and n_keep == 6 and torch.equal(kpm, pad)
    float_mask = torch.zeros(causal.shape).masked_fill(~causal, torch.finfo(torch.float32).min)
    assert mask_structure(float_mask, 6, 6)[:2] == (True, 6)
    assert mask_structure(float_mask + 0.5, 6, 6) is None  # arbitrary additive mask
    bidir = pad[:, None, None, :].expand(2, 1, 6, 6)
    assert mask_structure(bidir, 6, 6)[:2] == (False, 6)
    window = sdpa_mask(
        1, 6, 6, mask_function=sliding_window_causal_mask_function(3), allow_is_causal_skip=False
    )
    assert mask_structure(window, 6, 6) is None
    packed = torch.tensor([0, 0, 0, 1, 1, 1])
    block = (packed[:, None] == packed[None, :]) & torch.ones(6, 6, dtype=torch.bool).tril()
    assert mask_structure(block[None, None], 6, 6) is None
    assert mask_structure(causal.expand(2, 4, 6, 6), 6, 6) is None  # per-head masks are not handled


# --------------------------------------------------------------------------------------------------- lowrank
def test_lowrank_forward_backward():
    model = _model("qwen3").train()
    set_attention_settings(model, min_seq_len=0, feature_map="taylor2")
    set_attention(model, "lowrank")
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    out = model(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(m._hff_last_bound.path == "lowrank" for m in _attn_modules(model))
    assert model_error_bound(model) is None  # low rank carries no certificate
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_lowrank_trainer_steps(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = _model("llama")
    set_attention_settings(model, min_seq_len=0)
    set_attention(model, "lowrank")
    ids = _ids(batch=8, n=16).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data)
    before = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and len(losses) == 2
    assert all(torch.isfinite(torch.tensor(x)) for x in losses)
    assert last_call_stats().path == "lowrank"
    assert not torch.equal(before, model.model.layers[0].self_attn.q_proj.weight)


# ---------------------------------------------------------------------------------- fall-backs and refusals
def test_below_threshold_is_exactly_sdpa():
    model = _model("llama")
    set_attention_settings(model, eps=0.5, block_size=4)  # default min_seq_len=4096: never approximate here
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    ref = _logits(model, "sdpa", input_ids=ids, attention_mask=mask)
    out = _logits(model, BLOCKSPARSE, input_ids=ids, attention_mask=mask)
    assert torch.equal(out, ref)
    stats = last_call_stats()
    assert stats.path == "sdpa" and "min_seq_len" in stats.reason and float(stats.max_error_bound) == 0.0


def test_sliding_window_falls_back_with_warning(caplog):
    model = _model("mistral", sliding_window=8)
    set_attention_settings(model, eps=0.5, block_size=4, min_seq_len=0)
    ids = _ids()
    ref = _logits(model, "sdpa", input_ids=ids)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = _logits(model, BLOCKSPARSE, input_ids=ids)
        _logits(model, BLOCKSPARSE, input_ids=ids)
    assert torch.equal(out, ref)
    assert last_call_stats().path == "sdpa" and "sliding" in last_call_stats().reason
    warnings = [r for r in caplog.records if r.name == LOGGER and "sliding" in r.getMessage()]
    assert len(warnings) == 1  # once, not per call


def test_packed_position_ids_fall_back_with_warning(caplog):
    model = _model("llama")
    set_attention_settings(model, eps=0.5, block_size=4, min_seq_len=0)
    ids = _ids(batch=1, n=20)
    pos = torch.cat([torch.arange(12), torch.arange(8)])[None]
    ref = _logits(model, "sdpa", input_ids=ids, position_ids=pos)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = _logits(model, BLOCKSPARSE, input_ids=ids, position_ids=pos)
    assert torch.equal(out, ref)
    assert last_call_stats().path == "sdpa"
    assert any(r.name == LOGGER and "packed" in r.getMessage() for r in caplog.records)


def test_packed_kwargs_without_mask_fall_back(caplog):
    SETTINGS = dict(eps=0.5, block_size=4, min_seq_len=0)
    q, k, v = _qkv(n_q=12, n_k=12, sharp=1.0)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        blocksparse_attention_forward(
            _stub(**SETTINGS), q[:1], k[:1], v[:1], None, cu_seq_lens_q=cu, cu_seq_lens_k=cu
        )
    assert last_call_stats().path == "sdpa" and "cu_seq_lens" in last_call_stats().reason
    assert any("cu_seq_lens" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    # restarting position_ids with no mask: same
    pos = torch.cat([torch.arange(5), torch.arange(7)])[None]
    lowrank_attention_forward(_stub(**SETTINGS), q[:1], k[:1], v[:1], None, position_ids=pos)
    assert last_call_stats().path == "sdpa" and "position_ids" in last_call_stats().reason
    # consecutive position_ids are not packing
    blocksparse_attention_forward(
        _stub(**SETTINGS), q[:1], k[:1], v[:1], None, position_ids=torch.arange(12)[None]
    )
    assert last_call_stats().path == "blocksparse"


def test_dropout_is_refused():
    SETTINGS = dict(min_seq_len=0)
    q, k, v = _qkv(n_q=8, n_k=8)
    for fn in (blocksparse_attention_forward, lowrank_attention_forward):
        with pytest.raises(ValueError, match="dropout"):
            fn(_stub(**SETTINGS), q, k, v, None, dropout=0.1)
    SETTINGS = dict()  # refused below the threshold too (default min_seq_len)
    with pytest.raises(ValueError, match="attention_dropout"):
        blocksparse_attention_forward(_stub(**SETTINGS), q, k, v, None, dropout=0.1)


def test_the_hff_entry_points_register_the_attention_names():
    """``register()`` (called by every hff entry point, also in accelerate-relaunched processes) makes
    ``attn_implementation="hff_blocksparse"`` resolve."""
    from transformers import AttentionInterface, AttentionMaskInterface

    from hf_fundamentals.integrations.registry import register

    names = register()["attention"]
    assert names == ["hff_blocksparse", "hff_lowrank", "hff_preisach", "hff_sparse_decode"]
    for name in names:
        assert name in AttentionInterface._global_mapping and name in AttentionMaskInterface._global_mapping


def test_hff_attention_flags_configure_the_functions_and_refuse_orphans():
    """``--hff_attention`` and its ``--attention_*`` settings: applied in this process, named in the run banner,
    bad values and settings without the switch refused before a model loads."""
    from hf_fundamentals.integrations.arguments import HffArguments
    from hf_fundamentals.integrations.trainer import trainer_extras

    args = HffArguments(hff_attention="blocksparse", attention_eps=0.01, attention_min_seq_len=0)
    assert args.attn_implementation() == "hff_blocksparse"
    assert args.attention_settings() == AttentionSettings(eps=0.01, min_seq_len=0)
    assert "attention blocksparse (eps 0.01, exact below 0 keys)" in args.enabled_techniques()
    assert HffArguments().attn_implementation() is None and HffArguments().attention_settings() is None
    # the trainer extras: the attn_implementation to load with, and a callback that writes the settings per model
    extras = trainer_extras(args)
    assert extras.model_init_kwargs() == {"attn_implementation": "hff_blocksparse"}
    model = _model("llama")
    set_attention(model, "blocksparse")
    (callback,) = extras.callbacks
    callback.on_init_end(None, None, None, model=model)
    assert settings_of(model.model.layers[0].self_attn) == AttentionSettings(eps=0.01, min_seq_len=0)
    with pytest.raises(ValueError, match="runs attn_implementation='sdpa'"):
        callback.on_init_end(None, None, None, model=_model("llama"))
    with pytest.raises(ValueError, match="--attention_eps set but --hff_attention is 'none'"):
        HffArguments(attention_eps=0.01)
    with pytest.raises(ValueError, match="accepted: none, blocksparse, lowrank"):
        HffArguments(hff_attention="flash")
    with pytest.raises(ValueError, match="eps must lie in"):
        HffArguments(hff_attention="blocksparse", attention_eps=2.0)


def test_hff_sft_refuses_a_second_attn_implementation():
    from types import SimpleNamespace

    from hf_fundamentals.integrations.arguments import HffArguments
    from hf_fundamentals.integrations.cli.sft import run

    with pytest.raises(ValueError, match="drop --attn_implementation sdpa"):
        run(
            None,
            None,
            SimpleNamespace(attn_implementation="sdpa"),
            None,
            HffArguments(hff_attention="lowrank"),
        )
