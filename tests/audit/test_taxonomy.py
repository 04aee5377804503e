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
    with pytest.raises(ValueError, match="built-ins: \\['offline'\\]"):
        load_taxonomy("no-such-taxonomy")
