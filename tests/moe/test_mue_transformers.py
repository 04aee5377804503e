"""Complete-muE on real transformers models: targets read from the five MoE families' configs, the config
transform, exactly-one-group coverage, plan init of fused expert tensors, folded vs hooked multipliers (logits and
one AdamW step), save/reload, tied embeddings, Muon groups, and a real Trainer with --hff_mue."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from hf_fundamentals.integrations.moe.config import (
    complete_mue_config,
    dense_proxy_from_config,
    moe_target_from_config,
    plan_from_config,
)
from hf_fundamentals.integrations.moe.model import (
    apply_mue,
    classify_mue_parameters,
    load_mue_model,
    mue_forward_multipliers,
)
from hf_fundamentals.integrations.moe.optimizer import mue_param_groups
from hf_fundamentals.moe import TransferOptions, transfer_plan

COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
FAMILIES = {
    "mixtral": dict(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(
        intermediate_size=48,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=24,
        num_experts=4,
        num_experts_per_tok=2,
        mlp_only_layers=[0],
    ),
    "qwen3_moe": dict(
        intermediate_size=48, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2, head_dim=8
    ),
    "olmoe": dict(intermediate_size=16, num_experts=4, num_experts_per_tok=2, eos_token_id=2, pad_token_id=1),
    "deepseek_v3": dict(
        intermediate_size=48,
        moe_intermediate_size=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        n_group=2,
        topk_group=1,
        first_k_dense_replace=1,
        q_lora_rank=16,
        kv_lora_rank=16,
        qk_rope_head_dim=4,
        qk_nope_head_dim=4,
        v_head_dim=8,
    ),
    "llama": dict(intermediate_size=64),
}
MOE = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3")
FOLDED = ("expert_down", "shared_down", "dense_down", "lm_head")


def _config(model_type, **kw):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **{**COMMON, **FAMILIES[model_type], **kw})


def _proxy_config(tied=False):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=96,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        tie_word_embeddings=tied,
    )


def _plan(cfg, *, fold=True, tied=False, lr=1e-2):
    proxy = dense_proxy_from_config(
        _proxy_config(tied),
        lr=lr,
        weight_decay=0.1,
        init_std=0.05,
        betas=(0.9, 0.95),
        batch_tokens=64,
        steps=100,
    )
    target = moe_target_from_config(cfg, batch_tokens=128, steps=100)
    return transfer_plan(proxy, target, TransferOptions(fold_multipliers=fold))


def _build(cfg, plan, seed=0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_config(complete_mue_config(cfg, plan))
    return apply_mue(model, plan, seed=seed)


def _batch(seed=0, vocab=96):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (2, 12), generator=g)


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def _adamw_step(model, plan, ids):
    opt = torch.optim.AdamW(mue_param_groups(model, plan))
    logits = model(ids).logits
    F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1)).backward()
    opt.step()
    opt.zero_grad()


# ---------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "model_type, want",
    [
        ("mixtral", dict(n_experts=4, n_active=2, expert_width=16, shared_width=0, dense_ffn_width=None)),
        ("qwen2_moe", dict(n_experts=4, n_active=2, expert_width=16, shared_width=24, dense_ffn_width=48)),
        ("qwen3_moe", dict(n_experts=4, n_active=2, expert_width=16, shared_width=0, dense_ffn_width=None)),
        ("olmoe", dict(n_experts=4, n_active=2, expert_width=16, shared_width=0, dense_ffn_width=None)),
        (
            "deepseek_v3",
            dict(
                n_experts=4,
                n_active=2,
                expert_width=16,
                shared_width=16,
                dense_ffn_width=48,
                n_group=2,
                topk_group=1,
            ),
        ),
        ("llama", dict(n_experts=1, n_active=1, expert_width=64, shared_width=0, dense_ffn_width=None)),
    ],
)
def test_target_read_from_each_family(model_type, want):
    target = moe_target_from_config(_config(model_type), batch_tokens=1024, steps=10)
    assert target.d == 32 and target.batch_tokens == 1024 and target.steps == 10
    for key, value in want.items():
        assert getattr(target, key) == value, key


def test_qwen_dense_layers_come_from_the_sparse_step():
    target = moe_target_from_config(_config("qwen3_moe", decoder_sparse_step=2), batch_tokens=8, steps=1)
    assert target.dense_ffn_width == 48  # layer 0 is dense: (0 + 1) % 2 != 0


def test_dense_proxy_from_config():
    proxy = dense_proxy_from_config(
        _proxy_config(tied=True), lr=1e-3, weight_decay=0.1, init_std=0.02, batch_tokens=64, steps=10
    )
    assert (proxy.d, proxy.ffn_width, proxy.tied_embeddings) == (16, 32, True)
    with pytest.raises(ValueError, match="proxy must be a dense model"):
        dense_proxy_from_config(
            _config("mixtral"), lr=1e-3, weight_decay=0.1, init_std=0.02, batch_tokens=64, steps=10
        )


def test_unsupported_configs_are_refused_by_name():
    from transformers import GPT2Config

    with pytest.raises(ValueError, match=r"'gpt2' is not supported; supported: MoE: mixtral, qwen2_moe"):
        moe_target_from_config(GPT2Config(), batch_tokens=8, steps=1)
    with pytest.raises(ValueError, match="no MoE layer"):
        moe_target_from_config(_config("qwen3_moe", mlp_only_layers=[0, 1]), batch_tokens=8, steps=1)
    with pytest.raises(ValueError, match="n_shared_experts = 0 is not supported"):
        moe_target_from_config(_config("deepseek_v3", n_shared_experts=0), batch_tokens=8, steps=1)


def test_complete_mue_config_sets_routing_and_stores_the_plan():
    cfg = _config("qwen3_moe")
    plan = _plan(cfg)
    new = complete_mue_config(cfg, plan)
    assert cfg.norm_topk_prob is False and new.norm_topk_prob is True  # a copy
    assert plan_from_config(new) == plan and not hasattr(cfg, "hff_mue")
    assert new.hff_mue == json.loads(plan.to_json())  # JSON-ready: equal before and after save_pretrained

    mixtral = complete_mue_config(_config("mixtral"), _plan(_config("mixtral")))
    assert "norm_topk_prob" not in mixtral.to_dict()  # Mixtral always renormalizes; no field is invented

    ds = _config("deepseek_v3")
    assert ds.routed_scaling_factor == 2.5
    assert complete_mue_config(ds, _plan(ds, fold=False)).routed_scaling_factor == 2.0  # R = a
    assert complete_mue_config(ds, _plan(ds, fold=True)).routed_scaling_factor == 1.0  # A*R in the weights

    with pytest.raises(ValueError, match="not the plan's target"):
        complete_mue_config(_config("qwen3_moe", moe_intermediate_size=8), plan)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        complete_mue_config(_config("qwen3_moe", tie_word_embeddings=True), plan)


# ------------------------------------------------------------------------------------------- groups
EXPECTED_GROUPS = {
    "mixtral": {"embedding", "attention", "router", "expert_gate_up", "expert_down", "lm_head", "vector"},
    "qwen2_moe": {
        "embedding", "attention", "router", "expert_gate_up", "expert_down", "shared_up", "shared_down",
        "shared_gate", "dense_up", "dense_down", "lm_head", "vector",
    },
    "qwen3_moe": {"embedding", "attention", "router", "expert_gate_up", "expert_down", "lm_head", "vector"},
    "olmoe": {"embedding", "attention", "router", "expert_gate_up", "expert_down", "lm_head", "vector"},
    "deepseek_v3": {
        "embedding", "attention", "router", "expert_gate_up", "expert_down", "shared_up", "shared_down",
        "dense_up", "dense_down", "lm_head", "vector",
    },
    "llama": {"embedding", "attention", "dense_up", "dense_down", "lm_head", "vector"},
}  # fmt: skip


@pytest.mark.parametrize("model_type", [*MOE, "llama"])
def test_every_trainable_parameter_lands_in_exactly_one_group(model_type):
    cfg = _config(model_type)
    plan = _plan(cfg)
    model = _build(cfg, plan)
    model.model.embed_tokens.weight.requires_grad_(True)
    model.model.norm.weight.requires_grad_(False)  # frozen parameters are left out
    groups = mue_param_groups(model, plan)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert {g["name"] for g in groups} == EXPECTED_GROUPS[model_type]
    for g in groups:
        rule = plan.groups[g["name"]]
        assert g["lr"] == rule.lr and g["eps"] == rule.eps and g["betas"] == plan.global_hparams.betas
        assert g["weight_decay"] == (0.0 if g["name"] == "vector" else rule.weight_decay)
    names = classify_mue_parameters(model)
    if model_type == "llama":
        assert names["model.layers.1.mlp.down_proj.weight"] == "dense_down"
    else:
        assert names["model.layers.1.mlp.gate.weight"] == "router"
        assert names["model.layers.1.mlp.experts.gate_up_proj"] == "expert_gate_up"
        assert names["model.layers.1.mlp.experts.down_proj"] == "expert_down"
    assert "model.norm.weight" not in names
    assert not any("e_score_correction_bias" in n for n in names)


def test_the_groups_name_the_right_tensors():
    cfg = _config("qwen2_moe")
    names = classify_mue_parameters(_build(cfg, _plan(cfg)))
    assert names["model.layers.1.mlp.shared_expert.down_proj.weight"] == "shared_down"
    assert names["model.layers.1.mlp.shared_expert.gate_proj.weight"] == "shared_up"
    assert names["model.layers.1.mlp.shared_expert_gate.weight"] == "shared_gate"
    assert names["model.layers.0.mlp.down_proj.weight"] == "dense_down"
    assert names["model.layers.0.self_attn.q_proj.bias"] == "vector"
    assert names["model.layers.0.self_attn.o_proj.weight"] == "attention"
    assert names["lm_head.weight"] == "lm_head" and names["model.embed_tokens.weight"] == "embedding"


# --------------------------------------------------------------------------------------------- init
@pytest.mark.parametrize("model_type", ["qwen2_moe", "deepseek_v3", "mixtral"])
def test_init_std_of_fused_experts_and_every_group_matches_the_plan(model_type):
    cfg = _config(model_type)
    plan = _plan(cfg)
    model = _build(cfg, plan)
    names = classify_mue_parameters(model)
    params = dict(model.named_parameters())
    by_group: dict[str, list[torch.Tensor]] = {}
    for name, group in names.items():
        by_group.setdefault(group, []).append(params[name].detach().flatten())
    for group, tensors in by_group.items():
        x = torch.cat(tensors)
        if group == "vector":
            assert all(((t == 1) | (t == 0)).all() for t in tensors)
            continue
        want = plan.groups[group].init_std
        tol = 5 / math.sqrt(2 * x.numel())  # 5 standard errors of a std estimate
        assert x.std().item() == pytest.approx(want, rel=tol), group
        assert abs(x.mean().item()) < 5 * want / math.sqrt(x.numel()), group
    experts = model.model.layers[1].mlp.experts
    assert experts.gate_up_proj.shape == (4, 32, 32) and experts.down_proj.shape == (4, 32, 16)
    # the plan's down init differs from the up init (sqrt(H_act/d) rule and the folded A*R): not HF's 0.02
    assert plan.groups["expert_down"].init_std != pytest.approx(
        plan.groups["expert_gate_up"].init_std, rel=0.05
    )
    assert experts.down_proj.std().item() == pytest.approx(plan.groups["expert_down"].init_std, rel=0.1)


def test_norms_are_one_and_biases_zero_after_init():
    cfg = _config("qwen2_moe")
    model = _build(cfg, _plan(cfg))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(3.0)
    model = apply_mue(model, _plan(cfg), seed=1)
    assert torch.equal(model.model.layers[0].input_layernorm.weight, torch.ones(32))
    assert torch.equal(model.model.layers[0].self_attn.q_proj.bias, torch.zeros(32))


def test_init_is_seeded_and_the_fold_is_in_the_init():
    cfg = _config("qwen2_moe")
    folded, unfolded = _plan(cfg, fold=True), _plan(cfg, fold=False)
    a, b = _build(cfg, folded, seed=3), _build(cfg, folded, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    u = _build(cfg, unfolded, seed=3)
    names = classify_mue_parameters(a)
    pa, pu = dict(a.named_parameters()), dict(u.named_parameters())
    for name, group in names.items():
        c = folded.groups[group].fold or 1.0
        assert (c != 1.0) == (group in FOLDED), group
        torch.testing.assert_close(pa[name], c * pu[name], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- folded vs forward hooks
def _fold_copy(cfg, hooked, folded_plan):
    """A model under the folded plan holding the hooked model's weights times each group's c."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(complete_mue_config(cfg, folded_plan))
    model.load_state_dict(hooked.state_dict())
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, group in classify_mue_parameters(model).items():
            params[name].mul_(folded_plan.groups[group].fold or 1.0)
    return apply_mue(model, folded_plan, init=False)


