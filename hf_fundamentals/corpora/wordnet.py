"""WordNet 3.0 synset glosses, grouped by lexicographer file."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from hf_fundamentals.corpora.base import (
    Piece,
)

_WORDNET_POS = ("noun", "verb", "adj", "adv")
# Lexicographer files (WordNet's lexnames), indexed by a synset's lex_filenum.
_WORDNET_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive "
    "noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity "
    "noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion "
    "verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


def _wordnet_files(root: Path) -> list[Path]:
    return [root / f"data.{pos}" for pos in _WORDNET_POS if (root / f"data.{pos}").is_file()]


def _read_wordnet(files: Sequence[Path], root: Path, max_chars: int) -> Iterator[Piece]:
    """One piece per synset (``word, word: gloss``), grouped by lexicographer file (noun.food, verb.motion...)."""
    synsets: list[tuple[int, int, int, Piece]] = []
    for file_rank, path in enumerate(files):
        for line in path.read_text("utf-8", "replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # licence header
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            try:
                offset, lexnum, count = int(fields[0]), int(fields[1]), int(fields[3], 16)
            except (ValueError, IndexError):
                continue
            words = [re.sub(r"\(\w+\)$", "", w).replace("_", " ") for w in fields[4 : 4 + 2 * count : 2]]
            lexname = _WORDNET_LEXNAMES[lexnum] if lexnum < len(_WORDNET_LEXNAMES) else f"lex{lexnum}"
            text = f"{', '.join(words)}: {gloss.strip()}"
            synsets.append((lexnum, file_rank, offset, Piece(lexname, f"wordnet:{lexname}:{words[0]}", text)))
    synsets.sort(key=lambda item: item[:3])
    for *_, piece in synsets:
        yield piece
