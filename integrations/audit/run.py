"""``run_audit``: sample a model, classify its generations, estimate its training mixture, write the report.

Outputs in ``output_dir``: ``generations.jsonl`` (resumable cache), ``audit.json`` (everything), ``audit.png``
(bar chart with intervals) and ``model_card.md`` (a model-card section rendered with huggingface_hub).
"""

from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hf_fundamentals.audit.metrics import ci_coverage, max_abs_error, overlap_accuracy
from hf_fundamentals.audit.surgeon import DEFAULT_METHOD, AuditResult, MixtureAuditor
from hf_fundamentals.audit.taxonomy import Taxonomy, load_mixture_spec, load_taxonomy
from hf_fundamentals.integrations.audit.flags import AuditArguments
from hf_fundamentals.integrations.audit.generation import (
    GenerationConfig,
    LocalBackend,
    OpenAICompletionsBackend,
    generate_corpus,
)
from hf_fundamentals.integrations.audit.reference import load_reference


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def default_output_dir(model: str) -> Path:
    """``audits/<model-slug>`` in the working directory."""
    return Path("audits") / _slug(model)


def _backend(args: AuditArguments):
    if args.server_url:
        import os

        return OpenAICompletionsBackend(
            args.server_url, args.server_model or args.model, api_key=os.environ.get(args.api_key_env)
        )
    from hf_fundamentals.integrations.hub import load_model

    model, tokenizer = load_model(
        args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code
    )
    if not hasattr(model, "generate"):
        raise ValueError(
            f"model {args.model!r} ({type(model).__name__}) cannot generate text; pass a causal LM"
        )
    return LocalBackend(model, tokenizer, name=f"local:{args.model}")


def _weights(generations, token_weighted: bool) -> np.ndarray | None:
    if not token_weighted:
        return None
    return np.array([max(g.n_tokens, 1) for g in generations], dtype=float)


