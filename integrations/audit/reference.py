"""Reference documents for each taxonomy category, from the offline corpora, a Hub dataset or a local file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hf_fundamentals.audit.taxonomy import ReferenceSource, Taxonomy


def _from_corpus(source: ReferenceSource, n: int, seed: int) -> list[str]:
    from hf_fundamentals.integrations.corpora.dataset import load_corpus

    ds = load_corpus([source.spec["corpus"]], docs_per_domain=n, seed=seed)
    return list(ds["text"])


MIRROR_ENV = "HFF_HUB_MIRROR"
"""A folder that stands in for the Hub for ``hub:`` sources: ``<folder>/<org>/<dataset>[/<config>].jsonl``."""


def _as_text(value: object) -> str | None:
    """A row's text: a string as it is; a chat (list of ``{role, content}`` messages) as its turns joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return "\n\n".join(str(m["content"]) for m in value)
    return None


def _mirror_file(spec: dict) -> Path | None:
    folder = os.environ.get(MIRROR_ENV)
    if not folder:
        return None
    base = Path(folder).expanduser() / spec["path"]
    path = base / f"{spec['name']}.jsonl" if spec.get("name") else base.with_suffix(".jsonl")
    if not path.is_file():
        raise FileNotFoundError(
            f"{MIRROR_ENV}={folder}: no {path} for hub dataset {spec['path']!r}; write its rows there as JSONL "
            f"(one object per line with a {spec['column']!r} field), or unset {MIRROR_ENV} to read the Hub"
        )
    return path


def _from_hub(source: ReferenceSource, n: int, seed: int) -> list[str]:
    spec = source.spec
    mirror = _mirror_file(spec)
    if mirror is not None:
        rows = (json.loads(line) for line in mirror.read_text(encoding="utf-8").splitlines() if line.strip())
        where = str(mirror)
    else:
        from datasets import load_dataset

        ds = load_dataset(spec["path"], name=spec.get("name"), split=spec["split"], streaming=True)
        # a shuffled stream (seeded buffer) so the first n rows of a sorted dataset do not stand for the whole
        rows = iter(ds.shuffle(seed=seed, buffer_size=max(1000, 4 * n)))
        where = f"hub dataset {spec['path']!r}"
    column = spec["column"]
    texts: list[str] = []
    for row in rows:
        if column not in row:
            raise ValueError(f"{where} has no column {column!r}; columns: {sorted(row)}")
        text = _as_text(row[column])
        if text is not None and len(text.strip()) >= 50:
            texts.append(text[:2000])
        if len(texts) >= n:
            break
    return texts


def _from_file(source: ReferenceSource, n: int, seed: int, base: Path | None) -> list[str]:
    path = Path(source.spec["file"]).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise FileNotFoundError(f"reference file {str(path)!r} does not exist")
    if path.suffix in (".jsonl", ".json"):
        column = source.spec.get("column", "text")
        texts = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                record = json.loads(line)
                if column not in record:
                    raise ValueError(f"{path}:{line_no} has no field {column!r}; fields: {sorted(record)}")
                texts.append(str(record[column]))
    else:
        texts = [block.strip() for block in path.read_text(encoding="utf-8").split("\n\n") if block.strip()]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[:n]
    return [texts[i][:2000] for i in sorted(order)]


def load_reference(
    taxonomy: Taxonomy, docs_per_category: int | None = None, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Labelled reference texts: ``(texts, labels)``, each label a category name of ``taxonomy``.

    Each category draws up to ``docs_per_category`` documents (split evenly across its sources). A category
    that yields no documents is an error naming it and its sources.
    """
    n = int(docs_per_category or taxonomy.docs_per_category)
    base = Path(taxonomy.path).parent if taxonomy.path and not taxonomy.path.startswith("builtin:") else None
    texts: list[str] = []
    labels: list[str] = []
    for category in taxonomy.categories:
        per_source = max(1, -(-n // len(category.sources)))
        got: list[str] = []
        for source in category.sources:
            if source.kind == "corpus":
                got += _from_corpus(source, per_source, seed)
            elif source.kind == "hub":
                got += _from_hub(source, per_source, seed)
            else:
                got += _from_file(source, per_source, seed, base)
        got = [t for t in got if t.strip()][:n]
        if not got:
            raise ValueError(
                f"reference category {category.name!r} has no documents (sources: "
                f"{', '.join(s.describe() for s in category.sources)}); every category needs reference text"
            )
        texts += got
        labels += [category.name] * len(got)
    return texts, labels
