"""hff_preisach through transformers' AttentionInterface on tiny models built from configs (no network)."""

from __future__ import annotations

import json
import logging
import types

import pytest
import torch

from hf_fundamentals.attention.preisach import PreisachAttention
from hf_fundamentals.integrations.attention.preisach import (
    CONFIG_KEY,
    PREISACH,
    preisach_attention_forward,
    register_preisach,
)
from hf_fundamentals.integrations.attention.preisach_model import (
    add_preisach,
    load_preisach_model,
    preisach_layers,
    set_preisach_temperature,
)

LOGGER = "hf_fundamentals.integrations.attention.preisach"
COMMON = dict(
    vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=None,
)  # fmt: skip
FAMILIES = ["llama", "qwen2", "mistral"]


def _config(family: str, **extra):
    import transformers as tf

    if family == "llama":
        return tf.LlamaConfig(**COMMON, **extra)
    if family == "qwen2":
        return tf.Qwen2Config(**COMMON, **extra)
    if family == "mistral":
        return tf.MistralConfig(**COMMON, head_dim=8, **extra)
    raise ValueError(family)


def _model(family: str = "llama", attn: str = "sdpa", **extra):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(_config(family, **extra), attn_implementation=attn).eval()


def _ids(batch=2, n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, n), generator=g)


def _logits(model, **inputs):
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits


def _padded_batch(ids, left=4, right=5):
    """Row 0 right-padded, row 1 left-padded; position_ids that skip the padding (as generate builds them)."""
    mask = torch.ones_like(ids)
    mask[0, ids.shape[1] - right :] = 0
    mask[1, :left] = 0
    return mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _stub(causal=True, layer_idx=0, **settings):
    pal = PreisachAttention(4, 8, 4, seed=0)
    config = types.SimpleNamespace(
        **{CONFIG_KEY: {"layers": [layer_idx], "attn_fallback": "sdpa", **settings}}
    )
    return types.SimpleNamespace(
        is_causal=causal, num_key_value_groups=2, layer_idx=layer_idx, config=config, preisach=pal
    )


def _qkv(n_q=6, n_k=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, 4, n_q, 8, generator=g),
        torch.randn(2, 2, n_k, 8, generator=g),
        torch.randn(2, 2, n_k, 8, generator=g),
    )


# ------------------------------------------------------------------------------------------------ registration
def test_registration_is_idempotent():
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert register_preisach() == register_preisach() == PREISACH
    assert "/" not in PREISACH and "flash" not in PREISACH and "sdpa" not in PREISACH
    assert AttentionInterface._global_mapping[PREISACH] is preisach_attention_forward
    assert AttentionMaskInterface._global_mapping[PREISACH] is sdpa_mask
    assert PREISACH in ALL_ATTENTION_FUNCTIONS.valid_keys()


def test_add_preisach_attaches_trainable_parameters_in_the_chosen_layers():
    model = _model("llama")
    assert add_preisach(model, layers=[0], n_relays=8, variant="value", seed=3) is model
    attn0, attn1 = (layer.self_attn for layer in model.model.layers)
    assert isinstance(attn0.preisach, PreisachAttention) and not hasattr(attn1, "preisach")
    pal = attn0.preisach
    assert (pal.num_heads, pal.head_dim, pal.num_relays, pal.variant) == (4, 8, 8, "value")
    assert set(preisach_layers(model)) == {0}
    keys = {k for k in model.state_dict() if ".preisach." in k}
    assert keys == {
        f"model.layers.0.self_attn.preisach.{p}" for p in ("drive", "alpha", "gap", "density", "gate")
    }
    assert {id(p) for p in pal.parameters()} <= {id(p) for p in model.parameters()}
    assert model.config._attn_implementation == PREISACH
    settings = getattr(model.config, CONFIG_KEY)
    assert settings["layers"] == [0] and settings["n_relays"] == 8 and settings["attn_fallback"] == "sdpa"
    assert settings["seed"] == 3 and settings["variant"] == "value"
    model.to(torch.float64)
    assert pal.alpha.dtype == torch.float64
    assert _logits(model, input_ids=_ids()).dtype == torch.float64


