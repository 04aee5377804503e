"""HffArguments parse next to TrainingArguments (HfArgumentParser) and TRL configs (TrlParser, YAML)."""

from __future__ import annotations

import pytest

from hf_fundamentals.integrations.arguments import HffArguments


def test_parses_with_training_arguments(tmp_path, monkeypatch):
    from transformers import HfArgumentParser, TrainingArguments

    monkeypatch.setenv("HFF_CACHE", str(tmp_path / "before"))  # restored after the test
    parser = HfArgumentParser((TrainingArguments, HffArguments))
    training, hff = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path / "o"), "--hff_cache_dir", str(tmp_path / "c")]
    )
    assert training.output_dir == str(tmp_path / "o")
    assert hff.hff_cache_dir == str(tmp_path / "c")
    import os

    assert os.environ["HFF_CACHE"] == str(tmp_path / "c")


def test_every_field_has_help():
    import dataclasses

    for f in dataclasses.fields(HffArguments):
        assert f.metadata.get("help"), f"HffArguments.{f.name} needs a help string"


def test_yaml_config_through_trl_parser(tmp_path, monkeypatch):
    from hf_fundamentals.integrations.cli.sft import make_parser

    monkeypatch.setenv("HFF_CACHE", str(tmp_path / "before"))  # restored after the test
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model_name_or_path: embedded\nhff_cache_dir: {tmp_path / 'yaml-cache'}\n"
        "max_steps: 3\nuse_cpu: true\nbf16: false\n"
    )
    script, training, model, data, hff = make_parser().parse_args_and_config(
        ["--config", str(config), "--output_dir", str(tmp_path / "o")]
    )
    assert model.model_name_or_path == "embedded"
    assert training.max_steps == 3
    assert hff.hff_cache_dir == str(tmp_path / "yaml-cache")


def test_unknown_flag_is_an_error(tmp_path):
    from hf_fundamentals.integrations.cli.sft import make_parser

    argv = ["--hff_no_such_flag", "1", "--output_dir", str(tmp_path), "--use_cpu", "--bf16", "false"]
    with pytest.raises(ValueError, match="hff_no_such_flag"):
        make_parser().parse_args_and_config(argv)
