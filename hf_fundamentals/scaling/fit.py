"""Robust fit of a scaling law to (N, D, loss) runs: Huber on log loss, summed, L-BFGS-B from a grid of starts.

The recipe is Hoffmann et al.'s Approach 3 as Besiroglu et al. (arXiv 2404.10102) repaired it: the Huber terms
(δ = 1e-3) are **summed**, not averaged, because averaging shrinks the objective until L-BFGS stops early. Each
start is optimized in the law's log-parameter coordinates with the analytic gradient. Diagnostics: the best
objective, how many starts end within ``agree_rtol`` of it (a landscape with one basin has most of them), whether
the winner converged and which coordinates sit on their bounds, R² on raw loss in-sample and on held-out points
(pooled, as the Shannon paper reports), and bootstrap intervals (resampled points, refit from the best start).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from tqdm.auto import tqdm

from hf_fundamentals.scaling.laws import ScalingLaw, as_positive, get_law
from hf_fundamentals.scaling.turning import d_star, n_star

DEFAULT_MAX_STARTS = 500
"""L-BFGS runs when a law's grid holds more starts (the best-screened ones, or a seeded random draw)."""


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals ``r`` and its derivative: quadratic within ±delta, linear outside."""
    a = np.abs(r)
    quad = a <= delta
    value = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta))
    return value, np.clip(r, -delta, delta)


def r_squared(y: np.ndarray, y_hat: np.ndarray) -> float | None:
    """1 − SS_res/SS_tot; None with fewer than two points or no spread."""
    y, y_hat = np.asarray(y, dtype=float), np.asarray(y_hat, dtype=float)
    if y.size < 2:
        return None
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return None
    return 1.0 - float(np.sum((y - y_hat) ** 2)) / ss_tot


def _rmse(y: np.ndarray, y_hat: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean((y - y_hat) ** 2))) if y.size else None


@dataclass
class FitResult:
    """A fitted law: its constants, the fit's diagnostics and scores. ``predict``, ``d_star`` and ``n_star`` use it
    directly; ``to_json``/``from_json`` round-trip it."""

    law: str
    params: dict[str, float]
    theta: list[float]
    theta_names: list[str]
    objective: float
    """Summed Huber loss of the winning start (log-loss residuals)."""
    huber_delta: float
    n_train: int
    n_heldout: int
    n_starts: int
    n_agree: int
    """Starts whose final objective is within ``agree_rtol`` (relative) of the best."""
    agree_rtol: float
    converged: bool
    message: str
    at_bounds: list[str]
    r2_train: float | None
    r2_heldout: float | None
    rmse_train: float | None
    rmse_heldout: float | None
    seed: int
    n_boot: int = 0
    ci: float = 0.95
    bootstrap: dict[str, dict[str, float]] | None = None
    """Per constant: ``se`` (bootstrap std), ``lo``/``hi`` (percentile interval at ``ci``), ``n`` refits used."""
    extra: dict[str, Any] = field(default_factory=dict)
    identifiability: dict[str, dict[str, Any]] | None = None
    """Per constant (with ``n_boot`` > 0): estimate, interval and flags ``wide`` (the bootstrap interval spans an
    order of magnitude or reaches 0) and ``on_bound`` (see :func:`hf_fundamentals.scaling.identifiability`)."""
    boot_thetas: list[list[float]] | None = None
    """Fit coordinates of every bootstrap refit (``predict_interval`` uses them)."""
    log_residuals: list[float] | None = None
    """ln(observed) − ln(fitted) at the training points."""

    @property
    def scaling_law(self) -> ScalingLaw:
        return get_law(self.law)

    def predict(self, N: float | np.ndarray, D: float | np.ndarray) -> np.ndarray:
        """Predicted loss at N parameters and D tokens."""
        return self.scaling_law.predict(self.params, N, D)

    def predict_interval(
        self, N: float | np.ndarray, D: float | np.ndarray, *, ci: float | None = None, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Percentile prediction interval at ``ci`` (default the fit's): every bootstrap refit's prediction times a
        residual drawn from the training residuals. It stays meaningful when single constants are not identified
        (compensating constants move together). Needs a fit with ``n_boot`` > 0."""
        if not self.boot_thetas:
            raise ValueError("predict_interval needs bootstrap refits: fit with n_boot > 0")
        law = self.scaling_law
        u, v = np.broadcast_arrays(np.log(as_positive("N", N)), np.log(as_positive("D", D)))
        shape = u.shape
        draws = np.exp(law.log_loss(np.asarray(self.boot_thetas), u.ravel(), v.ravel()))
        rng = np.random.default_rng(seed)
        draws = draws * np.exp(rng.choice(np.asarray(self.log_residuals or [0.0]), size=draws.shape))
        q = (1 - (self.ci if ci is None else ci)) / 2
        return np.quantile(draws, q, axis=0).reshape(shape), np.quantile(draws, 1 - q, axis=0).reshape(shape)

    def d_star(self, N: float) -> float | None:
        """Loss-minimizing tokens for an N-parameter model (None: loss keeps falling with D)."""
        return d_star(self.scaling_law, self.params, N)

    def n_star(self, D: float) -> float | None:
        """Loss-minimizing parameter count at D tokens (None: loss keeps falling with N)."""
        return n_star(self.scaling_law, self.params, D)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (NaN/inf become None)."""
        return _json_safe(asdict(self))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitResult:
        """Inverse of ``to_dict`` (unknown keys raise, so a file from another tool fails loudly)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"not a FitResult: unknown keys {sorted(unknown)}")
        get_law(data["law"])
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> FitResult:
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        """Constants, scores and diagnostics in a few lines."""
        law = self.scaling_law
        pieces = []
        for name in law.param_names:
            s = f"{name}={self.params[name]:.4g}"
            if self.bootstrap and name in self.bootstrap and self.bootstrap[name]["se"] is not None:
                b = self.bootstrap[name]
                s += f" [{b['lo']:.3g}, {b['hi']:.3g}]"
            info = (self.identifiability or {}).get(name)
            if info and info["flags"]:
                s += " (" + "+".join(info["flags"]) + ")"
            pieces.append(s)
        r2h = "n/a" if self.r2_heldout is None else f"{self.r2_heldout:.4f}"
        r2t = "n/a" if self.r2_train is None else f"{self.r2_train:.4f}"
        lines = [
            f"{self.law}: {law.formula}",
            "  " + ", ".join(pieces),
            f"  R² train {r2t} ({self.n_train} pts), held-out {r2h} ({self.n_heldout} pts); objective "
            f"{self.objective:.4g}; {self.n_agree}/{self.n_starts} starts within {self.agree_rtol:.0%} of best"
            + ("" if self.converged else f"; NOT converged ({self.message})"),
        ]
        if self.at_bounds:
            lines.append(f"  at bounds: {', '.join(self.at_bounds)}")
        if self.bootstrap:
            bad = [n for n, i in (self.identifiability or {}).items() if i["flags"]]
            lines.append(
                f"  {self.ci:.0%} bootstrap intervals ({self.n_boot} refits); "
                + (f"NOT IDENTIFIED: {', '.join(bad)} (trust predictions, not these constants)" if bad
                   else "every constant identified")
            )  # fmt: skip
        return "\n".join(lines)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def check_runs(
    N: Sequence[float] | np.ndarray, D: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N, D and loss as equal-length 1-D float arrays, every entry finite and > 0 (else ValueError)."""
    arrays = []
    for name, col in (("N", N), ("D", D), ("loss", loss)):
        arr = np.asarray(col, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one entry per run); got shape {arr.shape}")
        arrays.append(as_positive(name, arr))
    if len({a.size for a in arrays}) != 1:
        raise ValueError(
            f"N, D and loss must have the same length; got {arrays[0].size}, {arrays[1].size}, {arrays[2].size}"
        )
    return arrays[0], arrays[1], arrays[2]


class _Objective:
    """Summed Huber of log-loss residuals, scaled by 1/δ for L-BFGS (the scale does not move the optimum)."""

    def __init__(self, law: ScalingLaw, u: np.ndarray, v: np.ndarray, y: np.ndarray, delta: float):
        self.law, self.u, self.v, self.y, self.delta = law, u, v, y, delta

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        pred, jac = self.law.log_loss_and_grad(theta, self.u, self.v)
        value, dvalue = huber(pred - self.y, self.delta)
        total = float(value.sum()) / self.delta
        grad = jac.T @ dvalue / self.delta
        if not math.isfinite(total) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros_like(theta)
        return total, grad


def _screen(law: ScalingLaw, grid: np.ndarray, u, v, y, delta: float, chunk: int = 2048) -> np.ndarray:
    """Summed Huber objective of every grid row (NaN/inf rank last)."""
    out = np.empty(grid.shape[0])
    with np.errstate(all="ignore"):
        for i in range(0, grid.shape[0], chunk):
            pred = law.log_loss(grid[i : i + chunk], u, v)
            out[i : i + chunk] = huber(pred - y, delta)[0].sum(axis=-1)
    return np.where(np.isfinite(out), out, np.inf)


def _minimize(obj: _Objective, start: np.ndarray, bounds, max_iter: int):
    return minimize(
        obj, start, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": max_iter, "ftol": 1e-12, "gtol": 1e-8, "maxcor": 20},
    )  # fmt: skip


def fit_law(
    law: str | ScalingLaw,
    N: Sequence[float] | np.ndarray,
    D: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    heldout: Sequence[bool] | np.ndarray | None = None,
    huber_delta: float = 1e-3,
    starts: np.ndarray | None = None,
    n_starts: int | None = None,
    screen: bool = True,
    seed: int = 0,
    agree_rtol: float = 0.01,
    n_boot: int = 0,
    ci: float = 0.95,
    max_iter: int = 2000,
    progress: bool = False,
) -> FitResult:
    """Fit ``law`` to runs (N parameters, D tokens, loss > 0) outside ``heldout`` (a boolean mask; scored only).

    ``starts`` overrides the law's grid (rows in its fit coordinates). L-BFGS runs from ``n_starts`` of them
    (default: all, at most ``DEFAULT_MAX_STARTS``): with ``screen`` the ones whose objective is already lowest
    (every row is evaluated once, vectorized: cheap, and it finds narrow basins a random draw misses), else a
    seeded random draw. ``n_boot`` > 0 adds bootstrap intervals."""
    law = get_law(law)
    N, D, loss = check_runs(N, D, loss)
    if heldout is None:
        mask = np.zeros(N.size, dtype=bool)
    else:
        mask = np.asarray(heldout)
        if mask.dtype != bool or mask.shape != N.shape:
            raise ValueError(
                f"heldout must be a boolean mask of shape {N.shape}; got {mask.dtype} {mask.shape}"
            )
    if not (isinstance(huber_delta, int | float) and huber_delta > 0 and math.isfinite(huber_delta)):
        raise ValueError(f"huber_delta must be a positive number; got {huber_delta!r}")
    train = ~mask
    n_train = int(train.sum())
    if n_train <= law.n_params:
        raise ValueError(
            f"the {law.name} law has {law.n_params} free constants and needs at least {law.n_params + 1} training "
            f"points; got {n_train} (of {N.size}, {int(mask.sum())} held out)"
        )
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    rng = np.random.default_rng(seed)
    grid = law.init_grid() if starts is None else np.atleast_2d(np.asarray(starts, dtype=np.float64))
    grid_size = grid.shape[0]
    if grid.ndim != 2 or grid.shape[1] != law.n_params:
        raise ValueError(
            f"starts must have {law.n_params} columns ({law.theta_names}); got shape {grid.shape}"
        )
    cap = min(grid.shape[0], DEFAULT_MAX_STARTS) if n_starts is None else n_starts
    if cap < 1:
        raise ValueError(f"n_starts must be >= 1; got {n_starts!r}")

    u, v, y = np.log(N[train]), np.log(D[train]), np.log(loss[train])
    obj = _Objective(law, u, v, y, huber_delta)
    lo = np.array([b[0] for b in law.bounds])
    hi = np.array([b[1] for b in law.bounds])
    grid = np.clip(law.start_theta(grid, u, v, y), lo, hi)
    if cap < grid.shape[0]:
        if screen:
            grid = grid[np.argsort(_screen(law, grid, u, v, y, huber_delta), kind="stable")[:cap]]
        else:
            grid = grid[np.sort(rng.choice(grid.shape[0], size=cap, replace=False))]
    results = []
    for x0 in tqdm(grid, desc=f"fit {law.name}", disable=not progress, leave=False):
        results.append(_minimize(obj, x0, law.bounds, max_iter))
    finals = np.array([r.fun for r in results]) * huber_delta
    best_i = int(np.argmin(finals))
    best = results[best_i]
    best_obj = float(finals[best_i])
    n_agree = int(np.sum(finals <= best_obj * (1 + agree_rtol) + 1e-300))
    theta = np.asarray(best.x, dtype=np.float64)
    span = hi - lo
    at_bounds = [
        name for name, t, a, b, s in zip(law.theta_names, theta, lo, hi, span, strict=True)
        if min(t - a, b - t) <= 1e-6 * max(s, 1.0)
    ]  # fmt: skip
    params = law.to_params(theta)
    pred = np.exp(law.log_loss(theta, np.log(N), np.log(D)))

    boot = None
    boot_thetas: list[list[float]] | None = None
    ident = None
    if n_boot > 0:
        samples = []
        boot_thetas = []
        for _ in tqdm(range(n_boot), desc=f"bootstrap {law.name}", disable=not progress, leave=False):
            idx = rng.integers(0, n_train, n_train)
            res = _minimize(_Objective(law, u[idx], v[idx], y[idx], huber_delta), theta, law.bounds, max_iter)
            if np.all(np.isfinite(res.x)):
                samples.append(law.to_params(res.x))
                boot_thetas.append([float(t) for t in res.x])
        q = (1 - ci) / 2
        boot = {}
        for name in law.param_names:
            vals = np.array([s[name] for s in samples])
            boot[name] = {
                "se": float(np.std(vals, ddof=1)) if vals.size > 1 else None,
                "lo": float(np.quantile(vals, q)) if vals.size else None,
                "hi": float(np.quantile(vals, 1 - q)) if vals.size else None,
                "n": int(vals.size),
            }
        from hf_fundamentals.scaling.schedule import degenerate_constants, identifiability

        on_bound = [t.removeprefix("ln_") for t in at_bounds]
        coords = [t.removeprefix("ln_") for t in law.theta_names]
        free = [n for n in law.param_names if n in coords]
        jac = law.log_loss_and_grad(theta, u, v)[1]
        ident = identifiability(
            {n: params[n] for n in free}, {n: (boot[n]["lo"], boot[n]["hi"]) for n in free}, on_bound,
            degenerate=degenerate_constants(jac, coords),
        )  # fmt: skip

    return FitResult(
        law=law.name,
        params=params,
        theta=[float(t) for t in theta],
        theta_names=list(law.theta_names),
        objective=best_obj,
        huber_delta=float(huber_delta),
        n_train=n_train,
        n_heldout=int(mask.sum()),
        n_starts=int(grid.shape[0]),
        n_agree=n_agree,
        agree_rtol=float(agree_rtol),
        converged=bool(best.success),
        message=str(best.message),
        at_bounds=at_bounds,
        r2_train=r_squared(loss[train], pred[train]),
        r2_heldout=r_squared(loss[mask], pred[mask]),
        rmse_train=_rmse(loss[train], pred[train]),
        rmse_heldout=_rmse(loss[mask], pred[mask]),
        seed=int(seed),
        extra={"screen": bool(screen), "grid_size": int(grid_size)},
        n_boot=int(n_boot),
        ci=float(ci),
        bootstrap=boot,
        identifiability=ident,
        boot_thetas=boot_thetas,
        log_residuals=[float(r) for r in np.log(loss[train]) - np.log(pred[train])],
    )


def profile(
    fit: FitResult,
    N: Sequence[float] | np.ndarray,
    D: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    coordinate: str,
    offsets: Sequence[float],
    *,
    heldout: Sequence[bool] | np.ndarray | None = None,
    max_iter: int = 2000,
) -> list[float]:
    """Profile of the fit's objective along one fit coordinate (e.g. ``ln_b``): for each offset from the fitted
    value, the best objective with that coordinate held there and every other one refitted (L-BFGS-B from the fit).
    A profile that stays flat over several nats means the data do not pin that constant down, whatever a
    bootstrap started at the fit says (Raue et al. 2009, doi:10.1093/bioinformatics/btp358, profile likelihood)."""
    law = fit.scaling_law
    if coordinate not in law.theta_names:
        raise ValueError(
            f"{coordinate!r} is not a fit coordinate of {law.name}; expected one of {law.theta_names}"
        )
    N, D, loss = check_runs(N, D, loss)
    train = np.ones(N.size, dtype=bool) if heldout is None else ~np.asarray(heldout, dtype=bool)
    obj = _Objective(law, np.log(N[train]), np.log(D[train]), np.log(loss[train]), fit.huber_delta)
    i = law.theta_names.index(coordinate)
    out = []
    for off in offsets:
        start = np.array(fit.theta, dtype=np.float64)
        start[i] = float(np.clip(start[i] + off, *law.bounds[i]))
        bounds = list(law.bounds)
        bounds[i] = (start[i], start[i])
        res = _minimize(obj, np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds]), bounds, max_iter)
        out.append(float(res.fun) * fit.huber_delta)
    return out


def load_fits(path: str | Path) -> dict[str, FitResult]:
    """Fits by law name from a ``hff scaling fit --out`` file (``{"fits": {law: ...}}``) or one
    ``FitResult.to_json`` file, so every reader of fit files accepts both."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and "fits" in data:
        return {name: FitResult.from_dict(d) for name, d in data["fits"].items()}
    if isinstance(data, dict) and "law" in data:
        fit = FitResult.from_dict(data)
        return {fit.law: fit}
    raise ValueError(f"{path}: not a fit file (expected {{'fits': {{law: ...}}}} or one FitResult)")
