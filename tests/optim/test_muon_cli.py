"""``hff muon`` prints the routing of a model built on the meta device (no weights loaded)."""

from __future__ import annotations

import json

from hf_fundamentals.integrations.cli.muon import main


def test_routing_of_a_moe_config_file(tmp_path, capsys):
    from transformers import Qwen3MoeConfig

    Qwen3MoeConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_experts=4,
        num_experts_per_tok=2, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
    ).save_pretrained(tmp_path)  # fmt: skip
    out = tmp_path / "routing.json"
    assert main(["--model", str(tmp_path / "config.json"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "expert_gate_up" in printed and "router" in printed
    routes = {r["name"]: r for r in json.loads(out.read_text())}
    assert routes["model.layers.0.mlp.experts.gate_up_proj"]["split_sizes"] == [16, 16]
    assert routes["lm_head.weight"]["optimizer"] == "adamw"


def test_lora_routing_of_a_local_checkout(tiny_llama_dir, capsys):
    assert main(["--model", str(tiny_llama_dir), "--lora_r", "4"]) == 0
    printed = capsys.readouterr().out
    assert "lora_A" in printed and "frozen" in printed


def test_hff_dispatches_muon(capsys):
    from hf_fundamentals.integrations.cli.main import main as hff

    assert hff(["--help"]) == 0
    assert "muon" in capsys.readouterr().out
