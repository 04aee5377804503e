"""Unix manual pages: roff (``man`` macros and the common escapes) converted to plain-text paragraphs."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from hf_fundamentals.corpora.base import (
    Piece,
)

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
