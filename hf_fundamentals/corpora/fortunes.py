"""fortune cookies (``/usr/share/games/fortunes``): one fortune a piece."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

from hf_fundamentals.corpora.base import (
    Piece,
)

_FORTUNE_SKIP = frozenset({"ascii-art"})  # pictures, not text


def _fortune_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file()
        and not p.is_symlink()
        and p.suffix not in (".dat", ".u8")
        and p.name not in _FORTUNE_SKIP
    )


def _read_fortunes(files: Sequence[Path], root: Path, max_chars: int) -> Iterator[Piece]:
    for path in files:
        raw = path.read_text("utf-8", "replace")
        for number, entry in enumerate(re.split(r"^%[ \t]*$", raw, flags=re.M)):
            lines = [line.expandtabs(8).rstrip() for line in entry.strip("\n").splitlines()]
            text = textwrap.dedent("\n".join(lines)).strip("\n")
            yield Piece(group=path.name, source=f"{path.name}:{number}", text=text)
