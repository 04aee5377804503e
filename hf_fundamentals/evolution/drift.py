"""Drift from the base model: weight distance to θ0 and KL to the base model's token distributions.

Weight drift follows kschweig/es-awd ``evaluation/evaluate_weight_change.py``: global ``‖θ − θ0‖_F``,
relative ``‖θ − θ0‖/‖θ0‖``, per-layer norms, mean and max ``|Δ|`` and the tensor that moved most.
KL follows ``evaluation/evaluate_kl_divergence.py`` there: base continuations are sampled
once, then compared token by token, reported token-weighted (default) or averaged per sequence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

LAYER_PATTERN = r"layers\.\d+"  # HF decoder blocks: model.layers.N.
REDUCTIONS = ("token", "sequence", "none")


def layer_group(name: str, pattern: str = LAYER_PATTERN) -> str:
    """The per-layer group of a parameter: the text ``pattern`` matches (``layers.3``), else its module path
    (``model.embed_tokens``, ``lm_head``). Our grouping; kschweig/es-awd lists embedding, each block,
    lm_head."""
    match = re.search(pattern, name)
    if match:
        return match.group(0)
    return name.rsplit(".", 1)[0] if "." in name else name


@dataclass
class WeightDrift:
    """Distances of the weights from their anchor θ0 (all norms Frobenius, over the tensors given)."""

    global_norm: float
    anchor_norm: float
    relative: float
    max_abs: float
    mean_abs: float
    largest_change: str
    per_layer: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for logging."""
        return asdict(self)


def weight_drift(
    named_params: Iterable[tuple[str, torch.Tensor]],
    anchor: Mapping[str, torch.Tensor],
    layer_pattern: str = LAYER_PATTERN,
) -> WeightDrift:
    """Global, relative and per-layer ``‖θ − θ0‖`` plus mean/max ``|Δ|`` and the tensor with the largest
    norm change; one tensor at a time in fp32, sums in fp64. Every parameter given needs an anchor entry."""
    total = base = abs_sum = 0.0
    count = 0
    max_abs = 0.0
    largest, largest_sq = "", -1.0
    per_layer: dict[str, float] = {}
    with torch.no_grad():
        for name, param in named_params:
            if name not in anchor:
                raise ValueError(f"parameter {name!r} has no anchor; pass only anchored parameters")
            a = anchor[name].to(device=param.device, dtype=torch.float32)
            if a.shape != param.shape:
                raise ValueError(
                    f"anchor {name!r} has shape {tuple(a.shape)}, parameter {tuple(param.shape)}"
                )
            d = param.float() - a
            sq = float(d.double().square().sum())
            total += sq
            base += float(a.double().square().sum())
            abs_sum += float(d.double().abs().sum())
            count += d.numel()
            if d.numel():
                max_abs = max(max_abs, float(d.abs().max()))
            if sq > largest_sq:
                largest, largest_sq = name, sq
            group = layer_group(name, layer_pattern)
            per_layer[group] = per_layer.get(group, 0.0) + sq
    if count == 0:
        raise ValueError("weight_drift got no parameters")
    global_norm, anchor_norm = math.sqrt(total), math.sqrt(base)
    return WeightDrift(
        global_norm=global_norm,
        anchor_norm=anchor_norm,
        relative=global_norm / anchor_norm if anchor_norm > 0 else math.inf if global_norm > 0 else 0.0,
        max_abs=max_abs,
        mean_abs=abs_sum / count,
        largest_change=largest,
        per_layer={k: math.sqrt(v) for k, v in per_layer.items()},
    )


def _reduce(values: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Masked per-token values → token-weighted mean, mean of per-sequence means, or the masked tensor."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} is not known; accepted: {', '.join(REDUCTIONS)}")
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match tokens {tuple(values.shape)}")
    mask = mask.to(device=values.device, dtype=torch.bool)
    values = torch.where(mask, values, torch.zeros_like(values))
    if reduction == "none":
        return values
    counts = mask.sum(dim=-1)
    if int(counts.sum()) == 0:
        raise ValueError("the mask selects no token")
    if reduction == "token":
        return values.sum() / counts.sum()
    present = counts > 0
    return (values.sum(dim=-1)[present] / counts[present]).mean()


