"""Muon in the ``Trainer`` and TRL trainers: an optimizer factory for ``optimizer_cls_and_kwargs``.

transformers' ``--optim`` enum is closed (``OptimizerNames``), so Muon is switched on with
``--hff_optimizer muon`` (``HffArguments``) or in Python with::

    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      optimizer_cls_and_kwargs=muon_optimizer_cls_and_kwargs(args))

The Trainer calls ``MuonFactory()(model, **kwargs)`` before accelerate wraps the model (FSDP2 then swaps the
parameters inside ``optimizer.param_groups``, which ``MuonAdamW`` reads afresh at every step). The factory
routes parameters by role (:func:`hf_fundamentals.optim.route_parameters`) with the Trainer's own no-decay
rule (biases and norms), and refuses the setups where Muon would silently train something else.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from hf_fundamentals.optim import (
    MuonAdamW,
    muon_param_groups,
    route_parameters,
    routing_summary,
    routing_table,
)

logger = logging.getLogger("hf_fundamentals.muon")


def trainer_decay_parameter_names(model: nn.Module) -> list[str]:
    """The Trainer's weight-decay rule (``Trainer.get_decay_parameter_names``): no decay on biases and norms."""
    from transformers.trainer_pt_utils import get_parameter_names

    patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    return get_parameter_names(model, [nn.LayerNorm], patterns)


def refuse_unsupported_backends() -> None:
    """Raise when accelerate runs DeepSpeed or FSDP1: both hand the optimizer flattened tensors.

    Muon on a flat partition is not Muon (DeepSpeed stage 0 once trained plain SGD this way, DeepSpeed issue
    8441), so we stop with the fix rather than train something else.
    """
    import os

    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true"):
        raise RuntimeError(_DEEPSPEED_MESSAGE)
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    if not AcceleratorState._shared_state:
        return
    state = AcceleratorState()
    if state.distributed_type == DistributedType.DEEPSPEED:
        raise RuntimeError(_DEEPSPEED_MESSAGE)
    if state.distributed_type == DistributedType.FSDP:
        plugin = getattr(state, "fsdp_plugin", None)
        if plugin is not None and getattr(plugin, "fsdp_version", 1) != 2:
            raise RuntimeError(
                "--hff_optimizer muon needs FSDP2 (fsdp_version: 2 in the accelerate config, or "
                "--fsdp_version 2): FSDP1 flattens parameters, so Muon cannot see the matrices it orthogonalizes."
            )


_DEEPSPEED_MESSAGE = (
    "--hff_optimizer muon does not run under DeepSpeed: ZeRO hands the optimizer flat partitions, not matrices "
    "(stage 0 would silently train something other than Muon). Use DDP or FSDP2 (fsdp_version: 2), where "
    "MuonAdamW gathers whole matrices, or DeepSpeed's own Muon optimizer."
)


class MuonFactory:
    """Builds :class:`~hf_fundamentals.optim.MuonAdamW` for a model; the Trainer's optimizer-factory protocol.

    Zero-argument constructible; ``MuonFactory()(model, lr=..., ...)`` routes the model's parameters and
    returns the optimizer. Keyword arguments:

    * ``lr``, ``weight_decay``, ``betas``, ``eps``: the Trainer's AdamW settings (one lr for both parts with
      ``adjust_lr="match_rms_adamw"``, the default); ``muon_lr`` gives Muon groups their own lr instead.
    * ``lora_a``, ``lora_b``, ``routers``, ``unknown``, ``split_fused``: routing choices
      (:func:`~hf_fundamentals.optim.route_parameters`).
    * everything else goes to ``MuonAdamW`` (``mode``, ``ns_method``, ``ns_steps``, ``ns_dtype``,
      ``gram_ns``, ``adjust_lr``, ``momentum``, ``nesterov``, ``reg_eps``, ``ht_power``, ``distributed``,
      ``batched``, ``foreach``).
    """

    def __call__(
        self,
        model: nn.Module,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        muon_lr: float | None = None,
        lora_a: str = "adamw",
        lora_b: str = "muon",
        routers: str = "adamw",
        unknown: str = "error",
        split_fused: bool = True,
        **muon_kwargs: Any,
    ) -> MuonAdamW:
        refuse_unsupported_backends()
        routes = route_parameters(
            model,
            lora_a=lora_a,
            lora_b=lora_b,
            routers=routers,
            unknown=unknown,
            split_fused=split_fused,
            decay_names=trainer_decay_parameter_names(model),
        )
        if not any(r.optimizer == "muon" for r in routes):
            raise ValueError(
                "--hff_optimizer muon: no trainable parameter of this model is a matrix Muon can train (all "
                "are embeddings, heads, norms, biases or frozen); use AdamW. Routing:\n"
                + routing_table(routes)
            )
        logger.info(
            "Muon parameter routing (every tensor: `hff muon --model <model>`, or routing_table):\n%s",
            routing_summary(routes),
        )
        groups = muon_param_groups(
            model,
            routes=routes,
            weight_decay=weight_decay,
            muon_overrides={"lr": muon_lr} if muon_lr is not None else None,
        )
        return MuonAdamW(groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, **muon_kwargs)


def muon_optimizer_cls_and_kwargs(
    training_args: Any, **muon: Any
) -> tuple[type[MuonFactory], dict[str, Any]]:
    """``(MuonFactory, kwargs)`` for ``Trainer(optimizer_cls_and_kwargs=...)`` from ``TrainingArguments``.

    Takes lr, weight decay, Adam betas and epsilon from the training arguments, so an AdamW-tuned config
    carries over; ``muon`` overrides any :class:`MuonFactory` keyword.
    """
    kwargs: dict[str, Any] = {
        "lr": training_args.learning_rate,
        "weight_decay": training_args.weight_decay,
        "betas": (training_args.adam_beta1, training_args.adam_beta2),
        "eps": training_args.adam_epsilon,
    }
    kwargs.update(muon)
    return MuonFactory, kwargs
