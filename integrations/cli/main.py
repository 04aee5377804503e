"""``hff``: the hf_fundamentals command line. ``hff <command> --help`` documents each command."""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "audit": (
        "hf_fundamentals.integrations.cli.audit",
        "estimate a model's training-data mixture (LLMSurgeon)",
    ),
    "info": (
        "hf_fundamentals.integrations.cli.info",
        "versions, what is registered, whether kernels/Triton/GPU work",
    ),
    "sft": (
        "hf_fundamentals.integrations.cli.sft",
        "TRL's `trl sft` with hf_fundamentals' flags (HffArguments)",
    ),
    "es": (
        "hf_fundamentals.integrations.cli.es",
        "Evolution Strategies fine-tuning (ESTrainer) with named or user rewards, AWD, drift monitor",
    ),
    "muon": (
        "hf_fundamentals.integrations.cli.muon",
        "show where --hff_optimizer muon sends each parameter of a model (routing table)",
    ),
    "mue": (
        "hf_fundamentals.integrations.cli.mue",
        "Complete-muE: transfer a dense proxy's tuned AdamW hyperparameters and init to an MoE target (plan JSON)",
    ),
    "order": (
        "hf_fundamentals.integrations.cli.order",
        "compare training orders (STR/SAW, ...) of a dataset: guideline metrics, plot, ordered copy",
    ),
    "lora-capacity": (
        "hf_fundamentals.integrations.cli.lora_capacity",
        "fit the LoRA memory law to a rank x length sweep and plan the rank for N tokens",
    ),
    "scaling": (
        "hf_fundamentals.integrations.cli.scaling",
        "fit scaling laws (Shannon, Chinchilla, Kaplan) to runs; predict loss and turning points D*(N), N*(D)",
    ),
    "kd": (
        "hf_fundamentals.integrations.cli.kd",
        "pretraining distillation from a frozen (possibly weak) teacher: (1-a) CE + a T^2 KL, chunked",
    ),
    "corpora": (
        "hf_fundamentals.integrations.cli.corpora",
        "list, install and sample the offline text corpora",
    ),
}
"""Subcommand name -> (module with ``main(argv) -> int``, one-line help). Modules are imported on demand."""


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: hff <command> [options]",
        "",
        "hf_fundamentals: 2026 training-fundamentals results as flags for the Hugging Face stack.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "",
        "Run `hff <command> --help` for a command's options. Errors print one line; add --debug (or set",
        "HFF_DEBUG=1) for the traceback.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``hff <command> ...`` to the command's module; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from hf_fundamentals import __version__

        print(f"hf_fundamentals {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"hff: error: unknown command {name!r}; expected one of: {', '.join(COMMANDS)}\n", file=sys.stderr
        )
        print(_usage(), file=sys.stderr)
        return 2
    from hf_fundamentals.integrations.cli.errors import run_command

    module = importlib.import_module(COMMANDS[name][0])
    return run_command(name, module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
