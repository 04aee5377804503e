"""``hff es``: Evolution Strategies fine-tuning (``ESTrainer``) from the command line.

Flags: ``ESScriptArguments`` (model, local data file, reward, LoRA, drift monitor) + ``ESTrainingConfig`` +
``HffArguments`` (``--hff_awd l2 --awd_lambda 10`` anchors the weights). The data file (.jsonl/.json/.csv/
.parquet) needs a ``prompt`` column; the built-in ``exact_answer`` reward also needs an ``answer`` column
(``--answer_column``). Rewards: built-in names (``--reward exact_answer length``) and/or
``--reward_module path/to/file.py:fn`` (or ``package.module:fn``), a TRL-style ``fn(prompts, completions,
**columns) -> list[float]``; several are summed (``--reward_weights``). One process (no accelerate relaunch).

Example: ``hff es --dataset_name data.jsonl --reward exact_answer --population_size 30 --sigma 1e-3
--max_steps 100 --output_dir runs/es --hff_awd l2 --awd_lambda 10 --drift_every 25``
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_WORD = re.compile(r"[-+]?\d+(?:[.,]\d+)*|\w+")


def _first_word(text: str) -> str:
    match = _WORD.search(str(text))
    return match.group(0) if match else ""


def exact_answer_reward(answer_column: str = "answer") -> Callable[..., list[float]]:
    """1.0 when the completion's first number/word equals the row's answer (both stripped), else 0.0."""

    def exact_answer(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        if answer_column not in columns:
            raise ValueError(
                f"reward exact_answer needs a {answer_column!r} column; the batch has {sorted(columns)}"
            )
        answers = columns[answer_column]
        return [float(_first_word(c) == str(a).strip()) for c, a in zip(completions, answers, strict=True)]

    return exact_answer


def length_reward(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
    """Minus the completion's length in characters (a toy: rewards short answers)."""
    return [-float(len(c)) for c in completions]


BUILTIN_REWARDS = ("exact_answer", "length")


