"""``hff mue`` makes the plan from local config folders (no network), writes it, and can save the target
initialized under it; bad inputs exit 2 with the reason."""

from __future__ import annotations

import json

import pytest
import torch

from hf_fundamentals.integrations.cli.main import main
from hf_fundamentals.moe import Plan, TransferOptions, transfer_plan


def _configs(tmp_path, proxy_tied=False):
    from transformers import AutoConfig, LlamaConfig

    proxy = LlamaConfig(
        vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        tie_word_embeddings=proxy_tied,
    )  # fmt: skip
    target = AutoConfig.for_model(
        "qwen3_moe", vocab_size=96, hidden_size=32, intermediate_size=48, moe_intermediate_size=16,
        num_experts=4, num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8,
    )  # fmt: skip
    proxy.save_pretrained(tmp_path / "proxy")
    target.save_pretrained(tmp_path / "target")
    return proxy, target


def _argv(tmp_path, *extra):
    return [
        "mue", "--proxy", str(tmp_path / "proxy"), "--target", str(tmp_path / "target" / "config.json"),
        "--lr", "1e-3", "--weight_decay", "0.1", "--init_std", "0.02", "--batch_tokens", "4096", "--steps", "1000",
        "--target_batch_tokens", "8192", "--target_steps", "1000", "--out", str(tmp_path / "out" / "plan.json"),
        *extra,
    ]  # fmt: skip


def test_hff_mue_writes_the_plan_of_the_two_configs(tmp_path, capsys):
    from hf_fundamentals.integrations.moe.config import dense_proxy_from_config, moe_target_from_config

    proxy_cfg, target_cfg = _configs(tmp_path)
    assert main(_argv(tmp_path, "--no_fold", "--eps_width_rule", "none")) == 0
    out = capsys.readouterr().out
    assert "Complete-muE plan: proxy d*=16 H=32 -> target d=32 (MoE N=4 a=2 h=16" in out
    assert "expert_down" in out and "plan written to" in out
    plan = Plan.from_json((tmp_path / "out" / "plan.json").read_text())
    want = transfer_plan(
        dense_proxy_from_config(
            proxy_cfg, lr=1e-3, weight_decay=0.1, init_std=0.02, batch_tokens=4096, steps=1000
        ),
        moe_target_from_config(target_cfg, batch_tokens=8192, steps=1000),
        TransferOptions(fold_multipliers=False, eps_width_rule="none"),
    )
    assert plan == want
    assert plan.rho_B == 2.0 and plan.forward_in_model.R == 2.0
    assert plan.options.readout_lr == "mup" and plan.groups["lm_head"].lr_mult == 1


def test_hff_mue_readout_lr_flag(tmp_path, capsys):
    _configs(tmp_path)
    assert main(_argv(tmp_path, "--readout_lr", "blog")) == 0
    plan = Plan.from_json((tmp_path / "out" / "plan.json").read_text())
    assert plan.options.readout_lr == "blog"
    assert plan.groups["lm_head"].lr_mult == pytest.approx(1 / plan.rho_d) and plan.rho_d == 2.0
    with pytest.raises(SystemExit):
        main(_argv(tmp_path, "--readout_lr", "sp"))
    assert "invalid choice" in capsys.readouterr().err


def test_hff_mue_save_model_gives_a_model_that_loads_under_the_plan(tmp_path, capsys):
    from hf_fundamentals.integrations.moe.model import load_mue_model, mue_forward_multipliers

    _configs(tmp_path)
    model_dir = tmp_path / "model"
    assert main(_argv(tmp_path, "--save_model", str(model_dir), "--seed", "3")) == 0
    assert "saved to" in capsys.readouterr().out
    plan = Plan.from_json((tmp_path / "out" / "plan.json").read_text())
    model = load_mue_model(str(model_dir))
    assert model.config.norm_topk_prob is True
    assert mue_forward_multipliers(model) == {}  # folded and untied: nothing left in the forward
    down = model.model.layers[1].mlp.experts.down_proj
    assert down.std().item() == pytest.approx(plan.groups["expert_down"].init_std, rel=0.15)
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()


@pytest.mark.parametrize(
    "change, message",
    [
        ("gpt2_target", "model_type 'gpt2' is not supported"),
        ("moe_proxy", "the proxy must be a dense model"),
        ("tied_proxy", "proxy and target must tie the same way"),
        ("no_such_dir", "hff mue:"),
    ],
)
def test_hff_mue_refuses_bad_inputs(tmp_path, capsys, change, message):
    from transformers import GPT2Config

    _configs(tmp_path, proxy_tied=change == "tied_proxy")
    argv = _argv(tmp_path)
    if change == "gpt2_target":
        GPT2Config(n_embd=32, n_layer=1, n_head=2).save_pretrained(tmp_path / "gpt2")
        argv[argv.index("--target") + 1] = str(tmp_path / "gpt2")
    elif change == "moe_proxy":
        argv[argv.index("--proxy") + 1] = str(tmp_path / "target")
    elif change == "no_such_dir":
        argv[argv.index("--proxy") + 1] = str(tmp_path / "missing" / "config.json")
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "plan.json").exists()


def test_plan_json_is_accepted_by_hff_arguments(tmp_path):
    from hf_fundamentals.integrations.arguments import HffArguments

    _configs(tmp_path)
    assert main(_argv(tmp_path)) == 0
    hff = HffArguments(hff_mue=str(tmp_path / "out" / "plan.json"), mue_apply=True)
    assert hff.mue_plan() == Plan.from_json((tmp_path / "out" / "plan.json").read_text())
    assert hff.enabled_techniques() == [
        f"complete-muE {tmp_path / 'out' / 'plan.json'} (re-initialized under the plan)"
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"proxy": {}}))
    with pytest.raises(ValueError, match="is not a Complete-muE plan"):
        HffArguments(hff_mue=str(bad))
    with pytest.raises(ValueError, match="--muon_routers cannot be used with --hff_mue"):
        HffArguments(hff_mue=str(tmp_path / "out" / "plan.json"), hff_optimizer="muon", muon_routers="muon")
