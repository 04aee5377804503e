"""Preisach attention (PAL, arXiv 2605.23603; the layer design is ours): a bank of relay hysterons per head,
driven by the keys, in place of softmax attention. Functional form, decode state and an ``nn.Module`` holding
the parameters.

Layout follows transformers' ``AttentionInterface`` (the integration transposes the output to ``[b, n, H, d]``):
query ``[b, H, n_q, d]``, key ``[b, H_kv, n_k, d]``, value ``[b, H_kv, n_k, d_v]``, ``H % H_kv == 0``
(query head h reads key/value head ``h // (H / H_kv)``); ``n_q <= n_k`` with the queries aligned to the END of
the keys (a decode call that passes the whole cache recomputes, O(n); :meth:`PreisachAttention.step` is the O(1)
path). ``key_padding_mask`` ``[b, n_k]`` bool, True = real: a padded token is no event and its output row is 0.

Per head h (parameters ``[H, R]`` or ``[H, R, d]``; R relays per head):

1. drive ``u_t = ⟨k_t, w_h⟩·scaling`` (a key-side "write"; ``scaling`` defaults to ``1/√d``). A hidden-state
   driven variant passes its own ``drive_signal [b, H, n_k]`` instead;
2. relays with ``α_m`` free and ``β_m = α_m − softplus(gap_m)``, initial state −1, hard rule of
   :mod:`~hf_fundamentals.attention.preisach.relays` (``relay_mode`` "hard", "soft" or "ste" for training);
3. output, ``variant="density"``: ``o_t = Σ_m s_m(t)·μ_{h,m}`` with ``μ ∈ R^{H×R×d_v}`` (the discrete Preisach
   density; the query is not used);
   ``variant="value"`` (PAL-attn, weights over stack entries): with ``w_m(t) = (s_m(t) + 1)/2`` and anchor
   ``τ_m(t)`` (the dominant maximum holding relay m up, see ``relays``),
   ``o_t = Σ_m w_m(t)·g_m(t)·μ_{h,m} ⊙ v_{τ_m(t)} / (Σ_m w_m(t) + eps)``, ``g_m(t) = σ(q_t·c_{h,m})`` a query gate
   (``gate`` None: g = 1). Both are causal by construction; ``causal=False`` is refused.

Decode: the whole recurrent state is R sign bits per head, plus, for the value variant, each +1 relay's anchor
index, its drive and its value vector (O(R·d_v) per head, no KV cache needed): :class:`PreisachState`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from hf_fundamentals.attention.lowrank import compute_dtype, repeat_kv
from hf_fundamentals.attention.preisach.relays import (
    RELAY_MODES,
    RelayState,
    default_thresholds,
    relay_states,
    relay_states_parallel,
    relay_step,
    relay_thresholds,
)

VARIANTS = ("density", "value")


# ------------------------------------------------------------------------------------------------ validation
def check_preisach_inputs(
    query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None, *, causal: bool
) -> None:
    """Raise ``ValueError`` unless the inputs have the layout of the module docstring and ``causal`` is True."""
    if not causal:
        raise ValueError(
            "causal=False: Preisach attention is causal by construction (a relay's state depends on the past "
            "only); it cannot serve bidirectional / encoder attention. Use softmax attention in those layers."
        )
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(
            f"query, key, value must be 4-D [batch, heads, n, d]; got {tuple(query.shape)}, {tuple(key.shape)}, "
            f"{tuple(value.shape)}"
        )
    b, h, n_q, d = query.shape
    if key.shape[:3] != value.shape[:3]:
        raise ValueError(
            f"key and value must agree on [batch, heads_kv, n_k]; got {key.shape} and {value.shape}"
        )
    if key.shape[0] != b or key.shape[3] != d:
        raise ValueError(f"key must be [batch={b}, heads_kv, n_k, d={d}]; got {tuple(key.shape)}")
    if h % key.shape[1] != 0:
        raise ValueError(f"heads ({h}) must be a multiple of heads_kv ({key.shape[1]})")
    if n_q > key.shape[2]:
        raise ValueError(f"n_q ({n_q}) must be <= n_k ({key.shape[2]}): queries align to the end of the keys")
    if key_padding_mask is not None and (
        key_padding_mask.shape != (b, key.shape[2]) or key_padding_mask.dtype != torch.bool
    ):
        raise ValueError(
            f"key_padding_mask must be bool [batch={b}, n_k={key.shape[2]}]; got {key_padding_mask.dtype} "
            f"{tuple(key_padding_mask.shape)}"
        )


def check_parameters(
    heads: int,
    drive: Tensor | None,
    alpha: Tensor,
    gap: Tensor,
    density: Tensor,
    gate: Tensor | None,
    d: int,
    d_v: int,
) -> None:
    """Raise ``ValueError`` unless the parameters have the shapes ``[H, d]``, ``[H, R]``, ``[H, R]``,
    ``[H, R, d_v]``, ``[H, R, d]``."""
    if alpha.dim() != 2 or alpha.shape[0] != heads:
        raise ValueError(f"alpha must be [heads={heads}, relays]; got {tuple(alpha.shape)}")
    r_count = alpha.shape[1]
    if gap.shape != alpha.shape:
        raise ValueError(f"gap must be [heads={heads}, relays={r_count}] like alpha; got {tuple(gap.shape)}")
    if density.shape != (heads, r_count, d_v):
        raise ValueError(
            f"density must be [heads={heads}, relays={r_count}, d_v={d_v}]; got {tuple(density.shape)}"
        )
    if drive is not None and drive.shape != (heads, d):
        raise ValueError(f"drive must be [heads={heads}, d={d}]; got {tuple(drive.shape)}")
    if gate is not None and gate.shape != (heads, r_count, d):
        raise ValueError(f"gate must be [heads={heads}, relays={r_count}, d={d}]; got {tuple(gate.shape)}")


# ----------------------------------------------------------------------------------------------- read-outs
def preisach_drive(key: Tensor, drive: Tensor, *, heads: int, scaling: float) -> Tensor:
    """``u = ⟨k_t, w_h⟩·scaling``: ``[b, H, n]`` from key ``[b, H_kv, n, d]`` and drive weights ``[H, d]``."""
    return torch.einsum("bhnd,hd->bhn", repeat_kv(key, heads), drive) * scaling


def density_readout(states: Tensor, density: Tensor) -> Tensor:
    """``o_t = Σ_m s_m(t)·μ_m``: states ``[b, H, n, R]`` (float), density ``[H, R, d_v]`` → ``[b, H, n, d_v]``."""
    return torch.einsum("bhnr,hrd->bhnd", states, density)


class _ValueReadout(torch.autograd.Function):
    """``num[b,h,t] = Σ_m coef[b,h,t,m]·μ[h,m] ⊙ v[idx[b,h,t,m]]`` with ``v`` flattened to ``[(b·H·n_k), d_v]``
    and ``idx`` flat row indices. One relay at a time, forward and backward: O(n·R·d_v) work and O(n·d_v) extra
    memory (autograd through a gather would keep an ``[n, R, d_v]`` tensor)."""

    @staticmethod
    def forward(ctx, coef: Tensor, idx: Tensor, flat_v: Tensor, density: Tensor) -> Tensor:
        b, h, c, r_count = coef.shape
        d_v = flat_v.shape[-1]
        out = flat_v.new_zeros(b, h, c, d_v)
        for m in range(r_count):
            v_m = flat_v.index_select(0, idx[..., m].reshape(-1)).view(b, h, c, d_v)
            out.addcmul_(v_m, coef[..., m, None] * density[None, :, m, None, :])
        ctx.save_for_backward(coef, idx, flat_v, density)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, Tensor | None]:
        coef, idx, flat_v, density = ctx.saved_tensors
        b, h, c, r_count = coef.shape
        d_v = flat_v.shape[-1]
        need_coef, _, need_v, need_mu = ctx.needs_input_grad
        g_coef = torch.zeros_like(coef) if need_coef else None
        g_v = torch.zeros_like(flat_v) if need_v else None
        g_mu = torch.zeros_like(density) if need_mu else None
        for m in range(r_count):
            rows = idx[..., m].reshape(-1)
            if need_coef or need_mu:
                gv = grad * flat_v.index_select(0, rows).view(b, h, c, d_v)
                if need_coef:
                    g_coef[..., m] = torch.einsum("bhcd,hd->bhc", gv, density[:, m])
                if need_mu:
                    g_mu[:, m] = torch.einsum("bhcd,bhc->hd", gv, coef[..., m])
            if need_v:
                w = coef[..., m, None] * density[None, :, m, None, :]
                g_v.index_add_(0, rows, (grad * w).reshape(-1, d_v))
        return g_coef, None, g_v, g_mu


def value_readout(
    weights: Tensor,
    anchors: Tensor,
    value: Tensor,
    density: Tensor,
    *,
    gate: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """PAL-attn: ``o_t = Σ_m w_m g_m μ_m ⊙ v_{τ_m} / (Σ_m w_m + eps)``.

    ``weights`` ``[b, H, n_q, R]`` (``(s + 1)/2``), ``anchors`` ``[b, H, n_q, R]`` int64 token indices into
    ``value`` ``[b, H, n_k, d_v]`` (−1 = none: contributes 0 to the numerator), ``density`` ``[H, R, d_v]``,
    ``gate`` ``[b, H, n_q, R]`` (already σ(q·c)) or None. Θ(n·R·d_v) work, O(n·(R + d_v)) memory, also for the
    gradient (a custom backward, one relay at a time)."""
    b, h, n_q, r_count = anchors.shape
    n_k, d_v = value.shape[2], value.shape[3]
    coef = weights if gate is None else weights * gate
    coef = coef * (anchors >= 0).to(coef.dtype)
    base = (torch.arange(b * h, device=value.device) * n_k).view(b, h, 1, 1)
    idx = anchors.clamp(min=0) + base
    num = _ValueReadout.apply(coef, idx, value.reshape(b * h * n_k, d_v), density)
    return num / (weights.sum(-1, keepdim=True) + eps)


# -------------------------------------------------------------------------------------------- decode state
@dataclass
class PreisachState:
    """Decode state of one Preisach attention layer: the relay bank (:class:`RelayState`, ``[b, H, R]``) and,
    for the value variant, the value vector at each +1 relay's anchor (``anchor_value [b, H, R, d_v]``, zeros
    where the relay is −1). Size O(H·R·d_v) per sequence, whatever the length."""

    relays: RelayState
    anchor_value: Tensor | None = None

    @property
    def length(self) -> int:
        return self.relays.length


def initial_preisach_state(
    batch: int,
    heads: int,
    relays: int,
    *,
    value_dim: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> PreisachState:
    """The state before any token: all relays −1; ``value_dim`` set for the value variant."""
    rs = RelayState.initial((batch, heads, relays), dtype=dtype, device=device)
    av = (
        None
        if value_dim is None
        else torch.zeros(batch, heads, relays, value_dim, dtype=dtype, device=device)
    )
    return PreisachState(relays=rs, anchor_value=av)


def _state_from_parallel(
    up: Tensor, anchors: Tensor, u: Tensor, value: Tensor | None, length: int, dtype: torch.dtype
) -> PreisachState:
    """Build the decode state after the last token from the parallel form's last row."""
    up_last, anc_last = up[..., -1, :] > 0, anchors[..., -1, :]
    drive = torch.gather(u.to(dtype), -1, anc_last.clamp(min=0))
    drive = torch.where(up_last, drive, torch.full_like(drive, float("-inf")))
    av = None
    if value is not None:
        b, h, r_count = anc_last.shape
        idx = anc_last.clamp(min=0)[..., None].expand(b, h, r_count, value.shape[-1])
        av = torch.gather(value.to(dtype), 2, idx) * up_last[..., None].to(dtype)
    return PreisachState(RelayState(up_last, anc_last, drive, length), av)


