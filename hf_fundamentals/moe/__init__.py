"""Complete-muE: hyperparameter transfer from a tuned dense proxy to a Mixture-of-Experts target (the plan of
per-group AdamW multipliers, init and forward multipliers), and the LR-sweep optimum fit that measures drift."""

from hf_fundamentals.moe.plan import (
    EPS_WIDTH_RULES,
    GROUPS,
    H_ACT_CONVENTIONS,
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
    "SOURCES",
    "TEN_PERCENT_LOG2",
    "WD_COUPLINGS",
    "DenseProxy",
    "ForwardMultipliers",
    "GlobalHparams",
    "GroupRule",
    "MoETarget",
    "OptimumFit",
    "Plan",
    "TransferOptions",
    "fit_optimum",
    "lr_drift_log2",
    "transfer_plan",
]
