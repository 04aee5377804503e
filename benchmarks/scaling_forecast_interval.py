"""What the annealing law's forecast interval is: refits of the curves ``scaling_forecast.py`` stored, no training.

    OMP_NUM_THREADS=1 python benchmarks/scaling_forecast_interval.py     # about 90 s on one busy core

The forecast's 90% interval (moving-block bootstrap refits times a resampled residual, λ held at its profiled value)
held the final loss of 0 of the 9 stored runs. Two widenings are measured here, on the curves stored in
``benchmarks/results/scaling_forecast.json`` (eval losses; the LRs rebuilt from the schedule with
``lr_schedule``, the transformers formulas the callback records):

* **λ** (the decay of the annealing momentum, Tissue et al., arXiv 2408.11029, Sec. 3.2): the point forecast of
  every λ of ``DECAY_GRID``, fitted on the same first 40%. A bootstrap that also resamples λ can reach no
  forecast outside this envelope, so a truth outside it cannot be covered by any λ-bootstrap.
* **seed variance** (Choshen et al., arXiv 2410.11840, Sec. 5): the interval widened by the seed-to-seed spread
  of the final loss, ``[lo·e^(−z·s), hi·e^(z·s)]`` with s the relative std over the 3 seeds of that schedule and
  z = 1.645.

Beside them, the coverage the interval reaches when the law is true: 20 synthetic cosine curves (the law with
the constants of ``tests/scaling/test_schedule.py``, 0.2% log-normal noise, λ = 0.999), fitted on the first 40%
with the benchmark's settings (λ profiled), scored on the final loss.
Results: ``benchmarks/results/scaling_forecast_interval.json``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, table  # noqa: E402
from scaling_forecast import rebuilt_lrs  # noqa: E402

from hf_fundamentals.scaling import ANNEALING, DECAY_GRID, annealing_areas, fit_annealing, lr_schedule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIT_FRACTION = 0.4
CI = 0.9
Z = 1.6449
N_SYNTH = 20
N_BOOT_SYNTH = 100
TRUE = {"L0": 1.8, "A": 0.5, "alpha": 0.5, "C": 0.3}
"""The synthetic law (the constants ``tests/scaling/test_schedule.py`` recovers)."""


def run_lrs(run: dict[str, Any], settings: dict[str, Any]) -> np.ndarray:
    """The LR of every update of a stored run, rebuilt from its schedule (WSD decays over the last 20%)."""
    return rebuilt_lrs(run["schedule"], settings["steps"], settings["peak_lr"], settings["warmup_steps"])


def stored_runs(stored: dict[str, Any]) -> dict[str, Any]:
    """λ envelope and seed-widened coverage of every stored run's forecast."""
    settings, runs, fc = stored["settings"], stored["runs"], stored["forecasts"]
    spread = stored["seed_spread_final_loss"]
    rows, out = [], {}
    for key, run in runs.items():
        steps, loss = np.asarray(run["steps"]), np.asarray(run["loss"])
        first = steps <= FIT_FRACTION * steps[-1]
        lrs = run_lrs(run, settings)
        truth = float(loss[-1])
        preds = {}
        for lam in DECAY_GRID:
            fit = fit_annealing(steps[first], loss[first], lrs, decay=lam, n_boot=0)
            preds[str(lam)] = float(fit.predict(lrs, [int(steps[-1])])[0])
        lo_env, hi_env = min(preds.values()), max(preds.values())
        f = fc[key]["annealing"]
        s = spread[run["schedule"]]["rel_std"]
        wlo, whi = f["lo"] * math.exp(-Z * s), f["hi"] * math.exp(Z * s)
        out[key] = {
            "truth": truth, "pred": f["pred"], "interval": [f["lo"], f["hi"]], "lambda_forecasts": preds,
            "lambda_envelope": [lo_env, hi_env], "truth_in_lambda_envelope": bool(lo_env <= truth <= hi_env),
            "seed_rel_std": s, "seed_widened_interval": [wlo, whi], "seed_widened_covers": bool(wlo <= truth <= whi),
            "truth_over_interval_edge": truth / (f["lo"] if truth < f["lo"] else f["hi"]) - 1
            if not f["lo"] <= truth <= f["hi"] else 0.0,
        }  # fmt: skip
        o = out[key]
        rows.append([key, truth, f["pred"], f"{f['lo']:.3f}-{f['hi']:.3f}", f"{lo_env:.3f}-{hi_env:.3f}",
                     "yes" if o["truth_in_lambda_envelope"] else "no", f"{wlo:.3f}-{whi:.3f}",
                     "yes" if o["seed_widened_covers"] else "no"])  # fmt: skip
    print("Stored runs: the forecast of the final loss from the first 40% (annealing law, λ profiled)")
    print(table(rows, ["run", "truth", "forecast", "90% interval", "λ envelope", "truth in it",
                       "+ seed spread", "covers"]))  # fmt: skip
    return out


