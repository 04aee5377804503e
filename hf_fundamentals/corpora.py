"""Named text corpora from real text nobody here wrote, read offline from this machine.

Benchmarks and the auditor need text from several *distinct, labelled domains* without network access.
Debian ships such text as packages (dictionaries, fortunes, WordNet, man pages, licences), and every
machine has Python's standard library source. This module turns each source into a named domain of
plain-text documents within ``[min_chars, max_chars]``, and samples a corpus deterministically by seed.

Domains (``DOMAINS``; ``hff corpora`` lists them with their availability):

=============  =============================================  ================  ==========================
domain         source                                         Debian package    one document is
=============  =============================================  ================  ==========================
python_code    ``sysconfig.get_paths()["stdlib"]`` ``*.py``   (Python itself)   a function/class chunk
dictionary     GCIDE (Webster 1913 + WordNet), dictd          dict-gcide        an entry (tiny ones merged)
computing      FOLDOC computing dictionary, dictd             dict-foldoc       an entry (tiny ones merged)
jargon         The Jargon File (hacker lexicon), dictd        dict-jargon       an entry (tiny ones merged)
fortunes       ``/usr/share/games/fortunes/*``                fortunes          a fortune (tiny ones merged)
wordnet        WordNet 3.0 synset glosses                     wordnet-base      a group of glosses from one
                                                                                lexicographer file
licenses       ``/usr/share/common-licenses/*``               base-files        a chunk of a licence
manpages       ``/usr/share/man/man[1-8]`` (roff to text)     manpages          a chunk of a man page
=============  =============================================  ================  ==========================

Confusable pair: ``computing`` (FOLDOC) vs ``jargon`` (the Jargon File). Both are dictionaries of
computing terms with the same dictd layout, overlapping headwords, and FOLDOC quotes many Jargon File
entries; the dictionary markup that would give the source away (``{cross-references}``, FOLDOC's
``<category>`` tags and trailing ``(YYYY-MM-DD)`` dates) is stripped, so telling them apart takes the
register of the prose (FOLDOC is encyclopaedic, the Jargon File is hacker slang and folklore). A downstream
auditor uses this pair as the hard case; ``CONFUSABLE_PAIRS`` lists it.

Determinism: every domain lists its files in sorted order and splits them the same way, so
``iter_documents`` is stable across runs and machines with the same package versions; ``build_corpus``
samples with a ``numpy.random.Generator`` seeded from ``(seed, domain name)``. Domains with thousands of
files (``manpages``, ``python_code``) sample *files* first (spread over name families such as ``git-*``,
``gcloud_*`` or a stdlib package, so one big family does not dominate), then one document per file, so
300 documents do not parse 20,000 man pages.

Core module: standard library and numpy only (no HF import).
"""

from __future__ import annotations

import ast
import gzip
import os
import re
import shutil
import subprocess
import sysconfig
import textwrap
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "CONFUSABLE_PAIRS",
    "CORPUS_FORMAT_VERSION",
    "DEBIAN_PACKAGES",
    "DEFAULT_DOCS_PER_DOMAIN",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MIN_CHARS",
    "DOMAINS",
    "CorpusSourceMissing",
    "Domain",
    "available_domains",
    "build_corpus",
    "count_documents",
    "install_debian_packages",
    "iter_documents",
    "iter_records",
    "missing_packages",
    "resolve_domains",
]

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


# ---------------------------------------------------------------------------------------------------------
# Fitting pieces to [min_chars, max_chars]


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


# ---------------------------------------------------------------------------------------------------------
# dictd dictionaries (gcide, foldoc, jargon)

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


# ---------------------------------------------------------------------------------------------------------
# fortunes, wordnet, licences

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


def _license_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink())


def _read_paragraph_file(files: Sequence[Path], root: Path, max_chars: int) -> Iterator[Piece]:
    for path in files:
        text = path.read_text("utf-8", "replace")
        for number, para in enumerate(_reflow(text).split("\n\n")):
            yield Piece(group=path.name, source=f"{path.name}:{number}", text=para)


# ---------------------------------------------------------------------------------------------------------
# man pages (roff to plain text)

