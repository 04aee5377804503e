"""``hff lora-capacity``: fit the LoRA memory law to a rank x length sweep and plan the rank you need.

The sweep is a JSON list (or ``{"sweep": [...]}``, as ``benchmarks/results/memorization.json`` holds it) of runs with
``rank``, ``length`` (target tokens memorized), ``delta_l`` (per-token loss before minus after) and
``exact_match``. Prints the fitted dL = C r^alpha l^(-beta) + b with R^2, the measured tokens per rank, and for
``--length`` the smallest rank predicted to reach ``--exact_match``. The law is only as good as the sweep:
plans far outside the swept lengths and ranks are extrapolations and are marked so.
"""

from __future__ import annotations

import argparse
import json


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``hff lora-capacity``."""
    p = argparse.ArgumentParser(prog="hff lora-capacity", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sweep",
        required=True,
        help='JSON file: a list of runs, or {"sweep": [...]}, each run {"rank": 8, "length": 264, "delta_l": 1.9, '
        '"exact_match": 0.96} (target tokens memorized, per-token loss before minus after, exact-match rate)',
    )
    p.add_argument("--length", type=float, nargs="+", default=[], help="target tokens to store (one or more)")
    p.add_argument("--exact_match", type=float, default=0.9, help="exact-match goal in [0, 1]")
    p.add_argument("--json", default=None, help="also write the fit and plans as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """Fit, report and plan."""
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from hf_fundamentals.memorization import fit_memory_law, plan_rank, tokens_per_rank

    path = Path(args.sweep)
    if not path.is_file():
        raise ValueError(f"--sweep {args.sweep!r}: no such file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--sweep {args.sweep!r} is not JSON ({err})") from None
    runs = data.get("sweep") if isinstance(data, dict) else data
    if not isinstance(runs, list) or not runs:
        raise ValueError(
            f'--sweep {args.sweep!r} holds no runs: expected a list of runs or {{"sweep": [...]}} (see --help)'
        )
    if not 0 < args.exact_match <= 1:
        raise ValueError(f"--exact_match {args.exact_match}: must lie in (0, 1]")
    try:
        ranks = [float(r["rank"]) for r in runs]
        lengths = [float(r["length"]) for r in runs]
        delta = [float(r["delta_l"]) for r in runs]
        em = [float(r["exact_match"]) for r in runs]
        fit = fit_memory_law(ranks, lengths, delta)
    except (KeyError, TypeError, ValueError) as err:
        what = f"a run lacks the field {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
        raise ValueError(
            f"--sweep {args.sweep!r}: {what} (each run needs rank, length, delta_l, exact_match)"
        ) from None
    print(
        f"{len(runs)} runs, ranks {sorted(set(int(r) for r in ranks))}, lengths {sorted(set(int(x) for x in lengths))}"
    )
    print(f"dL = {fit.C:.4g} * r^{fit.alpha:.3f} * l^-{fit.beta:.3f} + {fit.b:.3f}   (R^2 {fit.r2:.3f}, "
          f"RMSE {fit.rmse:.3f} nats/token)")  # fmt: skip
    per_rank = tokens_per_rank(ranks, lengths, em, args.exact_match)
    print(f"measured tokens per rank at >= {args.exact_match:.0%} exact match: "
          + (", ".join(f"r={r}: {v:.1f}" for r, v in per_rank.items()) or "no run reached it"))  # fmt: skip
    plans = []
    for length in args.length:
        plan = plan_rank(fit, length, args.exact_match, delta, em)
        plan["extrapolated"] = not (min(lengths) <= length <= max(lengths)) or (
            plan.get("rank") is not None and not (min(ranks) <= plan["rank"] <= max(ranks))
        )
        plans.append(plan)
        if plan.get("rank") is None:
            print(
                f"{length:.0f} tokens at >= {args.exact_match:.0%} exact match: no plan ({plan.get('reason')})"
            )
        else:
            note = " (extrapolated beyond the sweep)" if plan["extrapolated"] else ""
            print(f"{length:.0f} tokens at >= {args.exact_match:.0%} exact match: rank {plan['rank']} "
                  f"(law: {plan['rank_from_law']:.1f}; needs dL >= {plan['delta_l_needed']:.2f}){note}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"fit": fit.to_dict(), "tokens_per_rank": per_rank, "plans": plans}, fh, indent=1)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
