"""Which teacher to distil from: distillation gain against teacher strength, and where the gain saturates.

Lu & Liu (arXiv 2605.23857) report that small, undertrained teachers still help a larger student, and that a
stronger teacher (more parameters or tokens) can saturate or reverse the gain. **The paper gives no formula for
the saturation point**; it reports it per grid. What follows is our proposed, testable rule, not the
paper's:

* teacher strength is its held-out in-domain cross-entropy ``L_T``; the student's is its *supervised* loss
  ``L_S`` (measured without a teacher, or predicted for (N_S, D_S) by a Chinchilla fit from
  :mod:`hf_fundamentals.scaling`, as Busbridge et al. 2025 do);
* the gap ``g = ln(L_S / L_T)`` (> 0: the teacher is stronger than the student would be alone) and the gain
  ``G = metric(no teacher) - metric(distilled)`` (> 0: distillation helped; pass loss *decreases*);
* fit ``G(g)`` with a concave quadratic or a broken line (two slopes, the break fitted) and report the vertex /
  break ``g*`` as the saturation point, with a bootstrap interval over the teachers;
* rule of thumb: pick a teacher with ``g <= g*``; set alpha low (0.2-0.4) when ``g <= 0`` (a weak teacher) and
  higher (0.6-1.0) for a moderately stronger one (the pattern of the paper's best-alpha table).

With a handful of teachers these fits are fragile; the result says how often the bootstrap resamples saturate
inside the observed range at all, and ``g*`` is None when the point estimate does not.

Core module: numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

GAIN_MODELS = ("quadratic", "hinge", "auto")
MIN_TEACHERS = {"quadratic": 4, "hinge": 5}


def teacher_gap(teacher_loss: Any, student_loss: Any) -> np.ndarray:
    """``g = ln(L_S / L_T)``: > 0 when the teacher's loss is below the student's supervised loss."""
    t = np.asarray(teacher_loss, dtype=float)
    s = np.asarray(student_loss, dtype=float)
    if np.any(t <= 0) or np.any(s <= 0) or not (np.all(np.isfinite(t)) and np.all(np.isfinite(s))):
        raise ValueError("teacher and student losses must be finite and > 0 (cross-entropies in nats)")
    return np.log(s / t)


def suggest_alpha(gap: float) -> tuple[float, float]:
    """Our alpha range for a teacher at ``gap``: (0.2, 0.4) for a weak teacher (g <= 0), else (0.6, 1.0).

    A heuristic read off the paper's best-alpha table (weak teachers want more weight on ground-truth CE), not a
    fitted law; tune alpha on held-out loss when you can.
    """
    return (0.2, 0.4) if gap <= 0 else (0.6, 1.0)


def _design_quadratic(g: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(g), g, g * g], axis=1)


def _fit_quadratic(g: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    coef, *_ = np.linalg.lstsq(_design_quadratic(g), y, rcond=None)
    rss = float(np.sum((_design_quadratic(g) @ coef - y) ** 2))
    return coef, rss


def _quadratic_vertex(coef: np.ndarray, lo: float, hi: float) -> float | None:
    """The maximum of a concave quadratic when it lies inside [lo, hi]; None otherwise (no saturation seen)."""
    _, b, c = coef
    if c >= 0:
        return None
    vertex = -b / (2 * c)
    return float(vertex) if lo <= vertex <= hi else None


def _hinge_design(g: np.ndarray, brk: float) -> np.ndarray:
    return np.stack([np.ones_like(g), np.minimum(g - brk, 0.0), np.maximum(g - brk, 0.0)], axis=1)


def _fit_hinge(g: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Broken line ``a + b1 min(g - g0, 0) + b2 max(g - g0, 0)``: least squares per break, the break by a bounded
    scalar search (scipy) started from the best interior data point; returns ``([a, b1, b2, g0], rss)``."""
    from scipy.optimize import minimize_scalar

    gs = np.unique(g)
    if gs.size < 3:
        raise ValueError("a broken line needs at least 3 distinct gaps")

    def rss_at(brk: float) -> float:
        design = _hinge_design(g, brk)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return float(np.sum((design @ coef - y) ** 2))

    inner = gs[1:-1]  # a break needs points on both sides
    start = min(inner, key=rss_at)
    i = int(np.searchsorted(gs, start))
    res = minimize_scalar(rss_at, bounds=(float(gs[i - 1]), float(gs[i + 1])), method="bounded")
    brk = float(res.x) if res.fun <= rss_at(start) else float(start)
    design = _hinge_design(g, brk)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return np.append(coef, brk), rss_at(brk)


