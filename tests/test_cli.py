"""The ``hff`` entry point: dispatch, --help everywhere, ``hff info`` on the real environment."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_fundamentals.integrations.cli.main import COMMANDS, main


def test_top_level_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_fails_with_the_accepted_names(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "info" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    try:
        code = main([command, "--help"])
    except SystemExit as exit_:  # argparse's own --help exits; the launcher commands return
        code = exit_.code
    assert code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_info_reports_the_real_environment(capsys):
    import torch
    import transformers
    from transformers.utils.import_utils import is_kernels_available

    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["transformers"] == transformers.__version__
    assert info["versions"]["torch"] == torch.__version__
    assert info["kernels_usable_by_transformers"] is is_kernels_available()
    assert info["gpu"] is None or isinstance(info["gpu"], str)


def test_kernels_are_usable_by_transformers():
    """The pins in pyproject keep transformers' own check green (5.23 would need kernels>=0.18.2)."""
    from transformers.utils.import_utils import is_kernels_available

    assert is_kernels_available()


def test_console_script_is_installed():
    beside_python = Path(sys.executable).parent / "hff"
    exe = str(beside_python) if beside_python.exists() else shutil.which("hff")
    assert exe, "the hff console script is not on PATH (pip install -e . installs it)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "hff <command>" in out
