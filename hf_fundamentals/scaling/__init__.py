"""Scaling laws L(N, D): the Shannon noisy-channel law (arXiv 2605.23901), Chinchilla and Kaplan, a robust
Huber/L-BFGS fitter with start-stability, R² and bootstrap diagnostics, turning points D*(N) and N*(D), plots, and
a schedule-aware single-run law (Tissue et al., arXiv 2408.11029) that predicts a run's loss under any LR schedule."""

from hf_fundamentals.scaling.fit import (
    DEFAULT_MAX_STARTS,
    FitResult,
    check_runs,
    fit_law,
    huber,
    load_fits,
    profile,
    r_squared,
)
from hf_fundamentals.scaling.laws import (
    LAWS,
    ChinchillaLaw,
    KaplanLaw,
    ScalingLaw,
    ShannonLaw,
    ShannonRatioLaw,
    ShannonRunLaw,
    get_law,
)
from hf_fundamentals.scaling.plot import plot_fits
from hf_fundamentals.scaling.schedule import (
    ANNEALING,
    DECAY_GRID,
    DEFAULT_DECAY,
    SCHEDULES,
    AnnealingFit,
    AnnealingLaw,
    annealing_areas,
    block_resample,
    degenerate_constants,
    fit_annealing,
    identifiability,
    load_annealing,
    lr_schedule,
)
from hf_fundamentals.scaling.turning import SEARCH_RANGE, d_star, n_star

__all__ = [
    "ANNEALING",
    "DECAY_GRID",
    "DEFAULT_DECAY",
    "SCHEDULES",
    "AnnealingFit",
    "AnnealingLaw",
    "annealing_areas",
    "block_resample",
    "degenerate_constants",
    "fit_annealing",
    "identifiability",
    "load_annealing",
    "lr_schedule",
    "DEFAULT_MAX_STARTS",
    "LAWS",
    "SEARCH_RANGE",
    "ChinchillaLaw",
    "FitResult",
    "KaplanLaw",
    "ScalingLaw",
    "ShannonLaw",
    "ShannonRatioLaw",
    "ShannonRunLaw",
    "check_runs",
    "d_star",
    "fit_law",
    "get_law",
    "huber",
    "load_fits",
    "n_star",
    "plot_fits",
    "profile",
    "r_squared",
]
