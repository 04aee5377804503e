"""dictd dictionaries (GCIDE, FOLDOC, the Jargon File): entries read from the ``.index``/``.dict.dz`` pair, the
markup that would give the source away stripped."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from hf_fundamentals.corpora.base import (
    Piece,
    _reflow,
)

_DICTD_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_DICTD_ROOT = Path("/usr/share/dictd")
_GCIDE_TAG = re.compile(r"\[[^\]\n]*(?:Webster|WordNet|PJC|Century|Chambers)[^\]\n]*\]")
_GCIDE_PRON = re.compile(r"[ \t]*\\[^\\\n]{1,80}\\")
_FOLDOC_CATEGORIES = re.compile(r"^([ \t]*(?:\d+\.[ \t]*)?)(?:<[^<>\n]{1,60}>[ \t]*)+", re.M)
_TYPOGRAPHIC = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_FOLDOC_DATE = re.compile(r"\(\d{4}-\d{2}-\d{2}\)\s*$")


def _dictd_number(field: str) -> int:
    value = 0
    for char in field:
        value = value * 64 + _DICTD_B64[char]
    return value


def _dictd_files(name: str) -> Callable[[Path], list[Path]]:
    def list_files(root: Path) -> list[Path]:
        path = root / f"{name}.dict.dz"
        return [path] if path.is_file() and (root / f"{name}.index").is_file() else []

    return list_files


def _clean_dictd(entry: str, name: str) -> str:
    if name == "gcide":
        entry = _GCIDE_TAG.sub("", entry)
        entry = _GCIDE_PRON.sub("", entry)
    elif name == "foldoc":
        entry = _FOLDOC_CATEGORIES.sub(r"\1", entry)
        entry = _FOLDOC_DATE.sub("", entry.rstrip())
    entry = entry.replace("{", "").replace("}", "")
    if not entry.isascii():
        entry = entry.translate(_TYPOGRAPHIC)
    return _reflow(entry)


def _read_dictd(files: Sequence[Path], root: Path, max_chars: int) -> Iterator[Piece]:
    """One piece per distinct entry of a dictd database, in file order (aliases pointing at one entry dropped)."""
    for path in files:
        name = path.name.removesuffix(".dict.dz")
        with gzip.open(path, "rb") as handle:
            data = handle.read()
        entries: dict[tuple[int, int], list[str]] = {}
        for line in path.with_name(f"{name}.index").read_text("utf-8", "replace").splitlines():
            fields = line.split("\t")
            if len(fields) < 3 or fields[0].startswith(("00-database", "00database")):
                continue
            try:
                span = (_dictd_number(fields[1]), _dictd_number(fields[2]))
            except KeyError:
                continue
            entries.setdefault(span, []).append(fields[0])
        for (offset, length), headwords in sorted(entries.items()):
            text = _clean_dictd(data[offset : offset + length].decode("utf-8", "replace"), name)
            start = text[:200].lower()
            headword = next((h for h in headwords if start.startswith(h.lower())), headwords[0])
            yield Piece(group=name, source=f"{name}:{headword}", text=text)
