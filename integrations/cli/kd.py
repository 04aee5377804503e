"""``hff kd``: pretraining distillation from a frozen teacher (arXiv 2605.23857), on raw or packed text.

``hff sft`` with a teacher: the same flags (TRL's ``ScriptArguments``/``SFTConfig``/``ModelConfig``/
``DatasetMixtureConfig``, ``--config`` YAML, ``HffArguments``) and the same ``accelerate launch`` relaunch, with
``--hff_kd_teacher PATH_OR_ID`` required. The student is trained on ``(1 - kd_alpha) CE + kd_alpha T^2 KL`` to the
teacher (``--kd_alpha``, ``--kd_temperature``, ``--kd_kl forward|reverse``, ``--kd_chunk_size``,
``--kd_teacher_revision``, ``--kd_teacher_dtype``); a text dataset (a ``text`` column, or a .txt file) is
tokenized as a language-modeling stream, ``--packing`` packs it. Logs ``ce``, ``kd`` and ``teacher_ce`` next to
``loss``, and prints them at the end. Teacher and student must share a tokenizer (checked before training).

Example: ``hff kd --model_name_or_path student_dir --hff_kd_teacher embedded --dataset_name corpus.jsonl
--kd_alpha 0.4 --packing --max_length 512 --max_steps 1000 --output_dir runs/kd``
"""

from __future__ import annotations

import sys
from typing import Any

from hf_fundamentals.integrations.cli import sft


def make_parser(prog: str = "hff kd"):
    """The ``hff sft`` parser (TRL's SFT dataclasses plus ``HffArguments``) under this command's name."""
    return sft.make_parser(prog=prog)


def _require_teacher(hff_args: Any) -> None:
    if hff_args.hff_kd_teacher is None:
        raise ValueError(
            "hff kd needs --hff_kd_teacher PATH_OR_ID (the frozen teacher; it must share the student's tokenizer)"
        )


def final_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last logged ``loss``/``ce``/``kd``/``teacher_ce`` (and their ``eval_`` twins) of a run."""
    found: dict[str, float] = {}
    for record in log_history:
        for key in ("loss", "ce", "kd", "teacher_ce", "eval_loss", "eval_ce", "eval_kd", "eval_teacher_ce"):
            if key in record:
                found[key] = float(record[key])
    return found


def run(script_args, training_args, model_args, dataset_args, hff_args):
    """Train as ``hff sft`` does, with the teacher switched on; prints the final ce/kd; returns the trainer."""
    _require_teacher(hff_args)
    trainer = sft.run(script_args, training_args, model_args, dataset_args, hff_args)
    if trainer.is_world_process_zero():
        last = final_metrics(trainer.state.log_history)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items())
        print(f"hff kd: last logged {shown or 'nothing (set --logging_steps)'}")
    return trainer


def _checks(script_args, training_args, model_args, dataset_args, hff_args) -> None:
    _require_teacher(hff_args)
    sft.preflight(script_args, training_args, model_args, dataset_args, hff_args)
    from hf_fundamentals.integrations.hub import check_model_reference

    check_model_reference(
        hff_args.hff_kd_teacher, flag="--hff_kd_teacher", revision=hff_args.kd_teacher_revision
    )


def main(argv: list[str] | None = None) -> int:
    """Check the flags (the teacher included), model and data, then relaunch under ``accelerate launch``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return sft.launch_training(argv, "hff kd", "hf_fundamentals.integrations.cli.kd", _checks)


def _run_rank() -> None:
    from hf_fundamentals.integrations.cli.launch import leave_rank

    parser = make_parser()
    script_args, training_args, model_args, dataset_args, hff_args = parser.parse_args_and_config(
        fail_with_unknown_args=False
    )
    leave_rank(run(script_args, training_args, model_args, dataset_args, hff_args))


if __name__ == "__main__":
    from hf_fundamentals.integrations.cli.launch import launched

    launched("kd", _run_rank)
