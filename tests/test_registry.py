"""The technique registry: every technique has the same hooks, one name in every layer, flags composed into
HffArguments, and the import paths that moved still work (with a warning naming the new spelling)."""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path

import pytest

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.registry import HOOKS, TECHNIQUES, FlagGroup, Technique, techniques

REPO = Path(__file__).resolve().parents[1]
SHARED_COMMANDS = {"info", "sft", "corpora"}
"""Commands that belong to no one technique."""
LONG_FILES = {
    "memorization/memft_trainer.py": "one trainer mixin whose loss, step, sampler and resume overrides share state",
    "evolution/es_trainer.py": "the ES trainer: one class whose step replaces the Trainer's training step",
}
"""Glue files allowed past 400 lines, with the reason (the docs' layout page repeats it)."""


@pytest.mark.parametrize("name", TECHNIQUES)
def test_every_technique_exposes_the_same_hooks_and_one_name_everywhere(name):
    t = techniques()[TECHNIQUES.index(name)]
    assert isinstance(t, Technique) and t.name == name and t.title
    for hook in HOOKS:
        assert callable(getattr(t, hook)), f"{name}.{hook}"
    importlib.import_module(f"hf_fundamentals.{name}")  # the core package of the same name
    importlib.import_module(f"hf_fundamentals.integrations.{name}")  # its glue folder
    assert (REPO / "tests" / name).is_dir(), f"tests/{name}/"
    assert (REPO / "docs" / f"{name}.md").is_file(), f"docs/{name}.md"
    benches = [
        p for p in (REPO / "benchmarks").glob("*.py") if p.stem == name or p.stem.startswith(name + "_")
    ]
    assert benches, f"benchmarks/{name}*.py"
    for bench in benches:
        results = REPO / "benchmarks" / "results"
        assert any(results.glob(f"{bench.stem}*.json")), f"benchmarks/results/{bench.stem}.json"


@pytest.mark.parametrize("t", techniques(), ids=TECHNIQUES)
def test_flag_groups_are_composed_into_hff_arguments(t):
    if t.flags is None:
        assert not t.enabled(HffArguments())
        return
    assert issubclass(t.flags, FlagGroup) and dataclasses.is_dataclass(t.flags)
    ours = {f.name for f in dataclasses.fields(t.flags)}
    assert t.flags.switch in ours and ours <= {f.name for f in dataclasses.fields(HffArguments)}
    assert issubclass(HffArguments, t.flags)
    for f in dataclasses.fields(t.flags):
        assert f.metadata.get("help"), f"--{f.name} needs a help string"
    assert not t.enabled(HffArguments())  # off by default
    t.flags()  # a group builds and validates alone, with its own defaults


@pytest.mark.parametrize("t", [t for t in techniques() if t.flags is not None], ids=lambda t: t.name)
def test_every_flag_is_documented_on_its_page(t):
    page = (REPO / "docs" / f"{t.name}.md").read_text(encoding="utf-8")
    missing = [f"--{f.name}" for f in dataclasses.fields(t.flags) if f"--{f.name}" not in page]
    assert not missing, f"docs/{t.name}.md does not document {missing}"


def test_every_command_belongs_to_a_technique_or_is_shared():
    from hf_fundamentals.integrations.cli.main import COMMANDS

    owned = {c for t in techniques() for c in t.commands}
    assert owned | SHARED_COMMANDS == set(COMMANDS)
    assert not owned & SHARED_COMMANDS


def test_shared_glue_names_no_technique():
    """The shared code loops over the registry; no technique's switch or module appears in it."""
    switches = {t.flags.switch for t in techniques() if t.flags is not None}
    for rel in ("integrations/trainer.py", "integrations/registry.py"):
        text = (REPO / rel).read_text()
        for switch in switches:
            assert switch not in text, f"{rel} names {switch}"


def test_glue_files_stay_short():
    long = {
        str(p.relative_to(REPO / "integrations")): n
        for p in (REPO / "integrations").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert set(long) <= set(LONG_FILES), (
        f"over 400 lines without a reason: {sorted(set(long) - set(LONG_FILES))}"
    )


MOVED_NAMES = [
    ("hf_fundamentals.integrations.transformers.muon", "muon_optimizer_cls_and_kwargs"),
    ("hf_fundamentals.integrations.transformers.trainer", "trainer_extras"),
    ("hf_fundamentals.integrations.transformers.memft", "memft_trainer_class"),
    ("hf_fundamentals.integrations.transformers.memft", "single_mlp_lora_config"),
    ("hf_fundamentals.integrations.transformers.awd", "AnchoredWeightDecayCallback"),
    ("hf_fundamentals.integrations.transformers.es", "ESTrainer"),
    ("hf_fundamentals.integrations.transformers.es", "ESTrainingConfig"),
    ("hf_fundamentals.integrations.transformers.drift", "DriftMonitorCallback"),
    ("hf_fundamentals.integrations.transformers.mue", "apply_mue"),
    ("hf_fundamentals.integrations.transformers.mue", "complete_mue_config"),
    ("hf_fundamentals.integrations.transformers.mue", "dense_proxy_from_config"),
    ("hf_fundamentals.integrations.transformers.mue", "moe_target_from_config"),
    ("hf_fundamentals.integrations.transformers.mue", "mue_optimizer_cls_and_kwargs"),
    ("hf_fundamentals.integrations.transformers.attention", "model_error_bound"),
    ("hf_fundamentals.integrations.transformers.attention", "set_attention"),
    ("hf_fundamentals.integrations.transformers.preisach", "add_preisach"),
    ("hf_fundamentals.integrations.transformers.preisach", "load_preisach_model"),
    ("hf_fundamentals.integrations.transformers.scaling", "ScalingLawCallback"),
    ("hf_fundamentals.integrations.transformers.distill", "kd_trainer_class"),
    ("hf_fundamentals.integrations.transformers.ordering", "preserve_order"),
    ("hf_fundamentals.integrations.registration", "register"),
    ("hf_fundamentals.integrations.generation", "generate_corpus"),
    ("hf_fundamentals.integrations.audit_reference", "load_reference"),
]


@pytest.mark.parametrize(("module", "name"), MOVED_NAMES)
def test_moved_import_paths_keep_working_and_name_the_new_one(module, name):
    import sys

    sys.modules.pop(module, None)
    with pytest.warns(DeprecationWarning, match=r"moved to hf_fundamentals\.integrations\."):
        old = importlib.import_module(module)
    assert callable(getattr(old, name))


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("hf_fundamentals.integrations.arguments", "HffArguments"),
        ("hf_fundamentals.integrations.arguments", "AuditArguments"),
        ("hf_fundamentals.integrations.audit", "run_audit"),
        ("hf_fundamentals.integrations.ordering", "order_dataset"),
        ("hf_fundamentals.integrations.ordering", "add_score_column"),
        ("hf_fundamentals.integrations.ordering", "plot_orders"),
        ("hf_fundamentals.integrations.corpora", "load_corpus"),
        ("hf_fundamentals.integrations.hub", "load_model"),
    ],
)
def test_unmoved_public_names_still_import(module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert getattr(importlib.import_module(module), name) is not None


def test_configure_attention_names_its_replacement():
    from hf_fundamentals.integrations.attention import configure_attention

    with pytest.raises(TypeError, match=r"set_attention\(model"):
        configure_attention(eps=1e-3, min_seq_len=4096)