def run_audit(args: AuditArguments, *, progress: bool = True, echo=print) -> dict[str, Any]:
    """Run a whole audit as the flags say and return the report dict (also written to ``audit.json``)."""
    started = time.time()
    # a model or server that cannot answer fails now, not after the reference text is built
    if args.server_url:
        server = _backend(args)
        server.check()
    else:
        from hf_fundamentals.integrations.hub import check_model_reference

        check_model_reference(args.model, flag="--model")
    taxonomy = load_taxonomy(args.taxonomy)
    out_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.model)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / "generations.jsonl"
    if args.overwrite and cache.exists():
        cache.unlink()
        echo(f"[audit] --overwrite: removed {cache}")

    echo(f"[audit] reference text for {len(taxonomy.names)} categories of taxonomy {taxonomy.name!r}")
    texts, labels = load_reference(taxonomy, args.docs_per_category, seed=args.seed)
    auditor = MixtureAuditor(calibration=args.calibration, seed=args.seed)
    auditor.fit(texts, labels, domains=taxonomy.names)
    report = auditor.reference.report
    n_held_out = report.split_sizes.get("confusion", 0)
    echo(f"[audit] domain classifier: held-out accuracy {report.accuracy:.3f} on {n_held_out} documents")

    config = GenerationConfig(
        n=args.n_generations,
        max_new_tokens=args.max_new_tokens,
        prompts=_prompts(args.prompts),
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    backend = _backend(args)
    echo(f"[audit] sampling {config.n} generations from {backend.name} (cache: {cache})")
    try:
        generations = generate_corpus(backend, config, cache, progress=progress)
    except KeyboardInterrupt:
        from hf_fundamentals.integrations.cli.errors import Interrupted

        raise Interrupted(
            f"the generations finished so far are kept in {cache}; rerun the same command to continue from them"
        ) from None
    usable = [g for g in generations if len(g.text.strip()) >= config.min_chars]
    if len(usable) < max(AuditArguments.MIN_GENERATIONS, len(generations) // 4):
        raise ValueError(
            f"only {len(usable)} of {len(generations)} generations have >= {config.min_chars} characters: the "
            "model stops too early to be audited; raise --max_new_tokens, or use --prompts neutral"
        )
    weights = _weights(usable, args.token_weighted)
    result = auditor.audit(
        [g.text for g in usable],
        default_method=args.estimator,
        n_bootstrap=args.n_bootstrap,
        confidence=args.confidence,
        weights=weights,
        seed=args.seed,
    )
    report_dict = _report(
        args, taxonomy, result, len(generations), [g.id for g in usable], time.time() - started
    )
    if args.ground_truth:
        report_dict["evaluation"] = evaluate_against(result, taxonomy, args.ground_truth)
    (out_dir / "audit.json").write_text(json.dumps(report_dict, indent=2))
    plot_audit(result, taxonomy, out_dir / "audit.png", title=f"{args.model}: estimated training mixture")
    write_model_card(result, taxonomy, args, out_dir / "model_card.md")
    report_dict["files"] = {
        name: str(out_dir / name)
        for name in ("generations.jsonl", "audit.json", "audit.png", "model_card.md")
    }
    return report_dict


def _prompts(value: str) -> str | list[str]:
    """A preset name, or a text file with one prompt per line."""
    path = Path(value).expanduser()
    if path.is_file():
        prompts = [
            line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        if not prompts:
            raise ValueError(f"prompts file {str(path)!r} has no non-empty line")
        return prompts
    return value


def _report(
    args: AuditArguments,
    taxonomy: Taxonomy,
    result: AuditResult,
    n_gen: int,
    used_ids: list[int],
    seconds: float,
) -> dict[str, Any]:
    report = result.to_dict()
    reported = taxonomy.reported_names()
    if taxonomy.merges:
        report["merged"] = {
            m: {
                "point": dict(zip(reported, taxonomy.merge(e.point).tolist(), strict=True)),
            }
            for m, e in result.estimates.items()
        }
    report["model"] = args.model
    report["taxonomy"] = {"name": taxonomy.name, "categories": taxonomy.names, "merges": taxonomy.merges}
    # which cached generations were classified (the rest were too short): ids into generations.jsonl
    report["generations"] = {"requested": n_gen, "used": len(used_ids), "used_ids": used_ids}
    report["arguments"] = asdict(args)
    report["command"] = reproduce_command(args)
    report["diagnostics_explained"] = dict(DIAGNOSTIC_MEANINGS)
    report["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    report["seconds"] = round(seconds, 1)
    return report


def evaluate_against(result: AuditResult, taxonomy: Taxonomy, spec_path: str) -> dict[str, Any]:
    """Score every estimator against a ground-truth mixture spec (1 - TV, max abs error, CI coverage)."""
    truth = load_mixture_spec(spec_path).vector(taxonomy)
    out: dict[str, Any] = {"truth": dict(zip(taxonomy.reported_names(), truth.tolist(), strict=True))}
    for method, est in result.estimates.items():
        point = taxonomy.merge(est.point)
        row = {
            "overlap_accuracy": float(overlap_accuracy(point, truth)),
            "max_abs_error_points": 100 * float(max_abs_error(point, truth)),
        }
        if est.ci_low is not None and not taxonomy.merges:
            row["ci_coverage"] = float(ci_coverage(est.ci_low, est.ci_high, truth))
        out[method] = row
    return out


def plot_audit(result: AuditResult, taxonomy: Taxonomy, path: Path, title: str = "") -> None:
    """Bar chart of the default estimate with its interval, and the naive classify-and-average (PCC) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = result.default
    names = list(result.domains)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    point = 100 * est.point
    yerr = None
    if est.ci_low is not None:
        yerr = np.vstack([point - 100 * est.ci_low, 100 * est.ci_high - point]).clip(min=0)
    ax.bar(
        x - 0.2, point, width=0.4, yerr=yerr, capsize=3, label=f"{est.method} ({result.confidence:.0%} CI)"
    )
    if "pcc" in result.estimates and result.default_method != "pcc":
        ax.bar(x + 0.2, 100 * result.estimates["pcc"].point, width=0.4, alpha=0.5, label="pcc (uncorrected)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("share of generations (%)")
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


DIAGNOSTIC_MEANINGS = {
    "accuracy": "how often the domain classifier is right on held-out reference documents",
    "conditioning": "how well the correction can separate the domains: below 0.1, classifier errors are "
    "amplified more than 10x",
    "out_of_taxonomy": "0 when the generations look like the taxonomy's reference text; toward 0.5 when they "
    "are classified less confidently than any reference document (text from no listed domain)",
    "generations": "how many generations the estimate rests on (fewer effective ones with token weights)",
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


def write_model_card(result: AuditResult, taxonomy: Taxonomy, args: AuditArguments, path: Path) -> None:
    """Render ``model_cards/audit_section.md`` with huggingface_hub's ``ModelCard``."""
    from huggingface_hub import ModelCard, ModelCardData

    from hf_fundamentals.integrations.hub import EMBEDDED_SOURCE, is_embedded

    est = result.default
    rows = []
    for i, name in enumerate(result.domains):
        interval = "n/a" if est.ci_low is None else f"{100 * est.ci_low[i]:.1f}–{100 * est.ci_high[i]:.1f}%"
        rows.append(f"| {name} | {100 * est.point[i]:.1f}% | {interval} |")
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
        command=reproduce_command(args),
    )
    card.save(path)


__all__ = [
    "DEFAULT_METHOD",
    "DIAGNOSTIC_MEANINGS",
    "default_output_dir",
    "diagnostic_lines",
    "reproduce_command",
    "evaluate_against",
    "plot_audit",
    "run_audit",
    "write_model_card",
]