def test_non_preisach_layers_keep_their_previous_implementation():
    """Hybrid: Preisach in layer 1 only; layer 0 still runs sdpa, so its output is unchanged."""
    model = _model("llama")
    ids = _ids()
    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True, use_cache=False)
    add_preisach(model, layers=[1], n_relays=8)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
    assert torch.equal(out.hidden_states[1], ref.hidden_states[1])  # after layer 0
    assert not torch.allclose(out.logits, ref.logits)  # layer 1 changed
    model.set_attn_implementation("sdpa")  # every layer back to softmax; the parameters stay
    assert torch.equal(_logits(model, input_ids=ids), ref.logits)
    assert set(preisach_layers(model)) == {1}


# ---------------------------------------------------------------------------------------- masks and padding
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layers", [[0], "all"])
def test_padded_batch_matches_the_unpadded_rows(family, layers):
    model = add_preisach(_model(family), layers=layers, n_relays=8)
    ids = _ids()
    mask, pos = _padded_batch(ids)
    out = _logits(model, input_ids=ids, attention_mask=mask, position_ids=pos)
    assert torch.isfinite(out).all()
    for row in range(2):
        real = mask[row].bool()
        alone = _logits(model, input_ids=ids[row : row + 1, real])
        torch.testing.assert_close(out[row, real], alone[0], atol=1e-5, rtol=0)


def test_value_drive_needs_no_position_ids_for_left_padding():
    """drive_source="value": the relays never see RoPE, so a left-padded row (default position_ids) keeps the
    unpadded row's Preisach output; with the key drive only the real positions keep it."""
    ids = _ids()
    mask, _ = _padded_batch(ids, right=0)
    # the softmax layers of a hybrid see RoPE only through q·k (relative), so a shift leaves them unchanged too
    for layers in ("all", [0]):
        model = add_preisach(_model("llama"), layers=layers, n_relays=8, drive_source="value")
        out = _logits(model, input_ids=ids, attention_mask=mask)
        alone = _logits(model, input_ids=ids[1:, 4:])
        torch.testing.assert_close(out[1, 4:], alone[0], atol=1e-5, rtol=0)
    keyed = add_preisach(_model("llama"), layers="all", n_relays=8)
    out = _logits(keyed, input_ids=ids, attention_mask=mask)
    assert not torch.allclose(out[1, 4:], _logits(keyed, input_ids=ids[1:, 4:])[0], atol=1e-3)


def test_static_cache_offset_mask_drops_the_unseen_keys():
    """A causal mask with keys past the current position (static cache) equals the call on the kept keys."""
    from transformers.masking_utils import sdpa_mask

    module = _stub()
    q, k, v = _qkv(n_q=5, n_k=20)
    pad = torch.ones(2, 20, dtype=torch.bool)
    pad[0, :2] = False
    mask = sdpa_mask(2, 5, 20, q_offset=6, attention_mask=pad)  # query i at position 6 + i: keys 0..10 used
    out, w = preisach_attention_forward(module, q, k, v, mask)
    assert w is None and out.shape == (2, 5, 4, 8) and out.is_contiguous()
    ref = module.preisach(q, k[:, :, :11], v[:, :, :11], key_padding_mask=pad[:, :11])
    torch.testing.assert_close(out, ref.transpose(1, 2))
    # a decode step (one query) over a static cache: the query aligns to its own key, not to the last slot
    mask1 = sdpa_mask(2, 1, 20, q_offset=9, attention_mask=pad)
    out1, _ = preisach_attention_forward(module, q[:, :, :1], k, v, mask1)
    ref1 = module.preisach(q[:, :, :1], k[:, :, :10], v[:, :, :10], key_padding_mask=pad[:, :10])
    torch.testing.assert_close(out1, ref1.transpose(1, 2))
    assert out1.abs().sum() > 0


def test_one_real_token_then_right_padding_is_causal():
    """Every query row sees only key 0: identical rows, but a causal mask (the other keys are padding)."""
    from transformers.masking_utils import sdpa_mask

    module = _stub()
    q, k, v = _qkv(n_q=4, n_k=4)
    pad = torch.tensor([[True, False, False, False], [True, True, True, True]])
    mask = sdpa_mask(2, 4, 4, attention_mask=pad, allow_is_causal_skip=False)
    out, _ = preisach_attention_forward(module, q, k, v, mask)
    ref = module.preisach(q, k, v, key_padding_mask=pad)
    torch.testing.assert_close(out, ref.transpose(1, 2))


