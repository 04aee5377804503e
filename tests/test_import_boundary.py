"""Our layering rule, enforced: the core imports no HF library; kernels import nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HF_LIBRARIES = frozenset(
    {"transformers", "trl", "peft", "datasets", "evaluate", "huggingface_hub", "kernels", "accelerate"}
)
OUR_PACKAGES = frozenset({"hf_fundamentals", "integrations"})


def find_imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module imported anywhere in a file (top level or inside functions), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def boundary_violations(root: Path, forbidden: frozenset[str], skip: tuple[str, ...] = ()) -> list[str]:
    """``file:line imports module`` for each import under ``root`` whose top-level package is forbidden."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in skip:
            continue
        for line, module in find_imports(path):
            if module.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    return bad


def test_core_imports_no_hf_library():
    bad = boundary_violations(REPO / "hf_fundamentals", HF_LIBRARIES, skip=("integrations",))
    assert not bad, "the core must not import HF libraries (move this to integrations/):\n" + "\n".join(bad)


def test_kernels_import_nothing_of_ours():
    if not (REPO / "kernels").is_dir():
        return
    bad = boundary_violations(REPO / "kernels", OUR_PACKAGES)
    assert not bad, "kernel repos must stand alone (torch/triton only):\n" + "\n".join(bad)


def test_the_boundary_test_catches_a_violation(tmp_path):
    """A test of the test: a core module that imports transformers, even lazily, is reported by file and line."""
    core = tmp_path / "hf_fundamentals"
    (core / "optim").mkdir(parents=True)
    (core / "optim" / "muon.py").write_text(
        "import torch\n\ndef f():\n    from transformers import Trainer\n"
    )
    (core / "lazy.py").write_text("import importlib\nm = importlib.import_module('peft.tuners')\n")
    (core / "ok.py").write_text("import numpy\nfrom .optim import muon\n")
    bad = boundary_violations(core, HF_LIBRARIES)
    assert bad == [
        "hf_fundamentals/lazy.py:2 imports peft.tuners",
        "hf_fundamentals/optim/muon.py:4 imports transformers",
    ]
    kernels = tmp_path / "kernels" / "hff-attn"
    kernels.mkdir(parents=True)
    (kernels / "k.py").write_text("import triton\nfrom hf_fundamentals.attention import ref\n")
    assert boundary_violations(tmp_path / "kernels", OUR_PACKAGES) == [
        "kernels/hff-attn/k.py:2 imports hf_fundamentals.attention"
    ]
