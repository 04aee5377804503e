"""The glue contract every technique implements, and the one list of techniques.

A technique's glue lives in ``integrations/<name>/`` (the core package's name): ``flags.py`` holds its
``HffArguments`` mixin (a :class:`FlagGroup`), ``technique.py`` a :class:`Technique` subclass instance named
``TECHNIQUE``, and the other modules its Trainer/TRL glue. Shared code (``HffArguments``, ``trainer_extras``,
:func:`register`, the run banner) loops over :func:`techniques` and never names one, so adding a technique is
its folder plus one line in :data:`TECHNIQUES` (the layout page of the docs lists every file it touches).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, ClassVar

TECHNIQUES: tuple[str, ...] = (
    "optim",
    "moe",
    "ordering",
    "memorization",
    "distill",
    "evolution",
    "attention",
    "scaling",
    "audit",
)
"""Every technique, by its core package name; hooks run in this order (callbacks, dataset steps)."""


@dataclass
class FlagGroup:
    """Base of a technique's flag mixin: one dataclass field per flag, each with a help string.

    ``__post_init__`` runs every group's own ``check_flags`` once (bases first, ``HffArguments``' cross-technique
    rules last), so a mixin validates alone (e.g. ``OptimFlags(...)`` on its own) and inside ``HffArguments``.
    A group with a ``switch`` field refuses its other flags while the switch is at its default (off): a flag that
    is set but cannot take effect is an error, never silently ignored.
    """

    switch: ClassVar[str | None] = None
    """The field that turns the technique on; at its default the technique is off."""
    switch_hint: ClassVar[str] = ""
    """How to switch it on, for the message when its other flags are set while it is off."""

    def __post_init__(self) -> None:
        for cls in reversed(type(self).__mro__):
            if cls.__dict__.get("switch"):
                self._refuse_orphans(cls)
            check = cls.__dict__.get("check_flags")
            if check is not None:
                check(self)

    def _refuse_orphans(self, group: type) -> None:
        by_name = {f.name: f for f in fields(group)}
        for base in group.__mro__[1:]:  # a base group with its own switch guards its own flags
            if base.__dict__.get("switch"):
                for f in fields(base):
                    by_name.pop(f.name, None)
        switch = by_name[group.switch]
        if getattr(self, switch.name) != switch.default:
            return
        changed = [
            f"--{f.name}" for f in by_name.values() if f is not switch and getattr(self, f.name) != f.default
        ]
        if changed:
            state = "not" if switch.default is None else repr(switch.default)
            raise ValueError(f"{', '.join(changed)} set but --{switch.name} is {state}; {group.switch_hint}")


class Technique:
    """One technique's hooks into a training run. Every hook has a no-op default; a technique overrides the ones
    it needs. ``args`` is the run's ``HffArguments``, ``training_args`` its ``TrainingArguments`` (or a TRL config)."""

    name: ClassVar[str]
    """The core package's name (``hf_fundamentals.<name>``), also its glue folder, tests, docs page, benchmarks."""
    title: ClassVar[str]
    """What users call it (the docs' name table maps it to the name and the CLI commands)."""
    flags: ClassVar[type[FlagGroup] | None] = None
    """Its ``HffArguments`` mixin (None: the technique has no training flags)."""
    commands: ClassVar[tuple[str, ...]] = ()
    """Its ``hff`` subcommands."""
    hf_names: ClassVar[tuple[tuple[str, str], ...]] = ()
    """``(kind, name)`` it registers with transformers (e.g. ``("attention", "hff_blocksparse")``)."""
    replaces_optimizer_of: ClassVar[tuple[str, ...]] = ()
    """Techniques whose optimizer this one's optimizer already includes when both are on (their hook is skipped)."""

    def enabled(self, args: Any) -> bool:
        """Whether ``args`` switches this technique on (default: its flag group's switch is off its default)."""
        if self.flags is None or self.flags.switch is None:
            return False
        default = next(f.default for f in fields(self.flags) if f.name == self.flags.switch)
        return getattr(args, self.flags.switch, default) != default  # a command may offer only some flags

    def describe(self, args: Any) -> str:
        """One line for the run banner saying what the flags switched on."""
        return self.name

    def register_hf(self) -> None:
        """Make its :attr:`hf_names` known to transformers (idempotent; :func:`register` calls it once)."""

    def configure_training_args(self, args: Any, training_args: Any) -> None:
        """Adjust the run's training arguments in place before the trainer is built."""

    def model_init_kwargs(self, args: Any) -> dict[str, Any]:
        """``from_pretrained`` keywords the technique needs (e.g. ``attn_implementation``)."""
        return {}

    def callbacks(self, args: Any, training_args: Any) -> list[Any]:
        """Trainer callbacks to add."""
        return []

    def optimizer(self, args: Any, training_args: Any) -> tuple[Any, dict[str, Any]] | None:
        """``optimizer_cls_and_kwargs`` for the trainer, or None."""
        return None

    def trainer_mixin(self, args: Any) -> Callable[[type], type] | None:
        """A function ``base -> subclass`` for techniques that change the trainer itself (the loss), or None."""
        return None

    def trainer_kwargs(self, args: Any) -> dict[str, Any]:
        """Constructor keywords of the class :meth:`trainer_mixin` builds."""
        return {}

    def prepare_train_dataset(self, args: Any, dataset: Any, training_args: Any) -> Any:
        """The train dataset as the technique wants it (scored, ordered); unchanged by default."""
        return dataset

    def on_built_trainer(self, args: Any, trainer: Any) -> None:
        """Checks or changes on a trainer built before the extras were applied (``TrainerExtras.apply``)."""


HOOKS: tuple[str, ...] = tuple(
    name for name, value in vars(Technique).items() if callable(value) and not name.startswith("_")
)
"""The hook names every technique exposes (a test checks each registered technique against them)."""


@cache
def technique(name: str) -> Technique:
    """The registered technique ``name`` (imports only its light ``technique`` module)."""
    if name not in TECHNIQUES:
        raise KeyError(f"no technique {name!r}; registered: {', '.join(TECHNIQUES)}")
    module = importlib.import_module(f"hf_fundamentals.integrations.{name}.technique")
    return module.TECHNIQUE


def techniques() -> list[Technique]:
    """Every registered technique, in :data:`TECHNIQUES` order."""
    return [technique(name) for name in TECHNIQUES]


def enabled_techniques(args: Any) -> list[Technique]:
    """The techniques ``args`` switches on, in registry order."""
    return [t for t in techniques() if t.enabled(args)]


_registered: set[str] = set()


def register() -> dict[str, list[str]]:
    """Make everything hf_fundamentals provides known to transformers (attention functions and their masks);
    idempotent, and called by every ``hff`` entry point before a model is built (so the names also resolve inside
    processes relaunched by accelerate). Returns ``{kind: [names]}``."""
    found: dict[str, list[str]] = {}
    for t in techniques():
        if t.hf_names and t.name not in _registered:
            t.register_hf()
            _registered.add(t.name)
        for kind, name in t.hf_names:
            found.setdefault(kind, []).append(name)
    return found


def lazy_exports(
    module_name: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a glue package whose public names live in submodules (PEP 562): the package
    imports nothing heavy until a name is used, so ``hff --help`` and ``HffArguments`` stay fast.
    ``exports`` maps a public name to the submodule (relative to ``module_name``) that defines it."""

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{module_name}.{where}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
