"""``hff mue sweep``: per-seed LR sweeps stored one run per file; a rerun trains nothing it has, a removed run
is trained again, and the regret table is printed."""

from __future__ import annotations

import json

import pytest

from hf_fundamentals.integrations.cli.main import main


def _setup(tmp_path):
    from transformers import Qwen3Config, Qwen3MoeConfig

    common = dict(
        vocab_size=256, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
        head_dim=16, max_position_embeddings=16, tie_word_embeddings=False,
    )  # fmt: skip
    Qwen3Config(intermediate_size=32, **common).save_pretrained(tmp_path / "proxy")
    Qwen3MoeConfig(
        intermediate_size=32, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2, **common
    ).save_pretrained(tmp_path / "moe")
    text = " ".join(f"word{i % 37} is a thing number {i}." for i in range(400))
    (tmp_path / "train.txt").write_text(text)
    (tmp_path / "eval.txt").write_text(text[::-1])


def _argv(tmp_path, *extra):
    return [
        "mue", "sweep", "--proxy", str(tmp_path / "proxy"), "--target", f"moe={tmp_path / 'moe'}",
        "--out", str(tmp_path / "out"), "--train_file", str(tmp_path / "train.txt"),
        "--eval_file", str(tmp_path / "eval.txt"), "--eval_tokens", "512", "--seeds", "0", "1", "2",
        "--steps", "4", "--batch_size", "4", "--seq_len", "16", "--eval_every", "1", "--last_evals", "2",
        "--lr_points", "3", "--lr_spacing", "1", "--max_lr_points", "3", "--n_boot", "50", *extra,
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore")
def test_sweep_stores_each_run_and_a_rerun_continues(tmp_path, capsys):
    _setup(tmp_path)
    assert main(_argv(tmp_path)) == 0
    first = capsys.readouterr().out
    runs = sorted((tmp_path / "out" / "runs").glob("*.json"))
    assert len(runs) == 2 * 2 * 3 * 3  # params x shapes x seeds x lrs
    assert first.count(" seed ") == len(runs)
    assert "regret nats" in first and "sp" in first and "mue" in first
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert set(summary["regret_nats"]) == {"sp", "mue"} and "moe" in summary["regret_nats"]["mue"]
    assert summary["eval_tokens"] == 512

    runs[0].unlink()  # as if the first sweep had been cut short there
    assert main(_argv(tmp_path)) == 0
    again = capsys.readouterr().out
    assert again.count(" seed ") == 1  # only the missing run trains
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["regret_nats"] == summary["regret_nats"]


def test_sweep_refuses_bad_targets(tmp_path, capsys):
    _setup(tmp_path)
    argv = _argv(tmp_path)
    argv[argv.index("--target") + 1] = str(tmp_path / "moe")
    assert main(argv) == 2
    assert "--target" in capsys.readouterr().err
