"""The "none of these" share: how much of a model's output belongs to no category of the taxonomy.

A closed-set estimator must put all the mass on the listed categories, so an audit with the wrong taxonomy still
reports confident shares. Here each text gets a typicality score, the mean cosine similarity of its character
n-gram TF-IDF vector to its ``k`` nearest reference documents (a k-nearest-neighbour novelty score; Sun et al.,
arXiv 2204.06507, use the same idea on deep features). The in-taxonomy null distribution of that score is
measured on held-out reference snippets cut to the generations' lengths (:mod:`hf_fundamentals.audit.snippets`).

The share itself is Storey's mixture-proportion estimate (Storey 2002, J. R. Stat. Soc. B 64(3), "A direct
approach to false discovery rates", with lambda = 0.5): with t the lambda-quantile of the null (weighted by the
in-taxonomy mixture), a fraction lambda of in-taxonomy text scores below t, so if F is the fraction of
generations below t,

    F = (1 - pi0) * lambda + pi0 * beta,   pi0 = (F - lambda) / (beta - lambda),

where beta is the fraction of out-of-taxonomy text below t. beta is unknown without out-of-taxonomy reference
text; taking beta = 1 (out-of-taxonomy text is less typical than the median in-taxonomy snippet) makes the
estimate a lower bound when some foreign text looks typical. Our design choices, not tuned on the benchmark:
lambda = 0.5 (Storey's default), k = 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

__all__ = ["NoveltyScorer", "OpenSetEstimate", "storey_share", "weighted_quantile"]


class NoveltyScorer:
    """Typicality of a text: mean cosine similarity of its char 3-5-gram TF-IDF vector to its ``k`` nearest
    reference documents (higher = more like the reference)."""

    def __init__(self, *, k: int = 5, max_features: int = 50_000, max_chars: int = 2000) -> None:
        if k < 1:
            raise ValueError(f"k: got {k}; expected >= 1 nearest reference documents")
        self.k = k
        self.max_chars = max_chars
        self._vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(3, 5),
            max_features=max_features,
            sublinear_tf=True,
            dtype=np.float32,
        )
        self._reference = None

    def fit(self, reference_texts: Sequence[str]) -> NoveltyScorer:
        """Index the reference documents (the classifier's training split)."""
        docs = [t[: self.max_chars] for t in reference_texts]
        if len(docs) < self.k:
            raise ValueError(f"reference_texts: got {len(docs)} documents; need at least k={self.k}")
        self._reference = self._vectorizer.fit_transform(docs).T.tocsr()
        return self

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Per-text typicality in [0, 1]."""
        if self._reference is None:
            raise RuntimeError("NoveltyScorer.score: call fit(reference_texts) first")
        x = self._vectorizer.transform([t[: self.max_chars] for t in texts])
        sims = np.asarray((x @ self._reference).todense(), dtype=np.float64)
        top = np.partition(sims, sims.shape[1] - self.k, axis=1)[:, -self.k :]
        return top.mean(axis=1)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q``-quantile of ``values`` under ``weights`` (the smallest value whose cumulative weight >= q)."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    cum /= cum[-1]
    return float(np.asarray(values)[order][min(int(np.searchsorted(cum, q)), len(cum) - 1)])


def _null_weights(null_labels: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """Per-snippet weights that make the pooled null the in-taxonomy mixture ``class_weights``."""
    counts = np.bincount(null_labels, minlength=class_weights.size).astype(np.float64)
    per_class = np.divide(class_weights, counts, out=np.zeros_like(class_weights), where=counts > 0)
    return per_class[null_labels]


def storey_share(
    generation_scores: np.ndarray,
    null_scores: np.ndarray,
    null_labels: np.ndarray,
    class_weights: np.ndarray,
    lam: float = 0.5,
    generation_weights: np.ndarray | None = None,
) -> tuple[float, float]:
    """``(pi0, threshold)``: the estimated out-of-taxonomy share and the score threshold it used."""
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lam: got {lam}; expected a quantile strictly between 0 and 1 (0.5 is Storey's)")
    w = _null_weights(np.asarray(null_labels), np.asarray(class_weights, dtype=np.float64))
    t = weighted_quantile(null_scores, w, lam)
    alpha = float(np.sum(w[null_scores < t]) / np.sum(w))
    below = generation_scores < t
    gw = np.ones_like(generation_scores) if generation_weights is None else np.asarray(generation_weights)
    f = float(np.sum(gw[below]) / np.sum(gw))
    return float(np.clip((f - alpha) / (1.0 - alpha), 0.0, 1.0)), t


@dataclass(frozen=True)
class OpenSetEstimate:
    """The out-of-taxonomy share with its bootstrap interval, and how it was estimated."""

    share: float
    ci_low: float | None
    ci_high: float | None
    threshold: float
    lam: float
    n_generations: int
    n_null: int
    method: str = "storey_knn_tfidf"

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return {
            "share": self.share,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "threshold": self.threshold,
            "lambda": self.lam,
            "n_generations": self.n_generations,
            "n_null_snippets": self.n_null,
            "method": self.method,
        }


def estimate_open_set(
    generation_scores: np.ndarray,
    null_scores: np.ndarray,
    null_labels: np.ndarray,
    class_weights: np.ndarray,
    *,
    lam: float = 0.5,
    generation_weights: np.ndarray | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> OpenSetEstimate:
    """:func:`storey_share` with a percentile bootstrap over generations and (per class) null snippets."""
    generation_scores = np.asarray(generation_scores, dtype=np.float64)
    null_scores = np.asarray(null_scores, dtype=np.float64)
    null_labels = np.asarray(null_labels)
    share, t = storey_share(
        generation_scores, null_scores, null_labels, class_weights, lam, generation_weights
    )
    low = high = None
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        by_class = [np.flatnonzero(null_labels == c) for c in np.unique(null_labels)]
        draws = []
        n = generation_scores.size
        for _ in range(n_bootstrap):
            g = rng.integers(0, n, n)
            nb = np.concatenate([rng.choice(idx, idx.size) for idx in by_class])
            gw = None if generation_weights is None else np.asarray(generation_weights)[g]
            draws.append(
                storey_share(generation_scores[g], null_scores[nb], null_labels[nb], class_weights, lam, gw)[
                    0
                ]
            )
        tail = (1.0 - confidence) / 2.0
        low, high = (float(v) for v in np.quantile(draws, [tail, 1.0 - tail]))
    return OpenSetEstimate(share, low, high, t, lam, int(generation_scores.size), int(null_scores.size))
