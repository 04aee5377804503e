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
    attention_kwargs,
    generate_corpus,
)
from hf_fundamentals.integrations.audit.reference import load_reference
from hf_fundamentals.integrations.audit.report import (
    DIAGNOSTIC_MEANINGS,
    NONE_OF_THESE,
    STAND_IN_NOTE,
    diagnostic_lines,
    plot_audit,
    reproduce_command,
    share_rows,
    write_model_card,
)
from hf_fundamentals.integrations.audit.server import OpenAICompletionsBackend, server_bos_text


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def default_output_dir(model: str) -> Path:
    """``audits/<model-slug>`` in the working directory."""
    return Path("audits") / _slug(model)


def _backend(args: AuditArguments):
    if args.server_url:
        import os

        tokenizer = None
        if args.server_bos == "auto":
            from hf_fundamentals.integrations.hub import load_tokenizer

            try:  # the served model's tokenizer says whether prompts need its BOS prepended
                tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
            except (OSError, ValueError):
                tokenizer = None
        return OpenAICompletionsBackend(
            args.server_url,
            args.server_model or args.model,
            api_key=os.environ.get(args.api_key_env),
            concurrency=args.concurrency,
            bos_text=server_bos_text(tokenizer, args.server_bos),
            tokenizer_found=tokenizer is not None if args.server_bos == "auto" else None,
        )
    from hf_fundamentals.integrations.hub import load_model

    model, tokenizer = load_model(
        args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code,
        **attention_kwargs(args.attn_implementation),
    )  # fmt: skip
    if not hasattr(model, "generate"):
        raise ValueError(
            f"model {args.model!r} ({type(model).__name__}) cannot generate text; pass a causal LM"
        )
    return LocalBackend(
        model, tokenizer, name=f"local:{args.model}", sparse_decode_top_p=args.sparse_decode_top_p
    )


def _weights(generations, token_weighted: bool) -> np.ndarray | None:
    if not token_weighted:
        return None
    return np.array([max(g.n_tokens, 1) for g in generations], dtype=float)


def run_audit(args: AuditArguments, *, progress: bool = True, echo=print) -> dict[str, Any]:
    """Run a whole audit as the flags say and return the report dict (also written to ``audit.json``)."""
    started = time.time()
    # a model or server that cannot answer fails now, not after the reference text is built
    server = None
    if args.server_url:
        server = _backend(args)
        server.check()
        if server.bos_text is None and "" in GenerationConfig(prompts=_prompts(args.prompts)).prompt_list():
            if args.server_bos == "auto" and server.tokenizer_found is False:
                raise ValueError(
                    f"--server_bos auto: no tokenizer for --model {args.model!r} here, so the BOS token that an "
                    "empty prompt needs is unknown; pass --server_bos '<bos text>' (e.g. '<|endoftext|>'), "
                    "--server_bos none with a server that adds it, or non-empty --prompts"
                )
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
    backend = server if server is not None else _backend(args)
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
        length_match=args.length_match,
        open_set=args.open_set,
        snippet_anchor=args.resolved_snippet_anchor,
        open_set_shares=args.open_set_shares,
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


__all__ = [
    "DEFAULT_METHOD",
    "DIAGNOSTIC_MEANINGS",
    "NONE_OF_THESE",
    "STAND_IN_NOTE",
    "default_output_dir",
    "diagnostic_lines",
    "reproduce_command",
    "evaluate_against",
    "plot_audit",
    "run_audit",
    "share_rows",
    "write_model_card",
]
