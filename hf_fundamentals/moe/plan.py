"""Complete-muE transfer plan: AdamW hyperparameters and init of a tuned dense proxy, carried to an MoE target.

The rules (Complete-muE, arXiv 2605.23893, as the authors' blog gives them, tagged ``[BLOG]``:
https://harveyp123.github.io/paper_blogs/complete_mue/; our own defaults tagged ``Proposed``):

* width: ``rho_d = d/d*``; every hidden 2-D linear (attention, router, expert/shared/dense FFN, lm_head) gets
  LR ×1/rho_d and init std ×rho_d^-1/2 [BLOG worked example]; the LM-head output is multiplied by 1/rho_d.
  The untied lm_head's LR follows ``TransferOptions.readout_lr``: "mup" (default, Proposed) leaves it unchanged,
  as mup's MuReadout/MuAdam do (the readout has one infinite dimension; the 1/rho_d output multiplier alone gives
  its 1/fan_in update), while "blog" applies the worked example's LR ×1/rho_d on top of the multiplier (effective
  readout update ∝ 1/rho_d², measured by the coord check in ``benchmarks/moe.py``).
* MoE block: active width ``H_act = a·h + shared`` (or ``H`` for a dense FFN), output multiplier ``A = d/H_act``
  on the down-projection output, route scale ``R = a`` on the normalized routed sum (1 on shared/dense), and
  down-projection init ``σ_down = sqrt(H_act/d)·σ^(1)`` with an LR that does not depend on H [BLOG tuning menu].
* batch/duration: with ``rho_B = B'/B`` and ``rho_D = B'T'/(BT)``: η and λ ×sqrt(rho_B/rho_D), ε
  ×sqrt(rho_D/rho_B), (1−β) ×rho_B/rho_D [BLOG, paper Table 2].
* no MoE-specific LR/WD multiplier for a, N or granularity [BLOG]; A, R and σ_down absorb those changes.

The proxy is assumed tuned in this same parameterization: its dense FFN carries its own ``A = d*/H_ref`` on the
down output and its down init is ``sqrt(H_ref/d*)·σ^(1)`` with ``σ^(1) = init_std`` (the std every fan-in-d
hidden matrix uses). All proxy values (lr, init, eps, wd) are for the raw weights of that multiplier form.

Multipliers in a ``GroupRule`` are relative to the proxy's value for the same group (so an identity transfer
gives 1 everywhere) and exclude folding; absolute values include the global batch/duration factors and, when
``fold_multipliers`` is on, the folded forward multiplier c (init ×c, lr ×c, wd ×1/c, eps ×1/c; our design,
from the µP multiplier symmetry under Adam). Weight decay is torch-AdamW decoupled (the weight shrinks by
lr·wd per step).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

GROUPS = (
    "embedding",
    "attention",
    "router",
    "expert_gate_up",
    "expert_down",
    "shared_up",
    "shared_down",
    "shared_gate",
    "dense_up",
    "dense_down",
    "lm_head",
    "vector",
)
EPS_WIDTH_RULES = ("mup", "none")
READOUT_LR_RULES = ("mup", "blog")
WD_COUPLINGS = ("keep_lr_wd", "none")
H_ACT_CONVENTIONS = ("ah", "gate_up")

PROPOSED = "Proposed: not found in sources"
SOURCES = {
    "rho_d": "[BLOG] worked example, step 3: rho_d = d/d*",
    "H_act": "[BLOG] tuning menu: H_act = H (dense), a*h (sparse), H_tot incl. shared (hybrid)",
    "H_act_gate_up": "Proposed: gate_up convention counts SwiGLU gate+up, H_act x2 (the blog's 128e8a1s "
    "example gives H_act = 9d but calls it 4.5x)",
    "A": "[BLOG] tuning menu: A = d/H_act on the FFN/MoE down-projection output",
    "R": "[BLOG] Bridge I / tuning menu: R = a on the normalized routed sum, 1 on dense and shared branches",
    "hidden_width": "[BLOG] worked example, step 3: every 2-D linear LR x1/rho_d, init std x rho_d^-1/2",
    "attention": "[BLOG] worked example, step 3: attention Q/K/V/O get the uP width factors",
    "router": "[BLOG] tuning menu: router weight gets standard uP factors in d",
    "up": "[BLOG] tuning menu: up/gate projections standard uP width factors in d, nothing MoE-specific",
    "down": "[BLOG] tuning menu + 'under the hood': init sqrt(H_act/d)*sigma1, LR x1/rho_d with no H dependence",
    "shared_gate": f"{PROPOSED} (Qwen2-MoE shared_expert_gate d->1 treated like the router; our design)",
    "lm_head": "[BLOG] worked example, step 3: LM head LR x1/rho_d, init x rho_d^-1/2, output x1/rho_d",
    "lm_head_mup": "Proposed: µP readout (mup MuReadout/MuAdam: one infinite dim, LR unchanged); the blog's LR "
    "×1/rho_d on top of the 1/rho_d output multiplier shrinks readout updates as 1/rho_d², coord check in "
    "benchmarks/moe.py",
    "lm_head_tied": f"{PROPOSED} (tied weight follows the embedding rule; readout 1/rho_d stays a forward "
    "multiplier, as mup MuSharedReadout; our design)",
    "readout": "[BLOG] worked example, step 3: LM-head / prediction-head output multiplier 1/rho_d",
    "embedding": f"{PROPOSED} (uP-Adam leaves embedding LR and init unchanged, as mup MuAdam; our design)",
    "vector": f"{PROPOSED} (mup MuAdam leaves vector-like params, norms and biases, unchanged, "
    "microsoft/mup mup/optim.py)",
    "batch_duration": "[BLOG] batch/duration table (paper Table 2, CompleteP form): eta, lambda x sqrt(rho_B/rho_D), "
    "eps x sqrt(rho_D/rho_B), (1-beta) x rho_B/rho_D",
    "no_moe_multiplier": "[BLOG] what does not change: no MoE-specific LR/WD multiplier for a, N, granularity",
    "eps_width_mup": f"{PROPOSED} (hidden-matrix Adam eps x1/rho_d, uP-style; our design)",
    "eps_width_none": f"{PROPOSED} (Adam eps width-independent; option eps_width_rule='none')",
    "wd_keep_lr_wd": f"{PROPOSED} (wd x rho_d wherever lr / rho_d, lr*wd invariant; our design, following "
    "mup.MuAdamW)",
    "wd_none": f"{PROPOSED} (wd width-independent; option wd_coupling='none')",
    "sigma0": "Proposed: optional gamma knob on the Bridge II sigma0 residual (our design); gamma = 0 is the "
    "identity ([BLOG] Bridge II: first-order LR/WD correction cancels)",
    "folding": "Proposed: uP multiplier symmetry under Adam, init x c, lr x c, wd x 1/c, eps x 1/c "
    "(our design)",
    "dense_target": "[BLOG] dense FFN: H_act = H; width/batch/duration transfer only",
    "depth": "not found in [BLOG] (CompleteP residual-branch grouping is named but not specified): not applied",
}


def _positive_int(name: str, value: Any) -> int:
    """``value`` as a positive int, or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``), or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}; got {value!r}")
    return value


