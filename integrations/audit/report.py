"""What an audit shows: the bar chart, the diagnostics with their meaning, the table rows and the model card.

Shared by ``run_audit`` (which writes them) and ``hff audit`` (which prints them).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from hf_fundamentals.audit.surgeon import AuditResult
from hf_fundamentals.audit.taxonomy import Taxonomy
from hf_fundamentals.integrations.audit.flags import AuditArguments


def plot_audit(result: AuditResult, taxonomy: Taxonomy, path: Path, title: str = "") -> None:
    """Bar chart of the default estimate with its interval, and the naive classify-and-average (PCC) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = result.default
    names = list(result.domains)
    point, low, high = 100 * est.point, est.ci_low, est.ci_high
    pcc = result.estimates["pcc"].point if "pcc" in result.estimates else None
    ylabel = "share of generations (%)"
    if result.open_set is not None:  # lead with "none of these", then the categories as shares of all
        o, of_all = result.open_set, result.open_set["shares_of_all"]
        names = [NONE_OF_THESE, *names]
        point = 100 * np.array([o["share"], *of_all["point"].values()])
        if of_all["ci_low"] is not None and o["ci_low"] is not None:
            low = np.array([o["ci_low"], *of_all["ci_low"].values()])
            high = np.array([o["ci_high"], *of_all["ci_high"].values()])
        else:
            low = high = None
        pcc = None if pcc is None else np.concatenate([[np.nan], (1.0 - o["share"]) * pcc])
        ylabel = "share of all generations (%)"
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    yerr = None
    if low is not None:
        yerr = np.vstack([point - 100 * low, 100 * high - point]).clip(min=0)
    first = 1 if names[0] == NONE_OF_THESE else 0
    if first:  # the open-set share: its own colour and legend entry (a lower bound, estimated differently)
        ax.bar(x[:1], point[:1], width=0.4, yerr=None if yerr is None else yerr[:, :1], capsize=3, color="0.45",
               label=f"{NONE_OF_THESE} (a lower bound, {result.confidence:.0%} CI)")  # fmt: skip
    ax.bar(
        x[first:] - 0.2,
        point[first:],
        width=0.4,
        yerr=None if yerr is None else yerr[:, first:],
        capsize=3,
        color="C0",
        label=f"{est.method} ({result.confidence:.0%} CI)",
    )
    if pcc is not None and result.default_method != "pcc":
        ax.bar(x + 0.2, 100 * pcc, width=0.4, alpha=0.5, color="C1", label="pcc (uncorrected)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "estimated training mixture", fontsize=10)
    ax.legend(fontsize=8)
    n_warnings = len(result.diagnostics.warnings)
    if n_warnings:  # a chart travels without its JSON: say on it that the audit came with warnings
        ax.set_title(
            f"{title or 'estimated training mixture'}\n{n_warnings} diagnostic warning(s): see audit.json "
            "before trusting these shares",
            fontsize=10,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


NONE_OF_THESE = "none of these"
"""The row name of the out-of-taxonomy share in the CLI table, the plot and the model card."""

STAND_IN_NOTE = (
    "the offline taxonomy's categories are stand-ins built from text on this machine (Debian and Python "
    "corpora), not the web, code, math and chat data real models are trained on: read its shares as a "
    "demonstration, and the 'none of these' share as how much of the model's output they fail to cover "
    "(pass --taxonomy web, or your own YAML, for a real audit)"
)
"""Said with every audit on the built-in offline taxonomy."""

DIAGNOSTIC_MEANINGS = {
    "accuracy": "how often the domain classifier is right on held-out reference text (snippets as long as the "
    "generations when length-matched, whole documents otherwise)",
    "conditioning": "how well the correction can separate the domains: below 0.1, classifier errors are "
    "amplified more than 10x",
    "out_of_taxonomy": "0 when the generations look like the taxonomy's reference text; toward 0.5 when they "
    "are classified less confidently than any reference document (text from no listed domain)",
    "generations": "how many generations the estimate rests on (fewer effective ones with token weights)",
    "open_set": "the share of generations that belong to none of the categories: generations less typical of "
    "the reference text than most reference snippets of the same length (a lower bound; the category shares "
    "are then of the rest)",
}
"""One line on what each printed diagnostic means (the CLI, audit.json and the model card show them)."""


def diagnostic_lines(result: AuditResult) -> list[tuple[str, str]]:
    """``(value line, what it means)`` for each diagnostic of an audit."""
    d = result.diagnostics
    return [
        (
            f"domain classifier held-out accuracy: {result.classifier_report.accuracy:.3f}",
            DIAGNOSTIC_MEANINGS["accuracy"],
        ),
        (
            f"confusion matrix smallest singular value (soft): {d.sigma_min_soft:.3f}; condition number "
            f"{d.condition_number_soft:.1f}",
            DIAGNOSTIC_MEANINGS["conditioning"],
        ),
        (
            f"out-of-taxonomy score: {d.out_of_taxonomy_score:.3f} (reference text: "
            f"{d.expected_out_of_taxonomy_score:.3f})",
            DIAGNOSTIC_MEANINGS["out_of_taxonomy"],
        ),
        (
            f"generations used: {d.n_generations} (effective {d.effective_n_generations:.0f})",
            DIAGNOSTIC_MEANINGS["generations"],
        ),
    ]


def reproduce_command(args: AuditArguments) -> str:
    """The ``hff audit`` command line that reproduces ``args``: the model and every flag that differs from its
    default (what the model card shows)."""
    import shlex
    from dataclasses import fields

    parts = ["hff", "audit", args.model]
    for f in fields(args):
        value = getattr(args, f.name)
        if f.name in ("model", "overwrite") or value == f.default:
            continue
        if isinstance(value, bool):
            parts += [f"--{f.name}", str(value).lower()]
        else:
            parts += [f"--{f.name}", str(value)]
    return shlex.join(parts)


def _diagnostics_text(result: AuditResult) -> str:
    d = result.diagnostics
    lines = [f"- {value} ({meaning})" for value, meaning in diagnostic_lines(result)]
    lines += [f"- **warning:** {w}" for w in d.warnings]
    return "\n".join(lines)


def share_rows(result: AuditResult) -> list[tuple[str, str, str]]:
    """``(name, share, interval)`` per table row: with the open-set share, "none of these" first and every
    category as a share of all generations; otherwise the default estimate as it is."""
    est = result.default

    def fmt(lo: float | None, hi: float | None) -> str:
        return "n/a" if lo is None or hi is None else f"{100 * lo:.1f}–{100 * hi:.1f}%"

    if result.open_set is None:
        return [
            (name, f"{100 * est.point[i]:.1f}%", fmt(*(None, None) if est.ci_low is None else (est.ci_low[i], est.ci_high[i])))
            for i, name in enumerate(result.domains)
        ]  # fmt: skip
    o, of_all = result.open_set, result.open_set["shares_of_all"]
    rows = [(NONE_OF_THESE, f"{100 * o['share']:.1f}%", fmt(o["ci_low"], o["ci_high"]))]
    for name in result.domains:
        lo = None if of_all["ci_low"] is None else of_all["ci_low"][name]
        hi = None if of_all["ci_high"] is None else of_all["ci_high"][name]
        rows.append((name, f"{100 * of_all['point'][name]:.1f}%", fmt(lo, hi)))
    return rows


def _scope_text(result: AuditResult, taxonomy: Taxonomy) -> str:
    if result.open_set is None:
        text = (
            "This is an estimate of the mixture the model *expresses* when sampled, over a fixed list of domains; "
            "text from domains outside the taxonomy is forced into the nearest listed domain."
        )
    else:
        text = (
            f"The first row, {NONE_OF_THESE}, is the share of generations that belong to none of the listed "
            "domains: generations less typical of the reference text than most reference snippets of the same "
            "length. It is a lower bound. The domain rows are shares of all generations."
        )
    if taxonomy.name == "offline":
        text += f" Note: {STAND_IN_NOTE}."
    return text


def write_model_card(result: AuditResult, taxonomy: Taxonomy, args: AuditArguments, path: Path) -> None:
    """Render ``model_cards/audit_section.md`` with huggingface_hub's ``ModelCard``."""
    from huggingface_hub import ModelCard, ModelCardData

    from hf_fundamentals.integrations.hub import EMBEDDED_SOURCE, is_embedded

    rows = [f"| {name} | {share} | {interval} |" for name, share, interval in share_rows(result)]
    model_name = EMBEDDED_SOURCE if is_embedded(args.model) else args.model
    data = ModelCardData(
        tags=["hf_fundamentals", "training-mixture-audit"],
        base_model=None if is_embedded(args.model) or Path(args.model).exists() else args.model,
    )
    template = resources.files("hf_fundamentals.model_cards") / "audit_section.md"
    card = ModelCard.from_template(
        data,
        template_str=template.read_text(encoding="utf-8"),
        model_name=model_name,
        n_generations=result.n_generations,
        taxonomy=taxonomy.name,
        method=result.default_method,
        confidence_pct=round(100 * result.confidence),
        table="\n".join(rows),
        diagnostics=_diagnostics_text(result),
        scope=_scope_text(result, taxonomy),
        command=reproduce_command(args),
    )
    card.save(path)


__all__ = [
    "DIAGNOSTIC_MEANINGS",
    "NONE_OF_THESE",
    "STAND_IN_NOTE",
    "diagnostic_lines",
    "plot_audit",
    "reproduce_command",
    "share_rows",
    "write_model_card",
]
