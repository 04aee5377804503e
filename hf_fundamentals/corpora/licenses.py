"""Licence texts (``/usr/share/common-licenses``): paragraphs of each file, packed into chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from hf_fundamentals.corpora.base import (
    Piece,
    _reflow,
)


def _license_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink())


def _read_paragraph_file(files: Sequence[Path], root: Path, max_chars: int) -> Iterator[Piece]:
    for path in files:
        text = path.read_text("utf-8", "replace")
        for number, para in enumerate(_reflow(text).split("\n\n")):
            yield Piece(group=path.name, source=f"{path.name}:{number}", text=para)
