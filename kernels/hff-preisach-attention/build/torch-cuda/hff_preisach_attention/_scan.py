"""The relay scan of Preisach attention in Triton: one program per (batch·head, relay tile), a sequential loop
over the sequence in chunks of ``BLOCK_T`` tokens that carries each relay's state (and, for the value variant,
its anchor index and drive) in registers from one chunk to the next.

Inside a chunk the tokens are resolved in parallel, exactly:

* relay state: every token gets an event code ``2·(row+1) + 1`` (up-event, ``u >= α``), ``2·(row+1)`` (down-event,
  ``u <= β`` and not up) or 0 (no event, or a padded token); a running max over the chunk's rows gives the latest
  event, whose low bit is the state; rows with no event yet take the carried state;
* anchor (the latest token of highest drive since the relay's last down-event): a running lexicographic max of
  ``(down-events so far in the chunk, drive, token index)``; rows still in the chunk's first segment compare
  against the carried anchor (ties go to the later, in-chunk token); padded tokens have drive −inf.

Outputs per token (each optional): the relay states (int8 ±1), the anchors (int64, −1 where the relay is −1),
and the layer read-out, summed over the tile's relays: density ``Σ_m s_m μ_m`` or the value variant's numerator
``Σ_m w_m g_m μ_m ⊙ v_{τ_m}`` and denominator ``Σ_m w_m`` (with more than one relay tile the partial sums are
added atomically). The final carry (state, anchor, anchor drive after the last token) is always written: it is the
O(R) decode state (anchors are tracked only when ``TRACK_ANCHORS``; otherwise the carry's anchor is −1 and its
drive −inf). ``TRACK_ANCHORS`` must be set when ``STORE_ANCHORS`` or ``OUTPUT == 2``.
"""

from __future__ import annotations

import triton
import triton.language as tl

OUT_NONE, OUT_DENSITY, OUT_VALUE = 0, 1, 2


@triton.jit
def _imax(a, b):
    return tl.maximum(a, b)


@triton.jit
def _lex_max(a_seg, a_val, a_idx, b_seg, b_val, b_idx):
    """Lexicographic max of (segment, drive, index); ``b`` is the later operand. Associative (it is a max)."""
    take_b = (b_seg > a_seg) | ((b_seg == a_seg) & ((b_val > a_val) | ((b_val == a_val) & (b_idx >= a_idx))))
    return tl.where(take_b, b_seg, a_seg), tl.where(take_b, b_val, a_val), tl.where(take_b, b_idx, a_idx)


