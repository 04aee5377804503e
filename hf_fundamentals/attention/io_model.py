"""Analytic I/O model of tiled attention kernels: words moved between slow memory (HBM) and a fast memory of
``M`` words (SRAM), per tensor, for one (batch, head) with n queries and n keys of head dimension d
(the two-level model of FlashAttention, arXiv 2205.14135, and Saha & Ye, arXiv 2402.07443).

Conventions: a word is one element; a tile that is read stays on chip until it is no longer needed; outputs are
written once; the forward pass only (no log-sum-exp is stored for a backward pass). Multiply by
``batch·heads`` and by the bytes per element to compare with measured DRAM bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IOCount:
    """Words read from and written to slow memory, by tensor (``reads['K']``, ``writes['O']``, ...), with the
    parameters the count was made with (block sizes, chunks)."""

    reads: dict[str, int]
    writes: dict[str, int]
    params: dict[str, int | float | bool] = field(default_factory=dict)

    @property
    def total_reads(self) -> int:
        """All words read from slow memory."""
        return sum(self.reads.values())

    @property
    def total_writes(self) -> int:
        """All words written to slow memory."""
        return sum(self.writes.values())

    @property
    def total(self) -> int:
        """All words moved in either direction."""
        return self.total_reads + self.total_writes


def _check_positive(**values: int | float) -> None:
    """Raise ``ValueError`` unless every value is > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0; got {value!r}")


def flash_block_size(d: int, M: int) -> int:
    """FlashAttention's tile rule: a Q tile, a K and a V tile and the O accumulator (4·B·d words) must fit in
    M, so B = ⌊M/(4d)⌋ rows (Dao et al. 2022 use B_c = ⌈M/4d⌉)."""
    _check_positive(d=d, M=M)
    block = M // (4 * d)
    if block < 1:
        raise ValueError(
            f"fast memory M={M} cannot hold one row each of Q, K, V, O (needs 4d = {4 * d} words)"
        )
    return block


