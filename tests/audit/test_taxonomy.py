"""Taxonomy and mixture-spec YAML: the built-in offline taxonomy, merges, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from hf_fundamentals.audit.taxonomy import load_mixture_spec, load_taxonomy, parse_taxonomy


def test_builtin_offline_taxonomy_has_five_real_domains_and_a_confusable_pair():
    taxonomy = load_taxonomy("offline")
    assert len(taxonomy.names) >= 5
    assert {"computing", "jargon"} <= set(taxonomy.names)
    assert all(src.kind == "corpus" for c in taxonomy.categories for src in c.sources)


def test_merges_pool_categories_like_merge_web():
    taxonomy = parse_taxonomy(
        {
            "categories": [{"name": n, "source": {"corpus": n}} for n in ("CommonCrawl", "C4", "GitHub")],
            "merges": {"Web": ["CommonCrawl", "C4"]},
        }
    )
    assert taxonomy.reported_names() == ["Web", "GitHub"]
    np.testing.assert_allclose(taxonomy.merge(np.array([0.5, 0.2, 0.3])), [0.7, 0.3])
    spec = load_mixture_spec(
        {"categories": ["CommonCrawl", "C4", "GitHub"], "category_weights": [60, 20, 20]}
    )
    np.testing.assert_allclose(spec.vector(taxonomy), [0.8, 0.2])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"categories": []}, "non-empty 'categories'"),
        ({"categories": [{"name": "a", "source": {"corpus": "x"}}]}, "at least 2 categories"),
        ({"categories": [{"name": "a"}, {"name": "b", "source": {"corpus": "x"}}]}, "has no 'source'"),
        (
            {"categories": [{"name": "a", "source": {"ftp": "x"}}, {"name": "b", "source": {"corpus": "x"}}]},
            "exactly one of",
        ),
        (
            {
                "categories": [
                    {"name": "a", "source": {"corpus": "a"}},
                    {"name": "b", "source": {"corpus": "b"}},
                ],
                "merges": {"W": ["a", "zz"]},
            },
            "unknown categories",
        ),
    ],
)
def test_bad_taxonomies_fail_with_a_clear_message(data, message):
    with pytest.raises(ValueError, match=message):
        parse_taxonomy(data)


def test_unknown_taxonomy_file_names_the_builtins(tmp_path):
    with pytest.raises(FileNotFoundError, match="offline"):
        load_taxonomy(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="built-ins: \\['offline', 'web'\\]"):
        load_taxonomy("no-such-taxonomy")


def test_builtin_web_taxonomy_reads_every_source_from_a_local_mirror(tmp_path, monkeypatch):
    """The web taxonomy's Hub sources, served offline from ``HFF_HUB_MIRROR`` (chat rows are message lists)."""
    import json

    from hf_fundamentals.integrations.audit.reference import MIRROR_ENV, load_reference

    taxonomy = load_taxonomy("web")
    assert {"web", "code", "math", "chat"} <= set(taxonomy.names)
    for category in taxonomy.categories:
        (source,) = category.sources
        spec = source.spec
        folder = tmp_path / spec["path"]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{spec['name']}.jsonl" if spec.get("name") else folder.with_suffix(".jsonl")
        rows = []
        for i in range(8):
            text = f"{category.name} document {i}: " + "words of this kind of text " * 4
            value = [{"role": "user", "content": text}, {"role": "assistant", "content": "a reply " * 8}]
            rows.append({spec["column"]: value if category.name == "chat" else text, "other": i})
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    texts, labels = load_reference(taxonomy, docs_per_category=5)
    assert sorted(set(labels)) == sorted(taxonomy.names) and len(texts) == 5 * len(taxonomy.names)
    chat = [t for t, label in zip(texts, labels, strict=True) if label == "chat"]
    assert all("\n\na reply" in t for t in chat)  # the turns joined, one per paragraph
    assert all(t.startswith(label) for t, label in zip(texts, labels, strict=True) if label != "chat")


def test_a_missing_mirror_file_names_the_variable_and_the_file(tmp_path, monkeypatch):
    from hf_fundamentals.integrations.audit.reference import MIRROR_ENV, load_reference

    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"HFF_HUB_MIRROR=.*HuggingFaceFW/fineweb/sample-10BT\.jsonl"):
        load_reference(load_taxonomy("web"), docs_per_category=5)
