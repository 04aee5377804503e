"""Python's own standard library source: function and class chunks of each module."""

from __future__ import annotations

import ast
import os
import sysconfig
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

from hf_fundamentals.corpora.base import (
    Piece,
)

_STDLIB_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(root: Path) -> list[Path]:
    found: list[str] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _STDLIB_SKIP_DIRS and not d.startswith("config-"))
        found.extend(os.path.join(directory, n) for n in names if n.endswith(".py"))
    return [Path(path) for path in sorted(found)]


def _code_blocks(
    nodes: list[ast.stmt], lines: list[str], start: int, end: int, max_chars: int
) -> list[tuple[str, str]]:
    """``(name, text)`` blocks of lines ``[start, end)``: one per def/class (with the comments above it),
    runs of other statements together; a class longer than ``max_chars`` is split into its methods."""
    blocks: list[tuple[str, int, int, ast.stmt | None]] = []
    cursor = start
    for node in nodes:
        node_end = getattr(node, "end_lineno", None) or node.lineno
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if is_def:
            blocks.append((node.name, cursor, node_end, node))
        elif blocks and blocks[-1][3] is None:
            blocks[-1] = (blocks[-1][0], blocks[-1][1], node_end, None)
        else:
            blocks.append(("<module>", cursor, node_end, None))
        cursor = node_end
    if blocks:
        name, first, _, node = blocks[-1]
        blocks[-1] = (name, first, max(end, blocks[-1][2]), node)
    out: list[tuple[str, str]] = []
    for name, first, last, node in blocks:
        text = "\n".join(lines[first:last])
        if isinstance(node, ast.ClassDef) and len(text) > max_chars and node.body:
            inner = _code_blocks(node.body, lines, first, last, max_chars)
            out.extend((f"{name}.{sub}" if sub != "<module>" else name, body) for sub, body in inner)
        else:
            out.append((name, textwrap.dedent(text).strip("\n")))
    return out


def _read_python(files: Sequence[Path], root: Path, max_chars: int) -> Iterator[Piece]:
    for path in files:
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError:
            relative = path.name
        source = path.read_bytes().decode("utf-8", "replace")
        lines = source.splitlines()
        try:
            tree = ast.parse(source)
            blocks = _code_blocks(tree.body, lines, 0, len(lines), max_chars)
        except (SyntaxError, ValueError, RecursionError):
            blocks = [("<module>", source)]
        for name, text in blocks:
            text = "\n".join(line.rstrip() for line in text.splitlines())
            yield Piece(group=relative, source=f"{relative}:{name}", text=text)
