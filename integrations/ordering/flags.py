"""``--hff_order`` and the ``--order_*`` flags (train in a score-based order, arXiv 2605.30334), and
``--hff_average`` with its ``--hff_average_*`` flags (weight averaging, which goes with an order: arXiv
2511.18903). Each switch guards its own flags: averaging works with or without an order."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_fundamentals.integrations.registry import FlagGroup


@dataclass
class AveragingFlags(FlagGroup):
    """Keep a last-k or EMA average of the weights and make it the final model."""

    switch = "hff_average"
    switch_hint = "add --hff_average last_k (or ema), or drop the --hff_average_* flags"

    hff_average: str = field(
        default="none",
        metadata={
            "help": "Average the trainable weights during training: 'last_k' (uniform average of the last "
            "--hff_average_k snapshots, --hff_average_every steps apart), 'ema' (exponential moving average, "
            "--hff_ema_decay) or 'none'. Saved in every checkpoint (exact resume) and, with "
            "--hff_average_swap, the final model."
        },
    )
    hff_average_k: int = field(default=5, metadata={"help": "Snapshots in the last_k average."})
    hff_average_every: int = field(
        default=0,
        metadata={
            "help": "Steps between snapshots (last_k) or EMA updates (ema). 0: last_k uses --save_steps when "
            "saving by steps (the last k checkpoints), else the last fifth of the run split in k; ema every step."
        },
    )
    hff_ema_decay: float = field(default=0.999, metadata={"help": "EMA decay per update (ema only)."})
    hff_average_device: str = field(
        default="cpu",
        metadata={"help": "Where the fp32 average lives: 'cpu' (saves accelerator memory) or 'model'."},
    )
    hff_average_swap: bool = field(
        default=True,
        metadata={
            "help": "At the end of training, copy the average into the model, so that evaluate() and "
            "save_model() use it (false: keep the last weights; the average stays in the checkpoints)."
        },
    )

    def check_flags(self) -> None:
        from hf_fundamentals.integrations.ordering.averaging import DEVICES
        from hf_fundamentals.ordering.averaging import MODES

        if self.hff_average not in ("none", *MODES):
            raise ValueError(f"--hff_average {self.hff_average!r}; accepted: none, {', '.join(MODES)}")
        if self.hff_average_k < 1:
            raise ValueError(f"--hff_average_k {self.hff_average_k}: must be >= 1")
        if self.hff_average_every < 0:
            raise ValueError(f"--hff_average_every {self.hff_average_every}: must be >= 0")
        if not 0.0 < self.hff_ema_decay < 1.0:
            raise ValueError(f"--hff_ema_decay {self.hff_ema_decay}: must be in (0, 1)")
        if self.hff_average_device not in DEVICES:
            raise ValueError(
                f"--hff_average_device {self.hff_average_device!r}; accepted: {', '.join(DEVICES)}"
            )
        if self.hff_average == "last_k" and self.hff_ema_decay != 0.999:
            raise ValueError("--hff_ema_decay is for --hff_average ema; it does nothing with last_k")
        if self.hff_average == "ema" and self.hff_average_k != 5:
            raise ValueError("--hff_average_k is for --hff_average last_k; it does nothing with ema")

    def averaging_callback(self):
        """The :class:`~hf_fundamentals.integrations.ordering.averaging.WeightAveragingCallback` these flags
        describe (None with --hff_average none)."""
        from hf_fundamentals.integrations.ordering.averaging import WeightAveragingCallback

        if self.hff_average == "none":
            return None
        return WeightAveragingCallback(
            self.hff_average, k=self.hff_average_k, every=self.hff_average_every, decay=self.hff_ema_decay,
            device=self.hff_average_device, swap=self.hff_average_swap,
        )  # fmt: skip


@dataclass
class OrderingFlags(AveragingFlags):
    """Order the train dataset once by a per-sample score and keep that order on every rank."""

    switch = "hff_order"
    switch_hint = "add --hff_order saw (or another method), or drop the ordering flags"

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
            "help": "Compute --order_score when the column is missing: 'model_nll' (alias 'perplexity': mean token loss under "
            "--order_score_model), 'compression' (zlib compression ratio) or 'none' (the column must exist)."
        },
    )
    order_score_model: str = field(
        default="embedded",
        metadata={"help": "Reference model for --order_scorer model_nll: 'embedded', a Hub id or a path."},
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

    def check_flags(self) -> None:
        from hf_fundamentals.integrations.ordering.datasets import SCORERS
        from hf_fundamentals.ordering import METHODS

        if self.hff_order not in ("none", *METHODS):
            raise ValueError(f"--hff_order {self.hff_order!r}; accepted: none, {', '.join(METHODS)}")
        if self.order_scorer not in ("none", *SCORERS):
            raise ValueError(f"--order_scorer {self.order_scorer!r}; accepted: none, {', '.join(SCORERS)}")
        self.order_spec()  # validate the knobs now, not after the model has loaded

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
