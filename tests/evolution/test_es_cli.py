"""``hff es`` trains a tiny model by Evolution Strategies with a named reward and AWD, then saves it."""

from __future__ import annotations

import json

from hf_fundamentals.integrations.cli.main import main

ROWS = [
    {"prompt": "2 + 2 =", "answer": "4"},
    {"prompt": "3 + 4 =", "answer": "7"},
    {"prompt": "The capital of France is", "answer": "Paris"},
    {"prompt": "1 + 1 =", "answer": "2"},
]


def _data(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _args(model_dir, data, out_dir, *extra):
    return [
        "es", "--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--output_dir", str(out_dir),
        "--population_size", "4", "--sigma", "0.02", "--alpha", "0.01", "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--generation_kwargs", '{"max_new_tokens": 4}',
        "--use_cpu", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def test_hff_es_trains_saves_and_records_updates(tiny_llama_dir, tmp_path, capfd):
    from transformers import AutoModelForCausalLM

    out_dir = tmp_path / "run"
    code = main(_args(tiny_llama_dir, _data(tmp_path), out_dir, "--reward", "exact_answer", "length",
                      "--hff_awd", "l2", "--awd_lambda", "1", "--drift_every", "1"))  # fmt: skip
    assert code == 0
    printed = capfd.readouterr().out
    assert "hff es: final reward mean" in printed and "es_updates" in printed
    assert "techniques on: anchored weight decay l2 (lambda 1)" in printed
    record = json.loads((out_dir / "es_updates" / "step_000000.json").read_text())
    assert len(record["rewards"]) == 4 and record["decay_kind"] == "l2"
    assert (out_dir / "es_updates" / "step_000001.json").is_file()
    assert (out_dir / "drift_history.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_hff_es_user_reward_module_and_lora(tiny_llama_dir, tmp_path):
    module = tmp_path / "my_reward.py"
    module.write_text("def starts_with_digit(prompts, completions, **kw):\n"
                      "    return [float(c.strip()[:1].isdigit()) for c in completions]\n")  # fmt: skip
    out_dir = tmp_path / "run"
    code = main(_args(tiny_llama_dir, _data(tmp_path), out_dir, "--reward_module", f"{module}:starts_with_digit",
                      "--use_peft", "--lora_r", "4", "--lora_target_modules", "all-linear"))  # fmt: skip
    assert code == 0
    assert (out_dir / "adapter_config.json").is_file()
    assert (out_dir / "es_updates" / "step_000000.json").is_file()


def test_hff_es_rejects_a_bad_reward_name(tiny_llama_dir, tmp_path, capfd):
    code = main(_args(tiny_llama_dir, _data(tmp_path), tmp_path / "run", "--reward", "accuracy"))
    assert code == 2
    err = capfd.readouterr().err
    assert "--reward accuracy: unknown reward; accepted: exact_answer, length" in err


def test_hff_es_needs_the_answer_column(tiny_llama_dir, tmp_path, capfd):
    data = tmp_path / "no_answer.jsonl"
    data.write_text(json.dumps({"prompt": "hi"}) + "\n")
    code = main(_args(tiny_llama_dir, data, tmp_path / "run"))
    assert code == 2
    assert "needs a 'answer' column" in capfd.readouterr().err