# ----------------------------------------------------------------------------------------------- refusals
def test_non_causal_use_is_refused():
    model = add_preisach(_model("llama"), layers=[0], n_relays=8)
    model.model.layers[0].self_attn.is_causal = False
    with pytest.raises(ValueError, match="not causal.*bidirectional"):
        _logits(model, input_ids=_ids())
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="is_causal=False"):
        preisach_attention_forward(_stub(), q, k, v, None, is_causal=False)
    with pytest.raises(ValueError, match="is_causal=False"):
        preisach_attention_forward(_stub(causal=False), q, k, v, None)
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[0, -1] = False
    bidir = pad[:, None, None, :].expand(2, 1, 6, 6)  # an encoder's key-padding mask
    with pytest.raises(ValueError, match="bidirectional"):
        preisach_attention_forward(_stub(), q, k, v, bidir)


def test_unsupported_masks_and_settings_are_refused():
    q, k, v = _qkv(n_q=6, n_k=6)
    packed = torch.tensor([0, 0, 0, 1, 1, 1])
    block = (packed[:, None] == packed[None, :]) & torch.ones(6, 6, dtype=torch.bool).tril()
    with pytest.raises(ValueError, match="neither causal nor key-padding"):
        preisach_attention_forward(_stub(), q, k, v, block[None, None].expand(2, 1, 6, 6))
    pos = torch.cat([torch.arange(3), torch.arange(3)])[None]
    with pytest.raises(ValueError, match="packed sequences"):
        preisach_attention_forward(_stub(), q[:1], k[:1], v[:1], None, position_ids=pos)
    with pytest.raises(ValueError, match="softcap"):
        preisach_attention_forward(_stub(), q, k, v, None, softcap=30.0)
    with pytest.raises(ValueError, match="attention_dropout"):
        preisach_attention_forward(_stub(), q, k, v, None, dropout=0.1)
    # the same through a model: packed position_ids -> block-diagonal sdpa mask
    model = add_preisach(_model("llama"), layers=[1], n_relays=8)
    ids = _ids(batch=1, n=12)
    with pytest.raises(ValueError, match=r"hff_preisach \(layer 1\).*neither causal nor key-padding"):
        _logits(model, input_ids=ids, position_ids=torch.cat([torch.arange(7), torch.arange(5)])[None])
    # a sliding window shorter than the sequence
    mistral = add_preisach(_model("mistral", sliding_window=4), layers=[0], n_relays=8)
    with pytest.raises(ValueError, match="sliding-window"):
        _logits(mistral, input_ids=_ids())


