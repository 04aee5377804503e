"""``hff scaling``: fit scaling laws (Shannon, Chinchilla, Kaplan) to runs and predict loss and turning points.

    hff scaling fit RUNS.csv|RUNS.json [--law shannon|shannon_ratio|chinchilla|kaplan|shannon_run|all] [--out fit.json] [--plot fig.png]
                    [--heldout "N>6.9e9" "D>1.8e11"]
    hff scaling predict FIT.json --N 1e9 7e9 --D 1e11 3e11 [--law shannon]
    hff scaling predict scaling_law_fit.json --schedule cosine|wsd|constant|linear --steps 2000 --peak_lr 3e-3
                    [--warmup 100] [--decay_steps 400] [--min_lr_ratio 0] [--at 500 1000 2000]

Runs are a CSV with a header, or JSON (a list of objects, or ``{"runs": [...]}``), one row per (model,
checkpoint): parameters (column ``N``, ``params`` or ``model size``), tokens (``D`` or ``tokens``) and loss
(``loss`` or ``eval_loss``); ``--N_column`` etc. name other columns. ``--heldout`` conditions (all must hold)
mark rows that are scored but not fitted; a boolean ``heldout`` column does the same. ``predict`` prints the
loss for every N with every D and the turning points D*(N) and N*(D) (none when the law is monotone). Given the
annealing fit that ``ScalingLawCallback`` writes (``<output_dir>/scaling_law_fit.json``, Tissue et al., arXiv
2408.11029), ``predict --schedule`` predicts the same model's loss curve under another LR schedule, with the fit's
bootstrap prediction interval.
"""

from __future__ import annotations

import argparse
import csv
import json
import operator
import re
import sys
from pathlib import Path

import numpy as np

