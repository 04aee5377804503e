"""Relay hysterons (the classical Preisach relay, https://en.wikipedia.org/wiki/Preisach_model_of_hysteresis,
with α = up threshold; the parallel and soft forms are our design): the hard relay in a sequential and an
exact parallel form, a differentiable soft relay, and a straight-through estimator.

Semantics (one relay m with up threshold α_m ≥ down threshold β_m, driven by one scalar u_t per token):

* initial state −1 (negative saturation);
* ``s_m(t) = +1`` if ``u_t >= α_m``; ``−1`` if ``u_t <= β_m``; otherwise ``s_m(t−1)``. The up test is made
  first, so the degenerate ``α = β = u_t`` reads +1 (with ``β = α − softplus(δ)`` this needs the gap to round
  to zero);
* a padded token (``real`` False) is no event: every relay holds its state.

Layout: ``u`` is ``[..., n]`` (e.g. ``[batch, heads, n]``: one drive per relay tile); ``alpha``/``beta`` are
``[..., R]`` and broadcast against ``u.shape[:-1]`` (e.g. ``[heads, R]``); states come back as ``[..., n, R]``
int8 in {−1, +1} (hard forms) or float (soft and straight-through forms). ``real`` broadcasts against ``u``.

Anchors (for the value-reading variant, our design): the anchor of a +1 relay at t is the LATEST token of
highest drive among the real tokens after its last down-event, i.e. ``argmax_{τ ∈ (dn_m(t), t]} u_τ`` (ties to
the later token); −1 for a relay in state −1. Right after a flip up it is the flip token itself; afterwards it
follows the peak of the current up-phase. It is always an entry of the extremum stack (the dominant maximum that
follows the most recent dominant minimum ≤ β, see :mod:`~hf_fundamentals.attention.preisach.extremum_stack`), so
it is rate-independent. The literal "token of the last flip" is not: an interior token inserted on a rising run
can become the crossing token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Relay tiles of the parallel form hold about this many (relay, token) pairs at a time (over all leading
# indices): a few MB of int32/int64 words, which stays in cache and bounds the working memory at long n.
_TILE_PAIRS = 1 << 18

RELAY_MODES = ("hard", "soft", "ste")


# ------------------------------------------------------------------------------------------------ thresholds
def relay_thresholds(alpha: Tensor, gap: Tensor) -> tuple[Tensor, Tensor]:
    """``(α, β)`` from the free parameters: ``β = α − softplus(gap)``, so ``α >= β`` always."""
    return alpha, alpha - F.softplus(gap)


def inverse_softplus(x: Tensor) -> Tensor:
    """``δ`` with ``softplus(δ) = x`` for ``x > 0`` (to initialise ``gap`` from a wanted ``α − β``)."""
    return x + torch.log(-torch.expm1(-x))


def geometric_temperature(step: int, total_steps: int, *, start: float = 1.0, end: float = 0.01) -> float:
    """Annealing schedule for the soft relay: ``start`` at step 0, ``end`` at ``total_steps``, geometric between
    (and ``end`` afterwards)."""
    if total_steps < 1 or start <= 0 or end <= 0:
        raise ValueError(
            f"need total_steps >= 1 and positive temperatures; got {total_steps}, {start}, {end}"
        )
    frac = min(max(step, 0), total_steps) / total_steps
    return float(start * (end / start) ** frac)


def check_relay_inputs(u: Tensor, alpha: Tensor, beta: Tensor, real: Tensor | None) -> None:
    """Raise ``ValueError`` unless ``u [..., n]``, ``alpha``/``beta [..., R]`` and ``real`` have the layout of the
    module docstring (thresholds broadcast against ``u.shape[:-1]`` without enlarging it)."""
    if u.dim() < 1:
        raise ValueError(f"u must be [..., n]; got a {u.dim()}-D tensor")
    if alpha.shape != beta.shape or alpha.dim() < 1:
        raise ValueError(
            f"alpha and beta must share a shape [..., R]; got {tuple(alpha.shape)}, {tuple(beta.shape)}"
        )
    try:
        lead = torch.broadcast_shapes(u.shape[:-1], alpha.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"alpha {tuple(alpha.shape)} does not broadcast against u.shape[:-1] = {tuple(u.shape[:-1])}"
        ) from err
    if lead != u.shape[:-1]:
        raise ValueError(
            f"alpha {tuple(alpha.shape)} must broadcast to u.shape[:-1] = {tuple(u.shape[:-1])} (got {tuple(lead)})"
        )
    if real is not None:
        if real.dtype != torch.bool:
            raise ValueError(f"real must be a bool tensor (True = real token); got {real.dtype}")
        if torch.broadcast_shapes(real.shape, u.shape) != u.shape:
            raise ValueError(f"real {tuple(real.shape)} must broadcast to u {tuple(u.shape)}")


def relay_events(u: Tensor, alpha: Tensor, beta: Tensor, real: Tensor | None) -> tuple[Tensor, Tensor]:
    """Up- and down-events, two bool ``[..., R, n]`` tensors (relay-major, tokens contiguous): up = ``u >= α``,
    down = ``u <= β`` and not up; both False at padded tokens."""
    uu = u.unsqueeze(-2)
    up = uu >= alpha.unsqueeze(-1)
    dn = (uu <= beta.unsqueeze(-1)) & ~up
    if real is not None:
        r = real.unsqueeze(-2)
        up, dn = up & r, dn & r
    return up, dn


# ----------------------------------------------------------------------------------- sequential (reference)
@dataclass
class RelayState:
    """The recurrent state of a relay bank after some tokens: everything decode needs, O(R) per leading index.

    ``up`` ``[..., R]`` bool (True = +1); ``anchor`` ``[..., R]`` int64 token index (−1 where the relay is −1);
    ``anchor_drive`` ``[..., R]`` the drive at the anchor (−inf where −1); ``length`` tokens consumed so far."""

    up: Tensor
    anchor: Tensor
    anchor_drive: Tensor
    length: int = 0

    @classmethod
    def initial(
        cls, shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> RelayState:
        """All relays at −1 (negative saturation), no anchors; ``shape`` is ``(..., R)``."""
        return cls(
            up=torch.zeros(shape, dtype=torch.bool, device=device),
            anchor=torch.full(shape, -1, dtype=torch.long, device=device),
            anchor_drive=torch.full(shape, float("-inf"), dtype=dtype, device=device),
            length=0,
        )


def relay_step(
    state: RelayState, u_t: Tensor, alpha: Tensor, beta: Tensor, real_t: Tensor | None = None
) -> tuple[RelayState, Tensor]:
    """Advance the relay bank by one token: ``u_t [...]`` (one drive per leading index), thresholds ``[..., R]``,
    ``real_t [...]`` bool or None. Returns the new state and a bool ``[..., R]`` mask of the relays whose anchor
    moved to this token (O(R) work, O(1) in the sequence length)."""
    t = state.length
    ut = u_t.unsqueeze(-1)
    up_evt = ut >= alpha
    dn_evt = (ut <= beta) & ~up_evt
    if real_t is not None:
        r = real_t.unsqueeze(-1)
        up_evt, dn_evt = up_evt & r, dn_evt & r
    else:
        r = torch.ones_like(up_evt)
    new_up = torch.where(up_evt, True, torch.where(dn_evt, False, state.up))
    flipped_up = new_up & ~state.up
    ut_b = ut.to(state.anchor_drive.dtype).expand_as(state.anchor_drive)
    moved = flipped_up | (new_up & r & (ut_b >= state.anchor_drive))
    anchor = torch.where(moved, torch.full_like(state.anchor, t), state.anchor)
    anchor = torch.where(new_up, anchor, torch.full_like(anchor, -1))
    drive = torch.where(moved, ut_b, state.anchor_drive)
    drive = torch.where(new_up, drive, torch.full_like(drive, float("-inf")))
    return RelayState(up=new_up, anchor=anchor, anchor_drive=drive, length=t + 1), moved


def relay_states_sequential(
    u: Tensor, alpha: Tensor, beta: Tensor, *, real: Tensor | None = None, return_anchors: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """The reference: a loop over t applying :func:`relay_step` (the decode update). States ``[..., n, R]`` int8
    in {−1, +1}; with ``return_anchors`` also the anchors ``[..., n, R]`` int64."""
    check_relay_inputs(u, alpha, beta, real)
    n, r_count = u.shape[-1], alpha.shape[-1]
    lead = u.shape[:-1]
    real_b = None if real is None else real.expand(u.shape)
    state = RelayState.initial((*lead, r_count), dtype=u.dtype, device=u.device)
    a, b = alpha.expand(*lead, r_count), beta.expand(*lead, r_count)
    states, anchors = [], []
    with torch.no_grad():
        for t in range(n):
            state, _ = relay_step(state, u[..., t], a, b, None if real_b is None else real_b[..., t])
            states.append(state.up)
            anchors.append(state.anchor)
    if n == 0:
        s = torch.zeros((*lead, 0, r_count), dtype=torch.int8, device=u.device)
        return (s, s.long()) if return_anchors else s
    s = torch.stack(states, dim=-2).to(torch.int8) * 2 - 1
    return (s, torch.stack(anchors, dim=-2)) if return_anchors else s


# --------------------------------------------------------------------------------------------- parallel form
def dense_drive_rank(u: Tensor, real: Tensor | None) -> Tensor:
    """Dense rank of each real token's drive along the last axis (1 = lowest; equal drives share a rank), 0 at
    padded tokens: int64 ``[..., n]``. One sort per leading index, O(n log n)."""
    n = u.shape[-1]
    if n == 0:
        return torch.zeros(u.shape, dtype=torch.long, device=u.device)
    key = u if real is None else torch.where(real.expand(u.shape), u, torch.full_like(u, float("-inf")))
    sorted_u, order = torch.sort(key, dim=-1, stable=True)
    new = torch.ones(sorted_u.shape, dtype=torch.long, device=u.device)
    new[..., 1:] = (sorted_u[..., 1:] != sorted_u[..., :-1]).long()
    rank = torch.empty_like(order).scatter_(-1, order, torch.cumsum(new, dim=-1))
    if real is not None:
        rank = torch.where(real.expand(u.shape), rank, torch.zeros_like(rank))
    return rank


def relay_states_parallel(
    u: Tensor,
    alpha: Tensor,
    beta: Tensor,
    *,
    real: Tensor | None = None,
    return_anchors: bool = False,
    relay_tile: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """The exact parallel form (our derivation): ``up_m(t) = max{τ <= t : u_τ >= α_m}`` and
    ``dn_m(t) = max{τ <= t : u_τ <= β_m}`` by ``torch.cummax`` over ``(τ+1)·1[·]`` (0 = never), and
    ``s_m(t) = +1`` iff ``up_m(t) > dn_m(t)``. Θ(n·R) work and memory, no n×n anything.

    Anchors (``return_anchors``) are a segmented arg-max: with ``seg_m(t)`` the number of down-events so far and
    ``rank(t)`` the dense rank of ``u_t``, the key ``seg·(n+1) + rank`` is non-decreasing in the segment, so its
    running arg-max (``torch.cummax`` returns the latest index on ties) is the latest highest token since the last
    down-event. One sort per leading index, Θ(n·R) for the rest.

    Relays are processed in tiles of ``relay_tile`` (default: as many as keep a tile near 256k (relay, token)
    pairs in all, which stays in cache and bounds the working memory at long n). Returns ``[..., n, R]`` (a
    transposed view of relay-major storage)."""
    check_relay_inputs(u, alpha, beta, real)
    n, r_count = u.shape[-1], alpha.shape[-1]
    lead = u.shape[:-1]
    if relay_tile is None:
        relay_tile = max(1, min(r_count, _TILE_PAIRS // max(n * math.prod(lead), 1)))
    elif relay_tile < 1:
        raise ValueError(f"relay_tile must be >= 1; got {relay_tile}")
    # 1-based positions, 0 = never; int32 while it fits (half the memory traffic of int64)
    pos = torch.arange(1, n + 1, dtype=torch.int32 if n < 2**31 - 1 else torch.long, device=u.device)
    rank = dense_drive_rank(u, real).unsqueeze(-2) if return_anchors else None
    states = torch.empty((*lead, r_count, n), dtype=torch.int8, device=u.device)
    anchors = torch.empty((*lead, r_count, n), dtype=torch.long, device=u.device) if return_anchors else None
    a_full, b_full = alpha.expand(*lead, r_count), beta.expand(*lead, r_count)
    for lo in range(0, r_count, relay_tile):
        hi = min(lo + relay_tile, r_count)
        up, dn = relay_events(u, a_full[..., lo:hi], b_full[..., lo:hi], real)
        is_up = (up * pos).cummax(dim=-1).values > (dn * pos).cummax(dim=-1).values
        states[..., lo:hi, :] = is_up.to(torch.int8) * 2 - 1
        if anchors is not None:
            key = torch.cumsum(dn, dim=-1) * (n + 1) + rank
            arg = key.cummax(dim=-1).indices
            anchors[..., lo:hi, :] = arg.masked_fill_(~is_up, -1)
    s = states.transpose(-1, -2)
    return (s, anchors.transpose(-1, -2)) if anchors is not None else s


# ------------------------------------------------------------------------------------------------ soft relay
def soft_relay_coefficients(
    u: Tensor, alpha: Tensor, beta: Tensor, temperature: float, real: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``(a, c)`` of the soft relay ``p_t = a_t + c_t·p_{t−1}``, relay-major ``[..., R, n]``:
    ``a_t = σ((u_t − α)/T)``, ``b_t = σ((β − u_t)/T)``, ``c_t = 1 − a_t − b_t = σ((α − u_t)/T) − σ((β − u_t)/T)``.
    Since ``β <= α``, ``c_t >= 0`` (so ``a_t + b_t <= 1`` needs no clamp); padded tokens get ``a = 0, c = 1``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    uu = u.unsqueeze(-2)
    x_up = (uu - alpha.unsqueeze(-1)) / temperature
    x_dn = (beta.unsqueeze(-1) - uu) / temperature
    a = torch.sigmoid(x_up)
    c = (torch.sigmoid(-x_up) - torch.sigmoid(x_dn)).clamp(min=0.0)
    if real is not None:
        r = real.unsqueeze(-2)
        a = torch.where(r, a, torch.zeros_like(a))
        c = torch.where(r, c, torch.ones_like(c))
    return a, c


def linear_recurrence_scan(a: Tensor, c: Tensor) -> Tensor:
    """``p_t = a_t + c_t·p_{t−1}`` with ``p_{−1} = 0`` along the last axis, by the Hillis–Steele doubling scan of
    the associative map ``(c₁, a₁)∘(c₂, a₂) = (c₁c₂, c₂a₁ + a₂)``: ⌈log₂ n⌉ vectorised steps, no logarithms (so
    exact zeros in ``c`` at low temperature are fine), differentiable."""
    n = a.shape[-1]
    p, cc = a, c
    d = 1
    while d < n:
        p = torch.cat([p[..., :d], torch.addcmul(p[..., d:], cc[..., d:], p[..., :-d])], dim=-1)
        cc = torch.cat([cc[..., :d], cc[..., d:] * cc[..., :-d]], dim=-1)
        d *= 2
    return p


def soft_relay(
    u: Tensor, alpha: Tensor, beta: Tensor, temperature: float, *, real: Tensor | None = None
) -> Tensor:
    """The soft relay (our design): ``p_t = a_t + (1 − a_t − b_t)·p_{t−1}``, ``p_{−1} = 0``; ``p`` is
    the relay's "probability of +1" and ``2p − 1`` its soft state. Returns ``p`` ``[..., n, R]``. As
    ``T → 0`` it becomes the hard relay at every token whose drive is not exactly at a threshold."""
    check_relay_inputs(u, alpha, beta, real)
    a, c = soft_relay_coefficients(u, alpha, beta, temperature, real)
    return linear_recurrence_scan(a, c).transpose(-1, -2)


def soft_relay_sequential(
    u: Tensor, alpha: Tensor, beta: Tensor, temperature: float, *, real: Tensor | None = None
) -> Tensor:
    """The same recurrence as :func:`soft_relay` by a loop over t (a check of the scan)."""
    check_relay_inputs(u, alpha, beta, real)
    a, c = soft_relay_coefficients(u, alpha, beta, temperature, real)
    p = torch.zeros(a.shape[:-1], dtype=a.dtype, device=a.device)
    out = []
    for t in range(a.shape[-1]):
        p = a[..., t] + c[..., t] * p
        out.append(p)
    if not out:
        return a.transpose(-1, -2)
    return torch.stack(out, dim=-1).transpose(-1, -2)


def relay_states_ste(
    u: Tensor, alpha: Tensor, beta: Tensor, temperature: float, *, real: Tensor | None = None
) -> Tensor:
    """Straight-through relay: the forward value is the exact hard state (±1, float), the gradient is that of
    the soft state ``2p − 1`` at ``temperature`` (our design: the soft relay as the surrogate)."""
    soft = 2.0 * soft_relay(u, alpha, beta, temperature, real=real) - 1.0
    hard = relay_states_parallel(u.detach(), alpha.detach(), beta.detach(), real=real).to(soft.dtype)
    return hard + (soft - soft.detach())  # exactly ±1 forward (x − x = 0), the soft gradient backward


def relay_states(
    u: Tensor,
    alpha: Tensor,
    beta: Tensor,
    *,
    mode: str = "ste",
    temperature: float = 0.1,
    real: Tensor | None = None,
) -> Tensor:
    """Float relay states ``[..., n, R]`` for training: ``"hard"`` (exact, no gradient to thresholds or drive),
    ``"soft"`` (``2p − 1``) or ``"ste"`` (hard forward, soft gradient)."""
    if mode == "hard":
        return relay_states_parallel(u, alpha, beta, real=real).to(u.dtype)
    if mode == "soft":
        return 2.0 * soft_relay(u, alpha, beta, temperature, real=real) - 1.0
    if mode == "ste":
        return relay_states_ste(u, alpha, beta, temperature, real=real)
    raise ValueError(f"relay mode must be one of {RELAY_MODES}; got {mode!r}")


def default_thresholds(
    heads: int, relays: int, *, low: float = -2.0, high: float = 2.0, min_gap: float = 0.05, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Initial ``(alpha, gap)`` parameters ``[heads, relays]``: (α, β) pairs drawn uniformly from the Preisach
    triangle ``low <= β < α <= high`` (seeded), with ``α − β >= min_gap``; ``gap = softplus⁻¹(α − β)``."""
    if relays < 1 or heads < 1 or not high - low > min_gap > 0:
        raise ValueError(
            f"need heads, relays >= 1 and high - low > min_gap > 0; got {heads}, {relays}, {low}, {high}, {min_gap}"
        )
    g = torch.Generator().manual_seed(int(seed))
    x = low + (high - low) * torch.rand(heads, relays, 2, generator=g, dtype=torch.float64)
    alpha, beta = x.amax(-1), x.amin(-1)
    width = (alpha - beta).clamp(min=min_gap)
    alpha = torch.minimum(beta + width, torch.full_like(beta, high))
    beta = alpha - width
    return alpha.float(), inverse_softplus(width).float()
