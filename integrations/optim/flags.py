"""``--hff_optimizer muon`` and the ``--muon_*`` flags (Muon for the Trainer and TRL trainers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_fundamentals.integrations.registry import FlagGroup


@dataclass
class OptimFlags(FlagGroup):
    """Muon: MuonAdamW on hidden matrices and per MoE expert, AdamW on the rest, from the run's AdamW settings."""

    switch = "hff_optimizer"
    switch_hint = "add --hff_optimizer muon (or drop the Muon flags)"

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
    muon_gram_ns: str = field(
        default="auto",
        metadata={
            "help": "Gram Newton-Schulz (iterate on the small Gram side, restarted every 3 steps) where it saves "
            "FLOPs (aspect ratio above 2.5 at 5 steps): 'auto' (when NS runs in fp32), 'on' or 'off'."
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

    def check_flags(self) -> None:
        if self.hff_optimizer not in ("none", "muon"):
            raise ValueError(f"--hff_optimizer {self.hff_optimizer!r}; accepted: none, muon")
        if self.hff_optimizer == "none":
            return
        from hf_fundamentals.optim.muon import ADJUST_LR, MODES
        from hf_fundamentals.optim.newton_schulz import NS_METHODS

        choices = {
            "muon_mode": MODES,
            "muon_ns_method": NS_METHODS,
            "muon_ns_dtype": ("auto", "bfloat16", "float16", "float32"),
            "muon_gram_ns": ("auto", "on", "off"),
            "muon_adjust_lr": ADJUST_LR,
            "muon_lora_a": ("adamw", "muon"),
            "muon_routers": ("adamw", "muon"),
            "muon_unknown": ("error", "adamw", "muon"),
        }
        for name, accepted in choices.items():
            if getattr(self, name) not in accepted:
                raise ValueError(f"--{name} {getattr(self, name)!r}; accepted: {', '.join(accepted)}")
        if self.muon_ns_steps < 1:
            raise ValueError(f"--muon_ns_steps {self.muon_ns_steps}: must be >= 1")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise ValueError(f"--muon_momentum {self.muon_momentum}: must lie in [0, 1)")
        if self.muon_lr is not None and self.muon_lr <= 0:
            raise ValueError(f"--muon_lr {self.muon_lr}: must be > 0")
        if self.muon_reg_eps <= 0:
            raise ValueError(f"--muon_reg_eps {self.muon_reg_eps}: must be > 0")
        if not 0.0 <= self.muon_ht_power <= 1.0:
            raise ValueError(f"--muon_ht_power {self.muon_ht_power}: must lie in [0, 1]")
        for name, mode in (("muon_reg_eps", "regularized"), ("muon_ht_power", "htmuon")):
            field_default = type(self).__dataclass_fields__[name].default
            if getattr(self, name) != field_default and self.muon_mode != mode:
                raise ValueError(f"--{name} only acts with --muon_mode {mode} (now {self.muon_mode!r})")

    def muon_kwargs(self) -> dict[str, Any]:
        """The :class:`~hf_fundamentals.integrations.optim.factory.MuonFactory` keywords these flags set."""
        return {
            "mode": self.muon_mode,
            "ns_method": self.muon_ns_method,
            "ns_steps": self.muon_ns_steps,
            "ns_dtype": self.muon_ns_dtype,
            "gram_ns": self.muon_gram_ns,
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
