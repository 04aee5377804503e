"""``hff sft``: TRL's ``trl sft`` plus hf_fundamentals' flags.

TRL's own CLI cannot take extra flags, callbacks or optimizer factories, so this mirrors
``trl/scripts/sft.py``: the same ``ScriptArguments``/``SFTConfig``/``ModelConfig``/``DatasetMixtureConfig``
flags and ``--config`` YAML, plus ``HffArguments``. Like ``trl sft`` it relaunches itself through
``accelerate launch`` (pass ``--num_processes 2``, ``--accelerate_config NAME|FILE``, ... for several
processes; on CPU-only machines accelerate also needs ``--multi_gpu``, which then runs DDP over gloo); our registration runs inside every launched process. ``--model_name_or_path embedded`` trains the
offline embedded model; ``--dataset_name`` also takes a local .json/.jsonl/.csv/.parquet/.txt file.
"""

from __future__ import annotations

import sys


def make_parser(prog: str = "hff sft"):
    """The TrlParser over TRL's SFT dataclasses plus ``HffArguments``."""
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, TrlParser

    from hf_fundamentals.integrations.arguments import HffArguments

    return TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig, HffArguments), prog=prog)


def load_sft_dataset(script_args, dataset_args):
    """TRL's dataset resolution, plus local files by extension (no network needed for local data)."""
    from datasets import load_dataset
    from trl import get_dataset

    from hf_fundamentals.integrations.cli.data import load_local_file

    if dataset_args.datasets:
        return get_dataset(dataset_args)
    name = script_args.dataset_name
    if not name:
        raise ValueError(
            "Pass --dataset_name (a Hub dataset id, a local folder or a data file) or --datasets."
        )
    local = load_local_file(name)
    if local is not None:
        return local
    return load_dataset(name, name=script_args.dataset_config, streaming=script_args.dataset_streaming)


def run(script_args, training_args, model_args, dataset_args, hff_args):
    """Train with SFTTrainer exactly as ``trl sft`` does, with hf_fundamentals' extras passed in; returns the
    trainer (see ``_launched`` for why it must outlive this call under several processes)."""
    import transformers
    from packaging.version import Version
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    from hf_fundamentals.integrations.hub import resolve_model_path
    from hf_fundamentals.integrations.registry import register
    from hf_fundamentals.integrations.trainer import trainer_extras

    register()
    extras = trainer_extras(hff_args, training_args)
    _apply_model_kwargs(extras, model_args)
    model_path, extra_init = resolve_model_path(model_args.model_name_or_path)
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
        **extra_init,
    )
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs

    dataset = load_sft_dataset(script_args, dataset_args)
    if script_args.dataset_train_split not in dataset:
        raise ValueError(
            f"--dataset_train_split {script_args.dataset_train_split!r} not in the dataset; it has {list(dataset)}"
        )
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = dataset[script_args.dataset_test_split]

    train_dataset = extras.prepare_train_dataset(dataset[script_args.dataset_train_split], training_args)
    trainer = extras.trainer_class(SFTTrainer)(
        model=model_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
        **extras.trainer_kwargs(),
    )
    switched_on = hff_args.enabled_techniques()
    trainer.accelerator.print(
        f"hf_fundamentals techniques on: {', '.join(switched_on) or 'none'}; "
        f"processes: {trainer.accelerator.num_processes} ({trainer.accelerator.distributed_type})"
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("Training completed.")
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    # Every rank waits here before the group goes: rank 0 may still be writing the model while the others
    # would tear their side of gloo down under it (a rank hung in teardown in CI, run at 09:49 and 11:47).
    trainer.accelerator.wait_for_everyone()
    if Version(transformers.__version__) >= Version("5.18.0"):
        trainer.end()  # finishes trackers and destroys the process group
    else:
        trainer.accelerator.end_training()
    return trainer


def _apply_model_kwargs(extras, model_args) -> None:
    """Put the techniques' ``from_pretrained`` keywords on the model flags; refuse a different explicit value."""
    for key, value in extras.model_init_kwargs().items():  # e.g. --hff_attention's attn_implementation
        given = getattr(model_args, key, None)
        if given not in (None, value):
            raise ValueError(
                f"hf_fundamentals' flags set {key}={value!r}; drop --{key} {given} (or the flag that sets it)"
            )
        setattr(model_args, key, value)


def preflight(script_args, training_args, model_args, dataset_args, hff_args) -> None:
    """Everything that can be checked before a process is launched or a model loads: the model reference, the
    dataset file and its columns, and the flags' combination with the Trainer's (e.g. ``--optim``)."""
    import copy

    from hf_fundamentals.integrations.cli.data import check_dataset
    from hf_fundamentals.integrations.hub import check_model_reference
    from hf_fundamentals.integrations.trainer import trainer_extras

    check_model_reference(
        model_args.model_name_or_path, flag="--model_name_or_path", revision=model_args.model_revision
    )
    if not dataset_args.datasets:
        text_field = getattr(training_args, "dataset_text_field", "text") or "text"
        check_dataset(script_args.dataset_name, columns_any=(text_field, "messages", "prompt"))
    extras = trainer_extras(hff_args, copy.deepcopy(training_args))
    _apply_model_kwargs(extras, copy.deepcopy(model_args))


def launch_training(argv: list[str], prog: str, module: str, checks) -> int:
    """``--help``, then parse and ``checks(*parsed)`` in this process, then relaunch ``module`` under
    ``accelerate launch`` (shared by ``hff sft`` and ``hff kd``)."""
    from hf_fundamentals.integrations.arguments import HffArguments
    from hf_fundamentals.integrations.cli.launch import parse_for_launch, print_help, relaunch

    if print_help(argv, prog, (HffArguments,), lambda: make_parser(prog), __doc__.split("\n\n")[0]):
        return 0
    parsed, launch_args = parse_for_launch(make_parser(prog), argv)
    checks(*parsed)
    relaunch(module, launch_args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Check the flags, model and data, then relaunch under ``accelerate launch`` like ``trl sft``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return launch_training(argv, "hff sft", "hf_fundamentals.integrations.cli.sft", preflight)


def _run_rank():
    from hf_fundamentals.integrations.cli.launch import leave_rank

    parser = make_parser()
    script_args, training_args, model_args, dataset_args, hff_args = parser.parse_args_and_config(
        fail_with_unknown_args=False
    )
    leave_rank(run(script_args, training_args, model_args, dataset_args, hff_args))


if __name__ == "__main__":
    from hf_fundamentals.integrations.cli.launch import launched

    launched("sft", _run_rank)
