"""LLMSurgeon-style mixture audit: from labelled reference text and a model's generations to the model's
domain mixture, with bootstrap intervals and diagnostics.

``MixtureAuditor`` fits the reference once (classifier, calibrator, confusion on separate splits) and audits
any number of generation sets; ``estimate_mixture`` does both in one call.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hf_fundamentals.audit.bootstrap import Recalibration, bootstrap_priors
from hf_fundamentals.audit.classifier import DomainClassifier
from hf_fundamentals.audit.confusion import Confusion
from hf_fundamentals.audit.diagnostics import (
    Diagnostics,
    cross_check_partner,
    diagnose,
    estimator_disagreement,
)
from hf_fundamentals.audit.estimators import DEFAULT_METHOD, ESTIMATORS, AuditWarning, estimate_prior
from hf_fundamentals.audit.open_set import NoveltyScorer, estimate_open_set, weighted_quantile
from hf_fundamentals.audit.reference import (
    DEFAULT_FRACTIONS,
    ClassifierReport,
    FittedReference,
    fit_reference,
    length_matched,
)
from hf_fundamentals.audit.snippets import ANCHORS, draw_snippets

NULL_PER_DOC = 10
"""Length-matched windows per held-out document in the open-set null (the quantile's noise falls with them)."""

ACCEPT_QUANTILE = 0.1
"""With ``open_set``, in-taxonomy shares are estimated on generations at least as typical as the 10% least
typical in-taxonomy snippets (our choice: most in-taxonomy text kept, the least typical text left out)."""

OPEN_SET_SHARES = ("all", "typical")
"""Which generations the in-taxonomy shares of an open-set audit are estimated on: all of them (the category
shares of a closed-set audit, scaled by the in-taxonomy share; the default), or the typical ones (the atypical
part left out as likely out-of-taxonomy, the kept part reweighted by each class's acceptance rate). Typical-only
is right when foreign text is clearly atypical and in-taxonomy text is as typical as the reference; on weak LMs,
whose in-taxonomy text is often atypical too, it cost accuracy (docs/audit.md, LLMScan-mini dev zoo)."""

__all__ = [
    "DEFAULT_METHOD",
    "OPEN_SET_SHARES",
    "AuditResult",
    "MixtureAuditor",
    "MixtureEstimate",
    "estimate_mixture",
]


def _floats(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else [float(x) for x in values]


@dataclass(frozen=True)
class MixtureEstimate:
    """One estimator's mixture: point estimate and percentile interval per domain (intervals None without
    bootstrap), the unconstrained solution where one exists, and the soft moment residual."""

    method: str
    point: np.ndarray
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None
    raw: np.ndarray | None
    residual: float
    converged: bool

    def to_dict(self, domains: Sequence[str]) -> dict[str, object]:
        """JSON-serialisable form with per-domain mappings."""

        def by_domain(values: np.ndarray | None) -> dict[str, float] | None:
            return None if values is None else {d: float(v) for d, v in zip(domains, values, strict=True)}

        return {
            "method": self.method,
            "point": by_domain(self.point),
            "ci_low": by_domain(self.ci_low),
            "ci_high": by_domain(self.ci_high),
            "raw": _floats(self.raw),
            "residual": self.residual,
            "converged": self.converged,
        }


@dataclass(frozen=True)
class AuditResult:
    """The outcome of one audit: estimates per method, which one is the default, diagnostics and the
    classifier's held-out quality."""

    domains: tuple[str, ...]
    estimates: dict[str, MixtureEstimate]
    default_method: str
    diagnostics: Diagnostics
    classifier_report: ClassifierReport
    n_generations: int
    n_bootstrap: int
    confidence: float
    seed: int
    settings: dict[str, object] = field(default_factory=dict)
    open_set: dict[str, object] | None = None
    """With ``open_set=True``: the out-of-taxonomy share and its interval (:class:`OpenSetEstimate` fields), and
    ``shares_of_all``, the default estimate as shares of all generations; ``estimates`` are then shares of the
    in-taxonomy part."""

    @property
    def default(self) -> MixtureEstimate:
        """The default method's estimate."""
        return self.estimates[self.default_method]

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form (``json.dumps`` works on it directly)."""
        return {
            "domains": list(self.domains),
            "default_method": self.default_method,
            "estimates": {m: e.to_dict(self.domains) for m, e in self.estimates.items()},
            "diagnostics": self.diagnostics.to_dict(),
            "classifier_report": self.classifier_report.to_dict(),
            "n_generations": self.n_generations,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "seed": self.seed,
            "settings": dict(self.settings),
            "open_set": self.open_set,
        }


class MixtureAuditor:
    """Fit a domain reference once, then audit generation sets against it.

    ``classifier`` defaults to TF-IDF + logistic regression; ``calibration`` is ``"bcts"``, ``"temperature"`` or
    ``"none"``; ``fractions`` split the reference into classifier-train / calibration / confusion parts.
    """

    def __init__(
        self,
        *,
        classifier: DomainClassifier | None = None,
        calibration: str = "bcts",
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
        seed: int = 0,
    ) -> None:
        self.classifier = classifier
        self.calibration = calibration
        self.fractions = fractions
        self.seed = seed
        self._reference: FittedReference | None = None
        self._novelty: NoveltyScorer | None = None

    @property
    def reference(self) -> FittedReference:
        """The fitted reference (classifier, calibrator, confusion); raises before :meth:`fit`."""
        if self._reference is None:
            raise RuntimeError("MixtureAuditor: call fit(reference_texts, reference_labels) first")
        return self._reference

    @property
    def domains(self) -> tuple[str, ...]:
        """The taxonomy's domain names, in estimate order."""
        return self.reference.domains

    def fit(
        self,
        reference_texts: Sequence[str],
        reference_labels: Sequence[str] | Sequence[int] | np.ndarray,
        domains: Sequence[str] | None = None,
    ) -> MixtureAuditor:
        """Train and calibrate the classifier and measure its confusion on labelled reference text."""
        self._reference = fit_reference(
            reference_texts,
            reference_labels,
            domains=domains,
            classifier=self.classifier,
            calibration=self.calibration,
            fractions=self.fractions,
            seed=self.seed,
        )
        self._novelty = None
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated domain probabilities (n, K) of texts."""
        return self.reference.predict_proba(texts)

    def audit(
        self,
        generations: Sequence[str],
        *,
        methods: Sequence[str] | None = None,
        default_method: str = DEFAULT_METHOD,
        n_bootstrap: int = 200,
        confidence: float = 0.95,
        weights: np.ndarray | None = None,
        seed: int | None = None,
        emit_warnings: bool = True,
        length_match: bool = False,
        open_set: bool = False,
        snippet_anchor: str = "random",
        open_set_shares: str = "all",
    ) -> AuditResult:
        """Estimate the mixture of ``generations`` (raw texts) with every method in ``methods`` (default: all).

        ``weights`` (e.g. token counts) gives token-weighted instead of per-generation averages; ``seed``
        (default: the auditor's) seeds the bootstrap; diagnostics problems are raised as :class:`AuditWarning`
        unless ``emit_warnings`` is False (they are in ``result.diagnostics.warnings`` either way).
        ``length_match`` measures the calibration and confusion on reference snippets as long as the generations
        (:func:`~hf_fundamentals.audit.reference.length_matched`; otherwise on whole documents); ``open_set``
        adds the share of generations that belong to no category (:mod:`hf_fundamentals.audit.open_set`, its
        null always length-matched) and reports the category shares of the in-taxonomy part. ``snippet_anchor`` says where those snippets start (:data:`ANCHORS`: a random
        word boundary, or the document's beginning, which is what BOS-prompted generations are).
        ``open_set_shares`` (:data:`OPEN_SET_SHARES`) says which generations the in-taxonomy shares come from.
        """
        if isinstance(generations, str):
            raise TypeError("generations: got a single string; pass a list of generated texts")
        if len(generations) == 0:
            raise ValueError(
                "generations: got 0 texts; the audit needs the model's generations (300+ advised)"
            )
        if snippet_anchor not in ANCHORS:  # before the slow snippet scoring
            raise ValueError(f"snippet_anchor: got {snippet_anchor!r}; expected one of {', '.join(ANCHORS)}")
        if open_set_shares not in OPEN_SET_SHARES:
            raise ValueError(
                f"open_set_shares: got {open_set_shares!r}; expected one of {', '.join(OPEN_SET_SHARES)}"
            )
        seed = self.seed if seed is None else seed
        ref = self.reference
        if length_match:
            ref = length_matched(ref, [len(g) for g in generations], seed=seed, anchor=snippet_anchor)
        logits = ref.logits(generations)
        options = dict(methods=methods, default_method=default_method, n_bootstrap=n_bootstrap,
                       confidence=confidence, seed=seed, emit_warnings=emit_warnings)  # fmt: skip
        if not open_set:
            return self.audit_logits(logits, weights=weights, reference=ref, **options)
        return self._audit_open_set(
            list(generations), logits, ref, weights, options, snippet_anchor, open_set_shares
        )

    def _audit_open_set(
        self,
        generations: list[str],
        logits: np.ndarray,
        ref: FittedReference,
        weights: np.ndarray | None,
        options: dict,
        anchor: str = "random",
        shares_from: str = "all",
    ) -> AuditResult:
        """Shares of the in-taxonomy part (on all generations, or on the typical ones with
        ``shares_from="typical"``),
        then the out-of-taxonomy share. The null
        is always cut to the generations' lengths (starting where ``anchor`` says), whether or not ``ref``'s
        confusion was: a typicality score depends on a text's length."""
        if self._novelty is None:
            self._novelty = NoveltyScorer().fit(ref.train_texts)
        # the null: many length-matched windows of every held-out document (calibration and confusion splits,
        # which the kNN index never saw)
        held_texts = [*ref.calibration_texts, *ref.confusion_texts]
        held_labels = np.concatenate([ref.calibration_doc_labels, ref.confusion_doc_labels])
        null_texts, null_labels, _ = draw_snippets(
            held_texts,
            held_labels,
            [len(g) for g in generations],
            per_doc=NULL_PER_DOC,
            seed=options["seed"] + 7,
            anchor=anchor,
        )
        null_scores = self._novelty.score(null_texts)
        gen_scores = self._novelty.score(generations)
        labels = ref.confusion_labels
        # the rows the confusion was measured on: length-matched snippets, or whole documents
        conf_scores = self._novelty.score(list(ref.confusion_snippets or ref.confusion_texts))
        k = ref.n_classes
        uniform = np.full(k, 1.0 / k)
        t_acc = weighted_quantile(null_scores, _per_snippet(null_labels, uniform), ACCEPT_QUANTILE)
        keep, null_keep = gen_scores >= t_acc, conf_scores >= t_acc
        alpha = np.array([np.mean(null_scores[null_labels == c] < t_acc) for c in range(k)])
        enough = keep.sum() >= 10 and all(np.any(null_keep & (labels == c)) for c in range(k))
        if shares_from == "typical" and enough:
            sub = replace(
                ref,
                confusion=Confusion.from_predictions(ref.confusion_probs[null_keep], labels[null_keep], k),
                confusion_probs=ref.confusion_probs[null_keep],
                confusion_labels=labels[null_keep],
                confusion_logits=ref.confusion_logits[null_keep],
                confusion_groups=None if ref.confusion_groups is None else ref.confusion_groups[null_keep],
            )
            sub_weights = None if weights is None else np.asarray(weights)[keep]
            result = self.audit_logits(logits[keep], weights=sub_weights, reference=sub, **options)
            result = _reweight(result, 1.0 / np.maximum(1.0 - alpha, 1e-6))
        else:  # all generations asked for, or too few typical ones to estimate shares on (said so below)
            result = self.audit_logits(logits, weights=weights, reference=ref, **options)
        est = estimate_open_set(
            gen_scores, null_scores, null_labels, result.default.point, generation_weights=weights,
            n_bootstrap=options["n_bootstrap"], confidence=options["confidence"], seed=options["seed"],
        )  # fmt: skip
        d = result.default
        inside_lo = 1.0 - (est.ci_high if est.ci_high is not None else est.share)
        inside_hi = 1.0 - (est.ci_low if est.ci_low is not None else est.share)
        of_all = {
            "point": dict(zip(ref.domains, ((1.0 - est.share) * d.point).tolist(), strict=True)),
            "ci_low": None if d.ci_low is None else dict(zip(ref.domains, (inside_lo * d.ci_low).tolist(), strict=True)),
            "ci_high": None if d.ci_high is None else dict(zip(ref.domains, (inside_hi * d.ci_high).tolist(), strict=True)),
        }  # fmt: skip
        info = {
            **est.to_dict(),
            "shares_of_all": of_all,
            "accept_threshold": t_acc,
            "accept_quantile": ACCEPT_QUANTILE,
            "null_anchor": anchor,
            "n_typical_generations": int(keep.sum()),
            "in_taxonomy_shares_from": "all generations"
            if shares_from == "all"
            else "typical generations"
            if enough
            else "all generations (too few typical)",
        }
        return replace(result, open_set=info, n_generations=len(generations))

    def audit_logits(
        self,
        logits: np.ndarray,
        *,
        methods: Sequence[str] | None = None,
        default_method: str = DEFAULT_METHOD,
        n_bootstrap: int = 200,
        confidence: float = 0.95,
        weights: np.ndarray | None = None,
        seed: int | None = None,
        emit_warnings: bool = True,
        reference: FittedReference | None = None,
    ) -> AuditResult:
        """Like :meth:`audit` from the classifier's logits (n, K) of the generations; the bootstrap then also
        refits the calibrator on resamples of the calibration split. ``reference`` (default: the fitted one)
        supplies the calibrator and confusion."""
        ref = self.reference if reference is None else reference
        recalibration = Recalibration(
            method=ref.calibrator.method,
            calibration_logits=ref.calibration_logits,
            calibration_labels=ref.calibration_labels,
            confusion_logits=ref.confusion_logits,
            generation_logits=np.asarray(logits, dtype=np.float64),
            calibration_groups=ref.calibration_groups,
        )
        return self._audit(
            ref.calibrator.transform(logits),
            methods,
            default_method,
            n_bootstrap,
            confidence,
            weights,
            seed,
            emit_warnings,
            recalibration,
            ref,
        )

    def audit_probs(
        self,
        probs: np.ndarray,
        *,
        methods: Sequence[str] | None = None,
        default_method: str = DEFAULT_METHOD,
        n_bootstrap: int = 200,
        confidence: float = 0.95,
        weights: np.ndarray | None = None,
        seed: int | None = None,
        emit_warnings: bool = True,
    ) -> AuditResult:
        """Like :meth:`audit` from already-calibrated probabilities (n, K) of the generations (the bootstrap
        then keeps the calibrator fixed)."""
        return self._audit(
            probs, methods, default_method, n_bootstrap, confidence, weights, seed, emit_warnings, None
        )

    def _audit(
        self,
        probs: np.ndarray,
        methods: Sequence[str] | None,
        default_method: str,
        n_bootstrap: int,
        confidence: float,
        weights: np.ndarray | None,
        seed: int | None,
        emit_warnings: bool,
        recalibration: Recalibration | None,
        ref: FittedReference | None = None,
    ) -> AuditResult:
        """Point estimates, diagnostics and bootstrap intervals for calibrated generation probabilities."""
        ref = self.reference if ref is None else ref

        methods = list(ESTIMATORS) if methods is None else list(dict.fromkeys(methods))
        unknown = [m for m in methods if m not in ESTIMATORS]
        if unknown:
            raise ValueError(f"methods: unknown estimators {unknown}; accepted: {list(ESTIMATORS)}")
        if default_method not in ESTIMATORS:
            raise ValueError(
                f"default_method: unknown estimator {default_method!r}; accepted: {list(ESTIMATORS)}"
            )
        if default_method not in methods:
            methods.insert(0, default_method)
        if n_bootstrap < 0 or n_bootstrap == 1:
            raise ValueError(f"n_bootstrap: got {n_bootstrap}; expected 0 (no intervals) or at least 2")
        seed = self.seed if seed is None else seed
        points = {}
        with warnings.catch_warnings():
            if not emit_warnings:
                warnings.simplefilter("ignore", AuditWarning)
            for m in methods:
                points[m] = estimate_prior(probs, ref.confusion, method=m, weights=weights)
            diagnostics = diagnose(
                probs,
                ref.confusion_probs,
                ref.confusion_labels,
                points[default_method].prior,
                weights=weights,
                domains=ref.domains,
                emit=emit_warnings,
            )
        boot = (
            bootstrap_priors(
                probs,
                ref.confusion_probs,
                ref.confusion_labels,
                methods,
                weights=weights,
                n_bootstrap=n_bootstrap,
                confidence=confidence,
                seed=seed,
                recalibration=recalibration,
                confusion_groups=ref.confusion_groups,
            )
            if n_bootstrap
            else {}
        )
        pair = (default_method, cross_check_partner(default_method))
        if all(m in boot for m in pair):
            gap = estimator_disagreement(
                pair,
                (points[pair[0]].prior, points[pair[1]].prior),
                (boot[pair[0]].samples, boot[pair[1]].samples),
                ref.domains,
                confidence,
            )
            extra = (gap.message(),) if gap.significant else ()
            if extra and emit_warnings:
                warnings.warn(extra[0], AuditWarning, stacklevel=3)
            diagnostics = replace(
                diagnostics, estimator_gap=gap.to_dict(), warnings=diagnostics.warnings + extra
            )
        estimates = {
            m: MixtureEstimate(
                method=m,
                point=p.prior,
                ci_low=boot[m].ci_low if m in boot else None,
                ci_high=boot[m].ci_high if m in boot else None,
                raw=p.raw,
                residual=p.residual if math.isfinite(p.residual) else float("nan"),
                converged=p.converged,
            )
            for m, p in points.items()
        }
        return AuditResult(
            domains=ref.domains,
            estimates=estimates,
            default_method=default_method,
            diagnostics=diagnostics,
            classifier_report=ref.report,
            n_generations=int(np.asarray(probs).shape[0]),
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
            settings={
                "calibration": self.calibration,
                "fractions": list(self.fractions),
                "classifier": type(ref.classifier).__name__,
                "token_weighted": weights is not None,
                "length_matched": ref.length_matched_to is not None,
                "snippet_anchor": ref.snippet_anchor,
            },
        )


def _per_snippet(labels: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels, minlength=class_weights.size).astype(np.float64)
    return (class_weights / np.maximum(counts, 1.0))[labels]


def _reweight(result: AuditResult, w: np.ndarray) -> AuditResult:
    """Undo the typicality filter's class-dependent loss: a domain whose snippets fall below the threshold at
    rate a_c keeps 1 - a_c of its generations, so its share is scaled by 1 / (1 - a_c) and renormalized (the
    interval ends with the same factor as the point: an approximation)."""
    out = {}
    for m, e in result.estimates.items():
        norm = float(np.sum(e.point * w)) or 1.0
        out[m] = replace(
            e,
            point=e.point * w / norm,
            ci_low=None if e.ci_low is None else np.clip(e.ci_low * w / norm, 0.0, 1.0),
            ci_high=None if e.ci_high is None else np.clip(e.ci_high * w / norm, 0.0, 1.0),
        )
    return replace(result, estimates=out)


def estimate_mixture(
    reference_texts: Sequence[str],
    reference_labels: Sequence[str] | Sequence[int] | np.ndarray,
    generations: Sequence[str],
    *,
    method: str = DEFAULT_METHOD,
    methods: Sequence[str] | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    weights: np.ndarray | None = None,
    domains: Sequence[str] | None = None,
    classifier: DomainClassifier | None = None,
    calibration: str = "bcts",
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> AuditResult:
    """Audit ``generations`` against labelled reference text in one call (fit a :class:`MixtureAuditor`, then
    :meth:`MixtureAuditor.audit`). ``method`` is the default estimator; ``methods`` (default: all) are reported."""
    auditor = MixtureAuditor(classifier=classifier, calibration=calibration, fractions=fractions, seed=seed)
    auditor.fit(reference_texts, reference_labels, domains=domains)
    return auditor.audit(
        generations,
        methods=methods,
        default_method=method,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        weights=weights,
        seed=seed,
    )
