"""hff_sparse_decode in transformers' generate on tiny models of each GQA family: exact at top_p = 1 (greedy,
sampling and beam search identical to sdpa, left-padded batches), sparse below it, the cache's incremental
summaries, and the refusals."""

from __future__ import annotations

import pytest
import torch

from hf_fundamentals.attention.sparse_decode import page_summaries
from hf_fundamentals.integrations.attention.sparse_decode import (
    SparseDecodeCache,
    SparseDecodeSettings,
    set_sparse_decode,
    set_sparse_decode_settings,
    sparse_stats,
)

COMMON = dict(
    vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=None,
)  # fmt: skip
FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "mixtral", "qwen3_moe"]
SPARSE = dict(min_seq_len=0, page_size=8, window=8, dense_layers=2)


def _model(family: str, **extra):
    import transformers as tf
    from transformers import AutoModelForCausalLM

    if family == "llama":
        cfg = tf.LlamaConfig(**COMMON, **extra)
    elif family == "qwen2":
        cfg = tf.Qwen2Config(**COMMON, **extra)
    elif family == "qwen3":
        cfg = tf.Qwen3Config(**COMMON, head_dim=8, **extra)
    elif family == "mistral":
        cfg = tf.MistralConfig(**COMMON, head_dim=8, **{"sliding_window": None, **extra})
    elif family == "mixtral":
        cfg = tf.MixtralConfig(
            **COMMON,
            head_dim=8,
            num_local_experts=4,
            num_experts_per_tok=2,
            **{"sliding_window": None, **extra},
        )
    else:
        cfg = tf.Qwen3MoeConfig(
            **COMMON, head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
            decoder_sparse_step=1, **extra,
        )  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()


def _batch(n=150, pad=23):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 100, (2, n), generator=g)
    mask = torch.ones_like(ids)
    ids[1, :pad], mask[1, :pad] = 0, 0  # left padding
    return ids, mask


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_at_top_p_1_is_identical_to_sdpa_with_left_padding(family):
    model = _model(family)
    ids, mask = _batch()
    ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    set_sparse_decode(model, top_p=1.0, **SPARSE)
    for cache in (SparseDecodeCache(model.config), None):  # its own cache, and the default DynamicCache
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, past_key_values=cache
        )
        assert torch.equal(out, ref)
    paths = [s.path for s in sparse_stats(model)]
    assert paths == ["dense", "dense", "sparse", "sparse"]  # the first two layers stay dense


def test_sampling_and_beam_search_at_top_p_1_match_sdpa():
    model = _model("llama")
    ids, mask = _batch()
    torch.manual_seed(3)
    ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=True, top_k=0)
    beams = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3, do_sample=False)
    set_sparse_decode(model, top_p=1.0, **SPARSE)
    torch.manual_seed(3)
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=True, top_k=0,
        past_key_values=SparseDecodeCache(model.config),
    )  # fmt: skip
    assert torch.equal(out, ref)
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3, do_sample=False,
        past_key_values=SparseDecodeCache(model.config),
    )  # fmt: skip
    assert torch.equal(out, beams)


def test_below_top_p_1_pages_are_skipped_and_the_bound_is_reported():
    model = _model("qwen2")
    ids, mask = _batch(n=300)
    set_sparse_decode(model, top_p=0.5, max_fraction=0.25, **SPARSE)
    cache = SparseDecodeCache(model.config)
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, past_key_values=cache
    )
    assert out.shape == (2, 308)
    sparse = [s for s in sparse_stats(model) if s.path == "sparse"]
    assert len(sparse) == 2 and all(s.pages_read < 1.0 for s in sparse)
    assert all(0.0 <= float(s.mass_bound) <= 1.0 for s in sparse)
    # the cache's incremental summaries are those of the keys it holds
    for layer in cache.layers:
        lo, hi = page_summaries(layer.keys, 8)
        n_p = lo.shape[2]
        assert torch.equal(layer.kmin[:, :, :n_p], lo) and torch.equal(layer.kmax[:, :, :n_p], hi)


def test_settings_live_in_the_config_and_are_validated():
    model = _model("llama")
    set_sparse_decode(model, top_p=0.9, **SPARSE)
    assert model.config.hff_sparse_decode["top_p"] == 0.9
    assert set_sparse_decode_settings(model, window=32).top_p == 0.9
    for bad in (dict(top_p=0.0), dict(page_size=0), dict(max_fraction=2.0), dict(window=-1)):
        with pytest.raises(ValueError):
            SparseDecodeSettings(**bad)
    with pytest.raises(TypeError, match="unknown"):
        SparseDecodeSettings.from_dict({"eps": 1e-3})


def test_sliding_window_and_dropout_are_refused_clearly():
    model = _model("mistral", sliding_window=64)
    with pytest.raises(ValueError, match="sliding"):
        SparseDecodeCache(model.config)
    set_sparse_decode(model, **SPARSE)
    ids, mask = _batch(n=20, pad=0)
    with pytest.raises(ValueError, match="sliding_window=64"):
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=2)
    model = _model("llama", attention_dropout=0.1)
    set_sparse_decode(model, **SPARSE)
    model.train()
    with pytest.raises(ValueError, match="dropout"):
        model(input_ids=ids)


def test_from_pretrained_by_name_after_register_keeps_the_saved_settings(tmp_path):
    from transformers import AutoModelForCausalLM

    from hf_fundamentals.integrations.registry import register

    model = _model("qwen3")
    set_sparse_decode(model, top_p=1.0, **SPARSE)
    model.save_pretrained(tmp_path)
    ids, mask = _batch()
    model.set_attn_implementation("sdpa")
    ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    register()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="hff_sparse_decode").eval()
    assert loaded.config.hff_sparse_decode["page_size"] == 8
    out = loaded.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
        past_key_values=SparseDecodeCache(loaded.config),
    )  # fmt: skip
    assert torch.equal(out, ref)
    assert [s.path for s in sparse_stats(loaded)][2:] == ["sparse", "sparse"]