def synthetic() -> dict[str, Any]:
    """Coverage of the 90% forecast interval on curves the law generated (the law is right, λ unknown)."""
    lrs = lr_schedule("cosine", 1000, 3e-3, warmup_steps=20)
    s1, s2 = annealing_areas(lrs, decay=0.999)
    at = np.arange(25, 1001, 25)
    clean = ANNEALING.predict(TRUE, s1[at - 1], s2[at - 1])
    first = at <= FIT_FRACTION * at[-1]
    hits, errs = [], []
    for seed in range(N_SYNTH):
        noisy = clean * np.exp(np.random.default_rng(100 + seed).normal(0, 0.002, at.size))
        fit = fit_annealing(at[first], noisy[first], lrs, decay="auto", n_boot=N_BOOT_SYNTH, ci=CI, seed=seed)
        lo, hi = (float(x[0]) for x in fit.predict_interval(lrs, [int(at[-1])]))
        hits.append(lo <= clean[-1] <= hi)
        errs.append(abs(float(fit.predict(lrs, [int(at[-1])])[0]) / clean[-1] - 1))
    out = {"coverage": float(np.mean(hits)), "n_curves": N_SYNTH, "n_boot": N_BOOT_SYNTH,
           "mean_abs_rel_err": float(np.mean(errs)), "max_abs_rel_err": float(np.max(errs))}  # fmt: skip
    print(f"\nSynthetic cosine curves (law true, λ = 0.999 unknown to the fit): 90% interval held the final loss "
          f"{sum(hits)}/{N_SYNTH} times; forecast |rel err| mean {out['mean_abs_rel_err']:.2%}, "
          f"max {out['max_abs_rel_err']:.2%}")  # fmt: skip
    return out


def main() -> int:
    t0 = time.time()
    stored = json.loads((RESULTS / "scaling_forecast.json").read_text())
    runs = stored_runs(stored)
    synth = synthetic()
    n = len(runs)
    summary = {
        "interval_covers": sum(abs(r["truth_over_interval_edge"]) == 0 for r in runs.values()) / n,
        "truth_in_lambda_envelope": sum(r["truth_in_lambda_envelope"] for r in runs.values()) / n,
        "seed_widened_covers": sum(r["seed_widened_covers"] for r in runs.values()) / n,
    }
    print(f"\nOf {n} stored runs: interval holds {summary['interval_covers']:.0%}, truth inside the λ envelope "
          f"{summary['truth_in_lambda_envelope']:.0%}, seed-widened interval holds {summary['seed_widened_covers']:.0%}")  # fmt: skip
    result = {
        "benchmark": "scaling_forecast_interval", "summary": summary, "runs": runs, "synthetic": synth,
        "settings": {"fit_fraction": FIT_FRACTION, "ci": CI, "z": Z, "decay_grid": list(DECAY_GRID),
                     "synthetic_law": TRUE, "synthetic_noise": 0.002, "synthetic_schedule": "cosine, 1000 steps, "
                     "peak 3e-3, 20 warm-up, evals every 25", "source": "benchmarks/results/scaling_forecast.json"},
        "seed": "synthetic noise seeds 100-119, bootstrap seeds 0-19", "machine": machine(),
        "seconds": time.time() - t0,
    }  # fmt: skip
    out = RESULTS / "scaling_forecast_interval.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
