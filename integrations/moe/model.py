"""Complete-muE on a built model: parameter groups by role, plan init, forward multipliers as hooks, and
saving/loading a model with its plan (``config.hff_mue``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hf_fundamentals.integrations.moe.config import (
    _SKIP_PARAMS,
    _model_type,
    _plan_json,
    _routed_scale_in_config,
    _set_routing_fields,
    _supported_list,
    as_plan,
    check_config_matches_plan,
    plan_from_config,
)
from hf_fundamentals.moe import Plan


def _embedding_ids(model: nn.Module) -> tuple[set[int], set[int]]:
    """Parameter ids of the input and output embeddings (the same tensor when tied)."""
    out: list[set[int]] = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        module = fn() if callable(fn) else None
        out.append({id(p) for p in module.parameters()} if module is not None else set())
    return out[0], out[1]


def _group_of(module_name: str, leaf: str, p: torch.Tensor, module: nn.Module) -> str | None:
    """The Complete-muE group of a non-embedding parameter from its module path (None: no rule)."""
    parts = module_name.split(".")
    last = parts[-1] if parts else ""
    parent = parts[-2] if len(parts) > 1 else ""
    if leaf == "bias" or "norm" in last or "norm" in type(module).__name__.lower():
        return "vector"  # biases, norm gains (a 1-D tensor of any other kind has no rule)
    if last == "experts" and parent == "mlp":
        return {"gate_up_proj": "expert_gate_up", "down_proj": "expert_down"}.get(leaf)
    if leaf != "weight" or p.ndim != 2:
        return None
    if last == "gate" and parent == "mlp":
        return "router"
    if last == "shared_expert_gate":
        return "shared_gate"
    if last in ("gate_proj", "up_proj", "down_proj"):
        kind = "down" if last == "down_proj" else "up"
        if parent in ("shared_expert", "shared_experts"):
            return f"shared_{kind}"
        if parent == "mlp":
            return f"dense_{kind}"
    if parent == "self_attn":
        return "attention"  # q/k/v/o and DeepSeek's MLA q_a/q_b/kv_a/kv_b projections
    return None


def classify_mue_parameters(model: nn.Module) -> dict[str, str]:
    """``{parameter name: Complete-muE group}`` for every trainable parameter (tied weights once, as the
    embedding); frozen parameters and DeepSeek-V3's ``e_score_correction_bias`` are left out. A parameter no
    rule recognizes is an error listing it (LoRA factors, unknown modules)."""
    inp, out = _embedding_ids(model)
    modules = dict(model.named_modules())
    groups: dict[str, str] = {}
    unknown: list[str] = []
    for name, p in model.named_parameters():
        if not p.requires_grad or name.rsplit(".", 1)[-1] in _SKIP_PARAMS:
            continue
        if id(p) in inp:
            groups[name] = "embedding"
            continue
        if id(p) in out:
            groups[name] = "lm_head"
            continue
        module_name, _, leaf = name.rpartition(".")
        group = _group_of(module_name, leaf, p, modules[module_name])
        if group is None:
            unknown.append(f"{name} {tuple(p.shape)} in {type(modules[module_name]).__name__}")
        else:
            groups[name] = group
    if unknown:
        raise ValueError(
            "Complete-muE: no group rule for these trainable parameters (the plan covers full training of "
            f"{_supported_list()}; freeze them or remove them):\n  " + "\n  ".join(unknown)
        )
    return groups


# --------------------------------------------------------------------------------------- the model
class _Multiplier:
    """A forward hook that multiplies a module's output by a constant (a Complete-muE forward multiplier)."""

    def __init__(self, value: float, what: str) -> None:
        self.value = float(value)
        self.what = what

    def __call__(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return output * self.value

    def __repr__(self) -> str:
        return f"_Multiplier({self.what}={self.value:.6g})"


def _hook_values(model: nn.Module, plan: Plan) -> dict[str, float]:
    """The multipliers the hooks must carry: what stays in the forward after folding (DeepSeek's R excepted)."""
    fm = plan.forward_in_model
    r = 1.0 if _model_type(model.config) == "deepseek_v3" else (fm.R or 1.0)
    return {
        "routed": (fm.A_routed or 1.0) * r,
        "shared": fm.A_shared or 1.0,
        "dense": fm.A_dense or 1.0,
        "readout": fm.readout,
    }


def _hook_kind(module_name: str) -> str | None:
    """Which forward multiplier a module's output carries ("routed", "shared", "dense"), by path."""
    parts = module_name.split(".")
    if parts[-2:] == ["mlp", "experts"]:
        return "routed"
    if len(parts) >= 3 and parts[-1] == "down_proj":
        if parts[-2] in ("shared_expert", "shared_experts") and parts[-3] == "mlp":
            return "shared"
        if parts[-2] == "mlp":
            return "dense"
    return None


def _remove_hooks(model: nn.Module) -> None:
    for handle in getattr(model, "_hff_mue_hooks", []):
        handle.remove()
    model._hff_mue_hooks = []


def mue_forward_multipliers(model: nn.Module) -> dict[str, float]:
    """``{module name: multiplier}`` of the Complete-muE forward hooks installed on ``model`` (for checks)."""
    names = {id(m): n for n, m in model.named_modules()}
    out = {}
    for module in model.modules():
        for hook in module._forward_hooks.values():
            if isinstance(hook, _Multiplier):
                out[names[id(module)]] = hook.value
    return out


def _install_hooks(model: nn.Module, plan: Plan) -> None:
    _remove_hooks(model)
    values = _hook_values(model, plan)
    handles = []
    for name, module in model.named_modules():
        kind = _hook_kind(name)
        if kind is not None and values[kind] != 1.0:
            handles.append(module.register_forward_hook(_Multiplier(values[kind], kind)))
    head = model.get_output_embeddings()
    if values["readout"] != 1.0:
        if head is None:
            raise ValueError("Complete-muE: the plan keeps a readout multiplier but the model has no lm_head")
        handles.append(head.register_forward_hook(_Multiplier(values["readout"], "readout")))
    model._hff_mue_hooks = handles


def _routers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "norm_topk_prob") and hasattr(m, "top_k")]