# ------------------------------------------------------------------------------------------------ functional
def preisach_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    drive: Tensor | None,
    alpha: Tensor,
    gap: Tensor,
    density: Tensor,
    gate: Tensor | None = None,
    variant: str = "density",
    relay_mode: str = "ste",
    temperature: float = 0.1,
    scaling: float | None = None,
    key_padding_mask: Tensor | None = None,
    causal: bool = True,
    eps: float = 1e-6,
    drive_signal: Tensor | None = None,
    return_state: bool = False,
) -> Tensor | tuple[Tensor, PreisachState]:
    """Preisach attention over a whole sequence (module docstring): ``[b, H, n_q, d_v]`` in the query dtype,
    and with ``return_state`` the decode state after the last key (hard relays; detached).

    Parameters: ``drive [H, d]`` (or ``drive_signal [b, H, n_k]`` given directly, then ``drive`` may be None),
    ``alpha``/``gap [H, R]``, ``density [H, R, d_v]``, ``gate [H, R, d]`` (value variant only, optional).
    Cost Θ(n·R·(d + d_v)) work, Θ(n·R) memory for the relays (plus O(n·R·log n) for the soft relay's scan
    when gradients are kept); no n×n tensor."""
    check_preisach_inputs(query, key, value, key_padding_mask, causal=causal)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    if relay_mode not in RELAY_MODES:
        raise ValueError(f"relay_mode must be one of {RELAY_MODES}; got {relay_mode!r}")
    if relay_mode != "hard" and not temperature > 0:
        raise ValueError(f"temperature must be > 0 for relay_mode={relay_mode!r}; got {temperature}")
    if gate is not None and variant != "value":
        raise ValueError("gate is only used by variant='value'; pass gate=None for the density variant")
    b, h, n_q, d = query.shape
    n_k, d_v = key.shape[2], value.shape[-1]
    check_parameters(h, drive, alpha, gap, density, gate, d, d_v)
    cdt = compute_dtype(query.dtype)
    s = 1.0 / math.sqrt(d) if scaling is None else float(scaling)
    if drive_signal is None:
        if drive is None:
            raise ValueError("pass drive [heads, d] or drive_signal [batch, heads, n_k]")
        u = preisach_drive(key.to(cdt), drive.to(cdt), heads=h, scaling=s)
    else:
        if drive_signal.shape != (b, h, n_k):
            raise ValueError(
                f"drive_signal must be [batch={b}, heads={h}, n_k={n_k}]; got {tuple(drive_signal.shape)}"
            )
        u = drive_signal.to(cdt)
    a, beta = relay_thresholds(alpha.to(cdt), gap.to(cdt))
    if n_k == 0:
        out = query.new_zeros(b, h, 0, d_v)
        if not return_state:
            return out
        vd = d_v if variant == "value" else None
        return out, initial_preisach_state(b, h, alpha.shape[1], value_dim=vd, dtype=cdt, device=query.device)
    real = None if key_padding_mask is None else key_padding_mask[:, None, :].to(u.device)

    hard_up = anchors = None
    if variant == "value" or return_state:
        with torch.no_grad():
            hard_up, anchors = relay_states_parallel(u, a, beta, real=real, return_anchors=True)
    if relay_mode == "hard" and hard_up is not None:
        states = hard_up.to(cdt)
    else:
        states = relay_states(
            u, a, beta, mode=relay_mode, temperature=temperature, real=real
        )  # [b, H, n_k, R]
    rows = slice(n_k - n_q, n_k)
    if variant == "density":
        out = density_readout(states[:, :, rows], density.to(cdt))
    else:
        vf = repeat_kv(value.to(cdt), h)
        g = None
        if gate is not None:
            g = torch.sigmoid(torch.einsum("bhnd,hrd->bhnr", query.to(cdt), gate.to(cdt)))
        w = 0.5 * (states[:, :, rows] + 1.0)
        out = value_readout(w, anchors[:, :, rows], vf, density.to(cdt), gate=g, eps=eps)
    if key_padding_mask is not None:
        out = out * key_padding_mask[:, None, rows, None].to(out.dtype)
    out = out.to(query.dtype)
    if not return_state:
        return out
    with torch.no_grad():
        v_state = repeat_kv(value.to(cdt), h) if variant == "value" else None
        state = _state_from_parallel(hard_up, anchors, u.detach(), v_state, n_k, cdt)
    return out, state