def _betas(name: str, value: Any) -> tuple[float, float]:
    """Two Adam betas in [0, 1) as a tuple (JSON gives a list)."""
    try:
        b1, b2 = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (beta1, beta2); got {value!r}") from None
    out = []
    for i, b in enumerate((b1, b2), start=1):
        if isinstance(b, bool) or not isinstance(b, int | float) or not (0.0 <= float(b) < 1.0):
            raise ValueError(f"{name}: beta{i} must be in [0, 1); got {b!r}")
        out.append(float(b))
    return out[0], out[1]


@dataclass(frozen=True, kw_only=True)
class DenseProxy:
    """The tuned dense proxy (width ``d`` = d*, FFN width ``ffn_width`` = H_ref), in the Complete-muE form.

    Assumed tuned with its own ``A = d*/H_ref`` on the FFN down output and down init ``sqrt(H_ref/d*)·σ^(1)``,
    ``σ^(1) = init_std``; pass ``down_init_std`` if its down init was tuned separately (σ^(1) is derived from it).
    ``batch_tokens`` is tokens per optimizer step, ``steps`` the number of steps.
    """

    d: int
    ffn_width: int
    lr: float
    weight_decay: float
    init_std: float
    adam_eps: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    batch_tokens: int
    steps: int
    tied_embeddings: bool = False
    down_init_std: float | None = None

    def __post_init__(self) -> None:
        """Validate early (a bad proxy fails at construction, naming the field)."""
        _positive_int("DenseProxy.d", self.d)
        _positive_int("DenseProxy.ffn_width", self.ffn_width)
        _positive_float("DenseProxy.lr", self.lr)
        _positive_float("DenseProxy.weight_decay", self.weight_decay, allow_zero=True)
        _positive_float("DenseProxy.init_std", self.init_std)
        _positive_float("DenseProxy.adam_eps", self.adam_eps, allow_zero=True)
        object.__setattr__(self, "betas", _betas("DenseProxy.betas", self.betas))
        _positive_int("DenseProxy.batch_tokens", self.batch_tokens)
        _positive_int("DenseProxy.steps", self.steps)
        if not isinstance(self.tied_embeddings, bool):
            raise ValueError(f"DenseProxy.tied_embeddings must be a bool; got {self.tied_embeddings!r}")
        if self.down_init_std is not None:
            _positive_float("DenseProxy.down_init_std", self.down_init_std)


