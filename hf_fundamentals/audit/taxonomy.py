"""Taxonomies (what domains an audit estimates) and ground-truth mixture specs, both as YAML.

A taxonomy names its categories and where each one's reference text comes from: the offline corpora
(``corpus: python_code``), a Hub dataset (``hub: {path, name, split, column}``) or a local file
(``file: docs.jsonl`` with a ``text`` field, or ``.txt`` with documents separated by blank lines).
``merges`` pools fine categories into reported ones (e.g. ``Web: [CommonCrawl, C4]``), as LLMSurgeon's
``--merge_web`` does. Mixture specs use LLMSurgeon's ``category-mixture-v1`` schema
(``categories`` + ``category_weights`` in percent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SOURCE_KINDS = ("corpus", "hub", "file")


@dataclass(frozen=True)
class ReferenceSource:
    """Where one category's reference documents come from."""

    kind: str
    spec: dict[str, Any]

    def describe(self) -> str:
        """A short provenance string for reports."""
        if self.kind == "corpus":
            return f"offline corpus {self.spec['corpus']}"
        if self.kind == "hub":
            extra = "/".join(str(self.spec[k]) for k in ("name", "split") if self.spec.get(k))
            return f"hub dataset {self.spec['path']}" + (f" ({extra})" if extra else "")
        return f"file {self.spec['file']}"


@dataclass(frozen=True)
class Category:
    """One taxonomy class and its reference sources."""

    name: str
    sources: tuple[ReferenceSource, ...]


@dataclass
class Taxonomy:
    """The categories an audit estimates, with optional merges for reporting."""

    name: str
    categories: list[Category]
    merges: dict[str, list[str]] = field(default_factory=dict)
    docs_per_category: int = 160
    description: str = ""
    path: str | None = None

    @property
    def names(self) -> list[str]:
        """Category names in estimation order."""
        return [c.name for c in self.categories]

    def reported_names(self) -> list[str]:
        """Names after merges, in first-appearance order."""
        out: list[str] = []
        for name in self.names:
            target = self.merge_target(name)
            if target not in out:
                out.append(target)
        return out

    def merge_target(self, name: str) -> str:
        """The reported category a fine category pools into (itself if unmerged)."""
        for target, members in self.merges.items():
            if name in members:
                return target
        return name

    def merge(self, prior: np.ndarray) -> np.ndarray:
        """Sum a prior (or a stack of priors, last axis = categories) over the merges."""
        prior = np.asarray(prior, dtype=float)
        reported = self.reported_names()
        out = np.zeros(prior.shape[:-1] + (len(reported),))
        for i, name in enumerate(self.names):
            out[..., reported.index(self.merge_target(name))] += prior[..., i]
        return out


def _parse_source(raw: Any, where: str) -> ReferenceSource:
    if not isinstance(raw, dict) or len(set(raw) & set(SOURCE_KINDS)) != 1:
        raise ValueError(f"{where}: a source needs exactly one of {SOURCE_KINDS}, got {raw!r}")
    kind = next(k for k in SOURCE_KINDS if k in raw)
    if kind == "hub":
        spec = raw["hub"] if isinstance(raw["hub"], dict) else {"path": raw["hub"]}
        if "path" not in spec:
            raise ValueError(f"{where}: hub source needs a 'path' (dataset id), got {spec!r}")
        spec = {"split": "train", "column": "text", **spec}
        return ReferenceSource("hub", spec)
    return ReferenceSource(kind, dict(raw))


