"""Complete-muE in transformers: plan inputs from HF configs, the target config transform, init and forward
multipliers on a model, and the plan's optimizer parameter groups (with a Trainer factory and callback).

The pure plan lives in :mod:`hf_fundamentals.moe` (``transfer_plan``); this module maps it onto the five MoE
families of transformers v5 (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V3) and the dense families a proxy
comes from (Llama, Mistral, Qwen2, Qwen3, OLMo). The workflow::

    plan = transfer_plan(dense_proxy_from_config(proxy_cfg, lr=..., ...), moe_target_from_config(cfg, B, T))
    model = AutoModelForCausalLM.from_config(complete_mue_config(cfg, plan))
    apply_mue(model, plan)                       # plan init stds, forward multipliers as hooks
    opt = torch.optim.AdamW(mue_param_groups(model, plan))
    ...
    model.save_pretrained(out)                   # the plan travels in config.hff_mue
    model = load_mue_model(out)                  # = from_pretrained + apply_mue(model, init=False)

Forward multipliers (A on down outputs, R on the routed sum, the readout 1/rho_d) are either folded into the
weights (the plan's ``fold_multipliers``: init, lr, wd and eps carry the factor, exact under AdamW) or applied
as forward hooks: routed ``A·R`` on ``mlp.experts``, ``A`` on shared / dense ``down_proj``, the readout on the
output embeddings. DeepSeek-V3 carries R in its own ``routed_scaling_factor`` instead of a hook. Hooks are not
saved by ``save_pretrained``; ``apply_mue(model, init=False)`` (or ``load_mue_model``) re-installs them.
Code paths that skip ``lm_head.__call__`` (fused linear-cross-entropy kernels) would skip the readout hook.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from hf_fundamentals.moe import DenseProxy, MoETarget, Plan

logger = logging.getLogger("hf_fundamentals.mue")

MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3")
DENSE_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "olmo")
OPTIMIZERS = ("adamw", "muon")
ADAMW_SIDE_GROUPS = ("embedding", "lm_head", "vector", "router", "shared_gate")
"""Groups AdamW trains when ``optimizer="muon"`` (routers stay out of Muon as in Megatron-LM PR #6504)."""
MUON_OPTIMIZER_KEYS = (
    "mode",
    "ns_method",
    "ns_steps",
    "ns_dtype",
    "adjust_lr",
    "momentum",
    "nesterov",
    "reg_eps",
    "ht_power",
    "distributed",
)
_TARGET_FIELDS = ("d", "n_experts", "n_active", "expert_width", "shared_width", "dense_ffn_width")
_SKIP_PARAMS = ("e_score_correction_bias",)  # DeepSeek-V3's balance bias: updated outside the gradient


# --------------------------------------------------------------------------------------------- configs
def _model_type(config: Any) -> str:
    return str(getattr(config, "model_type", "") or "")


def _supported_list() -> str:
    return f"MoE: {', '.join(MOE_FAMILIES)}; dense: {', '.join(DENSE_FAMILIES)}"


def _moe_layers(config: Any) -> list[bool]:
    """For each decoder layer, whether its MLP is the sparse MoE block (the modeling code's own rule)."""
    mt, n = _model_type(config), int(config.num_hidden_layers)
    if mt in ("qwen2_moe", "qwen3_moe"):
        only = set(config.mlp_only_layers or [])
        step = int(config.decoder_sparse_step)
        return [i not in only and config.num_experts > 0 and (i + 1) % step == 0 for i in range(n)]
    if mt == "deepseek_v3":
        first = int(config.first_k_dense_replace or 0)
        return [i >= first for i in range(n)]
    return [True] * n


def moe_target_from_config(config: Any, batch_tokens: int, steps: int) -> MoETarget:
    """The :class:`~hf_fundamentals.moe.MoETarget` of a transformers config (brief §2 field table).

    MoE families give N, a, h, the shared width and the dense FFN width of any dense layers (DeepSeek-V3
    ``first_k_dense_replace``, Qwen ``mlp_only_layers``/``decoder_sparse_step``); dense families give a dense
    target of width ``intermediate_size``. ``batch_tokens`` is tokens per optimizer step.
    """
    mt = _model_type(config)
    if mt in DENSE_FAMILIES:
        return MoETarget.dense(
            d=config.hidden_size, ffn_width=config.intermediate_size, batch_tokens=batch_tokens, steps=steps
        )
    if mt not in MOE_FAMILIES:
        raise ValueError(f"Complete-muE: model_type {mt!r} is not supported; supported: {_supported_list()}")
    layers = _moe_layers(config)
    if not any(layers):
        raise ValueError(
            f"Complete-muE: this {mt} config has no MoE layer (every layer is a dense MLP); describe it as a "
            "dense target instead"
        )
    kw: dict[str, Any] = dict(d=config.hidden_size, n_active=config.num_experts_per_tok)
    dense = config.intermediate_size if not all(layers) else None
    if mt == "mixtral":
        kw.update(n_experts=config.num_local_experts, expert_width=config.intermediate_size)
    elif mt in ("qwen2_moe", "qwen3_moe"):
        kw.update(
            n_experts=config.num_experts, expert_width=config.moe_intermediate_size, dense_ffn_width=dense
        )
        if mt == "qwen2_moe":
            if not config.shared_expert_intermediate_size:
                raise ValueError(
                    "Complete-muE: qwen2_moe with shared_expert_intermediate_size = 0 is not supported (the model "
                    "still builds an empty shared expert and its sigmoid gate); use qwen3_moe for no shared expert"
                )
            kw["shared_width"] = config.shared_expert_intermediate_size
    elif mt == "olmoe":
        kw.update(n_experts=config.num_experts, expert_width=config.intermediate_size)
    else:  # deepseek_v3
        if not config.n_shared_experts:
            raise ValueError(
                "Complete-muE: deepseek_v3 with n_shared_experts = 0 is not supported (the model still builds an "
                "empty shared MLP)"
            )
        kw.update(
            n_experts=config.n_routed_experts,
            expert_width=config.moe_intermediate_size,
            shared_width=config.n_shared_experts * config.moe_intermediate_size,
            dense_ffn_width=dense,
            n_group=config.n_group,
            topk_group=config.topk_group,
        )
    return MoETarget(**kw, batch_tokens=batch_tokens, steps=steps)


def dense_proxy_from_config(
    config: Any,
    *,
    lr: float,
    weight_decay: float,
    init_std: float,
    adam_eps: float = 1e-8,
    betas: tuple[float, float] = (0.9, 0.999),
    batch_tokens: int,
    steps: int,
    down_init_std: float | None = None,
) -> DenseProxy:
    """The tuned dense proxy of a dense transformers config: d = hidden_size, H = intermediate_size,
    tied = tie_word_embeddings; the hyperparameters are the ones tuned on it."""
    mt = _model_type(config)
    if mt in MOE_FAMILIES:
        raise ValueError(
            f"Complete-muE: the proxy must be a dense model; got model_type {mt!r} (an MoE family). Dense "
            f"families: {', '.join(DENSE_FAMILIES)}"
        )
    if mt not in DENSE_FAMILIES:
        raise ValueError(
            f"Complete-muE: proxy model_type {mt!r} is not supported; dense families: {', '.join(DENSE_FAMILIES)}"
        )
    return DenseProxy(
        d=config.hidden_size,
        ffn_width=config.intermediate_size,
        lr=lr,
        weight_decay=weight_decay,
        init_std=init_std,
        adam_eps=adam_eps,
        betas=tuple(betas),
        batch_tokens=batch_tokens,
        steps=steps,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        down_init_std=down_init_std,
    )


def as_plan(plan: Plan | Mapping[str, Any]) -> Plan:
    """A :class:`~hf_fundamentals.moe.Plan` from a Plan or its ``to_dict`` form (e.g. ``config.hff_mue``)."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, Mapping):
        return Plan.from_dict(dict(plan))
    raise ValueError(f"expected a Complete-muE Plan or its dict; got {type(plan).__name__}")


def _plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as the config stores it: JSON types (lists, not tuples), so it compares equal after a reload."""
    return json.loads(plan.to_json())


def plan_from_config(config: Any) -> Plan | None:
    """The plan a transformed config carries in ``config.hff_mue`` (None if it carries none)."""
    data = getattr(config, "hff_mue", None)
    return None if data is None else as_plan(data)


def check_config_matches_plan(config: Any, plan: Plan) -> None:
    """Raise unless ``config`` describes the plan's target (widths, experts, tying): a plan is per target."""
    target = moe_target_from_config(config, plan.target.batch_tokens, plan.target.steps)
    diffs = [
        f"{k}: config {getattr(target, k)} vs plan {getattr(plan.target, k)}"
        for k in _TARGET_FIELDS
        if getattr(target, k) != getattr(plan.target, k)
    ]
    if diffs:
        raise ValueError(
            f"Complete-muE: this {_model_type(config)} config is not the plan's target ({'; '.join(diffs)}); "
            "make the plan from this config (`hff mue --target <it>`)"
        )
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if tied != plan.proxy.tied_embeddings:
        raise ValueError(
            f"Complete-muE: config tie_word_embeddings={tied} but the plan was made for "
            f"tied_embeddings={plan.proxy.tied_embeddings} (the lm_head rule and the readout depend on it); "
            "proxy and target must tie the same way"
        )


def _routed_scale_in_config(plan: Plan) -> float:
    """DeepSeek-V3's ``routed_scaling_factor`` under the plan: the R left in the forward (1 once folded)."""
    return float(plan.forward_in_model.R or 1.0)


def complete_mue_config(config: Any, plan: Plan | Mapping[str, Any]) -> Any:
    """A copy of ``config`` set up for the plan: normalized top-k routing, DeepSeek's R, the plan in ``hff_mue``.

    ``norm_topk_prob=True`` where the field exists (Mixtral always renormalizes; DeepSeek-V3 keeps its sigmoid
    scores). DeepSeek-V3's ``routed_scaling_factor`` becomes the plan's R left in the forward: R = a without
    folding, 1 when A·R is folded into the expert down weights (the shipped 2.5 belongs to another
    parameterization, brief §7.1). ``hff_mue`` (the plan dict) survives save_pretrained/from_pretrained.
    """
    plan = as_plan(plan)
    check_config_matches_plan(config, plan)
    new = copy.deepcopy(config)
    _set_routing_fields(new, plan)
    new.hff_mue = _plan_json(plan)
    warn_if_router_gets_no_gradient(new, plan)
    return new


def warn_if_router_gets_no_gradient(config: Any, plan: Plan) -> bool:
    """Warn (and return True) for top-1 routing under the plan with no router auxiliary loss.

    Normalized top-k with a = 1 makes the routed weight p_i / p_i = 1 for every token, so the language-model
    loss sends the router no gradient: it stays at its init unless an auxiliary loss trains it. Measured in
    benchmarks/complete_mue.py: the a = 1 router's logits did not grow over the coordinate check while a = 2, 4
    grew 4-5x (standard top-1 softmax routing, not renormalized, does learn).
    """
    if plan.target.is_dense or plan.target.n_active != 1:
        return False
    if getattr(config, "output_router_logits", False) and getattr(config, "router_aux_loss_coef", 0.0):
        return False
    logger.warning(
        "Complete-muE with top-1 routing (num_experts_per_tok=1): normalized top-k makes every routed weight "
        "exactly 1, so the LM loss gives the router no gradient and it stays at its init. Turn on the router "
        "auxiliary loss (output_router_logits=True, router_aux_loss_coef > 0) or route to a >= 2 experts."
    )
    return True


def _set_routing_fields(config: Any, plan: Plan) -> None:
    """Normalized top-k routing where the config has the switch; DeepSeek-V3's R (in place)."""
    mt = _model_type(config)
    if mt in ("qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3"):
        config.norm_topk_prob = True
    if mt == "deepseek_v3":
        config.routed_scaling_factor = _routed_scale_in_config(plan)


# ------------------------------------------------------------------------------------- classification
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


# -------------------------------------------------------------------------------------- optimizer
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

    ``optimizer="muon"`` (**Proposed**; Complete-muE covers AdamW only, brief §5): groups for
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
        from hf_fundamentals.integrations.transformers.muon import refuse_unsupported_backends
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