@dataclass(frozen=True, kw_only=True)
class MoETarget:
    """The target: width ``d``, ``n_experts`` routed experts (N) of width ``expert_width`` (h), ``n_active`` (a,
    top-k) per token, ``shared_width`` total always-on shared width, ``dense_ffn_width`` for dense layers of a
    hybrid (DeepSeek ``first_k_dense_replace``). N = a = 1 with no shared width is a dense FFN of width h
    (see ``MoETarget.dense``). ``n_group``/``topk_group`` are informational (group-limited routing)."""

    d: int
    n_experts: int
    n_active: int
    expert_width: int
    batch_tokens: int
    steps: int
    shared_width: int = 0
    dense_ffn_width: int | None = None
    n_group: int | None = None
    topk_group: int | None = None

    def __post_init__(self) -> None:
        """Validate early, naming the field and what would be accepted."""
        _positive_int("MoETarget.d", self.d)
        _positive_int("MoETarget.n_experts", self.n_experts)
        _positive_int("MoETarget.n_active", self.n_active)
        _positive_int("MoETarget.expert_width", self.expert_width)
        _positive_int("MoETarget.batch_tokens", self.batch_tokens)
        _positive_int("MoETarget.steps", self.steps)
        if self.n_active > self.n_experts:
            raise ValueError(
                f"MoETarget.n_active (a = {self.n_active}) must be <= n_experts (N = {self.n_experts})"
            )
        if (
            isinstance(self.shared_width, bool)
            or not isinstance(self.shared_width, int)
            or self.shared_width < 0
        ):
            raise ValueError(f"MoETarget.shared_width must be an integer >= 0; got {self.shared_width!r}")
        if self.dense_ffn_width is not None:
            _positive_int("MoETarget.dense_ffn_width", self.dense_ffn_width)
            if self.is_dense and self.dense_ffn_width != self.expert_width:
                raise ValueError(
                    f"MoETarget is dense (N = a = 1, no shared width), so its FFN width is expert_width = "
                    f"{self.expert_width}; dense_ffn_width = {self.dense_ffn_width} contradicts it (leave it None)"
                )
        if (self.n_group is None) != (self.topk_group is None):
            raise ValueError("MoETarget.n_group and topk_group go together: give both or neither")
        if self.n_group is not None:
            _positive_int("MoETarget.n_group", self.n_group)
            _positive_int("MoETarget.topk_group", self.topk_group)
            if self.n_experts % self.n_group:
                raise ValueError(
                    f"MoETarget.n_group = {self.n_group} must divide n_experts = {self.n_experts}"
                )
            if self.topk_group > self.n_group:
                raise ValueError(
                    f"MoETarget.topk_group = {self.topk_group} must be <= n_group = {self.n_group}"
                )
            reachable = self.topk_group * (self.n_experts // self.n_group)
            if self.n_active > reachable:
                raise ValueError(
                    f"MoETarget.n_active = {self.n_active} exceeds the {reachable} experts reachable in "
                    f"topk_group = {self.topk_group} groups of {self.n_experts // self.n_group}"
                )

    @property
    def is_dense(self) -> bool:
        """True for a dense FFN target (N = a = 1, no shared width): width/batch/duration transfer only."""
        return self.n_experts == 1 and self.n_active == 1 and self.shared_width == 0

    @classmethod
    def dense(cls, *, d: int, ffn_width: int, batch_tokens: int, steps: int) -> MoETarget:
        """A dense target of FFN width ``ffn_width`` (stored as N = a = 1, h = ffn_width)."""
        return cls(
            d=d, n_experts=1, n_active=1, expert_width=ffn_width, batch_tokens=batch_tokens, steps=steps
        )


@dataclass(frozen=True, kw_only=True)
class TransferOptions:
    """Switches for the rules the sources (arXiv 2605.23893 and its blog) leave open (all defaults are
    Proposed, our design).

    ``readout_lr`` (untied lm_head only; a tied one follows the embedding rule): "mup" leaves the lm_head LR, and
    with it its wd/eps width coupling, unchanged (µP-Adam readout, one infinite dimension); "blog" gives it the
    hidden-matrix LR ×1/rho_d (and wd ×rho_d / eps ×1/rho_d under keep_lr_wd / mup eps). Init ×rho_d^-1/2 and the
    output multiplier 1/rho_d are the same under both."""

    eps_width_rule: str = "mup"
    wd_coupling: str = "keep_lr_wd"
    sigma0_gamma: float = 0.0
    fold_multipliers: bool = True
    h_act_convention: str = "ah"
    readout_lr: str = "mup"

    def __post_init__(self) -> None:
        """Reject unknown option values by name."""
        for name, value, accepted in (
            ("eps_width_rule", self.eps_width_rule, EPS_WIDTH_RULES),
            ("readout_lr", self.readout_lr, READOUT_LR_RULES),
            ("wd_coupling", self.wd_coupling, WD_COUPLINGS),
            ("h_act_convention", self.h_act_convention, H_ACT_CONVENTIONS),
        ):
            if value not in accepted:
                raise ValueError(
                    f"TransferOptions.{name} = {value!r} is not known; accepted: {', '.join(accepted)}"
                )
        gamma = self.sigma0_gamma
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not math.isfinite(gamma):
            raise ValueError(f"TransferOptions.sigma0_gamma must be a finite number; got {gamma!r}")
        object.__setattr__(self, "sigma0_gamma", float(gamma))
        if not isinstance(self.fold_multipliers, bool):
            raise ValueError(
                f"TransferOptions.fold_multipliers must be a bool; got {self.fold_multipliers!r}"
            )


@dataclass(frozen=True, kw_only=True)
class GlobalHparams:
    """Target AdamW hyperparameters after batch/duration (and the optional σ0 knob), before per-group rules."""

    lr: float
    weight_decay: float
    eps: float
    betas: tuple[float, float]
    lr_factor: float
    wd_factor: float
    eps_factor: float
    one_minus_beta_factor: float
    sigma0_factor: float

    def __post_init__(self) -> None:
        """JSON gives betas as a list; keep a tuple so round trips compare equal."""
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))


