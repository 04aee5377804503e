"""``HffArguments``: every hf_fundamentals training flag, composed of the techniques' flag mixins.

Each technique keeps its flags in ``integrations/<technique>/flags.py`` (a :class:`FlagGroup` dataclass with a
help string per field); ``HffArguments`` inherits them all from the registry, so ``HfArgumentParser`` and TRL's
``TrlParser`` (``hff sft``) show one flag set, YAML ``--config`` files fill it, and Python builds it directly.
What lives here is only what spans techniques: the cache folder and the rules between two techniques' flags.
A flag that is set but cannot take effect fails loudly rather than being ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, make_dataclass
from functools import cache
from typing import Any

from hf_fundamentals.integrations.registry import FlagGroup, enabled_techniques, technique, techniques


def _flag_groups() -> tuple[type[FlagGroup], ...]:
    # dataclasses list inherited fields from the last base to the first: reversed registry order keeps --help in
    # registry order
    return tuple(t.flags for t in reversed(techniques()) if t.flags is not None)


@dataclass
class _CommonFlags(FlagGroup):
    hff_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder where hf_fundamentals caches what it computes once (the dequantized embedded model, "
            "corpora, audit generations). Default: $HFF_CACHE or ~/.cache/hf_fundamentals."
        },
    )

    def check_flags(self) -> None:
        if self.hff_cache_dir:
            os.environ["HFF_CACHE"] = os.path.abspath(os.path.expanduser(self.hff_cache_dir))

    def enabled_techniques(self) -> list[str]:
        """One line per technique these flags switch on (shown in logs so a run says what it changed)."""
        return [t.describe(self) for t in enabled_techniques(self)]


@dataclass
class HffArguments(*_flag_groups(), _CommonFlags):
    """Flags that switch hf_fundamentals techniques on in a Trainer or TRL script."""

    def check_flags(self) -> None:
        """Rules between two techniques' flags (each group has already checked its own)."""
        if self.memft_retire_after and self.hff_memft != "none" and self.hff_order != "none":
            raise ValueError(
                "--memft_retire_after samples the remaining items in its own shuffled order; it cannot keep "
                f"the --hff_order {self.hff_order} order (drop one of them)"
            )
        if self.hff_kd_teacher is not None and self.hff_memft != "none":
            raise ValueError("--hff_kd_teacher and --hff_memft both replace the token loss; use one of them")
        if self.hff_mue is not None and self.hff_optimizer == "muon":
            clash = [
                f"--{f.name}"
                for f in fields(self)
                if f.name in ("muon_lr", "muon_routers", "muon_lora_a", "muon_unknown")
                and getattr(self, f.name) != f.default
            ]
            if clash:
                raise ValueError(
                    f"{', '.join(clash)} cannot be used with --hff_mue: the plan sets Muon's lr, keeps routers "
                    "on AdamW and covers full training of known modules only"
                )


@cache
def arguments_for(*names: str) -> type:
    """A dataclass with only the flags of the techniques ``names`` (and ``--hff_cache_dir``), for a command that
    uses only those: ``hff es`` offers the AWD flags, not ``--hff_memft`` or ``--hff_kd_teacher``. Everything
    that takes ``HffArguments`` takes it."""
    groups = tuple(technique(n).flags for n in reversed(names) if technique(n).flags is not None)
    return make_dataclass(
        f"HffArguments_{'_'.join(names)}",
        [],
        bases=(*groups, _CommonFlags),
        namespace={"__doc__": f"hf_fundamentals flags of {', '.join(names)}."},
    )


def __getattr__(name: str) -> Any:
    if name == "AuditArguments":  # its home is the audit glue; this spelling keeps working
        from hf_fundamentals.integrations.audit.flags import AuditArguments

        return AuditArguments
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
