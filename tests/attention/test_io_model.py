"""Analytic I/O model: exact FlashAttention counts match a hand count and scale as n²/M, low-rank attention is
linear in n while its state fits and pays extra passes when it does not, block-sparse with every block kept costs
more than FlashAttention (the summaries) and with a constant number of kept blocks reads K/V linearly in n."""

from __future__ import annotations

import pytest

from hf_fundamentals.attention import blocksparse_io, exact_flash_io, flash_block_size, lowrank_io


def test_flash_hand_count_small_case():
    # n=8, d=2, M=32: B = 32/(4·2) = 4, two query blocks. Q 16 + O 16 + K 2·16 + V 2·16 = 96 words.
    io = exact_flash_io(8, 2, 32)
    assert io.params["block_q"] == io.params["block_k"] == 4
    assert io.reads == {"Q": 16, "K": 32, "V": 32} and io.writes == {"O": 16}
    assert io.total == 96
    # causal: query block 0 needs key block 0 (4 rows), block 1 needs key blocks 0-1 (8 rows): K = V = 12·2.
    assert exact_flash_io(8, 2, 32, causal=True).total == 16 + 16 + 24 + 24
    # ragged: n=10 → blocks of 4, 4, 2; causal key rows 4 + 8 + 10 = 22, non-causal 3·10 = 30.
    assert exact_flash_io(10, 2, 32).total == 20 + 20 + 2 * 30 * 2
    assert exact_flash_io(10, 2, 32, causal=True).total == 20 + 20 + 2 * 22 * 2


def test_flash_grows_quadratically_in_n_and_inversely_in_m():
    d, m = 64, 64 * 1024
    ratio_n = exact_flash_io(32768, d, m).total / exact_flash_io(16384, d, m).total
    assert 3.6 < ratio_n <= 4.0
    ratio_m = exact_flash_io(32768, d, m).total / exact_flash_io(32768, d, 2 * m).total
    assert 1.8 < ratio_m <= 2.0
    causal = exact_flash_io(32768, d, m, causal=True)
    full = exact_flash_io(32768, d, m)
    assert 0.45 < causal.reads["K"] / full.reads["K"] < 0.55


def test_flash_block_rule_and_validation():
    assert flash_block_size(128, 57344) == 112
    with pytest.raises(ValueError, match="fast memory"):
        flash_block_size(128, 256)
    with pytest.raises(ValueError, match="fit"):
        exact_flash_io(1024, 64, 4096, block_q=64, block_k=64)


@pytest.mark.parametrize("causal", [False, True])
def test_lowrank_linear_in_n_when_state_fits(causal):
    d, rank, m = 64, 256, 64 * 1024  # state 256·65 words < M/2
    totals = [lowrank_io(n, d, rank, m, causal=causal).total for n in (4096, 8192, 12288)]
    assert lowrank_io(4096, d, rank, m).params["state_chunks"] == 1
    assert totals[2] - totals[1] == totals[1] - totals[0]  # affine in n
    state = 0 if causal else 2 * rank * (d + 1)
    assert totals[0] == 4 * 4096 * d + state


def test_lowrank_chunks_the_state_when_it_does_not_fit():
    d, m, n = 128, 57344, 8192
    rank = 1 + d + d * (d + 1) // 2  # taylor2 at d=128: 8385 rows
    io = lowrank_io(n, d, rank, m)
    chunks = io.params["state_chunks"]
    assert chunks == -(-rank * (d + 1) // (m // 2))
    assert io.reads["K"] == chunks * n * d and io.reads["O_partial"] == (chunks - 1) * n * (d + 1)
    assert io.total > lowrank_io(n, d, 256, m).total
    # Θ(nd·rank·d/M) is still far below exact attention's Θ(n²d²/M) at long context
    long = 131072
    assert lowrank_io(long, d, rank, m).total < exact_flash_io(long, d, m).total / 10


def test_blocksparse_all_kept_costs_more_than_flash():
    n, d, m, bs = 4096, 64, 64 * 1024, 64
    n_blocks = n // bs
    sparse = blocksparse_io(n, d, m, bs, n_blocks)
    flash = exact_flash_io(n, d, m, block_q=bs, block_k=bs)
    assert sparse.reads["K"] == flash.reads["K"] and sparse.reads["V"] == flash.reads["V"]
    assert sparse.total > flash.total
    assert sparse.total - flash.total == n_blocks * 2 * d * n_blocks + n * d + 2 * d * n_blocks


def test_blocksparse_constant_kept_blocks_is_linear_in_kv_reads():
    d, m, bs, kept = 64, 64 * 1024, 64, 4
    ios = {n: blocksparse_io(n, d, m, bs, kept) for n in (512, 1024, 2048)}
    for n, io in ios.items():
        assert io.reads["K"] == (n // bs) * kept * bs * d  # K/V reads: linear in n
        assert io.reads["summaries"] == 2 * d * (n // bs) ** 2  # the summary scan: quadratic but /bs² smaller
        assert (io.total - io.reads["summaries"]) * 2048 == (
            ios[2048].total - ios[2048].reads["summaries"]
        ) * n
    # while n << bs²·(1 + kept) the summary scan is minor and the total is close to linear
    assert ios[2048].total / ios[1024].total < 2.15
    assert ios[2048].total < exact_flash_io(2048, d, m, block_q=bs, block_k=bs).total / 2


def test_blocksparse_per_block_counts_and_validation():
    io = blocksparse_io(256, 8, 4096, 64, [1, 2, 3, 4], build_summaries=False)
    assert io.reads["K"] == (1 + 2 + 3 + 4) * 64 * 8 and "summaries" not in io.writes
    with pytest.raises(ValueError, match="one kept count"):
        blocksparse_io(256, 8, 4096, 64, [1, 2])
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        blocksparse_io(256, 8, 4096, 64, 5)
