"""Cross-fitted reference: classifier, calibrator and confusion, each fit on its own split of labelled text.

The LLMSurgeon repo fits the temperature and the confusion matrix on the same validation split; here the
labelled reference documents are split (stratified, seeded) into classifier-train, calibration and confusion
parts, so neither the calibrator nor the confusion matrix sees documents the step before it was fit on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hf_fundamentals.audit.calibration import CALIBRATION_METHODS, Calibrator, fit_calibrator
from hf_fundamentals.audit.classifier import DomainClassifier, TfidfLogisticClassifier
from hf_fundamentals.audit.confusion import Confusion

__all__ = [
    "ClassifierReport",
    "FittedReference",
    "encode_labels",
    "fit_reference",
    "length_matched",
    "split_reference",
]

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
_SPLIT_NAMES = ("train", "calibration", "confusion")


def encode_labels(
    labels: Sequence[str] | Sequence[int] | np.ndarray, domains: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map domain labels to indices ``0..K-1``; ``domains`` fixes the order (default: order of first appearance).

    Fails naming the domain when a listed domain has no documents or a label is not a listed domain.
    """
    names = [str(x) for x in labels]
    if domains is None:
        domains = tuple(dict.fromkeys(names))
    else:
        domains = tuple(str(d) for d in domains)
        if len(set(domains)) != len(domains):
            raise ValueError(f"domains: contains duplicates: {list(domains)}")
    if len(domains) < 2:
        raise ValueError(
            f"reference_labels: found domains {list(domains)}; a taxonomy needs at least 2 domains"
        )
    index = {d: i for i, d in enumerate(domains)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(
            f"reference_labels: labels {unknown[:5]} are not in domains; accepted: {list(domains)}"
        )
    codes = np.array([index[x] for x in names], dtype=np.int64)
    counts = np.bincount(codes, minlength=len(domains))
    empty = [domains[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(
            f"reference_labels: domains {empty} have no reference documents; every domain of the taxonomy "
            f"needs labelled reference text (or drop/merge it)"
        )
    return codes, domains


def split_reference(
    labels: np.ndarray, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split of document indices into classifier-train, calibration and confusion parts.

    Every class gets at least one document in each part, so each class needs at least 3 documents.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr <= 0) or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(
            f"fractions: got {fractions}; expected three positive fractions (train, calibration, confusion) "
            f"summing to 1, e.g. {DEFAULT_FRACTIONS}"
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n = idx.size
        if n < 3:
            raise ValueError(
                f"reference_labels: class {cls} has {n} documents; each domain needs at least 3 "
                f"(one per split: {', '.join(_SPLIT_NAMES)}), and realistically 50 or more"
            )
        n_cal = max(1, int(round(fr[1] * n)))
        n_conf = max(1, int(round(fr[2] * n)))
        n_train = n - n_cal - n_conf
        if n_train < 1:
            n_train, n_cal = 1, n - 1 - n_conf
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_cal])
        parts[2].append(idx[n_train + n_cal :])
    train, cal, conf = (np.sort(np.concatenate(p)) for p in parts)
    return train, cal, conf


@dataclass(frozen=True)
class ClassifierReport:
    """How good the domain classifier is on documents it never saw (the confusion split)."""

    accuracy: float
    per_domain_recall: dict[str, float]
    split_sizes: dict[str, int]
    temperature: float
    calibration_nll_before: float
    calibration_nll_after: float

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return {
            "accuracy": self.accuracy,
            "per_domain_recall": dict(self.per_domain_recall),
            "split_sizes": dict(self.split_sizes),
            "temperature": self.temperature,
            "calibration_nll_before": self.calibration_nll_before,
            "calibration_nll_after": self.calibration_nll_after,
        }


@dataclass(frozen=True)
class FittedReference:
    """A trained classifier with its calibrator and confusion, plus what the bootstrap resamples: the confusion
    split's calibrated probabilities, logits and labels, and the calibration split's logits and labels."""

    domains: tuple[str, ...]
    classifier: DomainClassifier
    calibrator: Calibrator
    confusion: Confusion
    confusion_probs: np.ndarray
    confusion_labels: np.ndarray
    report: ClassifierReport
    confusion_logits: np.ndarray
    calibration_logits: np.ndarray
    calibration_labels: np.ndarray
    train_texts: tuple[str, ...] = ()
    train_labels: np.ndarray | None = None
    calibration_texts: tuple[str, ...] = ()
    confusion_texts: tuple[str, ...] = ()
    """The split documents themselves, so :func:`length_matched` can cut snippets of them."""
    calibration_doc_labels: np.ndarray | None = None
    confusion_doc_labels: np.ndarray | None = None
    """Labels of ``calibration_texts`` / ``confusion_texts`` (``*_labels`` are the snippets' once length-matched)."""
    confusion_snippets: tuple[str, ...] = ()
    """The length-matched snippets ``confusion_probs`` was measured on (empty: the whole confusion documents)."""
    confusion_groups: np.ndarray | None = None
    calibration_groups: np.ndarray | None = None
    """The document each confusion / calibration row was cut from, once length-matched (the bootstrap resamples
    whole documents); None: one row per document."""
    length_matched_to: int | None = None
    """Number of generation lengths the calibration and confusion were matched to (None: whole documents)."""
    snippet_anchor: str | None = None
    """Where the length-matched snippets start (``draw_snippets``' ``anchor``; None: whole documents)."""

    @property
    def n_classes(self) -> int:
        """K, the number of domains."""
        return len(self.domains)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated classifier logits (n, K) of new texts (e.g. a model's generations)."""
        if isinstance(texts, str):
            raise TypeError("texts: got a single string; pass a list of documents")
        if len(texts) == 0:
            raise ValueError("texts: got 0 documents; pass at least one generation")
        return _logits(self.classifier, texts, self.n_classes)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated domain probabilities (n, K) of new texts."""
        return self.calibrator.transform(self.logits(texts))


def _logits(classifier: DomainClassifier, texts: Sequence[str], k: int) -> np.ndarray:
    z = np.asarray(classifier.logits(texts), dtype=np.float64)
    if z.shape != (len(texts), k):
        raise ValueError(
            f"classifier: {type(classifier).__name__}.logits returned shape {z.shape}; expected "
            f"({len(texts)}, {k}) = (n_texts, n_domains)"
        )
    return z


def fit_reference(
    texts: Sequence[str],
    labels: Sequence[str] | Sequence[int] | np.ndarray,
    *,
    domains: Sequence[str] | None = None,
    classifier: DomainClassifier | None = None,
    calibration: str = "bcts",
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> FittedReference:
    """Split labelled reference text, train the classifier, calibrate it, and measure its confusion.

    ``classifier`` defaults to :class:`TfidfLogisticClassifier`; ``calibration`` is a
    :func:`fit_calibrator` method (``"bcts"``, ``"temperature"`` or ``"none"``).
    """
    if isinstance(texts, str):
        raise TypeError("reference_texts: got a single string; pass a list of documents")
    texts = list(texts)
    if len(texts) != len(labels):
        raise ValueError(
            f"reference_labels: got {len(labels)} labels for {len(texts)} reference texts; expected one per text"
        )
    if calibration not in CALIBRATION_METHODS:  # fail before the slow classifier training
        raise ValueError(f"calibration: got {calibration!r}; accepted: {list(CALIBRATION_METHODS)}")
    codes, domains = encode_labels(labels, domains)
    k = len(domains)
    train, cal, conf = split_reference(codes, fractions, seed)
    if classifier is None:
        classifier = TfidfLogisticClassifier(seed=seed)
    if not isinstance(classifier, DomainClassifier):
        raise TypeError(
            f"classifier: {type(classifier).__name__} does not implement fit(texts, labels) and logits(texts)"
        )
    classifier.fit([texts[i] for i in train], codes[train])
    z_cal = _logits(classifier, [texts[i] for i in cal], k)
    calibrator = fit_calibrator(z_cal, codes[cal], method=calibration)
    nll_before = fit_calibrator(z_cal, codes[cal], "none").nll
    z_conf = _logits(classifier, [texts[i] for i in conf], k)
    conf_probs = calibrator.transform(z_conf)
    conf_labels = codes[conf]
    confusion = Confusion.from_predictions(conf_probs, conf_labels, k)
    correct = conf_probs.argmax(axis=1) == conf_labels
    report = ClassifierReport(
        accuracy=float(correct.mean()),
        per_domain_recall={d: float(correct[conf_labels == i].mean()) for i, d in enumerate(domains)},
        split_sizes={"train": int(train.size), "calibration": int(cal.size), "confusion": int(conf.size)},
        temperature=calibrator.temperature,
        calibration_nll_before=nll_before,
        calibration_nll_after=calibrator.nll,
    )
    return FittedReference(
        domains=domains,
        classifier=classifier,
        calibrator=calibrator,
        confusion=confusion,
        confusion_probs=conf_probs,
        confusion_labels=conf_labels,
        report=report,
        confusion_logits=z_conf,
        calibration_logits=z_cal,
        calibration_labels=codes[cal],
        train_texts=tuple(texts[i] for i in train),
        train_labels=codes[train],
        calibration_texts=tuple(texts[i] for i in cal),
        confusion_texts=tuple(texts[i] for i in conf),
        calibration_doc_labels=codes[cal],
        confusion_doc_labels=codes[conf],
    )


def length_matched(
    ref: FittedReference,
    lengths: Sequence[int] | np.ndarray,
    *,
    per_doc: int = 10,
    seed: int = 0,
    anchor: str = "random",
) -> FittedReference:
    """``ref`` with its calibrator refit and its confusion remeasured on snippets of the calibration and
    confusion documents cut to the generations' ``lengths`` (characters); the classifier is unchanged.
    ``anchor``: where the snippets start (``draw_snippets``: ``"random"`` word boundary or ``"start"``).

    See :mod:`hf_fundamentals.audit.snippets` for why: the correction needs the classifier's errors on text
    like the generations, and short text is confused more often than whole documents.
    """
    from dataclasses import replace

    from hf_fundamentals.audit.snippets import draw_snippets

    if not ref.calibration_texts or not ref.confusion_texts:
        raise ValueError(
            "length_matched: this reference keeps no split texts (built by an older fit_reference)"
        )
    k = ref.n_classes
    cal_texts, cal_labels, cal_groups = draw_snippets(
        ref.calibration_texts, ref.calibration_doc_labels, lengths, per_doc=per_doc, seed=seed, anchor=anchor
    )
    conf_texts, conf_labels, conf_groups = draw_snippets(
        ref.confusion_texts, ref.confusion_doc_labels, lengths, per_doc=per_doc, seed=seed + 1, anchor=anchor
    )
    z_cal = _logits(ref.classifier, cal_texts, k)
    calibrator = fit_calibrator(z_cal, cal_labels, method=ref.calibrator.method)
    z_conf = _logits(ref.classifier, conf_texts, k)
    conf_probs = calibrator.transform(z_conf)
    correct = conf_probs.argmax(axis=1) == conf_labels
    report = replace(
        ref.report,
        accuracy=float(correct.mean()),
        per_domain_recall={d: float(correct[conf_labels == i].mean()) for i, d in enumerate(ref.domains)},
        split_sizes={
            **ref.report.split_sizes,
            "calibration_snippets": len(cal_texts),
            "confusion_snippets": len(conf_texts),
        },  # fmt: skip
        temperature=calibrator.temperature,
        calibration_nll_before=fit_calibrator(z_cal, cal_labels, "none").nll,
        calibration_nll_after=calibrator.nll,
    )
    return replace(
        ref,
        calibrator=calibrator,
        confusion=Confusion.from_predictions(conf_probs, conf_labels, k),
        confusion_probs=conf_probs,
        confusion_labels=conf_labels,
        report=report,
        confusion_logits=z_conf,
        calibration_logits=z_cal,
        calibration_labels=cal_labels,
        confusion_snippets=tuple(conf_texts),
        confusion_groups=np.asarray(conf_groups),
        calibration_groups=np.asarray(cal_groups),
        length_matched_to=int(np.asarray(lengths).size),
        snippet_anchor=anchor,
    )
