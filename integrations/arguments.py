"""``HffArguments``: every hf_fundamentals training flag, one dataclass.

The same dataclass is parsed next to ``TrainingArguments`` by ``HfArgumentParser`` and next to TRL's configs
by ``TrlParser`` (``hff sft``), read from YAML via ``--config``, and built directly in Python. Each technique
adds its fields here with an ``hff_``-free, technique-prefixed name and a help string; a flag that is set
but cannot take effect fails loudly rather than being ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from hf_fundamentals.audit.estimators import DEFAULT_METHOD


@dataclass
class HffArguments:
    """Flags that switch hf_fundamentals techniques on in a Trainer or TRL script."""

    hff_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder where hf_fundamentals caches what it computes once (the dequantized embedded model, "
            "corpora, audit generations). Default: $HFF_CACHE or ~/.cache/hf_fundamentals."
        },
    )

    hff_optimizer: str = field(
        default="none",
        metadata={
            "help": "'muon': MuonAdamW (Muon on hidden matrices and per MoE expert, AdamW on embeddings, heads, "
            "norms, biases, routers), with the run's learning_rate/weight_decay/adam_* carried over. "
            "'none': the Trainer's --optim."
        },
    )
    muon_mode: str = field(
        default="polar",
        metadata={
            "help": "Muon's map: 'polar' (Newton-Schulz, standard Muon), 'regularized' (smoothed polar map "
            "M (M^T M + eps s_max^2 I)^(-1/2), arXiv 2605.23871; knob --muon_reg_eps) or 'htmuon' "
            "(U S^p V^T; knob --muon_ht_power)."
        },
    )
    muon_ns_method: str = field(
        default="quintic",
        metadata={"help": "Newton-Schulz schedule: 'quintic' (Keller Jordan) or 'polar_express'."},
    )
    muon_ns_steps: int = field(default=5, metadata={"help": "Newton-Schulz iterations."})
    muon_ns_dtype: str = field(
        default="auto",
        metadata={
            "help": "Newton-Schulz dtype: 'auto' (bf16 on GPU, fp32 on CPU where bf16 matmul is ~10x slower), "
            "'bfloat16', 'float16' or 'float32'."
        },
    )
    muon_adjust_lr: str = field(
        default="match_rms_adamw",
        metadata={
            "help": "Per-matrix lr scale: 'match_rms_adamw' (0.2*sqrt(max(out,in)); AdamW-tuned lr/wd carry over), "
            "'original' (sqrt(max(1,out/in)), Keller/torch), 'spectral_norm' (sqrt(out/in)) or 'none'."
        },
    )
    muon_lr: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the Muon groups (default: --learning_rate, right for match_rms_adamw)."
        },
    )
    muon_momentum: float = field(default=0.95, metadata={"help": "Muon momentum (EMA)."})
    muon_nesterov: bool = field(default=True, metadata={"help": "Nesterov momentum input for Muon."})
    muon_reg_eps: float = field(
        default=1e-2,
        metadata={
            "help": "Regularized Muon's eps, relative to the top singular value squared: directions weaker "
            "than about sqrt(eps) of the strongest get damped steps (only with --muon_mode regularized)."
        },
    )
    muon_ht_power: float = field(
        default=0.125, metadata={"help": "HTMuon's power p in [0, 1] (only with --muon_mode htmuon)."}
    )
    muon_lora_a: str = field(
        default="adamw", metadata={"help": "Optimizer for LoRA A matrices: 'adamw' (default) or 'muon'."}
    )
    muon_routers: str = field(
        default="adamw", metadata={"help": "Optimizer for MoE router weights: 'adamw' (default) or 'muon'."}
    )
    muon_unknown: str = field(
        default="error",
        metadata={
            "help": "Tensors no routing rule recognizes: 'error' (default; the message lists them), 'adamw' or "
            "'muon'."
        },
    )

    def __post_init__(self) -> None:
        if self.hff_cache_dir:
            os.environ["HFF_CACHE"] = os.path.abspath(os.path.expanduser(self.hff_cache_dir))
        if self.hff_optimizer not in ("none", "muon"):
            raise ValueError(f"--hff_optimizer {self.hff_optimizer!r}; accepted: none, muon")
        if self.hff_optimizer != "muon":
            changed = [
                f.name
                for f in fields(self)
                if f.name.startswith("muon_") and getattr(self, f.name) != f.default
            ]
            if changed:
                raise ValueError(
                    f"{', '.join('--' + n for n in changed)} set but --hff_optimizer is "
                    f"{self.hff_optimizer!r}; add --hff_optimizer muon (or drop the Muon flags)"
                )

    def muon_kwargs(self) -> dict:
        """The :class:`~hf_fundamentals.integrations.transformers.muon.MuonFactory` keywords these flags set."""
        return {
            "mode": self.muon_mode,
            "ns_method": self.muon_ns_method,
            "ns_steps": self.muon_ns_steps,
            "ns_dtype": self.muon_ns_dtype,
            "adjust_lr": self.muon_adjust_lr,
            "muon_lr": self.muon_lr,
            "momentum": self.muon_momentum,
            "nesterov": self.muon_nesterov,
            "reg_eps": self.muon_reg_eps,
            "ht_power": self.muon_ht_power,
            "lora_a": self.muon_lora_a,
            "routers": self.muon_routers,
            "unknown": self.muon_unknown,
        }

    def enabled_techniques(self) -> list[str]:
        """Names of the techniques these flags switch on (shown in logs so a run says what it changed)."""
        on = []
        if self.hff_optimizer == "muon":
            on.append(f"muon ({self.muon_mode}, {self.muon_ns_method}, adjust_lr={self.muon_adjust_lr})")
        return on


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