@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "qwen2_moe", "deepseek_v3"])
def test_folded_and_hooked_multipliers_are_the_same_model_before_and_after_an_adamw_step(model_type):
    cfg = _config(model_type)
    hooked_plan, folded_plan = _plan(cfg, fold=False), _plan(cfg, fold=True)
    hooked = _build(cfg, hooked_plan)
    folded = _fold_copy(cfg, hooked, folded_plan)

    hooks = mue_forward_multipliers(hooked)
    f = hooked_plan.forward
    ar = f.A_routed * (1.0 if model_type == "deepseek_v3" else f.R)  # DeepSeek carries R in its router
    assert hooks["model.layers.1.mlp.experts"] == pytest.approx(ar)
    assert hooks["lm_head"] == pytest.approx(f.readout)
    assert mue_forward_multipliers(folded) == {}  # untied: everything folded
    if model_type == "deepseek_v3":
        assert hooked.model.layers[1].mlp.gate.routed_scaling_factor == 2.0
        assert folded.model.layers[1].mlp.gate.routed_scaling_factor == 1.0

    ids = _batch()
    before = _logits(hooked, ids)
    torch.testing.assert_close(_logits(folded, ids), before, rtol=1e-4, atol=1e-5)
    _adamw_step(hooked, hooked_plan, ids)
    _adamw_step(folded, folded_plan, ids)
    after = _logits(hooked, ids)
    assert (after - before).abs().max() > 1e-3  # the step moved the model
    torch.testing.assert_close(_logits(folded, ids), after, rtol=1e-4, atol=1e-5)

    # the hooks are doing the work: without them the hooked model is another function
    for handle in hooked._hff_mue_hooks:
        handle.remove()
    assert (_logits(hooked, ids) - after).abs().max() > 1e-3


