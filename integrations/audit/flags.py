"""The flags of ``hff audit`` (and of :func:`~hf_fundamentals.integrations.audit.run.run_audit`): ``AuditArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_fundamentals.audit.estimators import DEFAULT_METHOD


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
            "help": f"Default estimator ({DEFAULT_METHOD}, the most accurate in benchmarks/llmscan_mini.py): "
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
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the server's API key, if any."},
    )
    dtype: str | None = field(
        default=None, metadata={"help": "Model dtype for local generation (e.g. bfloat16)."}
    )
    device: str | None = field(default=None, metadata={"help": "Device for local generation (e.g. cuda)."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow the model repo's own Python code to run (off unless you ask)."},
    )