def kl_to_base(
    base_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor, reduction: str = "token"
) -> torch.Tensor:
    """Exact per-token ``KL(p_base ‖ p_θ)`` over the vocabulary at the masked positions, reduced
    token-weighted (default; as kschweig/es-awd) or per sequence. Logits ``[B, T, V]``, mask ``[B, T]``;
    fp32."""
    if base_logits.shape != logits.shape:
        raise ValueError(
            f"logit shapes differ: base {tuple(base_logits.shape)}, current {tuple(logits.shape)}"
        )
    log_p0 = torch.log_softmax(base_logits.float(), dim=-1)
    log_p = torch.log_softmax(logits.float().to(log_p0.device), dim=-1)
    kl = (log_p0.exp() * (log_p0 - log_p)).sum(dim=-1)
    return _reduce(kl, mask, reduction)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log p(token)`` at each position (``[B, T, V]`` logits, ``[B, T]`` tokens already aligned): what to
    cache for the base model's sampled continuations."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return log_p.gather(-1, tokens.to(log_p.device).long().unsqueeze(-1)).squeeze(-1)


def sampled_kl_to_base(
    base_logprobs: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor, reduction: str = "token"
) -> torch.Tensor:
    """Monte Carlo ``KL(p_base ‖ p_θ)`` on tokens the base model sampled: the mean of ``log p0 − log pθ``
    (kschweig/es-awd ``evaluation/evaluate_kl_divergence.py``), from cached base log-probs, without keeping
    the base logits."""
    if base_logprobs.shape != logprobs.shape:
        raise ValueError(f"shapes differ: base {tuple(base_logprobs.shape)}, current {tuple(logprobs.shape)}")
    diff = base_logprobs.float() - logprobs.float().to(base_logprobs.device)
    return _reduce(diff, mask, reduction)


def drift_signals(history: Sequence[Mapping[str, Any]], every: int) -> dict[str, Any]:
    """Derived signals of a drift history (rows with ``step``, optional ``prior_mean`` and ``target``).

    ``P(0)`` is the first row's prior mean; ``F(t) = P(0) − P̄(t)``; ``t_val``/``t_forget`` are the steps of the
    first maximum of the target and of ``F`` (``t_forget`` is None when nothing was forgotten, max ``F ≤ 0``).
    ``warning`` is set when ``|t_val − t_forget| ≤ every``. ``recovery`` is ``R = (P̄(t) − P̄min)/(P(0) − P̄min)``
    (``P̄min`` over the whole history) at the check after ``t_val`` nearest ``1.2·t_val``, reported only when
    that check lies within ``every`` steps of ``1.2·t_val`` and ``P(0) > P̄min``. Pure: testable by hand.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1; got {every}")
    out: dict[str, Any] = {"p0": None, "prior_min": None, "forgetting": [], "max_forgetting": None,
                           "t_val": None, "best_target": None, "t_forget": None, "warning": None,
                           "recovery": None, "recovery_step": None, "recovery_at": None}  # fmt: skip
    prior = [(int(r["step"]), float(r["prior_mean"])) for r in history if r.get("prior_mean") is not None]
    target = [(int(r["step"]), float(r["target"])) for r in history if r.get("target") is not None]
    if target:
        best = max(range(len(target)), key=lambda i: (target[i][1], -i))  # first maximum
        out["t_val"], out["best_target"] = target[best]
    if prior:
        p0 = prior[0][1]
        forgetting = [(s, p0 - p) for s, p in prior]
        out["p0"], out["forgetting"] = p0, forgetting
        out["prior_min"] = min(p for _, p in prior)
        worst = max(range(len(forgetting)), key=lambda i: (forgetting[i][1], -i))
        out["max_forgetting"] = forgetting[worst][1]
        if forgetting[worst][1] > 0:
            out["t_forget"] = forgetting[worst][0]
    t_val, t_forget = out["t_val"], out["t_forget"]
    if t_val is not None and t_forget is not None and abs(t_val - t_forget) <= every:
        out["warning"] = (
            f"the best target step ({t_val}) is within one check interval ({every}) of the peak of forgetting "
            f"({t_forget}, F = {out['max_forgetting']:.4g}): you would stop at the peak of forgetting"
        )
    if t_val is not None and prior and out["p0"] > out["prior_min"]:
        at = 1.2 * t_val
        later = [(s, p) for s, p in prior if s > t_val]
        if later:
            step, p = min(later, key=lambda sp: (abs(sp[0] - at), sp[0]))
            if abs(step - at) <= every:
                out["recovery"] = (p - out["prior_min"]) / (out["p0"] - out["prior_min"])
                out["recovery_step"], out["recovery_at"] = step, at
    return out
