"""hff-preisach-attention: the relay scan of Preisach attention (PAL) in Triton, forward only.

Two host functions (nothing here imports anything but torch and triton):

* :func:`relay_scan` — the hard relays of a bank driven by one scalar per token: states ``[..., n, R]`` int8 in
  {−1, +1}, optionally the anchors (the latest token of highest drive since each relay's last down-event; −1 for a
  relay at −1) and the final carry (the O(R) decode state). Same semantics as the hf_fundamentals reference
  ``relay_states_parallel`` / ``relay_states_sequential``: initial state −1, ``u >= α`` → +1 (tested first),
  ``u <= β`` → −1, otherwise hold; a padded token is no event.
* :func:`preisach_forward` — the whole Preisach attention layer forward at inference (hard relays; the forward
  value of the reference's ``relay_mode="ste"`` and ``"hard"``): drive ``u = ⟨k_t, w_h⟩·scaling`` (or a given
  ``drive_signal``), relays, and the read-out, ``variant="density"`` (``Σ_m s_m μ_m``) or ``variant="value"``
  (``Σ_m w_m g_m μ_m ⊙ v_{τ_m} / (Σ_m w_m + eps)``), with GQA, key padding and queries aligned to the end of
  the keys.

The kernel computes no gradient: train through the PyTorch reference (its soft / straight-through relays) and
run the trained layer here. On CPU tensors the kernel runs only under ``TRITON_INTERPRET=1`` (slow; for tests).
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
import triton

from ._scan import OUT_DENSITY, OUT_NONE, OUT_VALUE, _relay_scan_kernel

__all__ = ["RelayCarry", "ScanResult", "preisach_forward", "relay_scan"]


class RelayCarry(NamedTuple):
    """The relay bank after the last token (the decode state): ``up`` bool ``[..., R]``, ``anchor`` int64
    ``[..., R]`` (−1 where the relay is −1), ``anchor_drive`` float32 ``[..., R]`` (−inf where −1)."""

    up: torch.Tensor
    anchor: torch.Tensor
    anchor_drive: torch.Tensor


class ScanResult(NamedTuple):
    """What :func:`relay_scan` returns: ``states`` int8 ``[..., n, R]`` (or None), ``anchors`` int64
    ``[..., n, R]`` (or None), ``final`` :class:`RelayCarry`."""

    states: torch.Tensor | None
    anchors: torch.Tensor | None
    final: RelayCarry


def _check_device(*tensors: torch.Tensor) -> None:
    if not all(t.is_cuda for t in tensors) and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "hff-preisach-attention: the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 set before "
            "the kernel module is imported, for CPU tests); use the PyTorch reference on CPU"
        )


def _pow2(x: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(max(int(x), 1)))


def _tiles(r_count: int, block_r: int | None) -> int:
    if block_r is None:
        return min(_pow2(r_count), 128)
    if block_r < 16 or block_r & (block_r - 1):
        raise ValueError(f"block_r must be a power of two >= 16; got {block_r}")
    return block_r


def _block_t(block_t: int | None, default: int) -> int:
    if block_t is None:
        return default
    if block_t < 16 or block_t & (block_t - 1):
        raise ValueError(f"block_t must be a power of two >= 16; got {block_t}")
    return block_t


def relay_scan(
    u: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    *,
    real: torch.Tensor | None = None,
    return_states: bool = True,
    return_anchors: bool = False,
    block_t: int | None = None,
    block_r: int | None = None,
) -> ScanResult:
    """Hard relay states of a bank of relays, by the Triton scan.

        ``u`` ``[..., n]`` float (one drive per token and leading index, e.g. ``[batch, heads, n]``);
        ``alpha``/``beta`` ``[..., R]`` (up / down thresholds, ``alpha >= beta``), broadcast against
        ``u.shape[:-1]``; ``real`` bool, broadcast against ``u`` (True = real token; padded tokens are no event).
        Returns :class:`ScanResult`: states ``[..., n, R]`` int8 in {−1, +1} (``return_states``), anchors
        ``[..., n, R]`` int64 (``return_anchors``) and the final carry ``[..., R]`` (its anchor and anchor drive are
    tracked only with ``return_anchors``: otherwise −1 and −inf). Work Θ(n·R), memory O(R) per
        program besides the outputs. ``block_t`` (tokens per chunk, default 32) and ``block_r`` (relays per
        program, default ``next_pow2(R)`` up to 128) are powers of two >= 16."""
    if u.dim() < 1 or alpha.shape != beta.shape or alpha.dim() < 1:
        raise ValueError(
            f"need u [..., n] and alpha/beta [..., R] of one shape; got {tuple(u.shape)}, {tuple(alpha.shape)}, "
            f"{tuple(beta.shape)}"
        )
    lead, n, r_count = u.shape[:-1], u.shape[-1], alpha.shape[-1]
    if torch.broadcast_shapes(lead, alpha.shape[:-1]) != lead:
        raise ValueError(f"alpha {tuple(alpha.shape)} must broadcast to u.shape[:-1] = {tuple(lead)}")
    _check_device(u, alpha, beta)
    rows = math.prod(lead)
    uf = u.reshape(rows, n).to(torch.float32).contiguous()
    a = alpha.to(torch.float32).expand(*lead, r_count).reshape(rows, r_count).contiguous()
    bt = beta.to(torch.float32).expand(*lead, r_count).reshape(rows, r_count).contiguous()
    rl = None
    if real is not None:
        if real.dtype != torch.bool:
            raise ValueError(f"real must be a bool tensor; got {real.dtype}")
        rl = real.expand(u.shape).reshape(rows, n).to(torch.int8).contiguous()
    dev = u.device
    states = torch.empty(rows, n, r_count, dtype=torch.int8, device=dev) if return_states else None
    anchors = torch.empty(rows, n, r_count, dtype=torch.long, device=dev) if return_anchors else None
    f_up = torch.empty(rows, r_count, dtype=torch.int8, device=dev)
    f_anc = torch.empty(rows, r_count, dtype=torch.long, device=dev)
    f_drv = torch.empty(rows, r_count, dtype=torch.float32, device=dev)
    br, btk = _tiles(r_count, block_r), _block_t(block_t, 32)
    if rows > 0 and r_count > 0:
        dummy = torch.zeros(1, dtype=torch.float32, device=dev)
        _relay_scan_kernel[(rows, triton.cdiv(r_count, br))](
            uf, a, bt, rl if rl is not None else dummy, dummy, dummy, dummy, dummy,
            states if states is not None else dummy, anchors if anchors is not None else dummy,
            dummy, dummy, f_up, f_anc, f_drv,
            n, r_count, 0, 1, 1, rows, 1,
            0, 0, 0, 0, 0, 0,
            D=16, DV=16, DP=16, DVP=16, BLOCK_T=btk, BLOCK_R=br,
            HAS_REAL=rl is not None, STORE_STATES=return_states, STORE_ANCHORS=return_anchors,
            TRACK_ANCHORS=return_anchors,
            OUTPUT=OUT_NONE, HAS_GATE=False, ATOMIC=False,
        )  # fmt: skip
    shape = (*lead, n, r_count)
    final = RelayCarry(
        f_up.view(*lead, r_count) != 0, f_anc.view(*lead, r_count), f_drv.view(*lead, r_count).to(u.dtype)
    )
    return ScanResult(
        states.view(shape) if states is not None else None,
        anchors.view(shape) if anchors is not None else None,
        final,
    )


def preisach_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    drive: torch.Tensor | None,
    alpha: torch.Tensor,
    gap: torch.Tensor,
    density: torch.Tensor,
    gate: torch.Tensor | None = None,
    variant: str = "density",
    scaling: float | None = None,
    key_padding_mask: torch.Tensor | None = None,
    drive_signal: torch.Tensor | None = None,
    eps: float = 1e-6,
    return_final: bool = False,
    block_t: int | None = None,
    block_r: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, RelayCarry]:
    """Preisach attention forward with hard relays (inference), the relay scan and the read-out fused in one
    kernel; the reference is ``hf_fundamentals.attention.preisach.preisach_attention`` (same arguments).

    query ``[b, H, n_q, d]``, key ``[b, H_kv, n_k, d]``, value ``[b, H_kv, n_k, d_v]`` (``H % H_kv == 0``;
    query head h reads kv head ``h // (H / H_kv)``, no copy), ``n_q <= n_k`` with the queries aligned to the END
    of the keys. Parameters per query head: ``drive [H, d]`` (or ``drive_signal [b, H, n_k]``), ``alpha``/``gap``
    ``[H, R]`` (``β = α − softplus(gap)``), ``density [H, R, d_v]`` (μ), ``gate [H, R, d]`` (value variant,
    optional: ``g = σ(q·c)``). ``key_padding_mask [b, n_k]`` bool, True = real: padded tokens are no relay event
    and their output rows are 0. ``scaling`` defaults to ``1/√d``.

    Returns ``[b, H, n_q, d_v]`` in the query dtype (computed in float32) and, with ``return_final``, the
    :class:`RelayCarry` ``[b, H, R]`` after the last key. Work Θ(n·R·d_v) (density) or Θ(n·R·(d + d_v))
    (value), one pass over the keys; no n×n tensor."""
    if variant not in ("density", "value"):
        raise ValueError(f"variant must be 'density' or 'value'; got {variant!r}")
    if gate is not None and variant != "value":
        raise ValueError("gate is only used by variant='value'")
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError("query, key, value must be 4-D [batch, heads, n, d]")
    b, h, n_q, d = query.shape
    h_kv, n_k, d_v = key.shape[1], key.shape[2], value.shape[-1]
    if h % h_kv or key.shape[0] != b or value.shape[:3] != key.shape[:3] or n_q > n_k:
        raise ValueError(
            f"shapes do not fit: query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    if alpha.dim() != 2 or alpha.shape[0] != h or gap.shape != alpha.shape:
        raise ValueError(f"alpha/gap must be [heads={h}, R]; got {tuple(alpha.shape)}, {tuple(gap.shape)}")
    r_count = alpha.shape[1]
    if density.shape != (h, r_count, d_v):
        raise ValueError(f"density must be [{h}, {r_count}, {d_v}]; got {tuple(density.shape)}")
    if gate is not None and gate.shape != (h, r_count, d):
        raise ValueError(f"gate must be [{h}, {r_count}, {d}]; got {tuple(gate.shape)}")
    if key_padding_mask is not None and (
        key_padding_mask.shape != (b, n_k) or key_padding_mask.dtype != torch.bool
    ):
        raise ValueError(f"key_padding_mask must be bool [{b}, {n_k}]")
    _check_device(query, key, value)
    f32 = torch.float32
    groups = h // h_kv
    s = 1.0 / math.sqrt(d) if scaling is None else float(scaling)
    if drive_signal is None:
        if drive is None:
            raise ValueError("pass drive [heads, d] or drive_signal [batch, heads, n_k]")
        k_rep = key.to(f32)[:, :, None].expand(b, h_kv, groups, n_k, d).reshape(b, h, n_k, d)
        u = torch.einsum("bhnd,hd->bhn", k_rep, drive.to(f32)) * s
    else:
        if drive_signal.shape != (b, h, n_k):
            raise ValueError(f"drive_signal must be [{b}, {h}, {n_k}]; got {tuple(drive_signal.shape)}")
        u = drive_signal.to(f32)
    u = u.contiguous()
    a = alpha.to(f32).contiguous()
    beta = (a - F.softplus(gap.to(f32))).contiguous()
    mu = density.to(f32).contiguous()
    dev = query.device
    out = torch.zeros(b * h, n_q, d_v, dtype=f32, device=dev)
    den = torch.zeros(b * h, n_q, dtype=f32, device=dev) if variant == "value" else None
    f_up = torch.empty(b * h, r_count, dtype=torch.int8, device=dev)
    f_anc = torch.empty(b * h, r_count, dtype=torch.long, device=dev)
    f_drv = torch.empty(b * h, r_count, dtype=f32, device=dev)
    rl = None if key_padding_mask is None else key_padding_mask.to(torch.int8).contiguous()
    vv = value if value.stride(-1) == 1 else value.contiguous()
    qq = query if query.stride(-1) == 1 else query.contiguous()
    cc = None if gate is None else gate.to(f32).contiguous()
    br = _tiles(r_count, block_r)
    btk = _block_t(block_t, 32 if variant == "density" else 16)
    n_tiles = triton.cdiv(r_count, br)
    if b * h > 0 and n_k > 0:
        dummy = torch.zeros(1, dtype=f32, device=dev)
        _relay_scan_kernel[(b * h, n_tiles)](
            u, a, beta, rl if rl is not None else dummy, mu, vv, qq, cc if cc is not None else dummy,
            dummy, dummy, out, den if den is not None else dummy, f_up, f_anc, f_drv,
            n_k, r_count, n_k - n_q, h, groups, h, h,
            vv.stride(0), vv.stride(1), vv.stride(2),
            qq.stride(0), qq.stride(1), qq.stride(2),
            D=d, DV=d_v, DP=_pow2(d), DVP=_pow2(d_v), BLOCK_T=btk, BLOCK_R=br,
            HAS_REAL=rl is not None, STORE_STATES=False, STORE_ANCHORS=False,
            TRACK_ANCHORS=variant == "value" or return_final,
            OUTPUT=OUT_DENSITY if variant == "density" else OUT_VALUE, HAS_GATE=cc is not None,
            ATOMIC=n_tiles > 1,
        )  # fmt: skip
    out = out.view(b, h, n_q, d_v)
    if den is not None:
        out = out / (den.view(b, h, n_q, 1) + eps)
    if key_padding_mask is not None:
        out = out * key_padding_mask[:, None, n_k - n_q :, None].to(f32)
    out = out.to(query.dtype)
    if not return_final:
        return out
    final = RelayCarry(f_up.view(b, h, r_count) != 0, f_anc.view(b, h, r_count), f_drv.view(b, h, r_count))
    return out, final