def _set_routing(model: nn.Module, plan: Plan) -> None:
    """Apply ``complete_mue_config``'s routing fields to the config and to the routers built from it."""
    _set_routing_fields(model.config, plan)
    for _, router in _routers(model):
        router.norm_topk_prob = True
        if hasattr(router, "routed_scaling_factor"):
            router.routed_scaling_factor = _routed_scale_in_config(plan)


def _check_routing(model: nn.Module, plan: Plan) -> None:
    """Raise when the built routers do not follow the plan (they read the config once, at construction)."""
    bad = []
    want = _routed_scale_in_config(plan)
    for name, router in _routers(model):
        if not router.norm_topk_prob:
            bad.append(f"{name}.norm_topk_prob is False")
        scale = getattr(router, "routed_scaling_factor", None)
        if scale is not None and float(scale) != want:
            bad.append(f"{name}.routed_scaling_factor = {scale} (the plan needs {want:g})")
    if bad:
        raise ValueError(
            "Complete-muE: the model was not built from complete_mue_config(config, plan): "
            + "; ".join(bad[:4])
            + (" ..." if len(bad) > 4 else "")
            + ". Build it from the transformed config, or use apply_mue(model, plan, init=True) on a fresh model"
        )


@torch.no_grad()
def _reinit(model: nn.Module, plan: Plan, groups: dict[str, str], seed: int) -> None:
    """Normal(0, plan init std) for every matrix group (fused expert tensors included); norms 1, biases 0."""
    generators: dict[torch.device, torch.Generator] = {}
    modules = dict(model.named_modules())
    for name, p in model.named_parameters():
        group = groups.get(name)
        if group is None or p.device.type == "meta":
            continue
        module_name, _, leaf = name.rpartition(".")
        module = modules[module_name]
        if group == "vector":
            if leaf == "bias":
                p.zero_()
            elif "norm" in module_name.rsplit(".", 1)[-1] or "norm" in type(module).__name__.lower():
                p.fill_(1.0)
            else:
                raise ValueError(
                    f"Complete-muE: no init rule for the vector-like parameter {name} {tuple(p.shape)}"
                )
            continue
        if p.device not in generators:
            generators[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        p.normal_(0.0, plan.groups[group].init_std, generator=generators[p.device])
        if group == "embedding" and isinstance(module, nn.Embedding) and module.padding_idx is not None:
            p[module.padding_idx].zero_()


def apply_mue(
    model: nn.Module, plan: Plan | Mapping[str, Any] | None = None, *, init: bool = True, seed: int = 0
) -> nn.Module:
    """Put ``model`` under the plan; with ``init`` also set its routing and re-initialize it (from scratch).

    ``init=True``: routing fields as :func:`complete_mue_config` (config and built routers), every parameter
    re-initialized with the plan's absolute init std (seeded), the plan recorded in ``config.hff_mue``.
    Always: the forward multipliers the plan leaves in the model installed as forward hooks (idempotent).
    ``init=False`` only checks and re-installs hooks, for a model saved under the plan and loaded with
    ``from_pretrained`` (its config must carry the plan); ``plan`` defaults to ``model.config.hff_mue``.
    """
    config = getattr(model, "config", None)
    stored = plan_from_config(config) if config is not None else None
    if plan is None:
        if stored is None:
            raise ValueError("apply_mue: no plan given and the model's config carries none (config.hff_mue)")
        plan = stored
    plan = as_plan(plan)
    check_config_matches_plan(config, plan)
    groups = classify_mue_parameters(model)
    missing = sorted({g for g in groups.values() if g not in plan.groups})
    if missing:
        raise ValueError(f"Complete-muE: the model has parameters in groups {missing} that the plan lacks")
    if init:
        _set_routing(model, plan)
        _reinit(model, plan, groups, seed)
        config.hff_mue = _plan_json(plan)
    else:
        if stored is None:
            raise ValueError(
                "apply_mue(init=False): the model's config carries no Complete-muE plan (config.hff_mue), so its "
                "weights were not made under one; put a fresh model under the plan with apply_mue(model, plan) "
                "(--mue_apply), or load one saved after it"
            )
        if stored != plan:
            raise ValueError(
                "apply_mue(init=False): the model's config.hff_mue holds a different plan than the one given; "
                "its weights were made under that one (pass no plan to use it)"
            )
        _check_routing(model, plan)
    _install_hooks(model, plan)
    return model


def load_mue_model(path: str, **from_pretrained_kwargs: Any) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(path)`` with its Complete-muE forward multipliers re-installed."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, **from_pretrained_kwargs)
    if plan_from_config(model.config) is None:
        raise ValueError(
            f"load_mue_model: {path} has no Complete-muE plan in its config (hff_mue); it was not saved after "
            "apply_mue / complete_mue_config"
        )
    return apply_mue(model, init=False)