def test_a_wrong_fold_is_caught():
    """Folding A*R into init but leaving AdamW's eps/wd unscaled is not the same model after a step."""
    cfg = _config("qwen3_moe")
    hooked_plan, folded_plan = _plan(cfg, fold=False), _plan(cfg, fold=True)
    hooked = _build(cfg, hooked_plan)
    folded = _fold_copy(cfg, hooked, folded_plan)
    ids = _batch()
    _adamw_step(hooked, hooked_plan, ids)
    opt = torch.optim.AdamW(mue_param_groups(folded, hooked_plan))  # unfolded lrs on folded weights
    logits = folded(ids).logits
    F.cross_entropy(logits[:, :-1].reshape(-1, 96), ids[:, 1:].reshape(-1)).backward()
    opt.step()
    assert (_logits(folded, ids) - _logits(hooked, ids)).abs().max() > 1e-3


# ------------------------------------------------------------------------------------- save / reload
def test_save_pretrained_reload_and_apply_mue_give_identical_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = _config("qwen2_moe")
    plan = _plan(cfg, fold=False)
    model = _build(cfg, plan)
    ids = _batch()
    want = _logits(model, ids)
    model.save_pretrained(tmp_path)

    plain = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert plain.config.norm_topk_prob is True and plan_from_config(plain.config) == plan
    assert plain.config.hff_mue == model.config.hff_mue
    assert (_logits(plain, ids) - want).abs().max() > 1e-3  # hooks are not saved
    apply_mue(plain, init=False)  # the plan comes from config.hff_mue
    torch.testing.assert_close(_logits(plain, ids), want, rtol=0, atol=0)
    apply_mue(plain, plan, init=False)  # idempotent: hooks are replaced, not stacked
    torch.testing.assert_close(_logits(plain, ids), want, rtol=0, atol=0)

    torch.testing.assert_close(_logits(load_mue_model(str(tmp_path)), ids), want, rtol=0, atol=0)