def load_reward_module(spec: str) -> Callable[..., Any]:
    """``path/to/file.py:function`` or ``package.module:function`` → the function."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ValueError(
            f"--reward_module {spec!r}: expected 'path/to/file.py:function' or 'module:function'"
        )
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"--reward_module {spec!r}: file {target!r} not found")
        module_spec = importlib.util.spec_from_file_location(f"_hff_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"--reward_module {spec!r}: {target} has no function {name!r}")
    return fn


@dataclass
class ESScriptArguments:
    """What ``hff es`` trains on: the model, the data, the rewards, optional LoRA and drift monitor."""

    model_name_or_path: str = field(
        default="embedded",
        metadata={"help": "'embedded' (offline SmolLM2-135M-Instruct), a Hub id or a path."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Local .jsonl/.json/.csv/.parquet file with a 'prompt' column (and e.g. 'answer')."
        },
    )
    reward: list[str] | None = field(
        default=None,
        metadata={
            "help": f"Built-in rewards, one or more of {', '.join(BUILTIN_REWARDS)} (default exact_answer "
            "unless --reward_module is given)."
        },
    )
    reward_module: str | None = field(
        default=None,
        metadata={"help": "A user reward 'path/to/file.py:function' (TRL signature), added to --reward."},
    )
    answer_column: str = field(default="answer", metadata={"help": "Column exact_answer compares against."})
    drift_every: int = field(
        default=0, metadata={"help": "Add DriftMonitorCallback(every=N) when N > 0 (weight drift, KL)."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Perturb LoRA adapters only (peft LoraConfig)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "LoRA target modules (e.g. all-linear, or q_proj v_proj)."}
    )

    def __post_init__(self) -> None:
        names = list(self.reward or ([] if self.reward_module else ["exact_answer"]))
        bad = [n for n in names if n not in BUILTIN_REWARDS]
        if bad:
            raise ValueError(
                f"--reward {', '.join(bad)}: unknown reward; accepted: {', '.join(BUILTIN_REWARDS)} "
                "(or --reward_module path/to/file.py:function)"
            )
        self.reward = names
        if self.drift_every < 0:
            raise ValueError(f"--drift_every must be >= 0; got {self.drift_every}")
        if not self.use_peft and self.lora_target_modules:
            raise ValueError("--lora_target_modules set without --use_peft")

    def reward_funcs(self) -> list[Callable[..., Any]]:
        funcs = [exact_answer_reward(self.answer_column) if n == "exact_answer" else length_reward
                 for n in self.reward]  # fmt: skip
        if self.reward_module:
            funcs.append(load_reward_module(self.reward_module))
        return funcs


def make_parser(prog: str = "hff es"):
    """HfArgumentParser over ``ESScriptArguments``, ``ESTrainingConfig`` and the flags that apply to ES (anchored
    weight decay, the cache folder): a gradient-only flag such as ``--hff_memft`` is not offered."""
    from transformers import HfArgumentParser

    from hf_fundamentals.integrations.arguments import arguments_for
    from hf_fundamentals.integrations.evolution.es_config import ESTrainingConfig

    return HfArgumentParser((ESScriptArguments, ESTrainingConfig, arguments_for("evolution")), prog=prog)


def _es_settings_only() -> type:
    """``ESTrainingConfig``'s own ES fields as a dataclass (for the short ``--help``; the Trainer's are in
    ``--help-all``)."""
    import dataclasses
    import typing

    from hf_fundamentals.integrations.evolution.es_config import ESTrainingConfig

    own = ESTrainingConfig.__dict__.get("__annotations__", {})
    hints = typing.get_type_hints(ESTrainingConfig)
    chosen = [f for f in dataclasses.fields(ESTrainingConfig) if f.name in own]
    return dataclasses.make_dataclass(
        "ESSettings",
        [(f.name, hints[f.name], dataclasses.field(default=f.default, metadata=f.metadata)) for f in chosen],
    )


def arguments_for_es() -> type:
    """The hf_fundamentals flags ``hff es`` offers."""
    from hf_fundamentals.integrations.arguments import arguments_for

    return arguments_for("evolution")


def load_prompts(script_args: ESScriptArguments):
    """The local data file as a ``datasets.Dataset`` with a ``prompt`` column."""
    from hf_fundamentals.integrations.cli.data import check_dataset

    dataset = check_dataset(script_args.dataset_name, columns_all=("prompt",))
    if dataset is None:
        raise ValueError(
            f"--dataset_name {script_args.dataset_name!r} is not a local file; hff es reads a local "
            ".jsonl/.json/.csv/.parquet file with a 'prompt' column"
        )
    if "exact_answer" in script_args.reward and script_args.answer_column not in dataset.column_names:
        raise ValueError(
            f"--reward exact_answer needs a {script_args.answer_column!r} column in {script_args.dataset_name}; "
            f"it has {dataset.column_names} (or pass --answer_column)"
        )
    return dataset


def build_trainer(script_args: ESScriptArguments, training_args, hff_args) -> Any:
    """The ESTrainer the flags describe (model, data, rewards, LoRA, AWD/drift callbacks)."""
    from hf_fundamentals.integrations.evolution.drift import DriftMonitorCallback
    from hf_fundamentals.integrations.evolution.es_trainer import ESTrainer
    from hf_fundamentals.integrations.hub import check_model_reference, load_model
    from hf_fundamentals.integrations.registry import register
    from hf_fundamentals.integrations.trainer import trainer_extras

    register()
    if getattr(hff_args, "hff_kd_teacher", None) is not None:
        raise ValueError("--hff_kd_teacher distils through a token loss; ES has none")
    funcs = script_args.reward_funcs()
    dataset = load_prompts(script_args)
    check_model_reference(script_args.model_name_or_path, flag="--model_name_or_path")
    model, tokenizer = load_model(script_args.model_name_or_path)
    if script_args.use_peft:
        from peft import LoraConfig, get_peft_model

        targets = script_args.lora_target_modules or ["all-linear"]
        lora = LoraConfig(
            r=script_args.lora_r, lora_alpha=script_args.lora_alpha, task_type="CAUSAL_LM",
            target_modules=targets[0] if targets == ["all-linear"] else targets,
        )  # fmt: skip
        model = get_peft_model(model, lora)
    extras = trainer_extras(hff_args, training_args)
    callbacks = list(extras.callbacks)
    if script_args.drift_every > 0:
        callbacks.append(DriftMonitorCallback(every=script_args.drift_every))
    dataset = extras.prepare_train_dataset(dataset, training_args)
    trainer = ESTrainer(
        model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
        reward_funcs=funcs, callbacks=callbacks,
    )  # fmt: skip
    return trainer


def run(script_args: ESScriptArguments, training_args, hff_args, trainer: Any = None) -> Any:
    """Build (unless given) and train the ESTrainer; saves the model; returns the trainer."""
    from hf_fundamentals.integrations.evolution.es_trainer import UPDATES_DIR

    trainer = trainer or build_trainer(script_args, training_args, hff_args)
    funcs = trainer.reward_funcs
    switched_on = hff_args.enabled_techniques()
    print(
        f"hff es: population {trainer.es.population}, sigma {trainer.es.sigma}, alpha {trainer.es.alpha}, "
        f"rewards {[getattr(f, '__name__', repr(f)) for f in funcs]}, "
        f"{len(trainer.es_param_names)} perturbed tensors; hf_fundamentals techniques on: "
        f"{', '.join(switched_on) or 'none'}"
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    out = Path(training_args.output_dir)
    steps = sorted((out / UPDATES_DIR).glob("step_*.json"))
    if steps:  # the last iteration's record (the trainer clears its in-memory copy once written)
        rewards = [float(r) for r in json.loads(steps[-1].read_text())["rewards"]]
        print(f"hff es: final reward mean {sum(rewards) / len(rewards):.6g} (population of the last "
              f"iteration, {steps[-1].name})")  # fmt: skip
    print(f"hff es: model saved to {out}; ES updates in {out / UPDATES_DIR}")
    return trainer


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from hf_fundamentals.integrations.cli.launch import print_help

    own = (ESScriptArguments, _es_settings_only(), arguments_for_es())
    if print_help(argv, "hff es", own, make_parser, __doc__.split("\n\n")[0]):
        return 0
    script_args, training_args, hff_args = make_parser().parse_args_into_dataclasses(args=argv)
    trainer = build_trainer(script_args, training_args, hff_args)
    run(script_args, training_args, hff_args, trainer=trainer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
