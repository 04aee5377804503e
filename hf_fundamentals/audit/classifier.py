"""Domain classifiers: a protocol any classifier can satisfy, and the default TF-IDF + logistic regression.

The auditor needs only ``fit(texts, labels)`` and ``logits(texts) -> (n, K)``; logits are calibrated later, so
any monotone score (log-probabilities included) works. An embeddings-plus-linear-head classifier plugs in the
same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

__all__ = ["DomainClassifier", "TfidfLogisticClassifier"]


@runtime_checkable
class DomainClassifier(Protocol):
    """What the auditor needs from a domain classifier: training on labelled texts and per-class logits."""

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> DomainClassifier:
        """Train on texts with integer labels in ``[0, K)``; every class appears at least once."""
        ...

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, K) float array of class scores (logits or log-probabilities), finite."""
        ...


class TfidfLogisticClassifier:
    """Word 1-2-gram + char 3-5-gram TF-IDF (sublinear tf, capped vocabularies) into multinomial logistic
    regression: the light classifier of the LLMSurgeon repo, sized to train in seconds on a few CPU cores."""

    def __init__(
        self,
        *,
        max_word_features: int = 50_000,
        max_char_features: int = 50_000,
        max_chars: int = 2000,
        c: float = 10.0,
        max_iter: int = 300,
        seed: int = 0,
    ) -> None:
        for name, value in (
            ("max_word_features", max_word_features),
            ("max_char_features", max_char_features),
        ):
            if value < 0:
                raise ValueError(f"{name}: got {value}; expected >= 0 (0 turns that feature block off)")
        if max_word_features == 0 and max_char_features == 0:
            raise ValueError(
                "max_word_features, max_char_features: both are 0; at least one block must be on"
            )
        if max_chars < 1:
            raise ValueError(f"max_chars: got {max_chars}; expected >= 1 (characters kept per document)")
        if c <= 0:
            raise ValueError(f"c: got {c}; expected the inverse regularisation strength > 0")
        self.max_word_features = max_word_features
        self.max_char_features = max_char_features
        self.max_chars = max_chars
        self.c = c
        self.max_iter = max_iter
        self.seed = seed
        self._vectorizers: list[TfidfVectorizer] = []
        self._model: LogisticRegression | None = None
        self.n_classes: int | None = None

    def _texts(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("texts: got a single string; pass a list of documents")
        return [t[: self.max_chars] for t in texts]

    def _features(self, texts: list[str]):  # noqa: ANN202 (a scipy sparse matrix)
        return hstack([v.transform(texts) for v in self._vectorizers]).tocsr()

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> TfidfLogisticClassifier:
        """Fit the vectorizers and the logistic regression on ``texts`` with integer ``labels``."""
        docs = self._texts(texts)
        y = np.asarray(labels)
        if len(docs) != y.shape[0]:
            raise ValueError(f"labels: got {y.shape[0]} labels for {len(docs)} texts; expected one per text")
        self._vectorizers = []
        min_df = 2 if len(docs) >= 50 else 1  # drop one-off n-grams, except on toy corpora
        if self.max_word_features:
            self._vectorizers.append(
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, 2),
                    max_features=self.max_word_features,
                    sublinear_tf=True,
                    min_df=min_df,
                    dtype=np.float32,
                )
            )
        if self.max_char_features:
            self._vectorizers.append(
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    max_features=self.max_char_features,
                    sublinear_tf=True,
                    min_df=min_df,
                    dtype=np.float32,
                )
            )
        x = hstack([v.fit_transform(docs) for v in self._vectorizers]).tocsr()
        self.n_classes = int(y.max()) + 1
        self._model = LogisticRegression(C=self.c, max_iter=self.max_iter, random_state=self.seed)
        self._model.fit(x, y)
        if len(self._model.classes_) != self.n_classes:
            raise ValueError(
                f"labels: classes {sorted(set(range(self.n_classes)) - set(self._model.classes_.tolist()))} "
                f"have no training documents; every class in [0, {self.n_classes}) needs at least one"
            )
        return self

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Per-class logits (n, K) of the multinomial model (for K = 2, ``[-z/2, z/2]``)."""
        if self._model is None:
            raise RuntimeError("TfidfLogisticClassifier.logits: call fit(texts, labels) first")
        docs = self._texts(texts)
        if not docs:
            return np.zeros((0, self.n_classes or 0))
        scores = np.asarray(self._model.decision_function(self._features(docs)), dtype=np.float64)
        if scores.ndim == 1:
            scores = np.column_stack([-scores / 2.0, scores / 2.0])
        return scores