def exact_flash_io(
    n: int, d: int, M: int, block_q: int | None = None, block_k: int | None = None, causal: bool = False
) -> IOCount:
    """FlashAttention-2 forward I/O: each Q block is read once and stays on chip while K and V are streamed past
    it, then O is written once; so K/V words = Σ over query blocks of the key rows that block needs
    (all n, or only the key blocks on/below the diagonal under ``causal``) times d. Block sizes default to
    ``flash_block_size(d, M)``; ≈ 2n²d/B_q + 2nd = Θ(n²d²/M) words."""
    _check_positive(n=n, d=d, M=M)
    bq = min(flash_block_size(d, M) if block_q is None else block_q, n)
    bk = min(flash_block_size(d, M) if block_k is None else block_k, n)
    _check_positive(block_q=bq, block_k=bk)
    if 2 * (bq + bk) * d > M:
        raise ValueError(
            f"tiles do not fit: Q, O ({bq}x{d}) and K, V ({bk}x{d}) need {2 * (bq + bk) * d} > M={M}"
        )
    n_qblocks = math.ceil(n / bq)
    key_rows = 0
    for qb in range(n_qblocks):
        if causal:
            last_query = min((qb + 1) * bq, n) - 1
            key_rows += min((last_query // bk + 1) * bk, n)  # whole key blocks up to the diagonal
        else:
            key_rows += n
    return IOCount(
        reads={"Q": n * d, "K": key_rows * d, "V": key_rows * d},
        writes={"O": n * d},
        params={"block_q": bq, "block_k": bk, "n_q_blocks": n_qblocks, "causal": causal},
    )


def lowrank_io(
    n: int, d: int, rank: int, M: int, causal: bool = False, state_fraction: float = 0.5
) -> IOCount:
    """Low-rank (φ-feature) attention I/O (our reconstruction of arXiv 2605.23751): if the state S, z
    (rank·(d+1) words) fits in ``state_fraction·M``, one pass reads K, V, Q once and writes O (≈ 4nd);
    otherwise the rank rows are split into p = ⌈rank(d+1)/(state_fraction·M)⌉ chunks, each re-streaming K, V,
    Q and accumulating partial numerators and denominators n(d+1) into slow memory, ≈ Θ(nd·(1 + rank·d/M)).

    Non-causal is the two-pass form: the state is written after the key pass and read back by the readout
    (2·rank·(d+1) words). Causal is the chunked linear-attention form with one persistent program per
    (batch, head): the running state never leaves the chip while it fits."""
    _check_positive(n=n, d=d, rank=rank, M=M, state_fraction=state_fraction)
    if not state_fraction <= 1:
        raise ValueError(f"state_fraction must be <= 1; got {state_fraction}")
    state_words = rank * (d + 1)
    chunks = math.ceil(state_words / (state_fraction * M))
    partial_words = n * (d + 1)  # a partial numerator (d) and denominator (1) per query row
    reads = {"Q": chunks * n * d, "K": chunks * n * d, "V": chunks * n * d}
    writes = {"O": n * d}
    if chunks > 1:
        reads["O_partial"] = (chunks - 1) * partial_words
        writes["O_partial"] = (chunks - 1) * partial_words
    if not causal or chunks > 1:
        reads["state"] = state_words
        writes["state"] = state_words
    return IOCount(
        reads=reads,
        writes=writes,
        params={"rank": rank, "state_chunks": chunks, "state_fraction": state_fraction, "causal": causal},
    )


def blocksparse_io(
    n: int,
    d: int,
    M: int,
    block_size: int,
    kept_blocks_per_query_block: int | Sequence[int],
    build_summaries: bool = True,
) -> IOCount:
    """Certified block-sparse I/O: read Q once, per query block read every key block's min/max summary
    (2d words each) and K, V only for the kept blocks, write O once. ``build_summaries`` adds one read of K and
    the write of the summaries. The summary scan costs 2d·(n/B)² words, so the total is linear in n only
    while n ≲ B²·(1 + kept) (beyond that a hierarchical summary would be needed)."""
    _check_positive(n=n, d=d, M=M, block_size=block_size)
    bs = min(block_size, n)
    if 4 * bs * d > M:
        raise ValueError(f"tiles do not fit: Q, K, V, O blocks of {bs}x{d} need {4 * bs * d} > M={M}")
    n_qblocks = n_kblocks = math.ceil(n / bs)
    if isinstance(kept_blocks_per_query_block, int):
        kept = [kept_blocks_per_query_block] * n_qblocks
    else:
        kept = list(kept_blocks_per_query_block)
        if len(kept) != n_qblocks:
            raise ValueError(f"need one kept count per query block ({n_qblocks}); got {len(kept)}")
    if any(c < 0 or c > n_kblocks for c in kept):
        raise ValueError(f"kept blocks per query block must lie in [0, {n_kblocks}]; got {kept}")
    summary_words = 2 * d * n_kblocks
    key_rows = sum(min(c * bs, n) for c in kept)  # full blocks; all kept blocks = exactly n rows
    reads = {"Q": n * d, "K": key_rows * d, "V": key_rows * d, "summaries": n_qblocks * summary_words}
    writes = {"O": n * d}
    if build_summaries:
        reads["K_summary_pass"] = n * d
        writes["summaries"] = summary_words
    return IOCount(
        reads=reads,
        writes=writes,
        params={
            "block_size": bs,
            "n_q_blocks": n_qblocks,
            "kept_blocks": sum(kept),
            "build": build_summaries,
        },
    )


def band_blocks(n_q: int, n_k: int, block: int, causal: bool, offset: int | None = None) -> list[list[int]]:
    """Per query block, the key blocks the certified block-sparse kernels always compute: the sink block 0 and
    the blocks holding the query block's own positions (plus the one before them when ``causal``)."""
    _check_positive(n_q=n_q, n_k=n_k, block=block)
    offset = n_k - n_q if offset is None else offset
    n_kb = math.ceil(n_k / block)
    out = []
    for qb in range(math.ceil(n_q / block)):
        first, last = qb * block + offset, min((qb + 1) * block, n_q) - 1 + offset
        lo = max(max(first, 0) // block - int(causal), 0)
        hi = -1 if last < 0 else min(max(last, 0) // block, n_kb - 1)
        out.append(sorted({0, *range(lo, hi + 1)}))
    return out


def blocksparse_kernel_io(
    n: int,
    d: int,
    block: int,
    kept_blocks_per_query_block: int | Sequence[int],
    *,
    causal: bool = True,
    tile_blocks: int = 4,
) -> IOCount:
    """Words moved by the Triton kernels of ``kernels/hff-approx-attention`` for one (batch, head), n queries =
    n keys, no padding; the kernels' instrumented counts match this exactly (tested). Passes:

    1. summaries: read K once, write centre, radius (d each) and a count per key block;
    2. local: per query block read Q and the K rows of its always-kept blocks (:func:`band_blocks`), write
       ``log Z_loc`` (1 per query);
    3. score: per tile of ``tile_blocks`` query blocks read Q, ``log Z_loc`` and every summary (2d+1 words a key
       block), write one score per (query block, key block);
    4. host selection: read the scores, write the kept-block lists (one index per kept block, one count and one
       ``log S`` per query block);
    5. forward: read Q, K and V of the kept blocks, the lists, ``log S`` and ``log Z_loc``; write O and the
       certified mass bound (1 per query).

    ``kept_blocks_per_query_block`` counts all computed blocks (always-kept ones included). Host-side words
    (scores read, lists and ``log S`` written) are modelled, not counted by the kernels."""
    _check_positive(n=n, d=d, block=block, tile_blocks=tile_blocks)
    n_qb = n_kb = math.ceil(n / block)
    kept = (
        [kept_blocks_per_query_block] * n_qb
        if isinstance(kept_blocks_per_query_block, int)
        else list(kept_blocks_per_query_block)
    )
    if len(kept) != n_qb or any(c < 0 or c > n_kb for c in kept):
        raise ValueError(f"need {n_qb} kept counts in [0, {n_kb}]; got {kept_blocks_per_query_block!r}")

    def rows(b: int) -> int:
        return min(block, n - b * block)

    band = band_blocks(n, n, block, causal)
    band_rows = sum(rows(b) for blocks in band for b in blocks)
    # whole blocks: exact when block divides n, else the short last key block is counted as full
    kept_rows = sum(min(c * block, n) for c in kept)
    n_tiles = math.ceil(n_qb / tile_blocks)
    summary = n_kb * (2 * d + 1)
    reads = {
        "Q": 3 * n * d,
        "K": n * d + band_rows * d + kept_rows * d,
        "V": kept_rows * d,
        "summaries": n_tiles * summary,
        "scores": n_qb * n_kb,
        "lists": sum(kept) + n_qb,
        "log_s": n_qb,
        "log_z": 2 * n,
    }
    writes = {
        "O": n * d,
        "summaries": summary,
        "scores": n_qb * n_kb,
        "lists": sum(kept) + n_qb,
        "log_s": n_qb,
        "log_z": n,
        "mass_bound": n,
    }
    return IOCount(
        reads=reads,
        writes=writes,
        params={"block": block, "tile_blocks": tile_blocks, "kept_blocks": sum(kept), "causal": causal},
    )


def lowrank_kernel_io(
    n: int,
    d: int,
    rank: int,
    *,
    causal: bool = False,
    rank_chunk: int | None = None,
    block_q: int = 64,
) -> IOCount:
    """Words moved by the random-feature (FAVOR+) Triton kernels of ``kernels/hff-approx-attention``
    (``lowrank_forward``) for one (batch, head), n queries = n keys, no padding, no GQA; the kernels' instrumented
    counts match this exactly (tested). Differences from :func:`lowrank_io`, all deliberate:

    * ω (rank·d words) is read from slow memory by every program that builds features (the model ignores it).
    * The k shift (one max over real keys and features) is tracked online, so no extra pass over K; the
      non-causal state pass writes one running max per rank chunk, which every readout program reads.
    * Non-causal with p = ⌈rank/rank_chunk⌉ > 1 rank chunks: the state pass re-streams K, V per chunk (as the
      model), but the readout is one program per query block of ``block_q`` rows that reads Q once and streams
      every state chunk through: the state (rank·(d+1)) is read once per query block and no partial
      numerators or denominators go to slow memory (the model instead re-reads Q per chunk and pays
      2·(p−1)·n·(d+1) partial words). With one query block and p = 1 the Q, K, V, O and state words equal the
      model's.
    * Causal: one persistent program per (batch, head) holding the whole state (the kernel refuses a rank whose
      state does not fit), so this is the model's p = 1 case plus ω.

    ``block_q`` is the kernel's query block (``chunk``, or the next power of two >= n when n is smaller, so one
    block); ``rank_chunk`` defaults to ``rank`` (one chunk)."""
    _check_positive(n=n, d=d, rank=rank, block_q=block_q)
    if causal:
        return IOCount(
            reads={"Q": n * d, "K": n * d, "V": n * d, "omega": rank * d},
            writes={"O": n * d},
            params={"rank": rank, "state_chunks": 1, "causal": True},
        )
    rank_chunk = rank if rank_chunk is None else rank_chunk
    _check_positive(rank_chunk=rank_chunk)
    chunks = math.ceil(rank / rank_chunk)
    n_qb = math.ceil(n / block_q)
    state_words = rank * (d + 1)
    reads = {
        "Q": n * d,
        "K": chunks * n * d,
        "V": chunks * n * d,
        "omega": rank * d * (1 + n_qb),
        "state": n_qb * state_words,
        "k_max": n_qb * chunks,
    }
    writes = {"O": n * d, "state": state_words, "k_max": chunks}
    return IOCount(
        reads=reads,
        writes=writes,
        params={"rank": rank, "state_chunks": chunks, "query_blocks": n_qb, "causal": False},
    )