def preisach_step(
    state: PreisachState,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    drive: Tensor | None,
    alpha: Tensor,
    gap: Tensor,
    density: Tensor,
    gate: Tensor | None = None,
    variant: str = "density",
    scaling: float | None = None,
    eps: float = 1e-6,
    drive_signal: Tensor | None = None,
    real: Tensor | None = None,
) -> tuple[Tensor, PreisachState]:
    """One decode token, O(H·R·(d + d_v)) whatever the position: query ``[b, H, d]``, key ``[b, H_kv, d]``,
    value ``[b, H_kv, d_v]`` (or ``drive_signal [b, H]``), ``real [b]`` bool or None. Returns the output
    ``[b, H, d_v]`` (hard relays, as at inference) and the new state; equal to the full forward's row."""
    if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
        raise ValueError(
            f"step takes one token: query [b, H, d], key [b, H_kv, d], value [b, H_kv, d_v]; got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    b, h, d = query.shape
    d_v = value.shape[-1]
    check_parameters(h, drive, alpha, gap, density, gate, d, d_v)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    if variant == "value" and state.anchor_value is None:
        raise ValueError(
            "the value variant needs a state with anchor_value (initial_preisach_state(value_dim=...))"
        )
    cdt = state.relays.anchor_drive.dtype
    s = 1.0 / math.sqrt(d) if scaling is None else float(scaling)
    if drive_signal is None:
        if drive is None:
            raise ValueError("pass drive [heads, d] or drive_signal [batch, heads]")
        u_t = torch.einsum("bhd,hd->bh", repeat_kv(key[:, :, None].to(cdt), h)[:, :, 0], drive.to(cdt)) * s
    else:
        u_t = drive_signal.to(cdt)
    a, beta = relay_thresholds(alpha.to(cdt), gap.to(cdt))
    real_t = None if real is None else real[:, None].expand(b, h)
    relays, moved = relay_step(state.relays, u_t, a.expand(b, h, -1), beta.expand(b, h, -1), real_t)
    up = relays.up.to(cdt)
    if variant == "density":
        out = torch.einsum("bhr,hrd->bhd", 2.0 * up - 1.0, density.to(cdt))
        new_state = PreisachState(relays, None)
    else:
        v_t = repeat_kv(value[:, :, None].to(cdt), h)[:, :, 0]  # [b, H, d_v]
        av = torch.where(moved[..., None], v_t[:, :, None, :], state.anchor_value)
        av = av * relays.up[..., None].to(cdt)
        coef = up
        if gate is not None:
            coef = coef * torch.sigmoid(torch.einsum("bhd,hrd->bhr", query.to(cdt), gate.to(cdt)))
        out = torch.einsum("bhr,hrd,bhrd->bhd", coef, density.to(cdt), av) / (up.sum(-1, keepdim=True) + eps)
        new_state = PreisachState(relays, av)
    if real is not None:
        out = out * real[:, None, None].to(out.dtype)
    return out.to(query.dtype), new_state


# ---------------------------------------------------------------------------------------------------- module
class PreisachAttention(nn.Module):
    """The parameters of Preisach attention for one attention layer, and its forward / decode step.

    Input convention: transformers' attention-function layout (query ``[b, H, n, d]``, key/value
    ``[b, H_kv, n, d]``, after the layer's own q/k/v projections), so an ``AttentionInterface`` function can
    hold one of these on the attention module and call :meth:`forward`; the drive is key-side
    (``u = ⟨k_t, w_h⟩·scaling``, our design) and needs no positional encoding (rate-independence). A
    hidden-state driven layer passes ``drive_signal`` instead.

    Parameters (all per query head): ``drive [H, d]``, ``alpha [H, R]``, ``gap [H, R]`` (``β = α −
    softplus(gap)``), ``density [H, R, d_v]`` (μ), and for ``variant="value"`` ``gate [H, R, d]`` (c; zeros, i.e.
    g = 1/2, at start). ``relay_mode`` "ste" (default: exact hard forward, soft gradient), "soft" or "hard";
    ``temperature`` is a plain attribute, anneal it during training (``geometric_temperature``).
    Thresholds start as seeded (α, β) pairs over the triangle ``-2 <= β < α <= 2`` (a drive with unit-variance
    keys has unit variance at init), μ as ``N(0, 1/R)``, the drive weights as ``N(0, 1)``.
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        num_relays: int = 32,
        *,
        value_dim: int | None = None,
        variant: str = "density",
        relay_mode: str = "ste",
        temperature: float = 0.1,
        eps: float = 1e-6,
        threshold_range: tuple[float, float] = (-2.0, 2.0),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
        if relay_mode not in RELAY_MODES:
            raise ValueError(f"relay_mode must be one of {RELAY_MODES}; got {relay_mode!r}")
        for name, val in (("num_heads", num_heads), ("head_dim", head_dim), ("num_relays", num_relays)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {val!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.num_heads, self.head_dim, self.num_relays = num_heads, head_dim, num_relays
        self.value_dim = head_dim if value_dim is None else int(value_dim)
        self.variant, self.relay_mode, self.temperature, self.eps = (
            variant,
            relay_mode,
            float(temperature),
            eps,
        )
        g = torch.Generator().manual_seed(int(seed))
        alpha, gap = default_thresholds(
            num_heads, num_relays, low=threshold_range[0], high=threshold_range[1], seed=seed
        )
        self.drive = nn.Parameter(torch.randn(num_heads, head_dim, generator=g))
        self.alpha = nn.Parameter(alpha)
        self.gap = nn.Parameter(gap)
        self.density = nn.Parameter(
            torch.randn(num_heads, num_relays, self.value_dim, generator=g) / math.sqrt(num_relays)
        )
        if variant == "value":
            self.gate = nn.Parameter(torch.zeros(num_heads, num_relays, head_dim))
        else:
            self.register_parameter("gate", None)

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, head_dim={self.head_dim}, relays={self.num_relays}, value_dim={self.value_dim}, "
            f"variant={self.variant!r}, relay_mode={self.relay_mode!r}, temperature={self.temperature:g}"
        )

    def thresholds(self) -> tuple[Tensor, Tensor]:
        """``(α, β)`` ``[H, R]`` with ``α >= β``."""
        return relay_thresholds(self.alpha, self.gap)

    def _params(self) -> dict:
        return {
            "drive": self.drive,
            "alpha": self.alpha,
            "gap": self.gap,
            "density": self.density,
            "gate": self.gate,
        }

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        key_padding_mask: Tensor | None = None,
        scaling: float | None = None,
        causal: bool = True,
        drive_signal: Tensor | None = None,
        return_state: bool = False,
    ) -> Tensor | tuple[Tensor, PreisachState]:
        """:func:`preisach_attention` with this module's parameters and settings."""
        return preisach_attention(
            query,
            key,
            value,
            **self._params(),
            variant=self.variant,
            relay_mode=self.relay_mode,
            temperature=self.temperature,
            scaling=scaling,
            key_padding_mask=key_padding_mask,
            causal=causal,
            eps=self.eps,
            drive_signal=drive_signal,
            return_state=return_state,
        )

    def initial_state(
        self, batch: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> PreisachState:
        """The decode state before any token."""
        dev = self.alpha.device if device is None else device
        vd = self.value_dim if self.variant == "value" else None
        return initial_preisach_state(
            batch, self.num_heads, self.num_relays, value_dim=vd, dtype=dtype, device=dev
        )

    @torch.no_grad()
    def step(
        self,
        state: PreisachState,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        scaling: float | None = None,
        drive_signal: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, PreisachState]:
        """Decode ``t`` new tokens one at a time, O(1) each: query ``[b, H, t, d]``, key/value ``[b, H_kv, t, ·]``
        (``drive_signal [b, H, t]``, ``key_padding_mask [b, t]`` optional). Returns ``[b, H, t, d_v]`` and the
        state; the rows equal :meth:`forward`'s rows for the same tokens (hard relays)."""
        if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
            raise ValueError(
                f"step takes query [b, H, t, d], key/value [b, H_kv, t, ·]; got {tuple(query.shape)}, "
                f"{tuple(key.shape)}, {tuple(value.shape)}"
            )
        outs = []
        for i in range(query.shape[2]):
            out, state = preisach_step(
                state,
                query[:, :, i],
                key[:, :, i],
                value[:, :, i],
                **self._params(),
                variant=self.variant,
                scaling=scaling,
                eps=self.eps,
                drive_signal=None if drive_signal is None else drive_signal[:, :, i],
                real=None if key_padding_mask is None else key_padding_mask[:, i],
            )
            outs.append(out)
        return torch.stack(outs, dim=2), state
