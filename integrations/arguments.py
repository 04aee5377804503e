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

    hff_order: str = field(
        default="none",
        metadata={
            "help": "Train in a score-based order (arXiv 2605.30334) instead of shuffled: 'saw', 'stair', "
            "'sorting', 'folding', 'zigzag', 'segment' or 'random'; 'none' leaves the trainer alone. The "
            "trainer is switched to sequential reading and refuses to shuffle."
        },
    )
    order_score: str = field(
        default="score",
        metadata={
            "help": "Dataset column with one score per sample to order by (computed if --order_scorer)."
        },
    )
    order_scorer: str = field(
        default="none",
        metadata={
            "help": "Compute --order_score when the column is missing: 'perplexity' (mean token loss under "
            "--order_score_model), 'compression' (zlib compression ratio) or 'none' (the column must exist)."
        },
    )
    order_score_model: str = field(
        default="embedded",
        metadata={"help": "Reference model for --order_scorer perplexity: 'embedded', a Hub id or a path."},
    )
    order_text_column: str = field(
        default="text", metadata={"help": "Column the scorer reads (conversations: their joined contents)."}
    )
    order_ascending: bool = field(
        default=True, metadata={"help": "Low scores first, high scores last (the paper's default)."}
    )
    order_layers: int | None = field(
        default=None,
        metadata={
            "help": "Sweeps of folding/zigzag, or layers inside STR/SAW transitions (default 5 / 3 / 2)."
        },
    )
    order_num_sections: int | None = field(
        default=None, metadata={"help": "STR/SAW sections (default: stair 2, saw 3)."}
    )
    order_transition_ratio: float | None = field(
        default=None,
        metadata={
            "help": "STR/SAW transition radius as a share of the data (default: stair 0.225, saw 0.075)."
        },
    )
    order_window_size: int = field(
        default=0, metadata={"help": "Window jitter: shuffle each run of this many samples (0: off)."}
    )
    order_gumbel_tau: float = field(
        default=0.0, metadata={"help": "Gumbel rank jitter: positions move by tau * Gumbel noise (0: off)."}
    )
    order_domain_column: str | None = field(
        default=None,
        metadata={"help": "Column with a domain label; the window jitter then interleaves domains."},
    )
    order_seed: int = field(
        default=42, metadata={"help": "Seed of the order's random parts (jitter, shuffles)."}
    )
    order_allow_shuffle: bool = field(
        default=False,
        metadata={"help": "Let the trainer reorder the ordered data anyway (a warning instead of an error)."},
    )

    hff_memft: str = field(
        default="none",
        metadata={
            "help": "MemFT loss for memorizing fine-tunes (arXiv 2605.30260): 'ot' (loss only on target tokens "
            "with p < threshold; plain mean when none), 'ot_zero_bp' (no gradient when none), 'sw_sliding' "
            "(long passages: window from the first wrong token), 'sw_curriculum' (growing item prefix; needs "
            "--memft_curriculum_epochs); 'sft' (the plain loss through the MemFT trainer: its logging and "
            "--memft_retire_after); 'none': the usual loss."
        },
    )
    memft_threshold: float = field(
        default=0.5, metadata={"help": "Probability above which a target token counts as learned."}
    )
    memft_window: int = field(default=50, metadata={"help": "sw_sliding window (tokens after the anchor)."})
    memft_position_decay_lambda: float | None = field(
        default=None,
        metadata={"help": "OT: decay the k-th hard token of a row by exp(-lambda k/(n-1)) (off)."},
    )
    memft_hysteresis_high: float | None = field(
        default=None,
        metadata={
            "help": "OT hysteresis: a token leaves the loss at p >= this and re-enters below the threshold "
            "(needs a memft_item_id column)."
        },
    )
    memft_skip_empty_steps: bool = field(
        default=False,
        metadata={"help": "ot_zero_bp/sw_curriculum: skip the optimizer step when no token is active."},
    )
    memft_curriculum_epochs: int | None = field(
        default=None, metadata={"help": "sw_curriculum: number of curriculum epochs (sets the step count)."}
    )
    memft_retire_after: int = field(
        default=0,
        metadata={
            "help": "Retire-when-learned: stop sampling an item once all its target tokens were above the "
            "threshold (hysteresis_high if set) at this many visits in a row; later epochs get shorter and "
            "training stops when every item is retired (0 = off)."
        },
    )
    memft_retire_recheck: bool = field(
        default=True,
        metadata={
            "help": "Recheck retired items by a forward pass at epoch starts; re-admit forgotten ones."
        },
    )

    hff_awd: str = field(
        default="none",
        metadata={
            "help": "Anchored weight decay (arXiv 2605.30148): after each optimizer step pull the trained weights "
            "toward their start, 'l2' (theta0 + (1 - lr*lambda)(theta - theta0)) or 'l1' (soft threshold); 'none'."
        },
    )
    awd_lambda: float = field(
        default=10.0,
        metadata={
            "help": "AWD lambda; the shrink per step is lr*lambda (10 is the paper's for ES at alpha 5e-4)."
        },
    )
    awd_include: str | None = field(
        default=None, metadata={"help": "AWD: regex of parameter names to anchor."}
    )
    awd_exclude: str | None = field(
        default=None, metadata={"help": "AWD: regex of parameter names to leave."}
    )

    hff_mue: str | None = field(
        default=None,
        metadata={
            "help": "Complete-muE (arXiv 2605.23893): a transfer plan JSON written by `hff mue`. The optimizer gets "
            "the plan's per-group AdamW lr/wd/eps/betas (replacing --learning_rate, --weight_decay, --adam_*; the "
            "LR schedule still applies) and the model its forward multipliers. The model must be the plan's target, "
            "built under it (hff mue --save_model, load_mue_model), or add --mue_apply. With --hff_optimizer muon, "
            "Muon's matrices take the plan's global lr (Proposed: the paper covers AdamW only)."
        },
    )
    mue_apply: bool = field(
        default=False,
        metadata={
            "help": "Re-initialize the model under --hff_mue when the trainer is built (plan init stds, normalized "
            "routing): training from scratch. A resumed checkpoint still loads over it."
        },
    )

    hff_attention: str = field(
        default="none",
        metadata={
            "help": "Approximate attention (issue 9): 'blocksparse' (exact softmax over the key blocks a bound "
            "cannot prove negligible; skipped mass <= --attention_eps, certified error kept per call) or "
            "'lowrank' (feature-map attention, no bound); 'none'. Sets attn_implementation to hff_<kind>; calls "
            "with fewer keys than --attention_min_seq_len, and masks it does not handle, run exact sdpa."
        },
    )
    attention_eps: float = field(
        default=1e-3,
        metadata={"help": "blocksparse: bound on the skipped attention mass per query, in [0, 1]."},
    )
    attention_block_size: int = field(default=64, metadata={"help": "blocksparse: key/query block size."})
    attention_min_seq_len: int = field(
        default=4096,
        metadata={"help": "Key length below which every call is exact sdpa (0: always approximate)."},
    )
    attention_feature_map: str = field(
        default="taylor2", metadata={"help": "lowrank: 'taylor2' (degree-2 Taylor) or 'random' (FAVOR+)."}
    )
    attention_rank: int | None = field(
        default=None,
        metadata={"help": "lowrank: number of random features (default 256; taylor2 ignores it)."},
    )

    hff_kd_teacher: str | None = field(
        default=None,
        metadata={
            "help": "Pretraining distillation (arXiv 2605.23857): distil this frozen teacher (a path, Hub id or "
            "'embedded'; same tokenizer as the student) into the trained model with the loss "
            "(1 - kd_alpha) CE + kd_alpha T^2 KL, computed chunk by chunk; logs ce, kd and teacher_ce. "
            "Small, undertrained teachers can help a larger student."
        },
    )
    kd_alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the KD term in [0, 1] (0: plain CE, 1: pure KD); the paper finds weak teachers "
            "want a low alpha (0.2-0.4) and stronger ones 0.6-1.0."
        },
    )
    kd_temperature: float = field(
        default=1.0,
        metadata={"help": "Softmax temperature of the KD term (CE stays at T = 1); the paper's is 1."},
    )
    kd_kl: str = field(
        default="forward",
        metadata={
            "help": "'forward': KL(teacher || student), the paper's; 'reverse': KL(student || teacher)."
        },
    )
    kd_chunk_size: int = field(
        default=1024,
        metadata={
            "help": "Tokens projected to full-vocabulary logits at a time (bounds the logits' memory)."
        },
    )
    kd_teacher_revision: str | None = field(
        default=None, metadata={"help": "Hub revision of the teacher (e.g. an early-checkpoint branch)."}
    )
    kd_teacher_dtype: str = field(
        default="auto",
        metadata={"help": "Teacher dtype: 'auto' (the student's), 'float32', 'bfloat16' or 'float16'."},
    )

    def _refuse_orphan_flags(self, prefix: str, why: str) -> None:
        """Fail when flags named ``prefix*`` differ from their defaults while their switch is off (``why``)."""
        changed = [
            f.name for f in fields(self) if f.name.startswith(prefix) and getattr(self, f.name) != f.default
        ]
        if changed:
            raise ValueError(f"{', '.join('--' + n for n in changed)} {why}")

    def __post_init__(self) -> None:
        if self.hff_cache_dir:
            os.environ["HFF_CACHE"] = os.path.abspath(os.path.expanduser(self.hff_cache_dir))
        if self.hff_optimizer not in ("none", "muon"):
            raise ValueError(f"--hff_optimizer {self.hff_optimizer!r}; accepted: none, muon")
        if self.hff_optimizer != "muon":
            self._refuse_orphan_flags(
                "muon_",
                f"set but --hff_optimizer is "
                f"{self.hff_optimizer!r}; add --hff_optimizer muon (or drop the Muon flags)",
            )
        from hf_fundamentals.ordering import METHODS

        if self.hff_order not in ("none", *METHODS):
            raise ValueError(f"--hff_order {self.hff_order!r}; accepted: none, {', '.join(METHODS)}")
        if self.order_scorer not in ("none", "perplexity", "compression"):
            raise ValueError(f"--order_scorer {self.order_scorer!r}; accepted: none, perplexity, compression")
        from hf_fundamentals.memorization import MODES as MEMFT_MODES

        if self.hff_memft not in ("none", *MEMFT_MODES):
            raise ValueError(f"--hff_memft {self.hff_memft!r}; accepted: none, {', '.join(MEMFT_MODES)}")
        if self.hff_memft == "none":
            self._refuse_orphan_flags(
                "memft_",
                "set but --hff_memft is 'none'; add --hff_memft ot "
                "(or another mode), or drop the MemFT flags",
            )
        else:
            self.memft_config()
            if self.hff_memft == "sw_curriculum" and not self.memft_curriculum_epochs:
                raise ValueError("--hff_memft sw_curriculum needs --memft_curriculum_epochs")
            if self.memft_retire_after and self.hff_order != "none":
                raise ValueError(
                    "--memft_retire_after samples the remaining items in its own shuffled order; it cannot keep "
                    f"the --hff_order {self.hff_order} order (drop one of them)"
                )
        if self.hff_awd not in ("none", "l2", "l1"):
            raise ValueError(f"--hff_awd {self.hff_awd!r}; accepted: none, l2, l1")
        if self.hff_awd == "none":
            self._refuse_orphan_flags("awd_", "set but --hff_awd is 'none'; add --hff_awd l2 (or l1)")
        if self.hff_attention not in ("none", "blocksparse", "lowrank"):
            raise ValueError(f"--hff_attention {self.hff_attention!r}; accepted: none, blocksparse, lowrank")
        if self.hff_attention == "none":
            self._refuse_orphan_flags(
                "attention_",
                "set but --hff_attention is 'none'; add --hff_attention blocksparse (or lowrank)",
            )
        else:
            self.configure_attention()  # bad values fail now, before the model loads
        if self.hff_mue is None:
            self._refuse_orphan_flags(
                "mue_", "set but --hff_mue is not; add --hff_mue PLAN.json (from `hff mue`)"
            )
        else:
            self.mue_plan()  # a missing or broken plan fails now, not after the model has loaded
            if self.hff_optimizer == "muon":
                clash = [
                    f"--{f.name}"
                    for f in fields(self)
                    if f.name in ("muon_lr", "muon_routers", "muon_lora_a", "muon_unknown")
                    and getattr(self, f.name) != f.default
                ]
                if clash:
                    raise ValueError(
                        f"{', '.join(clash)} cannot be used with --hff_mue: the plan sets Muon's lr, keeps routers "
                        "on AdamW and covers full training of known modules only"
                    )
        if self.hff_kd_teacher is None:
            self._refuse_orphan_flags(
                "kd_",
                "set but --hff_kd_teacher is not; add --hff_kd_teacher PATH_OR_ID (or drop the KD flags)",
            )
        else:
            self.kd_config()  # bad values fail now, before any model loads
            if self.kd_teacher_dtype not in ("auto", "float32", "bfloat16", "float16"):
                raise ValueError(
                    f"--kd_teacher_dtype {self.kd_teacher_dtype!r}; accepted: auto, float32, bfloat16, float16"
                )
            if self.hff_memft != "none":
                raise ValueError(
                    "--hff_kd_teacher and --hff_memft both replace the token loss; use one of them"
                )
        if self.hff_order == "none":
            self._refuse_orphan_flags(
                "order_",
                "set but --hff_order is 'none'; add --hff_order "
                "saw (or another method), or drop the ordering flags",
            )
        else:
            self.order_spec()  # validate the knobs now, not after the model has loaded

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

    def mue_plan(self):
        """The :class:`~hf_fundamentals.moe.Plan` in the --hff_mue file (None without --hff_mue)."""
        if self.hff_mue is None:
            return None
        from pathlib import Path

        from hf_fundamentals.moe import Plan

        path = Path(self.hff_mue).expanduser()
        if not path.is_file():
            raise ValueError(
                f"--hff_mue {self.hff_mue!r}: no such file; write a plan with `hff mue ... --out FILE`"
            )
        try:
            return Plan.from_json(path.read_text())
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"--hff_mue {self.hff_mue!r} is not a Complete-muE plan: {err}") from err

    def order_spec(self):
        """The :class:`~hf_fundamentals.ordering.OrderSpec` these flags describe (None with --hff_order none)."""
        from hf_fundamentals.ordering import OrderSpec

        if self.hff_order == "none":
            return None
        return OrderSpec(
            method=self.hff_order,
            ascending=self.order_ascending,
            layers=self.order_layers,
            num_sections=self.order_num_sections,
            transition_ratio=self.order_transition_ratio,
            window_size=self.order_window_size,
            gumbel_tau=self.order_gumbel_tau,
            seed=self.order_seed,
        )

    def memft_config(self):
        """The :class:`~hf_fundamentals.memorization.MemFTConfig` of these flags (None with --hff_memft none)."""
        from hf_fundamentals.memorization import MemFTConfig

        if self.hff_memft == "none":
            return None
        return MemFTConfig(
            mode=self.hff_memft,
            threshold=self.memft_threshold,
            window=self.memft_window,
            position_decay_lambda=self.memft_position_decay_lambda,
            hysteresis_high=self.memft_hysteresis_high,
            skip_empty_steps=self.memft_skip_empty_steps,
            retire_after=self.memft_retire_after,
            retire_recheck=self.memft_retire_recheck,
        )

    def kd_config(self):
        """The :class:`~hf_fundamentals.distill.KDConfig` of these flags (None without --hff_kd_teacher)."""
        if self.hff_kd_teacher is None:
            return None
        from hf_fundamentals.distill import KDConfig

        try:
            return KDConfig(
                alpha=self.kd_alpha,
                temperature=self.kd_temperature,
                kl=self.kd_kl,
                chunk_size=self.kd_chunk_size,
            )
        except ValueError as err:
            raise ValueError(f"--kd_* flags: {err}") from err

    def configure_attention(self) -> str | None:
        """Apply the --attention_* settings in this process (they are module-wide, so every launched process
        must call this) and return the ``attn_implementation`` name, or None without --hff_attention."""
        if self.hff_attention == "none":
            return None
        from hf_fundamentals.integrations.transformers.attention import NAMES, configure_attention

        configure_attention(
            eps=self.attention_eps, block_size=self.attention_block_size, min_seq_len=self.attention_min_seq_len,
            feature_map=self.attention_feature_map, rank=self.attention_rank,
        )  # fmt: skip
        return NAMES[self.hff_attention]

    def enabled_techniques(self) -> list[str]:
        """Names of the techniques these flags switch on (shown in logs so a run says what it changed)."""
        on = []
        if self.hff_optimizer == "muon":
            on.append(f"muon ({self.muon_mode}, {self.muon_ns_method}, adjust_lr={self.muon_adjust_lr})")
        if self.hff_mue is not None:
            how = "re-initialized under the plan" if self.mue_apply else "model as built"
            on.append(f"complete-muE {self.hff_mue} ({how})")
        if self.hff_memft != "none":
            retire = (
                f", retire after {self.memft_retire_after} learned visits" if self.memft_retire_after else ""
            )
            on.append(f"memft {self.hff_memft} (p > {self.memft_threshold:g}{retire})")
        if self.hff_kd_teacher is not None:
            on.append(
                f"distillation from {self.hff_kd_teacher} (alpha {self.kd_alpha:g}, T {self.kd_temperature:g}, "
                f"{self.kd_kl} KL)"
            )
        if self.hff_awd != "none":
            on.append(f"anchored weight decay {self.hff_awd} (lambda {self.awd_lambda:g})")
        if self.hff_order != "none":
            on.append(f"order {self.order_spec().label()} by {self.order_score!r}")
        if self.hff_attention != "none":
            knob = (
                f"eps {self.attention_eps:g}"
                if self.hff_attention == "blocksparse"
                else self.attention_feature_map
            )
            on.append(
                f"attention {self.hff_attention} ({knob}, exact below {self.attention_min_seq_len} keys)"
            )
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
