"""``hff order``: what each training order does to a dataset, before you train on it.

Reads a dataset (a local .json/.jsonl/.csv/.parquet/.txt file, a folder or a Hub id), takes its score column
or computes one (``--scorer``), and prints the guideline metrics (G1 boundaries, G2 sweeps/resets, G3 largest
step-to-step jump, G4 within-batch spread and domain runs) for each method; ``--plot`` draws score (and
domain) along each order, ``--save_to`` writes the dataset in the first method's order.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``hff order``."""
    from hf_fundamentals.ordering import METHODS

    p = argparse.ArgumentParser(prog="hff order", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", required=True, help="local data file or folder, or a Hub dataset id")
    p.add_argument("--split", default="train", help="dataset split")
    p.add_argument("--score", default="score", help="column with one score per sample")
    p.add_argument("--scorer", choices=["none", "model_nll", "perplexity", "compression"], default="none",
                   help="compute --score when the column is missing (model_nll: mean token loss under "
                   "--score_model, batched, cached and resumable; perplexity is its older name)")  # fmt: skip
    p.add_argument("--score_model", default="embedded", help="reference model for --scorer model_nll")
    p.add_argument("--score_batch_size", type=int, default=16, help="texts per forward pass (model_nll)")
    p.add_argument("--score_max_length", type=int, default=512, help="tokens kept per text (model_nll)")
    p.add_argument("--score_cache_dir", default=None,
                   help="where model_nll writes its score chunks (default: <hff cache>/scores)")  # fmt: skip
    p.add_argument("--text_column", default="text", help="column the scorer reads")
    p.add_argument("--methods", nargs="+", default=["random", "sorting", "stair", "saw"], choices=METHODS,
                   help="orders to compare (the first one is saved by --save_to)")  # fmt: skip
    p.add_argument("--descending", action="store_true", help="high scores first (default: low first)")
    p.add_argument("--window_size", type=int, default=0, help="window jitter (0: off)")
    p.add_argument("--domain_column", default=None, help="domain labels: domain-aware jitter and runs")
    p.add_argument("--batch_size", type=int, default=32, help="global batch the metrics are computed over")
    p.add_argument("--seed", type=int, default=42, help="seed of the orders' random parts")
    p.add_argument("--plot", default=None, help="save a plot of score along each order (PNG)")
    p.add_argument("--save_to", default=None, help="write the dataset in the first method's order here")
    p.add_argument("--json", default=None, help="also write the metrics as JSON")
    return p


def load_split(name: str, split: str):
    """A local file by extension (offline), else ``load_dataset(name, split=split)``."""
    from datasets import load_dataset

    from hf_fundamentals.integrations.cli.data import load_local_file

    local = load_local_file(name, split=split)
    return local if local is not None else load_dataset(name, split=split)


def main(argv: list[str] | None = None) -> int:
    """Print the guideline metrics of each order (and optionally plot / save)."""
    args = build_parser().parse_args(argv)
    import numpy as np

    from hf_fundamentals.integrations.cli.data import check_dataset
    from hf_fundamentals.integrations.ordering.datasets import add_score_column, order_dataset, plot_orders
    from hf_fundamentals.ordering import OrderSpec, order_indices
    from hf_fundamentals.ordering.guidelines import GuidelineReport, guideline_metrics

    if args.batch_size < 1:
        raise ValueError(f"--batch_size {args.batch_size}: must be >= 1")
    if args.window_size < 0:
        raise ValueError(f"--window_size {args.window_size}: must be >= 0")
    local = check_dataset(args.dataset_name, split=args.split)
    ds = local if local is not None else load_split(args.dataset_name, args.split)
    if args.score not in ds.column_names:
        if args.scorer == "none":
            raise ValueError(
                f"--score {args.score!r} is not a column of {args.dataset_name} (columns: {ds.column_names}); pass "
                "--score COLUMN, or --scorer model_nll|compression to compute it"
            )
        if args.text_column not in ds.column_names:
            raise ValueError(
                f"--text_column {args.text_column!r} is not a column of {args.dataset_name} (columns: "
                f"{ds.column_names}); the scorer reads it"
            )
        extra = {}
        if args.scorer in ("model_nll", "perplexity"):
            extra = dict(batch_size=args.score_batch_size, max_length=args.score_max_length,
                         cache_dir=args.score_cache_dir)  # fmt: skip
        ds = add_score_column(ds, args.scorer, text_column=args.text_column, column=args.score,
                              model=args.score_model, **extra)  # fmt: skip
    scores = np.asarray(ds[args.score], dtype=np.float64)
    domains = np.asarray(ds[args.domain_column]) if args.domain_column else None
    specs = {m: OrderSpec(method=m, ascending=not args.descending, window_size=args.window_size, seed=args.seed)
             for m in args.methods}  # fmt: skip
    orders = {spec.label(): order_indices(scores, spec, domains=domains) for spec in specs.values()}
    reports = {
        label: guideline_metrics(o, scores, args.batch_size, domains=domains) for label, o in orders.items()
    }
    shown = [f.name for f in fields(GuidelineReport) if f.name not in ("n", "batch_size", "block_size")]
    if domains is None:
        shown = [s for s in shown if "domain" not in s]
    header = ["order", *shown]
    rows = [[label] + [f"{getattr(r, k):.3f}" if isinstance(getattr(r, k), float) else str(getattr(r, k))
                       for k in shown] for label, r in reports.items()]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"{len(scores):,} samples, score {args.score!r}, global batch {args.batch_size}")
    if len(scores) <= args.batch_size:
        print(
            f"warning: {len(scores)} samples fit in one batch of {args.batch_size}: there is no batch-to-batch "
            "step, so the jump and spread metrics read 0; pass a smaller --batch_size or more data",
            file=sys.stderr,
        )
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    if args.plot:
        plot_orders(orders, scores if not args.descending else -scores, args.plot, domains=domains)
        print(f"plot written to {args.plot}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({label: r.to_dict() for label, r in reports.items()}, fh, indent=1)
        print(f"metrics written to {args.json}")
    if args.save_to:
        first = specs[args.methods[0]]
        ordered = order_dataset(ds, first, score_column=args.score, domain_column=args.domain_column)
        if args.save_to.endswith((".json", ".jsonl")):
            ordered.to_json(args.save_to)
        else:
            ordered.save_to_disk(args.save_to)
        print(f"{first.label()} order written to {args.save_to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
