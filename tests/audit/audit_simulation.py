"""Simulations the audit tests share: an exact label-shift population and a Gaussian-logit classifier."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from hf_fundamentals.audit import Confusion


@dataclass
class Population:
    """A finite x-space where everything is exact: class conditionals, Bayes posteriors under the source prior,
    C and M, and the target-prior weights of every x (used as per-generation weights)."""

    probs: np.ndarray  # (m, K) exact source posteriors p_s(y | x)
    confusion: Confusion
    px_y: np.ndarray  # (K, m)


def make_population(k: int, m: int, rng: np.random.Generator, source: np.ndarray | None = None) -> Population:
    """Random class conditionals over ``m`` points; posteriors are exact under ``source`` (default uniform)."""
    px_y = rng.dirichlet(np.full(m, 0.3), size=k)
    src = np.full(k, 1.0 / k) if source is None else source
    joint = src[:, None] * px_y
    probs = (joint / joint.sum(axis=0)).T
    onehot = np.eye(k)[probs.argmax(axis=1)]
    confusion = Confusion(
        hard=px_y @ onehot,
        soft=px_y @ probs,
        source_prior=joint.sum(axis=0) @ probs,
        label_prior=src,
        n_per_class=np.full(k, 10_000),
    )
    return Population(probs, confusion, px_y)


def simulated_split(
    k: int,
    n: int,
    prior: np.ndarray,
    rng: np.random.Generator,
    separation: float = 2.0,
    overconfidence: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, logits and probabilities of a Gaussian classifier that is Bayes-calibrated under a uniform prior
    (``overconfidence`` scales its logits); x ~ N(mu_y, I) with class means fixed by ``k`` and ``separation``."""
    means = separation * np.eye(k) + 0.5 * np.random.default_rng(1234 + k).normal(size=(k, k))
    labels = rng.choice(k, size=n, p=prior)
    x = means[labels] + rng.normal(size=(n, k))
    logits = overconfidence * (x @ means.T - 0.5 * np.sum(means**2, axis=1))
    return labels, logits, softmax(logits, axis=1)
