"""Role-based routing on real transformers models built from tiny configs (and PEFT LoRA on top)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_fundamentals.optim import MuonAdamW, muon_param_groups, route_parameters, routing_table

COMMON = dict(
    vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)


def _by_name(model):
    return {r.name: r for r in route_parameters(model)}


def _assert_complete(model, routes):
    """Every trainable tensor is routed exactly once, and groups hold each tensor exactly once."""
    names = [n for n, _ in model.named_parameters()]
    assert sorted(names) == sorted(routes)
    groups = muon_param_groups(model, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)


def _step(model, groups=None):
    opt = MuonAdamW(groups or muon_param_groups(model, weight_decay=0.1), lr=1e-3, weight_decay=0.1)
    ids = torch.randint(0, 101, (2, 6), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()


@pytest.mark.parametrize("tied", [True, False])
def test_llama(tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(intermediate_size=64, tie_word_embeddings=tied, **COMMON))
    routes = _by_name(model)
    _assert_complete(model, routes)
    if tied:
        assert routes["model.embed_tokens.weight"].role == "tied_embedding"
        assert "lm_head.weight" not in routes
    else:
        assert routes["lm_head.weight"].role == "lm_head"
        assert routes["model.embed_tokens.weight"].role == "embedding"
    for name, r in routes.items():
        expect = "muon" if name.endswith("proj.weight") else "adamw"
        assert r.optimizer == expect, name
        assert r.decay == ("norm" not in name)
    _step(model)


def _tiny_qwen3_moe():
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    return Qwen3MoeForCausalLM(
        Qwen3MoeConfig(
            intermediate_size=64, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2, head_dim=8,
            **COMMON,
        )
    )  # fmt: skip


def test_qwen3_moe():
    model = _tiny_qwen3_moe()
    routes = _by_name(model)
    _assert_complete(model, routes)
    gate_up = routes["model.layers.0.mlp.experts.gate_up_proj"]
    assert (gate_up.optimizer, gate_up.layout, gate_up.split_sizes) == ("muon", "out_in", (16, 16))
    down = routes["model.layers.0.mlp.experts.down_proj"]
    assert (down.optimizer, down.layout, down.split_sizes) == ("muon", "out_in", None)
    assert routes["model.layers.0.mlp.gate.weight"].role == "router"
    assert routes["model.layers.0.mlp.gate.weight"].optimizer == "adamw"
    assert routes["model.layers.0.self_attn.q_norm.weight"].role == "norm"
    _step(model)


def test_mixtral():
    from transformers import MixtralConfig, MixtralForCausalLM

    model = MixtralForCausalLM(
        MixtralConfig(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2, **COMMON)
    )
    routes = _by_name(model)
    _assert_complete(model, routes)
    assert routes["model.layers.1.mlp.experts.gate_up_proj"].split_sizes == (16, 16)
    assert routes["model.layers.1.mlp.gate.weight"].role == "router"
    _step(model)


def test_gpt_oss_in_out_interleaved_experts_and_2d_biases():
    from transformers import GptOssConfig, GptOssForCausalLM

    model = GptOssForCausalLM(
        GptOssConfig(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2, head_dim=8, **COMMON)
    )
    routes = _by_name(model)
    _assert_complete(model, routes)
    gate_up = routes["model.layers.0.mlp.experts.gate_up_proj"]
    assert (gate_up.layout, gate_up.split_interleave, gate_up.shape) == ("in_out", 2, (4, 32, 32))
    assert routes["model.layers.0.mlp.experts.down_proj"].layout == "in_out"
    bias = routes["model.layers.0.mlp.experts.gate_up_proj_bias"]
    assert (bias.role, bias.optimizer, bias.decay) == ("expert_bias", "adamw", False)
    assert routes["model.layers.0.mlp.router.weight"].role == "router"
    assert routes["model.layers.0.self_attn.sinks"].optimizer == "adamw"
    _step(model)


def test_llama4_text_experts_are_in_out():
    from transformers import Llama4ForCausalLM, Llama4TextConfig

    cfg = Llama4TextConfig(
        intermediate_size=16, intermediate_size_mlp=32, num_local_experts=2, head_dim=8, **COMMON
    )
    model = Llama4ForCausalLM(cfg)
    routes = _by_name(model)
    _assert_complete(model, routes)
    experts = [r for r in routes.values() if "experts.gate_up_proj" in r.name]
    assert experts and all(r.layout == "in_out" and r.split_sizes == (16, 16) for r in experts)
    assert all(r.role == "router" for r in routes.values() if r.name.endswith("router.weight"))


def test_phi3_fused_qkv_and_gate_up_blocks_from_config():
    from transformers import Phi3Config, Phi3ForCausalLM

    model = Phi3ForCausalLM(Phi3Config(intermediate_size=48, pad_token_id=0, **COMMON))
    routes = _by_name(model)
    _assert_complete(model, routes)
    qkv = routes["model.layers.0.self_attn.qkv_proj.weight"]
    assert (qkv.role, qkv.split_sizes) == ("fused_qkv", (32, 16, 16))
    assert routes["model.layers.0.mlp.gate_up_proj.weight"].split_sizes == (48, 48)
    _step(model)


def test_gpt2_conv1d_is_in_out():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=101, n_embd=32, n_layer=1, n_head=4, n_positions=16))
    routes = _by_name(model)
    _assert_complete(model, routes)
    c_attn = routes["transformer.h.0.attn.c_attn.weight"]
    assert (c_attn.layout, c_attn.split_sizes) == ("in_out", (32, 32, 32))
    assert routes["transformer.wpe.weight"].role == "embedding"
    assert routes["transformer.wte.weight"].role == "tied_embedding"
    _step(model)


def test_lora_b_muon_a_adamw_and_modules_to_save_head():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    base = LlamaForCausalLM(LlamaConfig(intermediate_size=64, tie_word_embeddings=False, **COMMON))
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"])
    )
    routes = route_parameters(model)
    trainable = {r.name: r for r in routes if r.optimizer != "frozen"}
    a = [r for r in trainable.values() if ".lora_A." in r.name]
    b = [r for r in trainable.values() if ".lora_B." in r.name]
    assert a and all(r.optimizer == "adamw" for r in a)
    assert b and all(r.optimizer == "muon" for r in b)
    heads = [r for r in trainable.values() if "lm_head" in r.name]
    assert heads and all(r.role == "lm_head" and r.optimizer == "adamw" for r in heads)
    assert all(r.optimizer == "frozen" for r in routes if "base_layer" in r.name)
    both = route_parameters(model, lora_a="muon")
    assert all(r.optimizer == "muon" for r in both if ".lora_A." in r.name)
    _step(model)


def test_unknown_tensors_are_an_error_or_an_explicit_choice():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.table = nn.Parameter(torch.randn(4, 4))

    with pytest.raises(ValueError, match="table"):
        route_parameters(Odd())
    routes = {r.name: r for r in route_parameters(Odd(), unknown="adamw")}
    assert routes["table"].optimizer == "adamw" and "unknown=adamw" in routes["table"].reason
    with pytest.raises(ValueError, match="accepted"):
        route_parameters(Odd(), unknown="sgd")


def test_conv_and_vector_heads():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.value_head = nn.Linear(8, 1)

    routes = {r.name: r for r in route_parameters(Net())}
    assert routes["conv.weight"].flatten and routes["conv.weight"].optimizer == "muon"
    assert routes["value_head.weight"].role == "vector_head"


def test_routing_table_lists_every_parameter():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(intermediate_size=64, **COMMON))
    table = routing_table(route_parameters(model))
    for name, _ in model.named_parameters():
        assert name in table
    assert "muon:" in table and "adamw:" in table


def test_deepseek_v3_and_olmoe():
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM, OlmoeConfig, OlmoeForCausalLM

    ds = DeepseekV3ForCausalLM(
        DeepseekV3Config(
            intermediate_size=64, moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2,
            n_group=1, topk_group=1, first_k_dense_replace=1, q_lora_rank=16, kv_lora_rank=8,
            qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, **COMMON,
        )
    )  # fmt: skip
    routes = _by_name(ds)
    _assert_complete(ds, routes)
    assert routes["model.layers.1.mlp.experts.gate_up_proj"].split_sizes == (16, 16)
    assert routes["model.layers.1.mlp.gate.weight"].role == "router"
    assert routes["model.layers.0.mlp.gate_proj.weight"].role == "hidden_matrix"  # dense layer, not a router
    olmoe = OlmoeForCausalLM(
        OlmoeConfig(intermediate_size=16, num_experts=4, num_experts_per_tok=2, **COMMON)
    )
    routes = _by_name(olmoe)
    _assert_complete(olmoe, routes)
    assert routes["model.layers.0.mlp.experts.down_proj"].role == "expert_stack"
    _step(olmoe)


def test_routing_summary_one_line_per_role():
    from hf_fundamentals.optim import routing_summary

    routes = route_parameters(_tiny_qwen3_moe())
    lines = routing_summary(routes).splitlines()
    assert len(lines) == 1 + len({(r.role, r.optimizer) for r in routes})
    assert any(line.startswith("expert_gate_up") and " muon " in line for line in lines)
