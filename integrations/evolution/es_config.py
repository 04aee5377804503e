"""``ESTrainingConfig``: ``TrainingArguments`` plus the Evolution Strategies settings (the config beside
:mod:`.es_trainer`, as TRL keeps ``<name>_config.py`` beside ``<name>_trainer.py``)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from hf_fundamentals.evolution import ESConfig

DEFAULT_GENERATION = {"do_sample": False, "max_new_tokens": 32}
_DEFAULT_LR = 5e-5  # TrainingArguments' default learning_rate: ES maps it to alpha


@dataclass
class ESTrainingConfig(TrainingArguments):
    """``TrainingArguments`` plus the ES settings; validated through the core :class:`ESConfig`.

    ``max_steps`` counts ES iterations and ``per_device_train_batch_size`` is the prompts of one iteration
    (every process sees the same ones). ``learning_rate`` is mapped to ``alpha`` (pass ``alpha``; a different
    explicit ``learning_rate`` is an error), the scheduler must stay ``constant``, and settings that only make
    sense with gradients (``max_grad_norm``, ``weight_decay``, gradient accumulation) must stay off.
    """

    population_size: int = field(default=30, metadata={"help": "ES population N (members per iteration)."})
    sigma: float = field(default=1e-3, metadata={"help": "Perturbation scale σ."})
    alpha: float | None = field(
        default=None, metadata={"help": "ES step size α (update (α/N)·Σ c ε, no 1/σ); default σ/2."}
    )
    reward_shaping: str = field(
        default="zscore", metadata={"help": "Reward shaping: zscore, centered_rank or none."}
    )
    noise_mode: str = field(
        default="iid", metadata={"help": "Noise per tensor: iid (default) or shared_per_shape (paper code)."}
    )
    mirrored: bool = field(
        default=False, metadata={"help": "Antithetic ± pairs (population_size must be even)."}
    )
    master_weights: bool = field(
        default=False, metadata={"help": "Keep an fp32 master copy of the perturbed weights (bf16/fp16)."}
    )
    params_to_perturb: str | None = field(
        default=None, metadata={"help": "Regex over trainable parameter names to perturb; default all."}
    )
    reward_weights: list[float] | None = field(
        default=None,
        metadata={"help": "One weight per reward function (default 1 each); rewards are summed."},
    )
    generation_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "model.generate kwargs (JSON on the CLI); default greedy, max_new_tokens=32."},
    )
    max_grad_norm: float = field(default=0.0, metadata={"help": "Must be 0: ES has no gradients."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must be False: reward functions get every dataset column."}
    )
    lr_scheduler_type: SchedulerType | str = field(
        default="constant", metadata={"help": "Must be constant: ES steps with a fixed alpha."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.generation_kwargs, str):
            self.generation_kwargs = json.loads(self.generation_kwargs)
        if self.generation_kwargs is not None and not isinstance(self.generation_kwargs, dict):
            raise ValueError(f"generation_kwargs must be a dict; got {self.generation_kwargs!r}")
        try:
            config = self.es_config()
        except ValueError as err:
            raise ValueError(
                f"ESTrainingConfig: {err} (population_size is the core's population, reward_shaping its "
                "shaping)"
            ) from err
        self.alpha = config.alpha
        if self.learning_rate not in (_DEFAULT_LR, self.alpha):
            raise ValueError(
                f"ESTrainingConfig: learning_rate={self.learning_rate} is not used by ES; set alpha= instead "
                f"(alpha is {self.alpha}; learning_rate is set to it)"
            )
        self.learning_rate = float(self.alpha)
        if self.lr_scheduler_type != SchedulerType.CONSTANT or self.warmup_steps:
            raise ValueError(
                f"ESTrainingConfig: ES steps with a constant alpha; got lr_scheduler_type="
                f"{self.lr_scheduler_type.value!r}, warmup_steps={self.warmup_steps} "
                "(accepted: 'constant', 0)"
            )
        if self.max_grad_norm:
            raise ValueError(
                f"ESTrainingConfig: max_grad_norm must be 0 (ES has no gradients); got {self.max_grad_norm}"
            )
        if self.weight_decay:
            raise ValueError(
                f"ESTrainingConfig: weight_decay={self.weight_decay} would be ignored (no optimizer step); "
                "use AnchoredWeightDecayCallback for decay"
            )
        if self.gradient_accumulation_steps != 1:
            raise ValueError(
                "ESTrainingConfig: gradient_accumulation_steps must be 1 (one batch is one ES iteration); "
                f"got {self.gradient_accumulation_steps}. Raise per_device_train_batch_size instead"
            )
        if self.remove_unused_columns:
            raise ValueError(
                "ESTrainingConfig: remove_unused_columns must be False (reward functions get every column)"
            )
        if self.params_to_perturb is not None:
            try:
                re.compile(self.params_to_perturb)
            except re.error as err:
                raise ValueError(
                    f"params_to_perturb {self.params_to_perturb!r} is not a regex: {err}"
                ) from err
        if self.reward_weights is not None:
            weights = [float(w) for w in self.reward_weights]
            if not weights or not all(math.isfinite(w) for w in weights):
                raise ValueError(f"reward_weights must be a non-empty list of finite floats; got {weights}")
            self.reward_weights = weights

    def es_config(self) -> ESConfig:
        """The core :class:`ESConfig` of these arguments (raises a ValueError on a bad setting)."""
        return ESConfig(population=self.population_size, sigma=self.sigma, alpha=self.alpha,
                        shaping=self.reward_shaping, noise_mode=self.noise_mode, mirrored=self.mirrored,
                        seed=self.seed)  # fmt: skip

    def generation_settings(self) -> dict[str, Any]:
        """The ``model.generate`` kwargs: greedy and ``max_new_tokens=32`` unless overridden."""
        return {**DEFAULT_GENERATION, **(self.generation_kwargs or {})}