@triton.jit
def _relay_scan_kernel(
    U, ALPHA, BETA, REAL, MU, V, Q, GATE,
    S_OUT, A_OUT, O_NUM, O_DEN, F_UP, F_ANC, F_DRV,
    n, R, offset, heads, groups, alpha_mod, real_div,
    stride_vb, stride_vh, stride_vn,
    stride_qb, stride_qh, stride_qn,
    D: tl.constexpr, DV: tl.constexpr, DP: tl.constexpr, DVP: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
    HAS_REAL: tl.constexpr, STORE_STATES: tl.constexpr, STORE_ANCHORS: tl.constexpr, TRACK_ANCHORS: tl.constexpr,
    OUTPUT: tl.constexpr, HAS_GATE: tl.constexpr, ATOMIC: tl.constexpr,
):  # fmt: skip
    pid_bh = tl.program_id(0)
    pid_r = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    hk = h // groups
    n_q = n - offset
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = offs_r < R
    a_row = (pid_bh % alpha_mod) * R
    # relays past R never switch: α = +inf, β = −inf
    alpha = tl.load(ALPHA + a_row + offs_r, mask=rmask, other=float("inf"))
    beta = tl.load(BETA + a_row + offs_r, mask=rmask, other=float("-inf"))
    rows = tl.arange(0, BLOCK_T)
    last_row = rows[:, None] == BLOCK_T - 1

    carry_up = tl.zeros((BLOCK_R,), tl.int32)  # 1 = +1; all relays start at −1
    carry_anc = tl.full((BLOCK_R,), -1, tl.int32)
    carry_drv = tl.full((BLOCK_R,), float("-inf"), tl.float32)

    offs_dv = tl.arange(0, DVP)
    dvmask = offs_dv < DV
    if OUTPUT != 0:
        mu = tl.load(
            MU + h * R * DV + offs_r[:, None] * DV + offs_dv[None, :],
            mask=rmask[:, None] & dvmask[None, :],
            other=0.0,
        )  # [BLOCK_R, DVP]
    if HAS_GATE:
        offs_d = tl.arange(0, DP)
        dmask = offs_d < D
        c = tl.load(
            GATE + h * R * D + offs_r[:, None] * D + offs_d[None, :],
            mask=rmask[:, None] & dmask[None, :],
            other=0.0,
        )  # [BLOCK_R, DP]

    for start in range(0, n, BLOCK_T):
        t = start + rows
        tin = t < n
        u = tl.load(U + pid_bh * n + t, mask=tin, other=0.0).to(tl.float32)
        real = tin
        if HAS_REAL:
            real = real & (tl.load(REAL + (pid_bh // real_div) * n + t, mask=tin, other=0) != 0)
        up = (u[:, None] >= alpha[None, :]) & real[:, None]
        dn = (u[:, None] <= beta[None, :]) & real[:, None] & (up == 0)
        code = tl.where(up, 2 * rows[:, None] + 3, tl.where(dn, 2 * rows[:, None] + 2, 0))
        latest = tl.associative_scan(code, 0, _imax)
        is_up = tl.where(latest > 0, (latest % 2) == 1, carry_up[None, :] != 0)  # [BLOCK_T, BLOCK_R]

        if TRACK_ANCHORS:
            seg = tl.cumsum(dn.to(tl.int32), 0)
            val = tl.where(real[:, None], u[:, None], float("-inf")) + tl.zeros(
                (BLOCK_T, BLOCK_R), tl.float32
            )
            idx = t[:, None] + tl.zeros((BLOCK_T, BLOCK_R), tl.int32)
            s_seg, s_val, s_idx = tl.associative_scan((seg, val, idx), 0, _lex_max)
            use_carry = (s_seg == 0) & (carry_drv[None, :] > s_val)
            anc = tl.where(use_carry, carry_anc[None, :], s_idx)
            drv = tl.where(use_carry, carry_drv[None, :], s_val)
            anc = tl.where(is_up, anc, -1)
            drv = tl.where(is_up, drv, float("-inf"))
            carry_anc = tl.max(tl.where(last_row, anc, -1), 0)
            carry_drv = tl.max(tl.where(last_row, drv, float("-inf")), 0)
        carry_up = tl.max(tl.where(last_row, is_up.to(tl.int32), 0), 0)

        smask = tin[:, None] & rmask[None, :]
        if STORE_STATES:
            s_val8 = tl.where(is_up, 1, -1).to(tl.int8)
            tl.store(S_OUT + pid_bh * n * R + t[:, None] * R + offs_r[None, :], s_val8, mask=smask)
        if STORE_ANCHORS:
            tl.store(A_OUT + pid_bh * n * R + t[:, None] * R + offs_r[None, :], anc.to(tl.int64), mask=smask)

        if OUTPUT != 0:
            qrow = t - offset
            omask_t = tin & (qrow >= 0)
            orow = tl.where(omask_t, qrow, 0)
            if OUTPUT == 1:
                sf = tl.where(is_up, 1.0, -1.0)
                num = tl.dot(sf, mu, input_precision="ieee")  # [BLOCK_T, DVP]
            else:
                w = tl.where(is_up & rmask[None, :], 1.0, 0.0)
                coef = w
                if HAS_GATE:
                    qv = tl.load(
                        Q + b * stride_qb + h * stride_qh + orow[:, None] * stride_qn + offs_d[None, :],
                        mask=omask_t[:, None] & dmask[None, :],
                        other=0.0,
                    ).to(tl.float32)
                    logits = tl.dot(qv, tl.trans(c), input_precision="ieee")  # [BLOCK_T, BLOCK_R]
                    coef = w * tl.sigmoid(logits)
                safe = tl.where(is_up, anc, 0)
                vv = tl.load(
                    V
                    + b * stride_vb
                    + hk * stride_vh
                    + safe[:, :, None] * stride_vn
                    + offs_dv[None, None, :],
                    mask=(is_up & rmask[None, :] & omask_t[:, None])[:, :, None] & dvmask[None, None, :],
                    other=0.0,
                ).to(tl.float32)  # [BLOCK_T, BLOCK_R, DVP]
                num = tl.sum(coef[:, :, None] * mu[None, :, :] * vv, 1)
                den = tl.sum(w, 1)
                den_ptr = O_DEN + pid_bh * n_q + orow
                if ATOMIC:
                    tl.atomic_add(den_ptr, den, mask=omask_t)
                else:
                    tl.store(den_ptr, den, mask=omask_t)
            o_ptr = O_NUM + pid_bh * n_q * DV + orow[:, None] * DV + offs_dv[None, :]
            omask = omask_t[:, None] & dvmask[None, :]
            if ATOMIC:
                tl.atomic_add(o_ptr, num, mask=omask)
            else:
                tl.store(o_ptr, num, mask=omask)

    f = pid_bh * R + offs_r
    tl.store(F_UP + f, carry_up.to(tl.int8), mask=rmask)
    tl.store(F_ANC + f, carry_anc.to(tl.int64), mask=rmask)
    tl.store(F_DRV + f, carry_drv, mask=rmask)