ALIASES = {
    "N": ("n", "params", "parameters", "model size", "model_size", "num_params"),
    "D": ("d", "tokens", "training tokens", "num_tokens"),
    "loss": ("loss", "eval_loss", "validation loss"),
}
OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
CONDITION = re.compile(r"^\s*(N|D)\s*(<=|>=|<|>|==)\s*([-+0-9.eE]+)\s*$")
LAW_CHOICES = ("shannon", "shannon_ratio", "chinchilla", "kaplan", "shannon_run", "all")
SCHEDULES = ("constant", "cosine", "linear", "wsd")


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``hff scaling fit`` and ``hff scaling predict``."""
    p = argparse.ArgumentParser(prog="hff scaling", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fit", help="fit one or all laws to runs (CSV or JSON)")
    f.add_argument("runs", help="CSV or JSON file of runs (N, D, loss)")
    f.add_argument("--law", choices=LAW_CHOICES, default="all", help="which law to fit (default: all)")
    f.add_argument("--out", default=None, help="write the fits as JSON (input of `hff scaling predict`)")
    f.add_argument("--plot", default=None, help="save a plot of data and fitted curves (PNG/PDF)")
    f.add_argument("--heldout", nargs="+", default=None, metavar="COND",
                   help='rows to score, not fit: conditions like "N>6.9e9" "D>=1.8e11" (all must hold)')  # fmt: skip
    f.add_argument("--N_column", default=None, help="column with parameter counts (default: N/params/...)")
    f.add_argument("--D_column", default=None, help="column with token counts (default: D/tokens)")
    f.add_argument("--loss_column", default=None, help="column with the loss (default: loss/eval_loss)")
    f.add_argument("--huber_delta", type=float, default=1e-3, help="Huber delta on log loss")
    f.add_argument("--n_starts", type=int, default=None, help="L-BFGS starts per law (default: up to 500)")
    f.add_argument("--n_boot", type=int, default=0, help="bootstrap refits for intervals (0: none)")
    f.add_argument("--seed", type=int, default=0, help="seed of the start draw and bootstrap")
    q = sub.add_parser("predict", help="predict loss and turning points from a fit JSON")
    q.add_argument("fit", help="JSON written by `hff scaling fit --out`")
    q.add_argument("--N", type=float, nargs="+", default=None, help="parameter counts")
    q.add_argument("--D", type=float, nargs="+", default=None, help="token counts")
    q.add_argument("--law", default=None, help="which fitted law (default: every law in the file)")
    q.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="with an annealing fit: predict the loss curve under this LR schedule")  # fmt: skip
    q.add_argument("--steps", type=int, default=None, help="--schedule: total optimizer steps")
    q.add_argument("--peak_lr", type=float, default=None, help="--schedule: peak learning rate")
    q.add_argument("--warmup", type=int, default=0, help="--schedule: linear warm-up steps")
    q.add_argument("--decay_steps", type=int, default=None, help="--schedule wsd: decay steps (default 20%%)")
    q.add_argument("--min_lr_ratio", type=float, default=0.0, help="--schedule wsd: final LR / peak LR")
    q.add_argument("--at", type=int, nargs="+", default=None,
                   help="--schedule: steps to print (default: 10 evenly spaced, the last included)")  # fmt: skip
    return p


def _column(header: list[str], key: str, override: str | None) -> str:
    if override is not None:
        if override not in header:
            raise ValueError(f"--{key}_column {override!r} is not a column; columns: {header}")
        return override
    lower = {h.lower().strip(): h for h in header}
    for name in (key.lower(), *ALIASES[key]):
        if name in lower:
            return lower[name]
    names = list(dict.fromkeys([key, *ALIASES[key]]))
    raise ValueError(f"no {key} column: expected one of {names} (or --{key}_column); got {header}")


def load_runs(path: str, columns: dict[str, str | None] | None = None) -> dict[str, np.ndarray]:
    """N, D, loss (and a ``heldout`` mask if the file has one) from a CSV or JSON file of runs."""
    columns = columns or {}
    if not Path(path).is_file():
        raise ValueError(f"{path!r}: no such file (the runs to fit: CSV or JSON with N, D and loss)")
    text = Path(path).read_text()
    if Path(path).suffix.lower() == ".json":
        data = json.loads(text)
        records = data.get("runs") if isinstance(data, dict) else data
        if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{path}: expected a JSON list of run objects or {{'runs': [...]}}")
    else:
        records = list(csv.DictReader(text.splitlines()))
        if not records:
            raise ValueError(f"{path}: no rows under the CSV header")
    header = list(records[0])
    out: dict[str, np.ndarray] = {}
    for key in ("N", "D", "loss"):
        try:
            col = _column(header, key, columns.get(key))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        try:
            out[key] = np.array([float(r[col]) for r in records])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: column {col!r} must be numeric: {err}") from err
    held_col = next((h for h in header if h.lower() == "heldout"), None)
    if held_col is not None:
        out["heldout"] = np.array([str(r[held_col]).strip().lower() in ("1", "true", "yes") for r in records])
    return out


def heldout_mask(N: np.ndarray, D: np.ndarray, conditions: list[str]) -> np.ndarray:
    """Rows where every condition (``N>6.9e9``, ``D<=1e11``, ...) holds."""
    mask = np.ones(N.size, dtype=bool)
    for cond in conditions:
        m = CONDITION.match(cond)
        if m is None:
            raise ValueError(
                f"--heldout {cond!r}: expected N or D, an operator (<, <=, >, >=, ==) and a number"
            )
        var, op, value = m.groups()
        mask &= OPS[op](N if var == "N" else D, float(value))
    return mask


def _fit(args: argparse.Namespace) -> int:
    from hf_fundamentals.scaling import LAWS, fit_law

    runs = load_runs(args.runs, {"N": args.N_column, "D": args.D_column, "loss": args.loss_column})
    N, D, loss = runs["N"], runs["D"], runs["loss"]
    held = heldout_mask(N, D, args.heldout) if args.heldout else runs.get("heldout")
    laws = list(LAWS) if args.law == "all" else [args.law]
    n_held = 0 if held is None else int(held.sum())
    print(f"{N.size} runs ({n_held} held out), {np.unique(N).size} model sizes, "
          f"D {D.min():.3g}-{D.max():.3g} tokens")  # fmt: skip
    fits = {}
    for law in laws:
        fit = fit_law(law, N, D, loss, heldout=held, huber_delta=args.huber_delta, n_starts=args.n_starts,
                      n_boot=args.n_boot, seed=args.seed, progress=sys.stderr.isatty())  # fmt: skip
        fits[law] = fit
        print(fit.summary())
        turning = fit.d_star(float(N.max()))
        print(
            f"  D*(N={N.max():.3g}) = "
            + ("none (monotone in D)" if turning is None else f"{turning:.4g} tokens")
        )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "fits": {k: v.to_dict() for k, v in fits.items()},
            "runs": str(args.runs),
            "heldout": args.heldout,
        }
        out.write_text(json.dumps(payload, indent=1))
        print(f"fits written to {out}")
    if args.plot:
        from hf_fundamentals.scaling import plot_fits

        plot_fits(fits, N, D, loss, heldout=held, path=args.plot, title=Path(args.runs).name)
        print(f"plot saved to {args.plot}")
    return 0


def _predict_schedule(args: argparse.Namespace) -> int:
    from hf_fundamentals.scaling import load_annealing, lr_schedule

    fit = load_annealing(args.fit)
    if args.steps is None or args.peak_lr is None:
        raise ValueError("--schedule needs --steps (total optimizer steps) and --peak_lr")
    lrs = lr_schedule(args.schedule, args.steps, args.peak_lr, warmup_steps=args.warmup,
                      decay_steps=args.decay_steps, min_lr_ratio=args.min_lr_ratio)  # fmt: skip
    at = args.at or sorted({int(round(x)) for x in np.linspace(args.steps / 10, args.steps, 10)})
    if min(at) < 1 or max(at) > args.steps:
        raise ValueError(f"--at steps must lie in 1..{args.steps}; got {min(at)}..{max(at)}")
    pred = fit.predict(lrs, at)
    lo, hi = fit.predict_interval(lrs, at)
    print(fit.summary())
    warm = f", {args.warmup} warm-up" if args.warmup else ""
    print(f"{args.schedule} schedule, peak lr {args.peak_lr:g}, {args.steps} steps{warm}:")
    band = f"{fit.ci:.0%} interval" if fit.boot_thetas else "no interval (fit without bootstrap)"
    for s, p, a, b in zip(at, pred, lo, hi, strict=True):
        print(f"  step {s}: loss {p:.4f}" + (f"  [{a:.4f}, {b:.4f}]" if fit.boot_thetas else ""))
    print(f"  ({band}; fitted on steps {fit.steps[0]}-{fit.steps[-1]} of the original run)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from hf_fundamentals.scaling import load_fits

    if not Path(args.fit).is_file():
        raise ValueError(
            f"{args.fit!r}: no such file (a fit written by `hff scaling fit --out` or ScalingLawCallback)"
        )
    data = json.loads(Path(args.fit).read_text())
    if isinstance(data, dict) and "annealing" in data.get("fits", {}):
        if args.schedule is None:
            raise ValueError(
                f"{args.fit} holds an annealing (single-run) fit: give --schedule, --steps, --peak_lr"
            )
        return _predict_schedule(args)
    if args.schedule is not None:
        raise ValueError(f"--schedule needs an annealing fit (scaling_law_fit.json); {args.fit} holds none")
    if args.N is None or args.D is None:
        raise ValueError("predict needs --N and --D (one or more values each)")
    fits = load_fits(args.fit)
    if args.law is not None:
        if args.law not in fits:
            raise ValueError(f"--law {args.law!r} is not in {args.fit}; it holds {sorted(fits)}")
        fits = {args.law: fits[args.law]}
    for name, fit in fits.items():
        print(f"{name}: {fit.scaling_law.formula}")
        for n in args.N:
            for d in args.D:
                print(f"  N={n:.4g} D={d:.4g}: loss {float(fit.predict(n, d)):.4f}")
        for n in args.N:
            t = fit.d_star(n)
            print(
                f"  D*(N={n:.4g}) = "
                + ("none (loss keeps falling with D)" if t is None else f"{t:.4g} tokens")
            )
        for d in args.D:
            t = fit.n_star(d)
            print(
                f"  N*(D={d:.4g}) = "
                + ("none (loss keeps falling with N)" if t is None else f"{t:.4g} params")
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``fit`` or ``predict``; bad input exits 2 with the reason."""
    args = build_parser().parse_args(argv)
    return _fit(args) if args.action == "fit" else _predict(args)


if __name__ == "__main__":
    raise SystemExit(main())
