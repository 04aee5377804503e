"""Pure-PyTorch references for I/O-efficient approximate attention (Sobczyk, Zouzias, Papp, arXiv 2605.23751):
low-rank feature-map attention, certified block-sparse exact attention, an analytic I/O model, and Preisach
(hysteresis) attention (Frydrych, arXiv 2605.23603). CPU users run these; the Triton kernels are tested
against them."""

from hf_fundamentals.attention.blocksparse import (
    BlockSparseOutput,
    blocksparse_attention,
    key_block_summaries,
    logit_upper_bound,
)
from hf_fundamentals.attention.io_model import (
    IOCount,
    band_blocks,
    blocksparse_io,
    blocksparse_kernel_io,
    exact_flash_io,
    flash_block_size,
    lowrank_io,
)
from hf_fundamentals.attention.lowrank import (
    FEATURE_MAPS,
    dense_attention,
    lowrank_attention,
    lowrank_kernel_matrix,
    positive_random_feature_map,
    random_projection,
    repeat_kv,
    taylor2_dim,
    taylor2_feature_map,
)
from hf_fundamentals.attention.preisach import (
    PreisachAttention,
    PreisachState,
    preisach_attention,
    preisach_step,
    relay_states_parallel,
    relay_states_sequential,
    relay_states_stack,
    soft_relay,
)

__all__ = [
    "FEATURE_MAPS",
    "BlockSparseOutput",
    "IOCount",
    "blocksparse_attention",
    "band_blocks",
    "blocksparse_io",
    "blocksparse_kernel_io",
    "dense_attention",
    "exact_flash_io",
    "flash_block_size",
    "key_block_summaries",
    "logit_upper_bound",
    "lowrank_attention",
    "lowrank_io",
    "lowrank_kernel_matrix",
    "positive_random_feature_map",
    "random_projection",
    "repeat_kv",
    "taylor2_dim",
    "taylor2_feature_map",
    # Preisach attention; the full API is hf_fundamentals.attention.preisach
    "PreisachAttention",
    "PreisachState",
    "preisach_attention",
    "preisach_step",
    "relay_states_parallel",
    "relay_states_sequential",
    "relay_states_stack",
    "soft_relay",
]
