"""Fitted scaling laws against the runs they were fitted to: loss vs tokens per model size, and predicted vs
observed. Held-out points are hollow. Uses matplotlib's object API (Agg canvas), never pyplot's global state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hf_fundamentals.scaling.fit import FitResult, check_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LINESTYLES = ("-", "--", ":", "-.")
MAX_CURVES = 8


def plot_fits(
    fits: Mapping[str, FitResult] | Sequence[FitResult],
    N: Sequence[float] | np.ndarray,
    D: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    heldout: Sequence[bool] | np.ndarray | None = None,
    path: str | Path | None = None,
    title: str | None = None,
    loss_label: str = "loss",
    bands: bool = True,
    band_ci: float = 0.9,
) -> Figure:
    """Two panels: data and each fit's curve for (up to 8) model sizes over tokens (log-log), with its
    ``band_ci`` prediction band when the fit has bootstrap refits, and predicted vs observed loss. Saved to
    ``path`` when given (PNG/PDF by suffix); the Figure is returned."""
    from matplotlib import colormaps  # imported here: ``import hf_fundamentals.scaling`` stays light
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fit_list = list(fits.values()) if isinstance(fits, Mapping) else list(fits)
    N, D, loss = check_runs(N, D, loss)
    held = np.zeros(N.size, dtype=bool) if heldout is None else np.asarray(heldout, dtype=bool)
    sizes = np.unique(N)
    if sizes.size > MAX_CURVES:
        sizes = np.unique(np.quantile(sizes, np.linspace(0, 1, MAX_CURVES), method="nearest"))
    log_n = np.log(N)
    span = max(float(log_n.max() - log_n.min()), 1e-12)
    fig = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2)
    viridis = colormaps["viridis"]
    colors = viridis((log_n - log_n.min()) / span * 0.9)
    ax.scatter(D[~held], loss[~held], c=colors[~held], s=14, label="fitted points")
    if held.any():
        ax.scatter(D[held], loss[held], facecolors="none", edgecolors=colors[held], s=30, label="held out")
    d_grid = np.geomspace(D.min() / 1.5, D.max() * 1.5, 200)
    for n in sizes:
        color = viridis((np.log(n) - log_n.min()) / span * 0.9)
        for k, fit in enumerate(fit_list):
            ax.plot(d_grid, fit.predict(n, d_grid), LINESTYLES[k % len(LINESTYLES)], color=color, lw=1)
            if bands and fit.boot_thetas:
                lo, hi = fit.predict_interval(n, d_grid, ci=band_ci)
                ax.fill_between(d_grid, lo, hi, color=color, alpha=0.12, lw=0)
        if fit_list:
            ax.annotate(
                f"N={n:.3g}", (d_grid[-1], float(fit_list[0].predict(n, d_grid[-1]))), fontsize=7, color=color
            )
    for k, fit in enumerate(fit_list):
        r2 = "" if fit.r2_heldout is None else f", held-out R² {fit.r2_heldout:.3f}"
        ax.plot([], [], LINESTYLES[k % len(LINESTYLES)], color="k", label=f"{fit.law}{r2}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens D")
    ax.set_ylabel(loss_label)
    ax.legend(fontsize=8)
    lo, hi = float(loss.min()) / 1.05, float(loss.max()) * 1.05
    ax2.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
    markers = ("o", "s", "^", "D")
    for k, fit in enumerate(fit_list):
        pred = fit.predict(N, D)
        m = markers[k % len(markers)]
        ax2.scatter(loss[~held], pred[~held], marker=m, s=12, alpha=0.7, label=f"{fit.law} fitted")
        if held.any():
            ax2.scatter(loss[held], pred[held], marker=m, s=36, facecolors="none", edgecolors="k",
                        label=f"{fit.law} held out")  # fmt: skip
    ax2.set_xlabel(f"observed {loss_label}")
    ax2.set_ylabel(f"predicted {loss_label}")
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