def test_bad_arguments_fail_early():
    model = _model("llama")
    for layers, match in (
        ([2], r"in \[0, 2\)"), ([-1], r"in \[0, 2\)"), ([0.5], "integer"), ([True], "integer"),
        ([], "empty"), ([0, 0], "duplicates"), ("some", "'all'"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            add_preisach(model, layers=layers)
    with pytest.raises(ValueError, match="variant"):
        add_preisach(model, variant="dense")
    with pytest.raises(ValueError, match="drive_source"):
        add_preisach(model, drive_source="query")
    with pytest.raises(ValueError, match="attn_fallback='eager'"):
        add_preisach(model, attn_fallback="eager")
    assert not preisach_layers(model) and model.config._attn_implementation == "sdpa"  # nothing half-done
    add_preisach(model, layers=[0])
    with pytest.raises(ValueError, match="already"):
        add_preisach(model, layers=[1])
    with pytest.raises(ValueError, match="temperature"):
        set_preisach_temperature(model, 0.0)


def test_name_without_add_preisach_is_refused():
    model = _model("llama")
    register_preisach()
    model.set_attn_implementation(PREISACH)
    with pytest.raises(ValueError, match="add_preisach"):
        _logits(model, input_ids=_ids())


def test_eager_model_gets_sdpa_in_the_other_layers(caplog):
    model = _model("llama", attn="eager")
    with torch.no_grad():
        ref = model(input_ids=_ids(), output_hidden_states=True, use_cache=False)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        add_preisach(model, layers=[1], n_relays=8)
    assert getattr(model.config, CONFIG_KEY)["attn_fallback"] == "sdpa"
    assert any("'eager'" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    with torch.no_grad():
        out = model(input_ids=_ids(), output_hidden_states=True, use_cache=False)
    torch.testing.assert_close(out.hidden_states[1], ref.hidden_states[1], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- training
def test_trainer_steps_update_the_preisach_parameters(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = add_preisach(_model("llama"), layers=[0], n_relays=8)
    pal = model.model.layers[0].self_attn.preisach
    before = {k: v.detach().clone() for k, v in pal.named_parameters()}
    ids = _ids(batch=8, n=16).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-2,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and all(torch.isfinite(torch.tensor(x)) for x in losses)
    for name, value in pal.named_parameters():
        assert not torch.equal(before[name], value.detach()), name


@pytest.mark.parametrize("family,variant", [("qwen2", "density"), ("mistral", "value")])
def test_gradients_reach_every_preisach_parameter(family, variant):
    model = add_preisach(_model(family), layers="all", n_relays=8, variant=variant).train()
    ids = _ids()
    mask, pos = _padded_batch(ids)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, labels=ids.masked_fill(mask == 0, -100))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for i, pal in preisach_layers(model).items():
        for name, p in pal.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (i, name)


# ------------------------------------------------------------------------------------------- save / reload
@pytest.mark.parametrize(
    "family,layers,variant",
    [("llama", [0], "value"), ("qwen2", "all", "density"), ("mistral", [1], "density")],
)
def test_save_and_reload_round_trip_is_exact(tmp_path, family, layers, variant):
    from transformers import AutoModelForCausalLM

    model = add_preisach(_model(family), layers=layers, n_relays=8, variant=variant, seed=5).train()
    # train a step so the saved values differ from a fresh add_preisach
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = _ids()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    model.eval()
    mask, pos = _padded_batch(ids)
    ref = _logits(model, input_ids=ids, attention_mask=mask, position_ids=pos)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())[CONFIG_KEY]
    assert saved["layers"] == ([0, 1] if layers == "all" else layers) and saved["variant"] == variant

    loaded = load_preisach_model(tmp_path)
    assert loaded.config._attn_implementation == PREISACH
    assert set(preisach_layers(loaded)) == set(preisach_layers(model))
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    out = _logits(loaded, input_ids=ids, attention_mask=mask, position_ids=pos)
    assert torch.equal(out, ref)

    # a plain from_pretrained drops the Preisach weights; asking for hff_preisach then fails with a pointer
    plain = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=PREISACH)
    with pytest.raises(ValueError, match="load_preisach_model"):
        _logits(plain, input_ids=ids)


def test_temperature_is_saved_with_the_config(tmp_path):
    model = add_preisach(_model("llama"), layers="all", n_relays=8, relay_mode="soft", temperature=0.5)
    set_preisach_temperature(model, 0.05)
    assert all(p.temperature == 0.05 for p in preisach_layers(model).values())
    ids = _ids()
    ref = _logits(model, input_ids=ids)
    model.save_pretrained(tmp_path)
    loaded = load_preisach_model(tmp_path)
    assert all(p.temperature == 0.05 and p.relay_mode == "soft" for p in preisach_layers(loaded).values())
    assert torch.equal(_logits(loaded, input_ids=ids), ref)


def test_load_refuses_a_checkpoint_without_preisach(tmp_path):
    _model("llama").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not saved after add_preisach"):
        load_preisach_model(tmp_path)


# ---------------------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("family,layers", [("llama", [0]), ("qwen2", "all")])
def test_generate_with_cache_matches_recomputation_and_unpadded_rows(family, layers):
    model = add_preisach(_model(family), layers=layers, n_relays=8)
    ids = _ids(n=10, seed=3)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding, as generate expects
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    out = model.generate(ids, attention_mask=mask, **kw)
    assert out.shape == (2, 15)
    assert torch.equal(model.generate(ids, attention_mask=mask, use_cache=False, **kw), out)  # O(n) decode
    alone = model.generate(ids[1:, 4:], **kw)
    assert torch.equal(alone[0, 6:], out[1, 10:])
    static = model.generate(ids, attention_mask=mask, cache_implementation="static", **kw)
    assert torch.equal(static, out)