_MAN_ROOT = Path("/usr/share/man")
_MAN_SECTIONS = tuple(f"man{n}" for n in range(1, 9))
_ROFF_GLYPHS = {
    "aq": "'", "dq": '"', "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "lq": "\u201c", "rq": "\u201d",
    "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122",
    "mu": "\u00d7", "de": "\u00b0", "+-": "\u00b1", "<=": "\u2264", ">=": "\u2265", "!=": "\u2260",
    "->": "\u2192", "<-": "\u2190", "ti": "~", "ha": "^", "rs": "\\", "ga": "`", "aa": "\u00b4", "sl": "/",
    "ba": "|", "bv": "|", "br": "|", "ul": "_", "ru": "_", "Fo": "\u00ab", "Fc": "\u00bb", "ss": "\u00df",
    "dg": "\u2020", "sc": "\u00a7", "ps": "\u00b6", "pl": "+", "eq": "=", "**": "*", "lB": "[", "rB": "]",
    "lC": "{", "rC": "}", "la": "\u27e8", "ra": "\u27e9", "at": "@", "sh": "#", "Do": "$", "Eu": "\u20ac",
    "fm": "\u2032", "sd": "\u2033", "pc": "\u00b7", "ua": "\u2191", "da": "\u2193", "u": "",
}  # fmt: skip
_ROFF_STRINGS = {
    "lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "C`": '"', "C'": '"', "Aq": "'", "C+": "C++",
    "--": "\u2014", "PI": "\u03c0", 'L"': '"', 'R"': '"',
}  # fmt: skip
"""String registers (``\\*(xx``) that pages define in conditionals this converter skips (pod2man's preamble)."""
_ROFF_ESCAPE = re.compile(
    r"""\\(?:
      \((?P<g2>..)
    | \[(?P<gb>[^\]]*)\]
    | \*(?:\((?P<s2>..)|\[(?P<sb>[^\]]*)\]|(?P<s1>.))
    | [fFgkmMnYV](?:\(..|\[[^\]]*\]|.)
    | s[+-]?(?:\(\d\d|\[\d+\]|'[^']*'|\d)
    | [hvwlLHSxXoNbDRZAB]'[^']*'
    | (?P<ch>.)
    | $
    )""",
    re.X,
)
_ROFF_SINGLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": "\t", "'": "'", "`": "`"}
_ROFF_ARG = re.compile(r'"((?:[^"]|"")*)"?|((?:\\.|[^\s\\])+)')
_ROFF_BREAKS = frozenset(
    "PP LP P sp br TP TQ IP HP RS RE nf fi TS TE EX EE Vb Ve in ti bp ne Pp Lp Bl El Bd Ed It Dl D1".split()
)
_ROFF_ALTERNATING = frozenset({"BR", "BI", "IB", "IR", "RB", "RI"})


def _roff_glyph(name: str) -> str:
    if name in _ROFF_GLYPHS:
        return _ROFF_GLYPHS[name]
    match = re.fullmatch(r"u([0-9A-Fa-f]{4,6})(?:_.*)?", name)
    if match:
        try:
            return chr(int(match.group(1), 16))
        except ValueError:
            return ""
    return ""


def _roff_escape(match: re.Match[str], strings: dict[str, str]) -> str:
    groups = match.groupdict()
    if groups["g2"] is not None or groups["gb"] is not None:
        return _roff_glyph(groups["g2"] if groups["g2"] is not None else groups["gb"])
    for key in ("s2", "sb", "s1"):
        if groups[key] is not None:
            return strings.get(groups[key], "")
    char = groups["ch"]
    if char is None:
        return ""
    if char in _ROFF_SINGLE:
        return _ROFF_SINGLE[char]
    return "" if char.isalnum() or char in "&|^%{}/,:!?)" else char


def _roff_inline(text: str, strings: dict[str, str] = _ROFF_STRINGS) -> str:
    return _ROFF_ESCAPE.sub(lambda match: _roff_escape(match, strings), text)


def _roff_args(text: str) -> list[str]:
    args = []
    for match in _ROFF_ARG.finditer(text):
        quoted, bare = match.groups()
        args.append(quoted.replace('""', '"') if quoted is not None else bare)
    return args


def _roff_to_paragraphs(source: str) -> list[str]:
    """Plain-text paragraphs of a man(7)/mdoc(7) page: requests dropped, font and glyph escapes resolved.

    Deliberately simple (no macro expansion, no tbl/eqn layout): headings are prefixed to the paragraph that
    follows them, ``.nf`` blocks and tables keep their lines, everything else is reflowed.
    """
    paragraphs: list[str] = []
    lines_out: list[str] = []
    heading = ""
    nofill = False
    skip_until: str | None = None
    brace_depth = 0
    table_format = False
    strings = dict(_ROFF_STRINGS)

    def inline(text: str) -> str:
        return _roff_inline(text, strings)

    def flush() -> None:
        nonlocal heading
        if not lines_out:
            return
        text = "\n".join(lines_out) if nofill else " ".join(" ".join(lines_out).split())
        lines_out.clear()
        if not text.strip():
            return
        paragraphs.append(f"{heading}\n{text}" if heading else text)
        heading = ""

    for raw in source.splitlines():
        if skip_until is not None:
            if raw.strip().startswith(skip_until):
                skip_until = None
            continue
        if brace_depth > 0:
            brace_depth += raw.count("\\{") - raw.count("\\}")
            continue
        if table_format:
            table_format = not raw.rstrip().endswith(".")
            continue
        line = re.sub(r'(?<!\\)((?:\\\\)*)\\["#].*$', r"\1", raw)
        if line[:1] in (".", "'"):
            match = re.match(r"[.']\s*(\S*)\s*(.*)", line)
            name, rest = (match.group(1), match.group(2)) if match else ("", "")
            if name in ("de", "de1", "am", "ig", "dei", "ami"):
                skip_until = ".."
            elif name in ("if", "ie", "el", "while"):
                brace_depth = max(0, rest.count("\\{") - rest.count("\\}"))
            elif name in ("TH", "Dd", "Dt", "Os", "IX"):
                continue  # title line (page name, section, date), index entries
            elif name == "ds":
                key, _, value = rest.partition(" ")
                strings[key] = inline(value.lstrip().removeprefix('"'))
            elif name in ("SH", "SS", "Sh", "Ss"):
                flush()
                nofill = False
                heading = " ".join(inline(" ".join(_roff_args(rest))).split())
            elif name == "TS":
                flush()
                nofill, table_format = True, True
            elif name in _ROFF_BREAKS:
                flush()
                if name in ("nf", "EX", "Bd", "Vb"):
                    nofill = True
                elif name in ("fi", "EE", "TE", "Ed", "Ve"):
                    nofill = False
                if name in ("IP", "It") and rest:
                    tag = inline(_roff_args(rest)[0]) if name == "IP" else inline(rest)
                    if tag.strip():
                        lines_out.append(tag.strip())
            elif name[:1].isupper() and rest:
                args = [inline(arg) for arg in _roff_args(rest)]
                if name in _ROFF_ALTERNATING:
                    text = "".join(args)
                elif name == "Fl":
                    text = " ".join("-" + arg for arg in args)
                elif name == "Xr" and len(args) >= 2:
                    text = f"{args[0]}({args[1]})" + "".join(args[2:])
                else:
                    text = " ".join(args)
                if text.strip():
                    lines_out.append(text.strip() if not nofill else text)
            continue
        text = inline(line)
        if table_format is False and nofill and ("T{" in line or "T}" in line):
            text = text.replace("T{", "").replace("T}", "")
        if not text.strip():
            if nofill:
                lines_out.append("")
            else:
                flush()
            continue
        lines_out.append(text.replace("\t", "  ").rstrip() if nofill else text.strip())
    flush()
    return paragraphs


def _man_files(root: Path) -> list[Path]:
    files: list[str] = []
    for section in _MAN_SECTIONS:
        directory = root / section
        if not directory.is_dir():
            continue
        with os.scandir(directory) as entries:
            files.extend(
                e.path for e in entries if e.name.endswith(".gz") and e.is_file(follow_symlinks=False)
            )
    return [Path(path) for path in sorted(files)]


def _read_man(files: Sequence[Path], root: Path, max_chars: int) -> Iterator[Piece]:
    for path in files:
        try:
            with gzip.open(path, "rb") as handle:
                raw = handle.read().decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        if raw.lstrip().startswith(".so "):
            continue  # a link to another page
        page = f"{path.parent.name}/{path.name.removesuffix('.gz')}"
        for number, para in enumerate(_roff_to_paragraphs(raw)):
            yield Piece(group=page, source=f"{page}:{number}", text=para)


# ---------------------------------------------------------------------------------------------------------
# Python's standard library

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


# ---------------------------------------------------------------------------------------------------------
# The registry


def _family(path: Path, root: Path) -> str:
    """Files of one family (``git-*`` man pages, one stdlib package) are sampled as one stratum."""
    text, prefix = str(path), str(root).rstrip(os.sep) + os.sep
    parts = (text[len(prefix) :] if text.startswith(prefix) else path.name).split(os.sep)
    if len(parts) > 1 and not parts[0].startswith("man"):
        return parts[0]  # a stdlib package
    return re.split(r"[-_.:]", parts[-1], maxsplit=1)[0].lower() or parts[-1]


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            "python_code", "Python standard library source (function/class chunks)", None,
            _stdlib_root(), _stdlib_files, _read_python, sample_files=True, joiner="\n\n\n",
        ),
        Domain("dictionary", "GCIDE general English dictionary (Webster 1913 + WordNet)", "dict-gcide",
               _DICTD_ROOT, _dictd_files("gcide"), _read_dictd),
        Domain("computing", "FOLDOC, the Free On-line Dictionary of Computing", "dict-foldoc",
               _DICTD_ROOT, _dictd_files("foldoc"), _read_dictd),
        Domain("jargon", "The Jargon File, a lexicon of hacker slang", "dict-jargon",
               _DICTD_ROOT, _dictd_files("jargon"), _read_dictd),
        Domain("fortunes", "fortune cookies: quotations, jokes, aphorisms", "fortunes",
               Path("/usr/share/games/fortunes"), _fortune_files, _read_fortunes),
        Domain("wordnet", "WordNet 3.0 synset glosses, grouped by lexicographer file", "wordnet-base",
               Path("/usr/share/wordnet"), _wordnet_files, _read_wordnet),
        Domain("licenses", "common free-software licence texts", "base-files",
               Path("/usr/share/common-licenses"), _license_files, _read_paragraph_file, pack=True),
        Domain("manpages", "Unix manual pages, roff converted to plain text", "manpages",
               _MAN_ROOT, _man_files, _read_man, pack=True, sample_files=True),
    )
}  # fmt: skip
"""Domain name -> Domain. Replace an entry (``dataclasses.replace(d, root=...)``) to read another copy."""

DEBIAN_PACKAGES: dict[str, str] = {name: d.package for name, d in DOMAINS.items() if d.package}
"""Domain -> the Debian package that provides its source (``python_code`` needs none)."""

CONFUSABLE_PAIRS: tuple[tuple[str, str], ...] = (("computing", "jargon"),)
"""Pairs of domains that are hard to tell apart (both computing dictionaries); see the module docstring."""


def _domain(name: str) -> Domain:
    if not isinstance(name, str) or name not in DOMAINS:
        raise ValueError(f"unknown corpus domain {name!r}; accepted names: {', '.join(DOMAINS)}")
    return DOMAINS[name]


def _install_hint(domain: Domain) -> str:
    if domain.package is None:
        return "it is Python's own standard library source; this Python installation has no .py files there"
    return (
        f"it comes from the Debian package {domain.package!r}: run `hff corpora --install` "
        f"or `apt-get install -y {domain.package}` (as root)"
    )


def _require(domain: Domain) -> list[Path]:
    files = domain.files()
    if not files:
        raise CorpusSourceMissing(
            f"corpus domain {domain.name!r} has no source on this machine (looked in {domain.root}); "
            + _install_hint(domain)
        )
    return files


def available_domains() -> dict[str, bool]:
    """Domain name -> whether its source is present on this machine."""
    return {name: domain.available() for name, domain in DOMAINS.items()}


def missing_packages(domains: Iterable[str] | None = None) -> list[str]:
    """The Debian packages to install for the given domains (all when None) whose sources are absent."""
    names = list(DOMAINS) if domains is None else [_domain(n).name for n in domains]
    packages: list[str] = []
    for name in names:
        domain = DOMAINS[name]
        if domain.package and not domain.available() and domain.package not in packages:
            packages.append(domain.package)
    return packages


def resolve_domains(domains: Iterable[str] | str | None = None) -> list[str]:
    """Validate domain names (a name or a list); None means every domain whose source is on this machine."""
    if domains is None:
        present = [name for name, ok in available_domains().items() if ok]
        absent = [name for name in DOMAINS if name not in present]
        if absent:
            warnings.warn(
                f"corpus domains {absent} are not on this machine and are left out "
                f"(install them with `hff corpora --install`)",
                stacklevel=3,
            )
        return present
    if isinstance(domains, str):
        domains = [domains]
    names = [_domain(name).name for name in domains]
    if not names:
        raise ValueError(f"domains is empty; pass None for all available or some of: {', '.join(DOMAINS)}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"domains lists {duplicates} more than once; list each domain once")
    return names


def _check_bounds(min_chars: int, max_chars: int) -> None:
    if not isinstance(min_chars, int) or min_chars < 1:
        raise ValueError(f"min_chars must be a positive int, got {min_chars!r}")
    if not isinstance(max_chars, int) or max_chars < max(min_chars, 20):
        raise ValueError(f"max_chars must be an int >= max(min_chars={min_chars}, 20), got {max_chars!r}")


def _records(
    domain: Domain, files: Sequence[Path], min_chars: int, max_chars: int
) -> Iterator[tuple[str, str]]:
    pieces = domain.read(files, domain.root, max_chars)
    return _fit(pieces, min_chars, max_chars, domain.pack, domain.joiner)


@lru_cache(maxsize=8)
def _all_records(domain: Domain, min_chars: int, max_chars: int) -> tuple[tuple[str, str], ...]:
    seen: set[str] = set()
    unique = []
    for source, text in _records(domain, _require(domain), min_chars, max_chars):
        if text not in seen:  # the same fortune in two files, identical paragraphs in sibling man pages
            seen.add(text)
            unique.append((source, text))
    return tuple(unique)


def iter_records(
    domain: str, min_chars: int = DEFAULT_MIN_CHARS, max_chars: int = DEFAULT_MAX_CHARS
) -> Iterator[tuple[str, str]]:
    """Every distinct ``(source, text)`` document of a domain, in a deterministic order (reads the whole source)."""
    spec = _domain(domain)
    _check_bounds(min_chars, max_chars)
    yield from _all_records(spec, min_chars, max_chars)


def iter_documents(
    domain: str, min_chars: int = DEFAULT_MIN_CHARS, max_chars: int = DEFAULT_MAX_CHARS
) -> Iterator[str]:
    """Every document (plain text within ``[min_chars, max_chars]``) of a domain, in a deterministic order."""
    for _, text in iter_records(domain, min_chars, max_chars):
        yield text


def count_documents(
    domain: str, min_chars: int = DEFAULT_MIN_CHARS, max_chars: int = DEFAULT_MAX_CHARS
) -> int:
    """How many documents a domain has (parses the whole source: seconds for most, a minute for manpages)."""
    return sum(1 for _ in iter_records(domain, min_chars, max_chars))


def _domain_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _file_order(files: list[Path], root: Path, rng: np.random.Generator) -> Iterator[Path]:
    """Files in a seeded order that visits every family once per round (one big family cannot dominate)."""
    families: dict[str, list[Path]] = {}
    for path in files:
        families.setdefault(_family(path, root), []).append(path)
    names = sorted(families)
    orders = {name: rng.permutation(len(families[name])) for name in names}
    family_order = [names[i] for i in rng.permutation(len(names))]
    for rank in range(max(len(members) for members in families.values())):
        for name in family_order:
            if rank < len(families[name]):
                yield families[name][orders[name][rank]]


def _sample_domain(
    domain: Domain, n: int, rng: np.random.Generator, min_chars: int, max_chars: int
) -> list[tuple[str, str]]:
    files = _require(domain)
    if domain.sample_files:
        picked: list[tuple[str, str]] = []
        for path in _file_order(files, domain.root, rng):
            docs = list(_records(domain, [path], min_chars, max_chars))
            if docs:
                doc = docs[int(rng.integers(len(docs)))]
                if all(doc[1] != text for _, text in picked):
                    picked.append(doc)
                if len(picked) == n:
                    return picked
        # Fewer files with documents than asked for: fall back to sampling from the full list.
    records = _all_records(domain, min_chars, max_chars)
    if len(records) < n:
        warnings.warn(
            f"corpus domain {domain.name!r} has only {len(records)} documents within [{min_chars}, {max_chars}] "
            f"characters; asked for {n}, using all {len(records)}",
            stacklevel=3,
        )
        n = len(records)
    return [records[i] for i in rng.choice(len(records), size=n, replace=False)]


def build_corpus(
    domains: Iterable[str] | str | None = None,
    docs_per_domain: int = DEFAULT_DOCS_PER_DOMAIN,
    seed: int = 0,
    min_chars: int = DEFAULT_MIN_CHARS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[dict[str, str]]:
    """Sample ``docs_per_domain`` documents from each domain: ``[{"text", "domain", "source"}, ...]``.

    Deterministic for a seed (each domain draws from its own generator seeded by ``(seed, name)``, so adding a
    domain does not change the others). ``domains=None`` takes every domain present on this machine.
    Raises ValueError for an unknown domain and CorpusSourceMissing (naming the Debian package to install)
    for a domain whose source is absent. A domain with fewer documents than asked gives all it has, with a
    warning.
    """
    names = resolve_domains(domains)
    if not isinstance(docs_per_domain, int) or docs_per_domain < 1:
        raise ValueError(f"docs_per_domain must be a positive int, got {docs_per_domain!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _check_bounds(min_chars, max_chars)
    for name in names:  # fail before any slow work
        _require(DOMAINS[name])
    corpus = []
    for name in names:
        rng = _domain_rng(int(seed), name)
        for source, text in _sample_domain(DOMAINS[name], docs_per_domain, rng, min_chars, max_chars):
            corpus.append({"text": text, "domain": name, "source": source})
    return corpus


# ---------------------------------------------------------------------------------------------------------
# Installing the Debian packages


def _apt_install(packages: list[str], echo: Callable[[str], None]) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    echo("running: " + " ".join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def install_debian_packages(
    domains: Iterable[str] | None = None, dry_run: bool = False, echo: Callable[[str], None] = print
) -> list[str]:
    """Install the Debian packages whose domains are missing (all domains when None); idempotent.

    Runs ``apt-get install`` only for absent sources, and ``apt-get update`` once only if that fails with
    "Unable to locate package". Needs root; otherwise raises PermissionError with the command to run.
    Returns the packages installed (with ``dry_run``, the ones that would be; nothing is run).
    """
    names = list(DOMAINS) if domains is None else resolve_domains(domains)
    needed: dict[str, list[str]] = {}
    for name in names:
        domain = DOMAINS[name]
        if domain.package and not domain.available():
            needed.setdefault(domain.package, []).append(name)
    if not needed:
        echo(f"all corpus sources are present for: {', '.join(names)}; nothing to install")
        return []
    packages = list(needed)
    for package, for_domains in needed.items():
        echo(f"{package}: needed by domain(s) {', '.join(for_domains)} (source absent)")
    command = "apt-get install -y " + " ".join(packages)
    if dry_run:
        echo(f"dry run: would run `{command}` (and `apt-get update` first if apt cannot locate them)")
        return packages
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            f"apt-get is not on this machine (not Debian/Ubuntu?); install by hand: {packages}"
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise PermissionError(f"installing needs root; run: sudo {command}")
    result = _apt_install(packages, echo)
    if result.returncode != 0 and "Unable to locate" in (result.stdout + result.stderr):
        echo("apt cannot locate the packages; running: apt-get update")
        update = subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
        if update.returncode != 0:
            raise RuntimeError(f"`apt-get update` failed:\n{(update.stdout + update.stderr)[-2000:]}")
        result = _apt_install(packages, echo)
    if result.returncode != 0:
        raise RuntimeError(f"`{command}` failed:\n{(result.stdout + result.stderr)[-2000:]}")
    _all_records.cache_clear()
    _listing.cache_clear()
    still_missing = [
        name for package in packages for name in needed[package] if not DOMAINS[name].available()
    ]
    if still_missing:
        echo(
            f"installed {packages}, but the sources of {still_missing} are still absent "
            "(a dpkg path-exclude such as Docker's minimal images drop /usr/share/man?)"
        )
    else:
        echo(f"installed: {', '.join(packages)}")
    return packages
