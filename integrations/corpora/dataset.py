"""The offline corpora (``hf_fundamentals.corpora``) as a ``datasets.Dataset``, cached on disk.

``load_corpus`` samples the named domains once per argument set and keeps the result under
``cache_root() / "corpora" / <key>`` (``save_to_disk``), so benchmarks reload the same documents in
milliseconds; the key hashes every argument plus the corpus format version, so changing the splitting
logic never serves stale documents.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import datasets

from hf_fundamentals import corpora
from hf_fundamentals.cache import cache_root

__all__ = ["LOAD_CORPUS_VERSION", "corpus_cache_dir", "domain_counts", "load_corpus"]

LOAD_CORPUS_VERSION = 1
"""Bumped when the Dataset layout (columns, features) changes; the core's CORPUS_FORMAT_VERSION covers text."""

_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "domain": datasets.Value("string"), "source": datasets.Value("string")}
)


def corpus_cache_dir(
    domains: Iterable[str] | str | None = None,
    docs_per_domain: int = corpora.DEFAULT_DOCS_PER_DOMAIN,
    seed: int = 0,
    min_chars: int = corpora.DEFAULT_MIN_CHARS,
    max_chars: int = corpora.DEFAULT_MAX_CHARS,
) -> Path:
    """Where ``load_corpus`` keeps the corpus for these arguments (``domains=None`` resolved to what is here)."""
    names = corpora.resolve_domains(domains)
    key_fields = {
        "domains": names,
        "docs_per_domain": docs_per_domain,
        "seed": int(seed),
        "min_chars": min_chars,
        "max_chars": max_chars,
        "corpus_format": corpora.CORPUS_FORMAT_VERSION,
        "layout": LOAD_CORPUS_VERSION,
        # python_code reads this interpreter's stdlib: another Python version is another corpus.
        "python": list(sys.version_info[:2]) if "python_code" in names else None,
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode("utf-8")).hexdigest()[:20]
    return cache_root() / "corpora" / key


def load_corpus(
    domains: Iterable[str] | str | None = None,
    docs_per_domain: int = corpora.DEFAULT_DOCS_PER_DOMAIN,
    seed: int = 0,
    min_chars: int = corpora.DEFAULT_MIN_CHARS,
    max_chars: int = corpora.DEFAULT_MAX_CHARS,
    cache: bool = True,
) -> datasets.Dataset:
    """A Dataset with columns ``text``, ``domain``, ``source``: ``build_corpus`` with the same arguments.

    Deterministic for a seed. With ``cache`` the first call saves it under ``corpus_cache_dir(...)`` and later
    calls load it from there. Errors are ``build_corpus``'s: ValueError for an unknown domain,
    ``corpora.CorpusSourceMissing`` (naming the Debian package) for a domain whose source is absent.
    """
    names = corpora.resolve_domains(domains)
    path = corpus_cache_dir(names, docs_per_domain, seed, min_chars, max_chars)
    if cache and (path / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(path))
    records = corpora.build_corpus(names, docs_per_domain, seed, min_chars, max_chars)
    columns = {name: [record[name] for record in records] for name in _FEATURES}
    dataset = datasets.Dataset.from_dict(columns, features=_FEATURES)
    if not cache:
        return dataset
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    dataset.save_to_disk(str(partial))
    try:
        partial.rename(path)  # atomic: a concurrent reader sees no half-written corpus
    except OSError:  # another process saved the same corpus first
        shutil.rmtree(partial, ignore_errors=True)
    return datasets.load_from_disk(str(path))


def domain_counts(dataset: datasets.Dataset) -> dict[str, int]:
    """Documents per domain, in the order domains first appear."""
    return dict(Counter(dataset["domain"]))
