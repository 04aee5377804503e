"""LLMSurgeon-style auditing: estimate a model's training-domain mixture from its generations (label shift).

numpy, scipy and scikit-learn only. Start with :func:`estimate_mixture` or :class:`MixtureAuditor`; the
estimators, calibration, bootstrap and diagnostics are usable on their own.
"""

from hf_fundamentals.audit.bootstrap import BootstrapResult, Recalibration, bootstrap_priors
from hf_fundamentals.audit.calibration import CALIBRATION_METHODS, Calibrator, fit_calibrator
from hf_fundamentals.audit.classifier import DomainClassifier, TfidfLogisticClassifier
from hf_fundamentals.audit.confusion import Confusion
from hf_fundamentals.audit.diagnostics import (
    Diagnostics,
    Disagreement,
    cross_check_partner,
    diagnose,
    estimator_disagreement,
)
from hf_fundamentals.audit.estimators import (
    ESTIMATORS,
    AuditWarning,
    PriorEstimate,
    acc,
    cc,
    estimate_prior,
    llmsurgeon_repo,
    mlls_em,
    pacc,
    pcc,
    rlls,
)
from hf_fundamentals.audit.metrics import (
    ci_coverage,
    l1_error,
    max_abs_error,
    mean_abs_error,
    overlap_accuracy,
    tolerance_accuracy,
    trivial_baselines,
)
from hf_fundamentals.audit.reference import ClassifierReport, FittedReference, fit_reference
from hf_fundamentals.audit.simplex import project_to_simplex, simplex_least_squares
from hf_fundamentals.audit.surgeon import (
    DEFAULT_METHOD,
    AuditResult,
    MixtureAuditor,
    MixtureEstimate,
    estimate_mixture,
)
from hf_fundamentals.audit.synthetic import SYNTHETIC_DOMAINS, synthetic_corpus

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_METHOD",
    "ESTIMATORS",
    "SYNTHETIC_DOMAINS",
    "AuditResult",
    "AuditWarning",
    "BootstrapResult",
    "Calibrator",
    "ClassifierReport",
    "Confusion",
    "Diagnostics",
    "Disagreement",
    "DomainClassifier",
    "FittedReference",
    "MixtureAuditor",
    "MixtureEstimate",
    "PriorEstimate",
    "Recalibration",
    "TfidfLogisticClassifier",
    "acc",
    "bootstrap_priors",
    "cc",
    "ci_coverage",
    "cross_check_partner",
    "diagnose",
    "estimator_disagreement",
    "estimate_mixture",
    "estimate_prior",
    "fit_calibrator",
    "fit_reference",
    "l1_error",
    "llmsurgeon_repo",
    "max_abs_error",
    "mean_abs_error",
    "mlls_em",
    "overlap_accuracy",
    "pacc",
    "pcc",
    "project_to_simplex",
    "rlls",
    "simplex_least_squares",
    "synthetic_corpus",
    "tolerance_accuracy",
    "trivial_baselines",
]