def test_apply_mue_refuses_what_it_cannot_honour():
    from transformers import AutoModelForCausalLM

    cfg = _config("qwen3_moe")
    plan = _plan(cfg)
    raw = AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(ValueError, match="carries no Complete-muE plan"):
        apply_mue(raw, plan, init=False)
    transformed = AutoModelForCausalLM.from_config(complete_mue_config(cfg, plan))
    transformed.model.layers[1].mlp.gate.norm_topk_prob = False  # a router that disagrees with its config
    with pytest.raises(ValueError, match=r"layers\.1\.mlp\.gate\.norm_topk_prob is False"):
        apply_mue(transformed, init=False)
    with pytest.raises(ValueError, match="no plan given"):
        apply_mue(raw, init=False)
    with pytest.raises(ValueError, match="not the plan's target"):
        apply_mue(raw, _plan(_config("qwen2_moe")))
    model = _build(cfg, plan)
    with pytest.raises(ValueError, match="different plan"):
        apply_mue(model, _plan(cfg, lr=2e-2), init=False)
    ds = _config("deepseek_v3")
    built = _build(ds, _plan(ds, fold=False))
    built.model.layers[1].mlp.gate.routed_scaling_factor = 2.5  # the shipped value, not the plan's R
    with pytest.raises(ValueError, match=r"routed_scaling_factor = 2.5 \(the plan needs 2\)"):
        apply_mue(built, init=False)

    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(_build(cfg, plan), LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="lora_A"):
        classify_mue_parameters(lora)