def parse_taxonomy(data: dict[str, Any], path: str | None = None) -> Taxonomy:
    """Validate a taxonomy mapping (as loaded from YAML) and build a :class:`Taxonomy`."""
    where = path or "taxonomy"
    if not isinstance(data, dict) or not data.get("categories"):
        raise ValueError(f"{where}: needs a non-empty 'categories' list")
    categories = []
    for i, raw in enumerate(data["categories"]):
        if not isinstance(raw, dict) or "name" not in raw:
            raise ValueError(f"{where}: categories[{i}] needs a 'name', got {raw!r}")
        sources_raw = raw.get("sources", raw.get("source"))
        if sources_raw is None:
            raise ValueError(f"{where}: category {raw['name']!r} has no 'source' (corpus, hub or file)")
        if not isinstance(sources_raw, list):
            sources_raw = [sources_raw]
        sources = tuple(_parse_source(s, f"{where}: category {raw['name']!r}") for s in sources_raw)
        categories.append(Category(str(raw["name"]), sources))
    names = [c.name for c in categories]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: duplicate category names {duplicates}")
    if len(categories) < 2:
        raise ValueError(f"{where}: an audit needs at least 2 categories, got {names}")
    merges = {str(k): [str(m) for m in v] for k, v in (data.get("merges") or {}).items()}
    for target, members in merges.items():
        unknown = [m for m in members if m not in names]
        if unknown:
            raise ValueError(
                f"{where}: merge {target!r} names unknown categories {unknown}; categories: {names}"
            )
    docs = int(data.get("docs_per_category", 160))
    if docs < 10:
        raise ValueError(
            f"{where}: docs_per_category={docs} is too few to fit and calibrate a classifier (>= 10)"
        )
    return Taxonomy(
        name=str(data.get("name", Path(where).stem)),
        categories=categories,
        merges=merges,
        docs_per_category=docs,
        description=str(data.get("description", "")),
        path=path,
    )


def builtin_taxonomies() -> list[str]:
    """Names of the taxonomies shipped with the package (``offline``, ...)."""
    folder = resources.files("hf_fundamentals.audit") / "taxonomies"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_taxonomy(name_or_path: str) -> Taxonomy:
    """Load a built-in taxonomy by name or a YAML file by path; unknown names fail with the accepted ones."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(
                f"taxonomy file {str(path)!r} does not exist; pass a YAML file or one of {builtin_taxonomies()}"
            )
        text, origin = path.read_text(encoding="utf-8"), str(path)
    elif name_or_path in builtin_taxonomies():
        resource = resources.files("hf_fundamentals.audit") / "taxonomies" / f"{name_or_path}.yaml"
        text, origin = resource.read_text(encoding="utf-8"), f"builtin:{name_or_path}"
    else:
        raise ValueError(
            f"taxonomy {name_or_path!r} is neither a YAML file nor a built-in; built-ins: {builtin_taxonomies()}"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"taxonomy {origin} is not valid YAML: {err}") from err
    return parse_taxonomy(data, origin)


@dataclass(frozen=True)
class MixtureSpec:
    """A ground-truth mixture (LLMSurgeon's ``category-mixture-v1``), normalised to sum to 1."""

    name: str
    weights: dict[str, float]

    def vector(self, taxonomy: Taxonomy) -> np.ndarray:
        """The spec as a prior over the taxonomy's reported (merged) categories."""
        reported = taxonomy.reported_names()
        out = np.zeros(len(reported))
        for name, weight in self.weights.items():
            target = taxonomy.merge_target(name) if name in taxonomy.names else name
            if target not in reported:
                raise ValueError(f"mixture {self.name!r}: category {name!r} is not in taxonomy {reported}")
            out[reported.index(target)] += weight
        return out


def load_mixture_spec(source: str | dict[str, Any]) -> MixtureSpec:
    """Read a ``category-mixture-v1`` spec (path or mapping); weights may be percents or fractions."""
    data = yaml.safe_load(Path(source).read_text(encoding="utf-8")) if isinstance(source, str) else source
    cats, weights = data.get("categories"), data.get("category_weights")
    if not cats or weights is None or len(cats) != len(weights):
        raise ValueError(f"mixture spec needs equal-length 'categories' and 'category_weights', got {data!r}")
    w = np.asarray(weights, dtype=float)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"mixture spec weights must be non-negative with a positive sum, got {weights}")
    w = w / w.sum()
    return MixtureSpec(str(data.get("name", "mixture")), dict(zip(map(str, cats), w.tolist(), strict=True)))
