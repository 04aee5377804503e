"""Complete-muE: hyperparameter transfer from a tuned dense proxy to a Mixture-of-Experts target (the plan of
per-group AdamW multipliers, init and forward multipliers), the LR-sweep optimum fit that measures drift, and the
coordinate check that shows whether a parameterization keeps activation scales flat."""

from hf_fundamentals.moe.coord_check import CoordData, Spread, coord_check, default_module_group
from hf_fundamentals.moe.plan import (
    EPS_WIDTH_RULES,
    GROUPS,
    H_ACT_CONVENTIONS,
    READOUT_LR_RULES,
    SOURCES,
    WD_COUPLINGS,
    DenseProxy,
    ForwardMultipliers,
    GlobalHparams,
    GroupRule,
    MoETarget,
    Plan,
    TransferOptions,
    transfer_plan,
)
from hf_fundamentals.moe.sweep import TEN_PERCENT_LOG2, OptimumFit, fit_optimum, lr_drift_log2

__all__ = [
    "EPS_WIDTH_RULES",
    "GROUPS",
    "H_ACT_CONVENTIONS",
    "READOUT_LR_RULES",
    "SOURCES",
    "TEN_PERCENT_LOG2",
    "WD_COUPLINGS",
    "CoordData",
    "DenseProxy",
    "ForwardMultipliers",
    "GlobalHparams",
    "GroupRule",
    "MoETarget",
    "OptimumFit",
    "Plan",
    "Spread",
    "TransferOptions",
    "coord_check",
    "default_module_group",
    "fit_optimum",
    "lr_drift_log2",
    "transfer_plan",
]
