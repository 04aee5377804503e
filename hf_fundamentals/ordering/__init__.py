"""Score-based training orders (STR/SAW and the paper's baselines) and measures of what an order does."""

from hf_fundamentals.ordering.methods import (
    METHODS,
    OrderSpec,
    cross_guidance_order,
    domain_codes,
    folding_order,
    gumbel_rank_jitter,
    order_indices,
    random_order,
    saw_order,
    segment_order,
    sorted_indices,
    sorting_order,
    stair_order,
    window_jitter,
    zigzag_order,
)

__all__ = [
    "METHODS",
    "OrderSpec",
    "cross_guidance_order",
    "domain_codes",
    "folding_order",
    "gumbel_rank_jitter",
    "order_indices",
    "random_order",
    "saw_order",
    "segment_order",
    "sorted_indices",
    "sorting_order",
    "stair_order",
    "window_jitter",
    "zigzag_order",
]
