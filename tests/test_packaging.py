"""``integrations/`` installs as ``hf_fundamentals.integrations`` from a wheel and from an editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("hf_fundamentals-*.whl")
    return path


def test_wheel_ships_integrations_under_the_one_import_root(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "hf_fundamentals/integrations/__init__.py" in names
    assert "hf_fundamentals/integrations/cli/main.py" in names
    assert not any(name.startswith("integrations/") for name in names), "no stray top-level package"
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "hff = hf_fundamentals.integrations.cli.main:main" in entry_points


def test_installed_wheel_imports_integrations(wheel, tmp_path):
    """``pip install .``: the installed copy (not the checkout) provides hf_fundamentals.integrations."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import hf_fundamentals.integrations.cli.main as m; "
        "print(m.__file__)"
    )
    # -S: no site-packages, so an editable install of the checkout cannot answer instead of the wheel
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(target)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert Path(out.stdout.strip()).is_relative_to(target)


def test_running_install_maps_integrations_folder():
    """Whatever install runs the suite (``pip install -e .`` in the README), the mapping holds."""
    import hf_fundamentals
    import hf_fundamentals.integrations as glue

    core_dir = Path(hf_fundamentals.__file__).parent
    glue_dir = Path(glue.__file__).parent
    if core_dir == REPO / "hf_fundamentals":  # editable: both resolve into the checkout
        assert glue_dir == REPO / "integrations"
    else:  # regular install: the glue sits inside the installed core package
        assert glue_dir == core_dir / "integrations"
