"""Complete-muE's optimizer: the plan's per-group AdamW (or MuonAdamW) parameter groups, the Trainer factory,
and the callback that puts a trainer's model under the plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from hf_fundamentals.integrations.moe.config import (
    ADAMW_SIDE_GROUPS,
    MUON_OPTIMIZER_KEYS,
    OPTIMIZERS,
    as_plan,
    check_config_matches_plan,
    logger,
)
from hf_fundamentals.integrations.moe.model import _Multiplier, apply_mue, classify_mue_parameters
from hf_fundamentals.moe import Plan


def mue_param_groups(
    model: nn.Module,
    plan: Plan | Mapping[str, Any],
    optimizer: str = "adamw",
    *,
    decay_vectors: bool = False,
) -> list[dict[str, Any]]:
    """torch param groups (params, lr, weight_decay, eps, betas, name) of the plan, one per group in the model.

    Every trainable parameter lands in exactly one group (:func:`classify_mue_parameters`). Norms and biases
    get no weight decay unless ``decay_vectors`` (the Trainer's rule, under which a proxy is usually tuned).

    ``optimizer="muon"`` (**Proposed**; Complete-muE, arXiv 2605.23893, covers AdamW only): groups for
    :class:`~hf_fundamentals.optim.MuonAdamW`. AdamW keeps embedding, lm_head, vectors, routers and the
    shared-expert gate at the plan's AdamW values (routers out of Muon as in Megatron-LM PR #6504); Muon's
    hidden matrices get the plan's global lr and wd (Muon's update is already shape-normalized), times the
    folded multiplier c (lr ×c, wd ×1/c) so a folded model trains as the unfolded one would.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"mue_param_groups: optimizer={optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
    plan = as_plan(plan)
    check_config_matches_plan(model.config, plan)
    names = classify_mue_parameters(model)
    params = dict(model.named_parameters())
    g = plan.global_hparams
    order = list(plan.groups)
    missing = sorted({grp for grp in names.values() if grp not in plan.groups})
    if missing:
        raise ValueError(f"Complete-muE: the model has parameters in groups {missing} that the plan lacks")

    def adamw_group(name: str) -> dict[str, Any]:
        r = plan.groups[name]
        wd = 0.0 if (name == "vector" and not decay_vectors) else r.weight_decay
        return {"params": [], "lr": r.lr, "weight_decay": wd, "eps": r.eps, "betas": g.betas, "name": name}

    if optimizer == "adamw":
        out = {name: adamw_group(name) for name in order}
        for pname, grp in names.items():
            out[grp]["params"].append(params[pname])
        return [group for group in out.values() if group["params"]]

    from hf_fundamentals.optim import route_parameters

    routes = {r.name: r for r in route_parameters(model, routers="adamw", unknown="adamw")}
    groups: dict[tuple, dict[str, Any]] = {}
    for pname, grp in sorted(names.items(), key=lambda kv: order.index(kv[1])):
        route = routes[pname]
        if grp in ADAMW_SIDE_GROUPS:
            if route.optimizer != "adamw":
                raise ValueError(f"Complete-muE + Muon: {pname} is {grp} but Muon's routing sends it to Muon")
            key: tuple = (grp,)
            if key not in groups:
                groups[key] = {**adamw_group(grp), "use_muon": False, "role": grp}
        else:
            if route.optimizer != "muon":
                raise ValueError(
                    f"Complete-muE + Muon: {pname} is {grp} (a hidden matrix) but Muon's routing sends it to "
                    f"{route.optimizer} ({route.reason})"
                )
            c = plan.groups[grp].fold or 1.0
            key = (grp, route.layout, route.split_sizes, route.split_interleave, route.flatten)
            if key not in groups:
                groups[key] = {
                    "params": [],
                    "use_muon": True,
                    "lr": g.lr * c,
                    "weight_decay": g.weight_decay / c,
                    "name": grp,
                    "role": grp,
                    "layout": route.layout,
                    "split_sizes": route.split_sizes,
                    "split_interleave": route.split_interleave,
                    "flatten": route.flatten,
                }
        groups[key]["params"].append(params[pname])
    return list(groups.values())


