"""Muon for every parameter layout: role-based routing, per-expert orthogonalization, distributed-correct."""

from hf_fundamentals.optim.muon import (
    MuonAdamW,
    balanced_owners,
    lr_adjustment,
    ns_cost,
    orthogonalize,
    orthogonalize_many,
)
from hf_fundamentals.optim.newton_schulz import (
    POLAR_EXPRESS_COEFFICIENTS,
    QUINTIC_COEFFICIENTS,
    gram_newton_schulz,
    newton_schulz,
    regularized_polar,
    schatten_power,
    singular_value_range,
)
from hf_fundamentals.optim.routing import (
    ParamRoute,
    muon_param_groups,
    route_parameters,
    routing_summary,
    routing_table,
)

__all__ = [
    "MuonAdamW",
    "POLAR_EXPRESS_COEFFICIENTS",
    "ParamRoute",
    "QUINTIC_COEFFICIENTS",
    "balanced_owners",
    "gram_newton_schulz",
    "lr_adjustment",
    "muon_param_groups",
    "newton_schulz",
    "ns_cost",
    "orthogonalize",
    "orthogonalize_many",
    "regularized_polar",
    "route_parameters",
    "routing_summary",
    "routing_table",
    "schatten_power",
    "singular_value_range",
]
