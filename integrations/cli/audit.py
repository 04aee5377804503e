"""``hff audit [MODEL]``: estimate a model's training-data mixture from its generations (LLMSurgeon).

MODEL defaults to the embedded SmolLM2-135M-Instruct and the taxonomy to the built-in offline one. Prints a
table of estimates with intervals and diagnostics and writes audit.json, audit.png and model_card.md.
"""

from __future__ import annotations

import sys


def make_parser():
    """HfArgumentParser over :class:`AuditArguments` (every flag has a help string)."""
    from transformers import HfArgumentParser

    from hf_fundamentals.integrations.audit.flags import AuditArguments

    return HfArgumentParser(AuditArguments, prog="hff audit", description=__doc__)


def parse(argv: list[str]):
    """Parse flags; a leading positional MODEL is taken as ``--model``; ``--config x.yaml`` reads YAML."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--model", argv[0], *argv[1:]]
    parser = make_parser()
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            parser.error("--config needs a YAML file")
        import yaml

        with open(argv[i + 1], encoding="utf-8") as handle:
            defaults = yaml.safe_load(handle) or {}
        parser.set_defaults(**defaults)
        argv = argv[:i] + argv[i + 2 :]
    (args,) = parser.parse_args_into_dataclasses(argv)
    return args


def print_report(report: dict) -> None:
    """The result table (estimate and interval per domain for the default estimator, other estimators beside)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: rich would assume 80 columns and squash the estimators
        console = Console(width=160)
    from hf_fundamentals.integrations.audit.run import DIAGNOSTIC_MEANINGS as MEANS
    from hf_fundamentals.integrations.audit.run import NONE_OF_THESE, STAND_IN_NOTE

    def span(lo: float | None, hi: float | None) -> str:
        return "-" if lo is None or hi is None else f"{100 * lo:.1f}–{100 * hi:.1f}"

    default = report["default_method"]
    methods = [default] + [m for m in report["estimates"] if m != default]
    level = f"{round(100 * report['confidence'])}% interval"
    open_set = report.get("open_set")
    title = f"{report['model']}: estimated training mixture ({report['taxonomy']['name']} taxonomy)"
    if open_set is not None:  # the headline: how much of the output the taxonomy does not cover at all
        console.print(
            f"[bold]{NONE_OF_THESE}: {100 * open_set['share']:.1f}%[/bold] of generations "
            f"({level} {span(open_set['ci_low'], open_set['ci_high'])})  [dim]{MEANS['open_set']}[/dim]"
        )
    if report["taxonomy"]["name"] == "offline":
        console.print(f"[dim]note: {STAND_IN_NOTE}[/dim]")
    table = Table(title=title)
    table.add_column("domain", no_wrap=True)
    if open_set is not None:
        table.add_column(f"{default}, of all (%)", justify="right")
        table.add_column(level, justify="right")
        table.add_column(f"{default}, of in-taxonomy (%)", justify="right", style="dim")
        of_all = open_set["shares_of_all"]
        table.add_row(
            NONE_OF_THESE,
            f"{100 * open_set['share']:.1f}",
            span(open_set["ci_low"], open_set["ci_high"]),
            "-",
        )
        for d in report["domains"]:
            lo = None if of_all["ci_low"] is None else of_all["ci_low"][d]
            hi = None if of_all["ci_high"] is None else of_all["ci_high"][d]
            inside = report["estimates"][default]["point"][d]
            table.add_row(d, f"{100 * of_all['point'][d]:.1f}", span(lo, hi), f"{100 * inside:.1f}")
    else:
        table.add_column(f"{default} (%)", justify="right")
        table.add_column(level, justify="right")
        for m in methods[1:]:
            table.add_column(m, justify="right", style="dim")
        for d in report["domains"]:
            est = report["estimates"][default]
            lo = None if est["ci_low"] is None else est["ci_low"][d]
            hi = None if est["ci_high"] is None else est["ci_high"][d]
            row = [d, f"{100 * est['point'][d]:.1f}", span(lo, hi)]
            row += [f"{100 * report['estimates'][m]['point'][d]:.1f}" for m in methods[1:]]
            table.add_row(*row)
    console.print(table)

    diag, clf = report["diagnostics"], report["classifier_report"]
    cond = diag["condition_number_soft"] or float("inf")
    rows = [
        (f"classifier held-out accuracy {clf['accuracy']:.3f}", MEANS["accuracy"]),
        (
            f"confusion sigma_min (soft) {diag['sigma_min_soft']:.3f}, condition {cond:.1f}",
            MEANS["conditioning"],
        ),
        (
            f"out-of-taxonomy score {diag['out_of_taxonomy_score']:.3f} "
            f"(reference {diag['expected_out_of_taxonomy_score']:.3f})",
            MEANS["out_of_taxonomy"],
        ),
        (f"{report['generations']['used']} generations used, {report['seconds']} s", MEANS["generations"]),
    ]
    for value, meaning in rows:
        console.print(f"{value}  [dim]{meaning}[/dim]")
    for warning in diag["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if "evaluation" in report:
        ev = report["evaluation"]
        console.print(
            "against ground truth: "
            + ", ".join(f"{m} 1-TV {v['overlap_accuracy']:.3f}" for m, v in ev.items() if m != "truth")
        )
    for name, path in report.get("files", {}).items():
        console.print(f"[dim]{name}: {path}[/dim]")


def main(argv: list[str] | None = None) -> int:
    """Run the audit and print its table (errors: :mod:`hf_fundamentals.integrations.cli.errors`)."""
    import warnings

    from hf_fundamentals.audit.estimators import AuditWarning
    from hf_fundamentals.integrations.audit.run import run_audit

    args = parse(sys.argv[1:] if argv is None else argv)
    import datasets

    datasets.disable_progress_bars()  # corpus caching bars would bury the audit's own progress
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuditWarning)  # they are printed with the table instead
        report = run_audit(args, echo=lambda msg: print(msg, file=sys.stderr, flush=True))
    print_report(report)
    return 0
