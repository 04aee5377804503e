"""``hff kd`` end to end on a tiny Llama student and a smaller teacher (relaunched through accelerate like
``hff sft``), packing raw text; and its early errors."""

from __future__ import annotations

import pytest
import torch

from hf_fundamentals.integrations.cli.kd import final_metrics, main
from hf_fundamentals.integrations.cli.main import main as hff


def small_teacher(tiny_llama_dir, out):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    torch.manual_seed(5)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )).save_pretrained(out)  # fmt: skip
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
def test_hff_kd_distils_into_a_tiny_student(tiny_llama_dir, tiny_text_file, tmp_path, capfd):
    teacher = small_teacher(tiny_llama_dir, tmp_path / "teacher")
    out_dir = tmp_path / "run"
    code = main(
        [
            "--model_name_or_path", str(tiny_llama_dir),
            "--dataset_name", str(tiny_text_file),
            "--output_dir", str(out_dir),
            "--hff_kd_teacher", str(teacher), "--kd_alpha", "0.4", "--kd_temperature", "2", "--kd_chunk_size", "64",
            "--max_steps", "3", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
            "--packing", "--max_length", "64",
            "--use_cpu", "--bf16", "false", "--logging_steps", "1", "--save_strategy", "no",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capfd.readouterr().out
    assert "techniques on: distillation from" in printed and "alpha 0.4, T 2, forward KL" in printed
    assert "hff kd: last logged loss" in printed and " kd " in printed and "teacher_ce" in printed
    assert (out_dir / "model.safetensors").stat().st_size > 0


def test_hff_kd_needs_a_teacher(tiny_llama_dir, tiny_text_file, tmp_path, capsys):
    code = hff(["kd", "--model_name_or_path", str(tiny_llama_dir), "--dataset_name", str(tiny_text_file),
                 "--output_dir", str(tmp_path), "--use_cpu", "--bf16", "false"])  # fmt: skip
    assert code == 2
    assert "needs --hff_kd_teacher" in capsys.readouterr().err


def test_kd_flags_without_a_teacher_are_refused(tmp_path, capsys):
    assert (
        hff(["kd", "--output_dir", str(tmp_path), "--use_cpu", "--bf16", "false", "--kd_alpha", "0.2"]) == 2
    )
    assert "--kd_alpha set but --hff_kd_teacher is not" in capsys.readouterr().err


def test_final_metrics_reads_the_last_values():
    history = [
        {"loss": 3.0, "ce": 2.0, "kd": 0.5},
        {"loss": 2.0, "ce": 1.5},
        {"eval_loss": 1.0, "eval_kd": 0.1},
    ]
    assert final_metrics(history) == {"loss": 2.0, "ce": 1.5, "kd": 0.5, "eval_loss": 1.0, "eval_kd": 0.1}
