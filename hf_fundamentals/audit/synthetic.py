"""Synthetic labelled text domains for testing the auditor without any corpus (a topic model over pseudo-words).

Six domains: a deliberately confusable pair (``web_a``/``web_b``, the CommonCrawl/C4 analogue), three ordinary
prose domains sharing background vocabulary, and one very distinct code-like domain. Each document draws
its own topic proportions (LDA-style), so classification is imperfect the way real text is.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SYNTHETIC_DOMAINS", "synthetic_corpus"]

SYNTHETIC_DOMAINS = ("web_a", "web_b", "science", "fiction", "dialogue", "code")

_CONSONANTS = list("bcdfghklmnprstvz")
_VOWELS = list("aeiou")
_CODE_TOKENS = ["=", "(", ")", "{", "}", ";", "return", "if", "for", "def", "int", "0", "1", "+=", "==", "->"]


def _pseudo_words(rng: np.random.Generator, count: int, prefix: str = "") -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        syllables = rng.integers(1, 4)
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        words.add(prefix + word)
    return sorted(words)


def synthetic_corpus(
    docs_per_domain: int = 200,
    seed: int = 0,
    *,
    doc_words: tuple[int, int] = (30, 150),
    confusability: float = 0.8,
) -> list[dict[str, str]]:
    """Documents as ``{"text", "domain"}`` dicts (the shape of ``corpora.build_corpus``), in domain order.

    ``confusability`` in [0, 1) is how much topic mass ``web_a`` and ``web_b`` share.
    """
    if docs_per_domain < 1:
        raise ValueError(f"docs_per_domain: got {docs_per_domain}; expected an integer >= 1")
    if not 0.0 <= confusability < 1.0:
        raise ValueError(f"confusability: got {confusability}; expected a value in [0, 1)")
    lo, hi = doc_words
    if not 1 <= lo <= hi:
        raise ValueError(f"doc_words: got {doc_words}; expected (low, high) with 1 <= low <= high")
    rng = np.random.default_rng(seed)
    prose = _pseudo_words(rng, 1500)
    identifiers = _pseudo_words(rng, 200, prefix="_")
    code_vocab = identifiers + _CODE_TOKENS
    n_topics_per_domain = 4
    n_shared = 6
    # Topic-word distributions over the prose vocabulary: shared background topics and per-domain topics.
    shared = rng.dirichlet(np.full(len(prose), 0.05), size=n_shared)
    own = {
        d: rng.dirichlet(np.full(len(prose), 0.05), size=n_topics_per_domain) for d in SYNTHETIC_DOMAINS[:5]
    }
    # The confusable pair shares most of its topics: web_b's topics are mixtures of web_a's.
    own["web_b"] = confusability * own["web_a"] + (1.0 - confusability) * own["web_b"]
    code_topics = rng.dirichlet(np.full(len(code_vocab), 0.1), size=n_topics_per_domain)
    docs: list[dict[str, str]] = []
    for domain in SYNTHETIC_DOMAINS:
        if domain == "code":
            topics, vocab, alpha = code_topics, code_vocab, np.full(n_topics_per_domain, 0.5)
        else:
            topics = np.vstack([own[domain], shared])
            vocab = prose
            alpha = np.concatenate([np.full(n_topics_per_domain, 0.6), np.full(n_shared, 0.15)])
        for _ in range(docs_per_domain):
            theta = rng.dirichlet(alpha)
            word_dist = theta @ topics
            length = int(rng.integers(lo, hi + 1))
            idx = rng.choice(len(vocab), size=length, p=word_dist / word_dist.sum())
            docs.append({"text": " ".join(vocab[i] for i in idx), "domain": domain})
    return docs
