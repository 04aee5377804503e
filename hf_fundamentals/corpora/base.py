"""The shapes every corpus reader shares: a domain, the raw pieces a reader yields, and fitting pieces to
``[min_chars, max_chars]`` documents."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

DEFAULT_MIN_CHARS = 200
DEFAULT_MAX_CHARS = 1500
DEFAULT_DOCS_PER_DOMAIN = 200
CORPUS_FORMAT_VERSION = 1
"""Bumped whenever splitting or cleaning changes, so on-disk caches built by older code are not reused."""


class Piece(NamedTuple):
    """A raw cleaned unit of a source before fitting to length: merged only with pieces of the same group."""

    group: str
    source: str
    text: str


class CorpusSourceMissing(FileNotFoundError):
    """A requested domain's source is not on this machine; the message says which package installs it."""


@dataclass(frozen=True)
class Domain:
    """One named text domain: where its source lives and how it splits into documents."""

    name: str
    description: str
    package: str | None
    """Debian package that provides the source; None for Python's standard library."""
    root: Path
    list_files: Callable[[Path], list[Path]]
    """Sorted source files under ``root`` (empty when the source is absent)."""
    read: Callable[[Sequence[Path], Path, int], Iterator[Piece]]
    """``read(files, root, max_chars)`` yields cleaned pieces in a deterministic order."""
    pack: bool = False
    """True: pack consecutive pieces up to ``max_chars`` (chunks of a long text); False: a piece is a
    document, and only pieces shorter than ``min_chars`` are merged with their neighbours."""
    sample_files: bool = False
    """True: ``build_corpus`` samples files first, then one document per file (many files)."""
    joiner: str = "\n\n"

    def files(self) -> list[Path]:
        """The source files present on this machine, sorted (listed once per process)."""
        return list(_listing(self.list_files, self.root))

    def available(self) -> bool:
        """Whether the source is present on this machine."""
        return bool(self.files())


@lru_cache(maxsize=64)
def _listing(list_files: Callable[[Path], list[Path]], root: Path) -> tuple[Path, ...]:
    return tuple(list_files(root)) if root.is_dir() else ()


def _split_long(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` into parts of at most ``max_chars``, preferring paragraph, then line, then word breaks."""
    parts: list[str] = []
    while len(text) > max_chars:
        window = text[: max_chars + 1]
        cut = -1
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at >= max_chars // 3:
                cut = at
                break
        if cut <= 0:
            cut = max_chars
        head, text = text[:cut].rstrip(), text[cut:]
        text = text.lstrip("\n") if text[:1] == "\n" else text.lstrip()
        if head.strip():
            parts.append(head)
    if text.strip():
        parts.append(text)
    return parts


def _fit(
    pieces: Iterable[Piece], min_chars: int, max_chars: int, pack: bool, joiner: str = "\n\n"
) -> Iterator[tuple[str, str]]:
    """Yield ``(source, text)`` documents within bounds: long pieces cut, tiny neighbours merged, rest dropped."""
    buf: list[str] = []
    buf_source = ""
    buf_group: str | None = None
    buf_len = 0

    def flush() -> Iterator[tuple[str, str]]:
        if buf and buf_len >= min_chars:
            extra = f"+{len(buf) - 1}" if len(buf) > 1 else ""
            yield buf_source + extra, joiner.join(buf)

    for piece in pieces:
        text = piece.text.strip("\n")
        if not text.strip():
            continue
        for k, part in enumerate(_split_long(text, max_chars)):
            source = piece.source if k == 0 else f"{piece.source}#{k}"
            if buf:
                fits = buf_len + len(joiner) + len(part) <= max_chars
                full = buf_len >= min_chars and not pack
                if piece.group != buf_group or not fits or full:
                    yield from flush()
                    buf, buf_len = [], 0
            if not buf:
                buf_source, buf_group = source, piece.group
                buf_len = len(part)
            else:
                buf_len += len(joiner) + len(part)
            buf.append(part)
    yield from flush()


def _reflow(text: str) -> str:
    """Join hard-wrapped lines into paragraphs (blank lines separate paragraphs); squeeze whitespace."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", text):
        joined = " ".join(para.split())
        if joined:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)
