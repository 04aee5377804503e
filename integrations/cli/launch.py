"""What the training commands share: parse once in the calling process (``--help`` and early errors), relaunch
through ``accelerate launch`` like ``trl sft`` does, and leave each launched rank cleanly."""

from __future__ import annotations

import os
import sys
from typing import Any


def subtract_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    """``items`` without the ordered ``subsequence`` (as TRL's launcher does for accelerate's arguments)."""
    it = iter(subsequence)
    current = next(it, None)
    kept = []
    for item in items:
        if current is not None and item == current:
            current = next(it, None)
        else:
            kept.append(item)
    return kept


def parse_for_launch(parser: Any, argv: list[str]) -> tuple[list[Any], list[str]]:
    """``(dataclasses, accelerate_args)``: the parsed flags, and what is left for ``accelerate launch``."""
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    *dataclasses, config_remaining, cli_remaining = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    script_args = subtract_subsequence(argv, cli_remaining)
    return dataclasses, [*launch_args, "--", *script_args]


def relaunch(module: str, launch_and_script_args: list[str]) -> None:
    """Run ``python -m module`` under ``accelerate launch`` (one or several processes, as the flags say)."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    split = launch_and_script_args.index("--")
    launch_args, script_args = launch_and_script_args[:split], launch_and_script_args[split + 1 :]
    launch_command(launch_command_parser().parse_args([*launch_args, "--module", module, *script_args]))


def print_help(argv: list[str], prog: str, own: tuple[type, ...], full_parser: Any, description: str) -> bool:
    """``--help`` shows hf_fundamentals' own flags (``own`` dataclasses) only, ``--help-all`` every flag including
    TRL's and the Trainer's (several hundred lines). Returns True when help was printed."""
    if "--help-all" in argv:
        full_parser().print_help()
        return True
    if "-h" in argv or "--help" in argv:
        from transformers import HfArgumentParser

        HfArgumentParser(
            own,
            prog=prog,
            description=description,
            epilog=f"Every flag of TRL and the Trainer works too (--output_dir, --max_steps, --learning_rate, "
            f"--use_peft, ...): `{prog} --help-all` lists them.",
        ).print_help()
        return True
    return False


def launched(command: str, run_rank: Any) -> None:
    """Run ``run_rank()`` inside a launched rank with the shared error style (rank 0 prints, exit code 2)."""
    from hf_fundamentals.integrations.cli.errors import run_command

    code = run_command(command, lambda argv: run_rank(), sys.argv[1:])
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def leave_rank(trainer: Any) -> None:
    """End a launched rank: with several processes, leave without running destructors. Freeing the DDP model
    frees its gloo process group, whose destructor joins gloo's worker thread while holding the GIL; a worker
    still dropping a finished collective needs the GIL to release its tensors, so the two wait on each other
    forever (seen with py-spy on a rank hung after "Model saved"). By now everything is saved and the group is
    destroyed (the command's ``run`` ends with ``trainer.end()``)."""
    if trainer.accelerator.num_processes > 1:
        import logging

        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