@dataclass(frozen=True, kw_only=True)
class ForwardMultipliers:
    """Forward multipliers: A on the routed/shared/dense down outputs, R on the routed sum, the LM-head readout.
    None marks a branch the target does not have."""

    A_routed: float | None
    A_shared: float | None
    A_dense: float | None
    R: float | None
    readout: float


@dataclass(frozen=True, kw_only=True)
class GroupRule:
    """One parameter group: multipliers relative to the proxy's same group (no folding), absolute values (global
    factors and folding included), the folded multiplier ``fold`` (None when nothing is folded) and the source."""

    name: str
    lr_mult: float
    init_std_mult: float
    wd_mult: float
    eps_mult: float
    lr: float
    init_std: float | None
    weight_decay: float
    eps: float
    fold: float | None
    source: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything ``transfer_plan`` decided, with its inputs; ``to_dict``/``from_dict``/``to_json`` round-trip."""

    proxy: DenseProxy
    target: MoETarget
    options: TransferOptions
    rho_d: float
    rho_B: float
    rho_D: float
    h_act: int
    h_act_proxy: int
    A_proxy: float
    sigma1_proxy: float
    sigma1_target: float
    global_hparams: GlobalHparams
    forward: ForwardMultipliers
    forward_in_model: ForwardMultipliers
    groups: dict[str, GroupRule] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready dict (nested dataclasses as dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Rebuild a Plan from ``to_dict`` output (or its JSON); the result compares equal to the original."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Plan.from_dict: unknown keys {sorted(unknown)}; accepted: {sorted(known)}")
        d = dict(data)
        d["proxy"] = DenseProxy(**d["proxy"])
        d["target"] = MoETarget(**d["target"])
        d["options"] = TransferOptions(**_with_readout_lr(data["options"], data))
        d["global_hparams"] = GlobalHparams(**d["global_hparams"])
        d["forward"] = ForwardMultipliers(**d["forward"])
        d["forward_in_model"] = ForwardMultipliers(**d["forward_in_model"])
        d["groups"] = {k: GroupRule(**v) for k, v in d["groups"].items()}
        d["sources"] = dict(d["sources"])
        d["notes"] = tuple(d["notes"])
        return cls(**d)

    def to_json(self, indent: int | None = 2) -> str:
        """The plan as JSON (floats round-trip exactly through Python's json)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Inverse of ``to_json``."""
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        """A readable multi-line table of the plan (globals, forward multipliers, one row per group)."""
        g = self.global_hparams
        f, fm = self.forward, self.forward_in_model
        t = self.target
        kind = "dense" if t.is_dense else f"MoE N={t.n_experts} a={t.n_active} h={t.expert_width}"
        lines = [
            f"Complete-muE plan: proxy d*={self.proxy.d} H={self.proxy.ffn_width} -> target d={t.d} ({kind}, "
            f"shared={t.shared_width}, dense_ffn={t.dense_ffn_width})",
            f"rho_d={_fmt(self.rho_d)} rho_B={_fmt(self.rho_B)} rho_D={_fmt(self.rho_D)} "
            f"H_act={self.h_act} ({self.options.h_act_convention}) H_act_proxy={self.h_act_proxy} "
            f"A_proxy={_fmt(self.A_proxy)}",
            f"global: lr={_fmt(g.lr)} wd={_fmt(g.weight_decay)} eps={_fmt(g.eps)} "
            f"betas=({_fmt(g.betas[0])}, {_fmt(g.betas[1])})  [lr x{_fmt(g.lr_factor)}, wd x{_fmt(g.wd_factor)}, "
            f"eps x{_fmt(g.eps_factor)}, 1-beta x{_fmt(g.one_minus_beta_factor)}, sigma0 x{_fmt(g.sigma0_factor)}]",
            "forward (parameterization): " + " ".join(f"{k}={_fmt(v)}" for k, v in asdict(f).items()),
            "forward (left in the model after folding): "
            + " ".join(f"{k}={_fmt(v)}" for k, v in asdict(fm).items()),
            "",
        ]
        header = (
            "group",
            "lr_mult",
            "init_mult",
            "wd_mult",
            "eps_mult",
            "fold c",
            "lr",
            "init_std",
            "wd",
            "eps",
        )
        rows = [header] + [
            (
                r.name,
                _fmt(r.lr_mult),
                _fmt(r.init_std_mult),
                _fmt(r.wd_mult),
                _fmt(r.eps_mult),
                _fmt(r.fold),
                _fmt(r.lr),
                _fmt(r.init_std),
                _fmt(r.weight_decay),
                _fmt(r.eps),
            )
            for r in self.groups.values()
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        lines.append("")
        lines.append("sources:")
        lines += [f"  {r.name}: {r.source}" for r in self.groups.values()]
        lines += [f"  {k}: {v}" for k, v in self.sources.items()]
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


def _with_readout_lr(options: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """Options of a plan dict, with ``readout_lr`` filled in for a dict that predates the option.

    ``to_dict`` writes every field, so a dict without ``readout_lr`` was written before the option existed, when
    the untied lm_head always took the blog's LR ×1/rho_d. Its stored lm_head row says which rule made it: LR mult
    1 with rho_d != 1 is "mup", anything else (including rho_d = 1 or tied embeddings, where both rules give the
    same numbers) loads as "blog", so the options never contradict the stored groups."""
    options = dict(options)
    if "readout_lr" in options:
        return options
    rule = "blog"
    lm_head = plan.get("groups", {}).get("lm_head")
    rho_d = plan.get("rho_d")
    tied = plan.get("proxy", {}).get("tied_embeddings", False)
    if lm_head is not None and rho_d not in (None, 1, 1.0) and not tied:
        if math.isclose(lm_head.get("lr_mult", 0.0), 1.0, rel_tol=1e-9):
            rule = "mup"
    options["readout_lr"] = rule
    return options


def _fmt(x: float | None) -> str:
    """Compact number for the summary table."""
    return "-" if x is None else f"{x:.4g}"


def _width(h: int, convention: str) -> int:
    """An FFN width in the chosen H_act convention ("gate_up" counts SwiGLU gate+up, doubling it)."""
    return 2 * h if convention == "gate_up" else h


def _batch_duration(proxy: DenseProxy, target: MoETarget) -> tuple[float, float]:
    """rho_B = B'/B and rho_D = B'T'/(BT) (tokens per step, total tokens)."""
    rho_b = target.batch_tokens / proxy.batch_tokens
    rho_dur = (target.batch_tokens * target.steps) / (proxy.batch_tokens * proxy.steps)
    return rho_b, rho_dur


def _scaled_beta(name: str, beta: float, factor: float) -> float:
    """β' with 1 − β' = (1 − β)·factor, or a ValueError when β' leaves [0, 1)."""
    one_minus = (1.0 - beta) * factor
    new = 1.0 - one_minus
    if not (0.0 <= new < 1.0):
        raise ValueError(
            f"{name}: the batch/duration rule (1 - beta) x rho_B/rho_D = (1 - {beta}) x {factor:.6g} gives "
            f"beta = {new:.6g}, outside [0, 1); choose a smaller batch/step change or set the proxy betas so that "
            f"(1 - beta) x {factor:.6g} stays in (0, 1]"
        )
    return new


def transfer_plan(proxy: DenseProxy, target: MoETarget, options: TransferOptions | None = None) -> Plan:
    """Complete-muE transfer of a tuned dense proxy's AdamW hyperparameters and init to ``target`` (pure)."""
    options = TransferOptions() if options is None else options
    for name, value, cls in (
        ("proxy", proxy, DenseProxy),
        ("target", target, MoETarget),
        ("options", options, TransferOptions),
    ):
        if not isinstance(value, cls):
            raise ValueError(f"transfer_plan: {name} must be a {cls.__name__}; got {type(value).__name__}")
    conv = options.h_act_convention
    sources = {
        "rho_d": SOURCES["rho_d"],
        "H_act": SOURCES["H_act"] if conv == "ah" else SOURCES["H_act_gate_up"],
        "A": SOURCES["A"],
        "readout": SOURCES["readout"],
        "batch_duration": SOURCES["batch_duration"],
        "no_moe_multiplier": SOURCES["no_moe_multiplier"],
        "eps_width": SOURCES["eps_width_mup" if options.eps_width_rule == "mup" else "eps_width_none"],
        "wd_coupling": SOURCES["wd_keep_lr_wd" if options.wd_coupling == "keep_lr_wd" else "wd_none"],
        "readout_lr": SOURCES["lm_head_tied"]
        if proxy.tied_embeddings
        else SOURCES["lm_head_mup" if options.readout_lr == "mup" else "lm_head"],
        "sigma0": SOURCES["sigma0"],
        "depth": SOURCES["depth"],
    }
    if options.fold_multipliers:
        sources["folding"] = SOURCES["folding"]
    notes: list[str] = []

    # width
    rho_d = target.d / proxy.d
    h_ref = _width(proxy.ffn_width, conv)
    a_proxy = proxy.d / h_ref
    sigma1_proxy = (
        proxy.init_std if proxy.down_init_std is None else proxy.down_init_std * math.sqrt(proxy.d / h_ref)
    )
    sigma1_target = sigma1_proxy * rho_d**-0.5
    proxy_down_init = math.sqrt(h_ref / proxy.d) * sigma1_proxy

    # MoE block
    if target.is_dense:
        h_act = _width(target.expert_width, conv)
        sources["dense_target"] = SOURCES["dense_target"]
        notes.append("dense target: width/batch/duration transfer only (no router, experts or R)")
    else:
        h_act = _width(target.n_active * target.expert_width + target.shared_width, conv)
        sources["R"] = SOURCES["R"]
    a_block = target.d / h_act
    h_dense = None
    if target.is_dense:
        h_dense = h_act
    elif target.dense_ffn_width is not None:
        h_dense = _width(target.dense_ffn_width, conv)
    readout = 1.0 / rho_d

    # batch / duration and the optional σ0 knob (σ0 ∝ 1/sqrt(B·a/N) at equal η)
    rho_b, rho_dur = _batch_duration(proxy, target)
    lr_bd = math.sqrt(rho_b / rho_dur)
    eps_bd = math.sqrt(rho_dur / rho_b)
    beta_bd = rho_b / rho_dur
    b_exp_ref = float(proxy.batch_tokens)
    b_exp_target = target.batch_tokens * target.n_active / target.n_experts
    sigma0_factor = math.sqrt(b_exp_target / b_exp_ref) ** options.sigma0_gamma
    glob = GlobalHparams(
        lr=proxy.lr * lr_bd * sigma0_factor,
        weight_decay=proxy.weight_decay * lr_bd,
        eps=proxy.adam_eps * eps_bd,
        betas=(
            _scaled_beta("beta1", proxy.betas[0], beta_bd),
            _scaled_beta("beta2", proxy.betas[1], beta_bd),
        ),
        lr_factor=lr_bd * sigma0_factor,
        wd_factor=lr_bd,
        eps_factor=eps_bd,
        one_minus_beta_factor=beta_bd,
        sigma0_factor=sigma0_factor,
    )
    if options.sigma0_gamma != 0.0:
        notes.append(
            f"sigma0 knob: lr x (sigma0_ref/sigma0_target)^gamma = x{sigma0_factor:.6g} with per-expert batch "
            f"B*a/N = {b_exp_target:.6g} vs proxy {b_exp_ref:.6g} (lr only; wd unchanged)"
        )

    # forward multipliers and what folding moves into the weights
    forward = ForwardMultipliers(
        A_routed=None if target.is_dense else a_block,
        A_shared=a_block if (not target.is_dense and target.shared_width > 0) else None,
        A_dense=None if h_dense is None else target.d / h_dense,
        R=None if target.is_dense else float(target.n_active),
        readout=readout,
    )
    fold = options.fold_multipliers
    tied = proxy.tied_embeddings

    def folded(x: float | None) -> float | None:
        return None if x is None else (1.0 if fold else x)

    forward_in_model = ForwardMultipliers(
        A_routed=folded(forward.A_routed),
        A_shared=folded(forward.A_shared),
        A_dense=folded(forward.A_dense),
        R=folded(forward.R),
        readout=readout if (tied or not fold) else 1.0,
    )
    if tied:
        notes.append(
            "tied embeddings: lm_head shares the embedding weight and rule; readout 1/rho_d stays in forward"
        )
        if options.readout_lr == "blog":
            notes.append(
                "readout_lr='blog' has no effect with tied embeddings (the embedding rule sets the LR)"
            )

    # per-group rules
    w_lr = 1.0 / rho_d
    w_wd = rho_d if options.wd_coupling == "keep_lr_wd" else 1.0
    w_eps = 1.0 / rho_d if options.eps_width_rule == "mup" else 1.0
    hidden_init = rho_d**-0.5

    def down_init_mult(h: int) -> float:
        return math.sqrt((h / target.d) / (h_ref / proxy.d)) * rho_d**-0.5

    groups: dict[str, GroupRule] = {}

    def add(
        name: str, *, width: bool, init_mult: float, base_init: float | None, c: float | None, source: str
    ) -> None:
        lr_mult, wd_mult, eps_mult = (w_lr, w_wd, w_eps) if width else (1.0, 1.0, 1.0)
        cc = c if (fold and c is not None) else None
        k = 1.0 if cc is None else cc
        groups[name] = GroupRule(
            name=name,
            lr_mult=lr_mult,
            init_std_mult=init_mult,
            wd_mult=wd_mult,
            eps_mult=eps_mult,
            lr=glob.lr * lr_mult * k,
            init_std=None if base_init is None else base_init * init_mult * k,
            weight_decay=glob.weight_decay * wd_mult / k,
            eps=glob.eps * eps_mult / k,
            fold=cc,
            source=source,
        )

    def add_hidden(name: str, source: str) -> None:
        """A hidden matrix with fan-in d: the width factors, the plain µP init, nothing to fold."""
        add(name, width=True, init_mult=hidden_init, base_init=proxy.init_std, c=None, source=source)

    add(
        "embedding", width=False, init_mult=1.0, base_init=proxy.init_std, c=None, source=SOURCES["embedding"]
    )
    add_hidden("attention", SOURCES["attention"])
    if not target.is_dense:
        add_hidden("router", SOURCES["router"])
        add_hidden("expert_gate_up", SOURCES["up"])
        add(
            "expert_down",
            width=True,
            init_mult=down_init_mult(h_act),
            base_init=proxy_down_init,
            c=a_block * target.n_active,
            source=SOURCES["down"] + "; fold c = A*R",
        )
        if target.shared_width > 0:
            add_hidden("shared_up", SOURCES["up"])
            add(
                "shared_down",
                width=True,
                init_mult=down_init_mult(h_act),
                base_init=proxy_down_init,
                c=a_block,
                source=SOURCES["down"] + "; block H_act; fold c = A",
            )
            add_hidden("shared_gate", SOURCES["shared_gate"])
    if h_dense is not None:
        add_hidden("dense_up", SOURCES["up"])
        add(
            "dense_down",
            width=True,
            init_mult=down_init_mult(h_dense),
            base_init=proxy_down_init,
            c=target.d / h_dense,
            source=SOURCES["down"] + "; dense H; fold c = A",
        )
    if tied:
        add(
            "lm_head",
            width=False,
            init_mult=1.0,
            base_init=proxy.init_std,
            c=None,
            source=SOURCES["lm_head_tied"],
        )
    else:
        # "mup": the readout has one infinite dimension, so (like mup's MuAdamW and like the embedding here) its
        # lr, and with it the lr-coupled width factors (keep_lr_wd's wd x rho_d, the mup eps x1/rho_d), stay
        # unchanged; the 1/rho_d output multiplier alone gives the 1/fan_in effective update. "blog": LR x1/rho_d
        # like a hidden matrix. Init x rho_d^-1/2 and the readout (folded here: c = 1/rho_d) under both.
        blog = options.readout_lr == "blog"
        mup_source = (
            f"{SOURCES['lm_head_mup']}; init x rho_d^-1/2, output x1/rho_d: [BLOG] worked example, step 3"
        )
        add(
            "lm_head",
            width=blog,
            init_mult=hidden_init,
            base_init=proxy.init_std,
            c=readout,
            source=SOURCES["lm_head"] if blog else mup_source,
        )
    add("vector", width=False, init_mult=1.0, base_init=None, c=None, source=SOURCES["vector"])

    return Plan(
        proxy=proxy,
        target=target,
        options=options,
        rho_d=rho_d,
        rho_B=rho_b,
        rho_D=rho_dur,
        h_act=h_act,
        h_act_proxy=h_ref,
        A_proxy=a_proxy,
        sigma1_proxy=sigma1_proxy,
        sigma1_target=sigma1_target,
        global_hparams=glob,
        forward=forward,
        forward_in_model=forward_in_model,
        groups=groups,
        sources=sources,
        notes=tuple(notes),
    )