class CompleteMueOptimizerFactory:
    """The Trainer's optimizer-factory protocol: ``CompleteMueOptimizerFactory()(model, plan=...)`` builds
    ``torch.optim.AdamW`` (or ``MuonAdamW``) over :func:`mue_param_groups`."""

    def __call__(
        self,
        model: nn.Module,
        plan: Plan | Mapping[str, Any],
        optimizer: str = "adamw",
        decay_vectors: bool = False,
        replaced: Mapping[str, Any] | None = None,
        **muon_kwargs: Any,
    ) -> torch.optim.Optimizer:
        plan = as_plan(plan)
        groups = mue_param_groups(model, plan, optimizer, decay_vectors=decay_vectors)
        g = plan.global_hparams
        plan_values = {
            "learning_rate": g.lr,
            "weight_decay": g.weight_decay,
            "adam_epsilon": g.eps,
            "betas": g.betas,
        }
        differ = {
            k: v
            for k, v in (replaced or {}).items()
            if k in plan_values and (tuple(v) if k == "betas" else v) != plan_values[k]
        }
        if differ:
            logger.warning(
                "Complete-muE: the plan's per-group values replace the TrainingArguments %s (plan global: lr=%g "
                "wd=%g eps=%g betas=%s); the LR schedule still applies",
                differ,
                g.lr,
                g.weight_decay,
                g.eps,
                g.betas,
            )
        logger.info(
            "Complete-muE groups: %s",
            ", ".join(f"{grp['name']} (lr {grp['lr']:.3g}, {len(grp['params'])} tensors)" for grp in groups),
        )
        if optimizer == "adamw":
            if muon_kwargs:
                raise ValueError(f"Complete-muE with AdamW takes no Muon settings; got {sorted(muon_kwargs)}")
            return torch.optim.AdamW(groups, lr=g.lr, betas=g.betas, eps=g.eps, weight_decay=g.weight_decay)
        from hf_fundamentals.integrations.optim.factory import refuse_unsupported_backends
        from hf_fundamentals.optim import MuonAdamW

        unknown = sorted(set(muon_kwargs) - set(MUON_OPTIMIZER_KEYS))
        if unknown:
            raise ValueError(
                f"Complete-muE + Muon: unknown Muon settings {unknown}; accepted: {MUON_OPTIMIZER_KEYS}"
            )
        refuse_unsupported_backends()
        return MuonAdamW(
            groups, lr=g.lr, weight_decay=g.weight_decay, betas=g.betas, eps=g.eps, **muon_kwargs
        )


def mue_optimizer_cls_and_kwargs(
    plan: Plan | Mapping[str, Any], training_args: Any = None, *, optimizer: str = "adamw", **muon_kwargs: Any
) -> tuple[type[CompleteMueOptimizerFactory], dict[str, Any]]:
    """``(factory, kwargs)`` for ``Trainer(optimizer_cls_and_kwargs=...)``; the TrainingArguments' lr, wd, eps
    and betas are replaced by the plan's (a warning says so when they differ)."""
    kwargs: dict[str, Any] = {"plan": as_plan(plan), "optimizer": optimizer, **muon_kwargs}
    if training_args is not None:
        kwargs["replaced"] = {
            "learning_rate": training_args.learning_rate,
            "weight_decay": training_args.weight_decay,
            "adam_epsilon": training_args.adam_epsilon,
            "betas": (training_args.adam_beta1, training_args.adam_beta2),
        }
    return CompleteMueOptimizerFactory, kwargs


class CompleteMueCallback(TrainerCallback):
    """Puts the trainer's model under the plan when the trainer is built (``on_init_end``): re-initialized with
    ``init`` (``--mue_apply``), else checked and given its forward hooks. A resumed checkpoint loads later, over
    the re-initialized weights, as it should."""

    def __init__(self, plan: Plan | Mapping[str, Any], *, init: bool = False, seed: int = 0) -> None:
        self.plan = as_plan(plan)
        self.init = init
        self.seed = seed

    def on_init_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            apply_mue(model, self.plan, init=self.init, seed=self.seed)
            _refuse_fused_readout(args, model)

    def apply_to_built_trainer(self, trainer: Any) -> None:
        """For ``TrainerExtras.apply`` (the trainer was built before this callback was added)."""
        apply_mue(trainer.model, self.plan, init=self.init, seed=self.seed)
        _refuse_fused_readout(trainer.args, trainer.model)


def _refuse_fused_readout(args: Any, model: nn.Module) -> None:
    """Liger's fused linear-cross-entropy reads ``lm_head.weight`` directly and would skip the readout hook."""
    head = model.get_output_embeddings()
    hooked = head is not None and any(isinstance(h, _Multiplier) for h in head._forward_hooks.values())
    if hooked and getattr(args, "use_liger_kernel", False):
        raise ValueError(
            "--hff_mue keeps the readout 1/rho_d as a forward hook on lm_head (tied embeddings or --no_fold), "
            "which Liger's fused linear-cross-entropy bypasses; drop --use_liger_kernel or use an untied, folded plan"
        )
