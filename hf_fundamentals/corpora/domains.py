"""The named domains, their availability on this machine, and deterministic sampling of a corpus by seed."""

from __future__ import annotations

import os
import re
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from hf_fundamentals.corpora.base import (
    DEFAULT_DOCS_PER_DOMAIN,
    DEFAULT_MAX_CHARS,
    DEFAULT_MIN_CHARS,
    CorpusSourceMissing,
    Domain,
    _fit,
    _listing,
)
from hf_fundamentals.corpora.dictd import (
    _DICTD_ROOT,
    _dictd_files,
    _read_dictd,
)
from hf_fundamentals.corpora.fortunes import (
    _fortune_files,
    _read_fortunes,
)
from hf_fundamentals.corpora.licenses import (
    _license_files,
    _read_paragraph_file,
)
from hf_fundamentals.corpora.manpages import (
    _MAN_ROOT,
    _man_files,
    _read_man,
)
from hf_fundamentals.corpora.python_code import (
    _read_python,
    _stdlib_files,
    _stdlib_root,
)
from hf_fundamentals.corpora.wordnet import (
    _read_wordnet,
    _wordnet_files,
)


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


def forget_listings() -> None:
    """Drop the cached file listings and documents, e.g. after installing a source package."""
    _all_records.cache_clear()
    _listing.cache_clear()