def _hinge_saturation(params: np.ndarray) -> float | None:
    """The break when the slope past it is below the slope before it and the gain was rising (saturation or
    reversal); None when the gain keeps rising at least as fast, or was not rising."""
    _, b1, b2, brk = params
    return float(brk) if b1 > 0 and b2 < b1 else None


def _aic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + 2 * k


@dataclass
class TeacherChoice:
    """The fitted gain-vs-gap relation and its saturation point.

    ``g_star``: the gap where the gain stops growing (None when the fit does not saturate inside the observed
    gaps); ``interval``: its bootstrap percentile interval over the resamples that saturate (None when fewer
    than half of them do); ``saturating_share``: the share of resamples that saturate inside the range;
    ``teacher_loss_star``: ``L_S / exp(g_star)`` at the median student loss, the teacher loss to aim for.
    """

    model: str
    params: list[float]
    g_star: float | None
    interval: tuple[float, float] | None
    saturating_share: float
    teacher_loss_star: float | None
    teacher_loss_interval: tuple[float, float] | None
    r2: float
    aic: dict[str, float]
    n_teachers: int
    gap_range: tuple[float, float]
    best_observed: int
    gaps: list[float] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    confidence: float = 0.9
    n_bootstrap: int = 0
    note: str = (
        "Proposed rule (ours), not the paper's: Lu & Liu report saturation empirically and give no formula."
    )

    def predict(self, gap: Any) -> np.ndarray:
        """The fitted gain at ``gap``."""
        g = np.asarray(gap, dtype=float)
        if self.model == "quadratic":
            a, b, c = self.params
            return a + b * g + c * g * g
        a, b1, b2, brk = self.params
        return a + b1 * np.minimum(g - brk, 0.0) + b2 * np.maximum(g - brk, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One paragraph for a report."""
        lo, hi = self.gap_range
        if self.g_star is None:
            where = (
                f"no saturation inside the observed gaps [{lo:.3g}, {hi:.3g}] "
                f"({self.saturating_share:.0%} of bootstrap resamples saturate)"
            )
        else:
            ci = (
                f", {self.confidence:.0%} interval [{self.interval[0]:.3g}, {self.interval[1]:.3g}]"
                if self.interval is not None
                else ", interval undetermined (too few resamples saturate)"
            )
            where = (
                f"gain saturates at gap g* = {self.g_star:.3g}{ci}; teacher loss ~ {self.teacher_loss_star:.4g} "
                f"nats ({self.saturating_share:.0%} of resamples saturate in range)"
            )
        return (
            f"{self.model} fit over {self.n_teachers} teachers (R² {self.r2:.2f}): {where}. "
            f"Best observed teacher: #{self.best_observed}. {self.note}"
        )


def _fit(model: str, g: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float | None]:
    lo, hi = float(g.min()), float(g.max())
    if model == "quadratic":
        coef, rss = _fit_quadratic(g, y)
        return coef, rss, _quadratic_vertex(coef, lo, hi)
    params, rss = _fit_hinge(g, y)
    return params, rss, _hinge_saturation(params)


def fit_teacher_gain(
    teacher_loss: Sequence[float],
    student_loss: Sequence[float] | float,
    gain: Sequence[float],
    *,
    model: str = "auto",
    n_bootstrap: int = 1000,
    confidence: float = 0.9,
    seed: int = 0,
) -> TeacherChoice:
    """Relate distillation gain to teacher strength and locate the saturation point (see the module docstring).

    ``teacher_loss``: each teacher's held-out CE ``L_T``; ``student_loss``: the student's supervised loss
    ``L_S`` (one value for all teachers, or one per teacher when students differ), measured or predicted;
    ``gain``: ``metric(no teacher) - metric(distilled)`` per teacher (> 0 helps). ``model``: 'quadratic',
    'hinge' or 'auto' (the lower AIC of the two; quadratic alone below 5 teachers). The bootstrap resamples
    teachers with replacement (``seed``), refits, and keeps the resamples whose fit saturates in range.
    """
    if model not in GAIN_MODELS:
        raise ValueError(f"model {model!r}; accepted: {', '.join(GAIN_MODELS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0; got {n_bootstrap}")
    t = np.asarray(teacher_loss, dtype=float).reshape(-1)
    y = np.asarray(gain, dtype=float).reshape(-1)
    s = np.broadcast_to(np.asarray(student_loss, dtype=float), t.shape).copy()
    if t.size != y.size:
        raise ValueError(f"{t.size} teacher losses but {y.size} gains; give one gain per teacher")
    if not np.all(np.isfinite(y)):
        raise ValueError("gains must be finite")
    g = teacher_gap(t, s)
    need = MIN_TEACHERS["quadratic" if model == "auto" else model]
    distinct = 4 if model == "hinge" else 3
    if t.size < need or np.unique(g).size < distinct:
        raise ValueError(
            f"{t.size} teachers ({np.unique(g).size} distinct gaps): a {model} fit needs at least {need} teachers "
            f"with at least {distinct} distinct strengths"
        )
    candidates = ["quadratic", "hinge"] if model == "auto" else [model]
    if model == "auto" and (t.size < MIN_TEACHERS["hinge"] or np.unique(g).size < 4):
        candidates = ["quadratic"]
    fits = {m: _fit(m, g, y) for m in candidates}
    n_params = {"quadratic": 3, "hinge": 4}
    aic = {m: _aic(fits[m][1], g.size, n_params[m]) for m in fits}
    chosen = min(aic, key=aic.get)
    params, rss, g_star = fits[chosen]
    tss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - rss / tss if tss > 0 else float("nan")

    rng = np.random.default_rng(seed)
    stars: list[float] = []
    tried = 0
    for _ in range(n_bootstrap):
        pick = rng.integers(0, g.size, g.size)
        if np.unique(g[pick]).size < (3 if chosen == "quadratic" else 4):
            continue
        tried += 1
        star = _fit(chosen, g[pick], y[pick])[2]
        if star is not None:
            stars.append(star)
    share = len(stars) / tried if tried else 0.0
    interval = None
    if stars and share >= 0.5:
        q = (1 - confidence) / 2
        interval = (float(np.quantile(stars, q)), float(np.quantile(stars, 1 - q)))
    s_ref = float(np.median(s))
    t_star = s_ref / math.exp(g_star) if g_star is not None else None
    t_interval = (s_ref / math.exp(interval[1]), s_ref / math.exp(interval[0])) if interval else None
    return TeacherChoice(
        model=chosen, params=[float(p) for p in params], g_star=g_star, interval=interval,
        saturating_share=float(share), teacher_loss_star=t_star, teacher_loss_interval=t_interval, r2=float(r2),
        aic={k: float(v) for k, v in aic.items()}, n_teachers=int(g.size),
        gap_range=(float(g.min()), float(g.max())), best_observed=int(np.argmax(y)), gaps=g.tolist(),
        gains=y.tolist(), confidence=confidence, n_bootstrap=int(n_bootstrap),
    )  # fmt: skip
