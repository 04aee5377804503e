"""The flags of ``hff audit`` (and of :func:`~hf_fundamentals.integrations.audit.run.run_audit`): ``AuditArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hf_fundamentals.audit.estimators import DEFAULT_METHOD

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "hff_sparse_decode")
"""What ``--attn_implementation`` accepts for local generation (``hff_sparse_decode``: page-sparse decode
attention, :mod:`hf_fundamentals.integrations.attention.sparse_decode`)."""


@dataclass
class AuditArguments:
    """Flags of ``hff audit`` (and of :func:`hf_fundamentals.integrations.audit.run_audit`).

    The auditor is not a training script, so its flags live apart from ``HffArguments`` (which every
    ``hff sft`` run would otherwise list); the convention is the same: one field, one help string.
    """

    model: str = field(
        default="embedded",
        metadata={
            "help": "Model to audit: 'embedded' (offline SmolLM2-135M-Instruct), a Hub id or a local path."
        },
    )
    taxonomy: str = field(
        default="offline",
        metadata={"help": "Built-in taxonomy name ('offline') or a taxonomy YAML file."},
    )
    n_generations: int = field(default=96, metadata={"help": "How many texts to sample from the model."})
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens per generation."})
    prompts: str = field(
        default="neutral",
        metadata={
            "help": "Prompt preset ('neutral': short generic lead-ins; 'bos': unconditional) or a file "
            "with one prompt per line."
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature (1.0 is the faithful setting)."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (1.0 = off)."})
    batch_size: int = field(default=16, metadata={"help": "Generations per batch (local backend)."})
    estimator: str = field(
        default=DEFAULT_METHOD,
        metadata={
            "help": f"Default estimator ({DEFAULT_METHOD}, the most accurate in benchmarks/audit_llmscan_mini.py): "
            "pacc, mlls_em, acc, rlls, pcc, cc or llmsurgeon_repo (all are "
            "reported; this one leads the table, the plot and the model card)."
        },
    )
    calibration: str = field(
        default="bcts", metadata={"help": "Classifier calibration: bcts, temperature or none."}
    )
    n_bootstrap: int = field(
        default=200, metadata={"help": "Bootstrap replicates for the intervals (0: none)."}
    )
    confidence: float = field(default=0.95, metadata={"help": "Interval confidence level."})
    docs_per_category: int | None = field(
        default=None, metadata={"help": "Reference documents per category (default: the taxonomy's own)."}
    )
    token_weighted: bool = field(
        default=False,
        metadata={"help": "Weight generations by token count (mixture specs are token shares)."},
    )
    open_set: bool = field(
        default=True,
        metadata={
            "help": "Estimate the share of generations that belong to none of the taxonomy's categories (with an "
            "interval), and give the listed shares relative to the rest (its null is always cut to the "
            "generations' lengths)."
        },
    )
    length_match: bool = field(
        default=False,
        metadata={
            "help": "Fit the label-shift correction on reference snippets as long as the generations instead "
            "of whole documents (off by default: on LLMScan-mini's dev zoo whole documents gave the lower error; "
            "see docs/audit.md)."
        },
    )
    snippet_anchor: str = field(
        default="auto",
        metadata={
            "help": "Where the length-matched reference snippets start: 'random' (a random word boundary), "
            "'start' (the document's beginning, like text sampled from BOS), or 'auto' ('start' with --prompts "
            "bos, else 'random')."
        },
    )
    open_set_shares: str = field(
        default="all",
        metadata={
            "help": "With --open_set true, which generations the category shares are estimated on: 'all' (the "
            "closed-set shares, scaled by the in-taxonomy share) or 'typical' (only those the open-set test "
            "keeps as in-taxonomy; better when the foreign text is clearly foreign, worse on LLMScan-mini's dev zoo)."
        },
    )
    seed: int = field(
        default=0, metadata={"help": "Seed for reference sampling, splits, generation and bootstrap."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where to write generations.jsonl, audit.json, audit.png and model_card.md "
            "(default: audits/<model>). Rerunning with the same folder resumes generation."
        },
    )
    ground_truth: str | None = field(
        default=None,
        metadata={
            "help": "Optional category-mixture-v1 YAML with the true mixture: adds an evaluation section."
        },
    )
    server_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible server (vLLM, TGI) to sample from instead of loading the model, "
            "e.g. http://127.0.0.1:8000/v1."
        },
    )
    server_model: str | None = field(
        default=None, metadata={"help": "Model name to send to the server (default: --model)."}
    )
    concurrency: int = field(
        default=4,
        metadata={"help": "Requests in flight at once with --server_url (1: one at a time)."},
    )
    server_bos: str = field(
        default="auto",
        metadata={
            "help": "Text prepended to every prompt sent to --server_url, so an empty (unconditional) prompt is "
            "the BOS token as in local sampling: 'auto' (the BOS of --model's tokenizer, when it has one and "
            "does not add it itself), 'none', or the literal token text (e.g. '<|endoftext|>')."
        },
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the server's API key, if any."},
    )
    dtype: str | None = field(
        default=None, metadata={"help": "Model dtype for local generation (e.g. bfloat16)."}
    )
    device: str | None = field(default=None, metadata={"help": "Device for local generation (e.g. cuda)."})
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention for local generation, passed to from_pretrained: sdpa, eager or hff_sparse_decode "
            "(page-sparse decode attention, generate gets its SparseDecodeCache; docs/attention.md). Default: the "
            "model's own."
        },
    )
    sparse_decode_top_p: float | None = field(
        default=None,
        metadata={
            "help": "With --attn_implementation hff_sparse_decode: the estimated attention mass the kept KV pages "
            "must reach, in (0, 1] (default: the model's setting, 0.99; 1 reads every page). Not --top_p."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow the model repo's own Python code to run (off unless you ask)."},
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Start afresh: delete the generation cache in the output folder first (by default a rerun "
            "resumes from it, and a cache sampled under other settings is refused)."
        },
    )

    MIN_GENERATIONS: ClassVar[int] = 10
    """Fewer usable generations than this cannot be audited (the label-shift correction has nothing to fit)."""

    @property
    def resolved_snippet_anchor(self) -> str:
        """``--snippet_anchor`` with 'auto' resolved: document starts for BOS prompts, random windows else."""
        if self.snippet_anchor == "auto":
            return "start" if self.prompts == "bos" else "random"
        return self.snippet_anchor

    def __post_init__(self) -> None:
        """Check every value before anything slow (model load, reference text, sampling) starts."""
        from pathlib import Path

        from hf_fundamentals.audit.calibration import CALIBRATION_METHODS
        from hf_fundamentals.audit.estimators import ESTIMATORS
        from hf_fundamentals.audit.taxonomy import builtin_taxonomies
        from hf_fundamentals.integrations.audit.generation import PROMPT_PRESETS

        if self.estimator not in ESTIMATORS:
            raise ValueError(f"--estimator {self.estimator!r}; accepted: {', '.join(ESTIMATORS)}")
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(
                f"--calibration {self.calibration!r}; accepted: {', '.join(CALIBRATION_METHODS)}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"--confidence {self.confidence}: must lie strictly between 0 and 1 (e.g. 0.95)")
        if self.n_generations < self.MIN_GENERATIONS:
            raise ValueError(
                f"--n_generations {self.n_generations}: an audit needs at least {self.MIN_GENERATIONS} generations "
                "(1000 give intervals of a few points)"
            )
        for flag, value, low in (("--max_new_tokens", self.max_new_tokens, 1), ("--batch_size", self.batch_size, 1),
                                 ("--n_bootstrap", self.n_bootstrap, 0)):  # fmt: skip
            if value < low:
                raise ValueError(f"{flag} {value}: must be >= {low}")
        if self.docs_per_category is not None and self.docs_per_category < 5:
            raise ValueError(
                f"--docs_per_category {self.docs_per_category}: must be >= 5 (the classifier splits them)"
            )
        if self.temperature <= 0:
            raise ValueError(
                f"--temperature {self.temperature}: must be > 0 (an audit samples; greedy text is not)"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"--top_p {self.top_p}: must lie in (0, 1]")
        if self.prompts not in PROMPT_PRESETS:
            path = Path(self.prompts).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"--prompts {self.prompts!r}: no such file, and not a preset ({', '.join(PROMPT_PRESETS)})"
                )
            if not any(line.strip() for line in path.read_text(encoding="utf-8").splitlines()):
                raise ValueError(f"--prompts {self.prompts!r}: the file has no non-empty line")
        if self.taxonomy not in builtin_taxonomies() and not Path(self.taxonomy).expanduser().is_file():
            raise ValueError(
                f"--taxonomy {self.taxonomy!r}: no such file, and not a built-in ({', '.join(builtin_taxonomies())})"
            )
        if self.ground_truth is not None and not Path(self.ground_truth).expanduser().is_file():
            raise ValueError(f"--ground_truth {self.ground_truth!r}: no such file")
        if self.attn_implementation is not None and self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"--attn_implementation {self.attn_implementation!r}; accepted: {', '.join(ATTN_IMPLEMENTATIONS)}"
            )
        if self.sparse_decode_top_p is not None:
            if self.attn_implementation != "hff_sparse_decode":
                raise ValueError(
                    "--sparse_decode_top_p is only used with --attn_implementation hff_sparse_decode"
                )
            if not 0.0 < self.sparse_decode_top_p <= 1.0:
                raise ValueError(f"--sparse_decode_top_p {self.sparse_decode_top_p}: must lie in (0, 1]")
        if self.server_url is not None:
            if not self.server_url.startswith(("http://", "https://")):
                raise ValueError(f"--server_url {self.server_url!r}: expected http(s)://host:port/v1")
            if self.attn_implementation is not None:
                raise ValueError(
                    "--attn_implementation applies to local generation only; with --server_url the server runs "
                    "its own attention"
                )
            if self.concurrency < 1:
                raise ValueError(f"--concurrency {self.concurrency}: must be >= 1")
        else:
            for flag, value, default in (("--server_model", self.server_model, None),
                                         ("--concurrency", self.concurrency, 4), ("--server_bos", self.server_bos, "auto")):  # fmt: skip
                if value != default:
                    raise ValueError(f"{flag} is only used with --server_url")
        if self.open_set_shares not in ("all", "typical"):
            raise ValueError(f"--open_set_shares {self.open_set_shares!r}: accepted: all, typical")
        if self.open_set_shares != "all" and not self.open_set:
            raise ValueError(
                f"--open_set_shares {self.open_set_shares} needs --open_set true (a closed-set audit uses every generation)"
            )
        if self.snippet_anchor not in ("auto", "random", "start"):
            raise ValueError(f"--snippet_anchor {self.snippet_anchor!r}: accepted: auto, random, start")
        if self.snippet_anchor == "start" and not (self.length_match or self.open_set):
            raise ValueError(
                f"--snippet_anchor {self.snippet_anchor} needs --length_match true or --open_set true (whole documents have no snippets)"
            )
        if self.server_url is None:  # the model is loaded here: a path or id that cannot be one fails now
            from hf_fundamentals.integrations.hub import check_model_reference

            check_model_reference(self.model, flag="--model", network=False)
