"""Anchored weight decay (AWD): a decoupled pull of the weights toward the initial model θ0.

After each update (arXiv 2605.30148; kschweig/es-awd ``weight_update_utils.py``
``apply_reference_weight_decay_``), with shrink ``s = lr·λ`` (``lr = α`` for ES, the scheduler's current LR
for gradient trainers, our design):

* ``l2`` (recommended): ``θ ← θ0 + (1 − s)(θ − θ0)``; requires ``0 ≤ s < 1`` (the code asserts it).
* ``l1``: the proximal step, a soft threshold of the difference: ``θ ← θ0 + sign(d)·max(|d| − s, 0)``.
* ``none`` or ``λ = 0``: off, and an exact no-op (the tensors are not touched at all).

The anchor is never refreshed. It is stored in fp32 on the CPU by default (our design; kschweig/es-awd pins a
CPU copy in the parameter dtype), and the arithmetic runs per tensor in fp32 and is cast back (our design;
kschweig/es-awd computes in the parameter dtype). It never touches the perturbed copies used to measure
rewards: call it after the update only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from hf_fundamentals.evolution.master import MasterWeights, write_master_

DECAY_KINDS = ("l2", "l1", "none")
NamedParams = Iterable[tuple[str, torch.Tensor]]


def check_shrink(shrink: float, kind: str) -> float:
    """Validate a shrink coefficient ``s = lr·λ`` for ``kind``; ``l2`` needs ``0 ≤ s < 1`` (kschweig/es-awd
    asserts it)."""
    if kind not in DECAY_KINDS:
        raise ValueError(f"anchored decay kind {kind!r} is not known; accepted: {', '.join(DECAY_KINDS)}")
    if not math.isfinite(shrink) or shrink < 0:
        raise ValueError(f"anchored decay shrink (lr * lambda) must be finite and >= 0; got {shrink}")
    if kind == "l2" and shrink >= 1:
        raise ValueError(
            f"anchored decay l2 needs shrink = lr * lambda < 1 (at 1 every weight snaps back to the anchor, "
            f"above 1 it overshoots); got {shrink}. Lower lambda or the learning rate."
        )
    return float(shrink)


def anchored_decay_(
    param: torch.Tensor, anchor: torch.Tensor, shrink: float, kind: str = "l2"
) -> tuple[float, float]:
    """Decay one tensor toward its anchor in place (fp32 math, cast back). Returns the squared deviation
    ``‖θ − θ0‖²`` before and after; ``shrink = 0`` or ``kind = "none"`` leaves ``param`` untouched."""
    check_shrink(shrink, kind)
    if param.shape != anchor.shape:
        raise ValueError(
            f"anchor shape {tuple(anchor.shape)} does not match parameter shape {tuple(param.shape)}"
        )
    with torch.no_grad():
        a = anchor.to(device=param.device, dtype=torch.float32)
        d = param.float() - a
        before = float(d.double().square().sum())
        if shrink == 0.0 or kind == "none":
            return before, before
        if kind == "l2":
            d.mul_(1.0 - shrink)
        else:  # l1: soft threshold of the difference
            d = torch.sign(d) * (d.abs() - shrink).clamp_(min=0.0)
        param.copy_((a + d).to(param.dtype))
        after = float((param.float() - a).double().square().sum())
    return before, after


class AnchoredDecay:
    """Holds the anchor θ0 (a snapshot of the selected parameters at construction) and applies AWD.

    ``include``/``exclude`` are regexes searched in parameter names (default: every parameter, as the paper,
    arXiv 2605.30148). Defaults ``kind="l2"``, ``lam=10.0`` are the paper's recommendation for ES at α = 5e-4
    (kschweig/es-awd README and ``run.sh``; λ must be re-tuned for gradient trainers, whose lr is far
    smaller).
    """

    def __init__(
        self,
        named_params: NamedParams,
        *,
        kind: str = "l2",
        lam: float = 10.0,
        include: str | None = None,
        exclude: str | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        pin_memory: bool | None = None,
    ) -> None:
        if kind not in DECAY_KINDS:
            raise ValueError(f"anchored decay kind {kind!r} is not known; accepted: {', '.join(DECAY_KINDS)}")
        if not math.isfinite(lam) or lam < 0:
            raise ValueError(f"anchored decay lambda must be finite and >= 0; got {lam}")
        self.kind = kind
        self.lam = float(lam)
        self.include = include
        self.exclude = exclude
        self._include = re.compile(include) if include else None
        self._exclude = re.compile(exclude) if exclude else None
        device = torch.device(device)
        if pin_memory is None:  # pinned CPU memory as kschweig/es-awd when a GPU is there to copy to
            pin_memory = device.type == "cpu" and torch.cuda.is_available()
        self.anchor: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, param in named_params:
                if not self.selects(name):
                    continue
                if name in self.anchor:
                    raise ValueError(f"parameter name {name!r} appears twice")
                copy = param.detach().to(device=device, dtype=dtype, copy=True)
                self.anchor[name] = copy.pin_memory() if pin_memory else copy
        if not self.anchor:
            raise ValueError(
                f"anchored decay selected no parameter (include={include!r}, exclude={exclude!r})"
            )

    def selects(self, name: str) -> bool:
        """Whether the include/exclude patterns pick the parameter ``name``."""
        if self._include is not None and not self._include.search(name):
            return False
        return not (self._exclude is not None and self._exclude.search(name))

    def shrink_for(self, lr: float) -> float:
        """The shrink ``s = lr·λ`` for a step at learning rate ``lr`` (α for ES), validated for this kind."""
        shrink = float(lr) * self.lam
        try:
            return check_shrink(shrink, self.kind)
        except ValueError as err:
            raise ValueError(f"{err} (lr={lr}, lambda={self.lam})") from None

    def _selected(self, named_params: NamedParams) -> list[tuple[str, torch.Tensor]]:
        chosen = []
        for name, param in named_params:
            if not self.selects(name):
                continue
            if name not in self.anchor:
                raise ValueError(f"parameter {name!r} is selected for anchored decay but has no anchor")
            chosen.append((name, param))
        return chosen

    def apply(
        self, named_params: NamedParams, shrink: float, master: MasterWeights | None = None
    ) -> dict[str, float]:
        """Decay the selected parameters by ``shrink`` (on the fp32 master when given, then written back).
        Returns ``shrink`` and the global deviation norm before and after."""
        shrink = check_shrink(shrink, self.kind)
        before = after = 0.0
        with torch.no_grad():
            for name, param in self._selected(named_params):
                target = master[name] if master is not None else param
                b, a = anchored_decay_(target, self.anchor[name], shrink, self.kind)
                before, after = before + b, after + a
                if master is not None and shrink > 0 and self.kind != "none":
                    write_master_(param, target)
        return {"shrink": shrink, "deviation_before": math.sqrt(before), "deviation_after": math.sqrt(after)}

    def step(
        self, named_params: NamedParams, lr: float, master: MasterWeights | None = None
    ) -> dict[str, float]:
        """:meth:`apply` with ``shrink = lr·λ``: the call after each optimizer/ES step."""
        return self.apply(named_params, self.shrink_for(lr), master=master)

    def deviation_norm(self, named_params: NamedParams) -> float:
        """Global ``‖θ − θ0‖`` over the selected parameters."""
        total = 0.0
        with torch.no_grad():
            for name, param in self._selected(named_params):
                a = self.anchor[name].to(device=param.device, dtype=torch.float32)
                total += float((param.float() - a).double().square().sum())
        return math.sqrt(total)

    def state_dict(self) -> dict[str, Any]:
        """Settings and anchor tensors, for checkpointing."""
        return {
            "kind": self.kind,
            "lam": self.lam,
            "include": self.include,
            "exclude": self.exclude,
            "anchor": dict(self.anchor),
        }

    def load_anchor(self, anchor: Mapping[str, torch.Tensor]) -> None:
        """Replace the anchor tensors (e.g. from a checkpoint); names and shapes must match the current ones."""
        if set(anchor) != set(self.anchor):
            missing, extra = set(self.anchor) - set(anchor), set(anchor) - set(self.anchor)
            raise ValueError(f"anchor names differ: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for name, tensor in anchor.items():
            if tensor.shape != self.anchor[name].shape:
                raise ValueError(
                    f"anchor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(self.anchor[name].shape)}"
                )
            self.anchor[name].copy_(tensor)