# -------------------------------------------------------------------------------------------- tied
def test_tied_embeddings_keep_the_readout_as_a_forward_multiplier():
    cfg = _config("qwen3_moe", tie_word_embeddings=True)
    plan = _plan(cfg, tied=True, fold=True)
    assert plan.forward_in_model.readout == pytest.approx(0.5)  # rho_d = 2
    model = _build(cfg, plan)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    groups = mue_param_groups(model, plan)
    holding = [g["name"] for g in groups for p in g["params"] if p is model.lm_head.weight]
    assert holding == ["embedding"] and "lm_head" not in {g["name"] for g in groups}
    assert mue_forward_multipliers(model) == {"lm_head": pytest.approx(0.5)}
    w = model.model.embed_tokens.weight
    assert w.std().item() == pytest.approx(plan.groups["embedding"].init_std, rel=0.1)
    ids = _batch()
    with torch.no_grad():
        hidden = model.model(ids).last_hidden_state
        torch.testing.assert_close(model(ids).logits, 0.5 * hidden @ w.T, rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------------------------- muon
def _muon_step(model, plan, ids):
    from hf_fundamentals.optim import MuonAdamW

    g = plan.global_hparams
    opt = MuonAdamW(
        mue_param_groups(model, plan, "muon"), lr=g.lr, betas=g.betas, eps=g.eps, ns_dtype="float32"
    )
    logits = model(ids).logits
    F.cross_entropy(logits[:, :-1].reshape(-1, 96), ids[:, 1:].reshape(-1)).backward()
    opt.step()
    return opt


def test_muon_groups_keep_routers_on_adamw_and_folded_equals_hooked():
    cfg = _config("qwen2_moe")
    hooked_plan, folded_plan = _plan(cfg, fold=False), _plan(cfg, fold=True)
    hooked = _build(cfg, hooked_plan)
    folded = _fold_copy(cfg, hooked, folded_plan)
    ids = _batch()
    opt = _muon_step(hooked, hooked_plan, ids)
    g = hooked_plan.global_hparams
    by_name = {}
    for group in opt.param_groups:
        by_name.setdefault(group["name"], []).append(group)
    for name in ("embedding", "lm_head", "vector", "router", "shared_gate"):
        assert [x["use_muon"] for x in by_name[name]] == [False]
        assert by_name[name][0]["lr"] == hooked_plan.groups[name].lr
    for name in ("attention", "expert_gate_up", "expert_down", "shared_up", "shared_down", "dense_up"):
        assert all(x["use_muon"] and x["lr"] == g.lr for x in by_name[name])
    assert [x["split_sizes"] for x in by_name["expert_gate_up"]] == [(16, 16)]
    ids_count = sum(len(x["params"]) for x in opt.param_groups)
    assert ids_count == sum(1 for p in hooked.parameters() if p.requires_grad)

    fopt = _muon_step(folded, folded_plan, ids)
    down = [x for x in fopt.param_groups if x["name"] == "expert_down"][0]
    c = folded_plan.groups["expert_down"].fold
    assert down["lr"] == pytest.approx(g.lr * c) and down["weight_decay"] == pytest.approx(g.weight_decay / c)
    torch.testing.assert_close(_logits(folded, ids), _logits(hooked, ids), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------- Trainer
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_trainer_with_hff_mue_trains_with_the_plan_groups(tmp_path, optimizer):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from hf_fundamentals.integrations.arguments import HffArguments
    from hf_fundamentals.integrations.trainer import trainer_extras

    cfg = _config("qwen3_moe")
    plan = _plan(cfg, fold=False)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    muon = {"hff_optimizer": "muon", "muon_ns_dtype": "float32"} if optimizer == "muon" else {}
    hff = HffArguments(hff_mue=str(plan_path), mue_apply=True, **muon)
    targs = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=5,
    )  # fmt: skip
    extras = trainer_extras(hff, targs)
    ids = torch.randint(3, 96, (12, 16), generator=torch.Generator().manual_seed(0)).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    model = AutoModelForCausalLM.from_config(cfg)  # raw: --mue_apply transforms it when the trainer is built
    trainer = extras.trainer_class(Trainer)(
        model=model, args=targs, train_dataset=data, **extras.trainer_kwargs()
    )
    assert model.config.norm_topk_prob is True and model.model.layers[0].mlp.gate.norm_topk_prob is True
    assert mue_forward_multipliers(model)["lm_head"] == pytest.approx(plan.forward.readout)
    down = model.model.layers[0].mlp.experts.down_proj
    assert down.std().item() == pytest.approx(plan.groups["expert_down"].init_std, rel=0.15)
    trainer.train()
    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    if optimizer == "adamw":
        assert isinstance(opt, torch.optim.AdamW)
        assert lrs == {name: plan.groups[name].lr for name in EXPECTED_GROUPS["qwen3_moe"]}
    else:
        from hf_fundamentals.optim import MuonAdamW

        assert isinstance(opt, MuonAdamW)
        on_muon = {g["name"] for g in opt.param_groups if g["use_muon"]}
        assert on_muon == {"attention", "expert_gate_up", "expert_down"}
        assert lrs == {
            name: plan.global_hparams.lr if name in on_muon else plan.groups[name].lr
            for name in EXPECTED_GROUPS["qwen3_moe"]
        }
    assert len({round(v, 12) for v in lrs.values()}) > 1  # per-group lrs, not the Trainer's 1e-3
    assert trainer.state.global_step == 3
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_hff_mue_flags():
    from hf_fundamentals.integrations.arguments import HffArguments

    with pytest.raises(ValueError, match="--mue_apply set but --hff_mue is not"):
        HffArguments(mue_apply=True)
    with pytest.raises(ValueError, match="no such file"):
        HffArguments(hff_mue="/nonexistent/plan.json")


def test_extras_apply_puts_a_built_trainers_model_under_the_plan(tmp_path):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from hf_fundamentals.integrations.arguments import HffArguments
    from hf_fundamentals.integrations.moe.optimizer import CompleteMueOptimizerFactory
    from hf_fundamentals.integrations.trainer import trainer_extras

    cfg = _config("mixtral")
    plan = _plan(cfg, fold=False)
    (tmp_path / "plan.json").write_text(plan.to_json())
    targs = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True)
    model = AutoModelForCausalLM.from_config(cfg)
    trainer = Trainer(model=model, args=targs)
    extras = trainer_extras(HffArguments(hff_mue=str(tmp_path / "plan.json"), mue_apply=True), targs)
    extras.apply(trainer)
    assert trainer.optimizer_cls_and_kwargs[0] is CompleteMueOptimizerFactory
    assert mue_forward_multipliers(model)["model.layers.0.mlp.experts"] == pytest.approx(2.0)  # A = 1, R = 2
    assert plan_from_config(model.config) == plan


def test_a_readout_hook_refuses_liger_fused_cross_entropy():
    from types import SimpleNamespace

    from hf_fundamentals.integrations.moe.optimizer import CompleteMueCallback

    cfg = _config("qwen3_moe")
    plan = _plan(cfg, fold=False)
    model = _build(cfg, plan)
    callback = CompleteMueCallback(plan)
    callback.on_init_end(SimpleNamespace(use_liger_kernel=False), None, None, model=model)  # fine
    with pytest.raises(ValueError, match="--use_liger_kernel"):
        callback.on_init_end(SimpleNamespace(use_liger_kernel=True), None, None, model=model)
    folded = _plan(cfg, fold=True)  # untied and folded: no readout hook, nothing to bypass
    CompleteMueCallback(folded, init=True).on_init_end(
        SimpleNamespace(use_liger_kernel=True), None, None, model=_build(cfg, folded)
    )


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_top1_routing_under_the_plan_gives_the_router_no_gradient_and_warns(family, caplog):
    """Normalized top-1 makes every routed weight exactly 1: the LM loss leaves the router untouched. The
    config transform says so, and stays quiet once a router auxiliary loss is on (which does train it)."""
    import logging

    def router_grad(cfg):
        plan = _plan(cfg)
        with caplog.at_level(logging.WARNING, logger="hf_fundamentals.mue"):
            caplog.clear()
            model = _build(cfg, plan)
            warned = "gives the router no gradient" in caplog.text
        ids = _batch()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        grads = [m.weight.grad for name, m in model.named_modules() if name.endswith("mlp.gate")]
        assert grads, "no router found"
        return warned, max(float(g.abs().max()) if g is not None else 0.0 for g in grads)

    warned, top2 = router_grad(_config(family))  # top-2 learns from the LM loss alone
    assert not warned and top2 > 1e-4
    warned, grad = router_grad(_config(family, num_experts_per_tok=1))
    assert warned and grad < 1e-6 * top2  # zero up to rounding in p / sum(p)
    with_aux = _config(family, num_experts_per_tok=1, output_router_logits=True, router_aux_loss_coef=0.01)
    warned, grad = router_grad(with_aux)
    assert not warned and grad > 1e-3 * top2
