"""Complete-muE plan inputs from transformers configs (dense proxies, MoE targets of five families) and the target
config transform (normalized routing, DeepSeek-V3's R, the plan in ``config.hff_mue``)."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from typing import Any

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
    """The :class:`~hf_fundamentals.moe.MoETarget` of a transformers config (fields of transformers'
    ``models/{mixtral,qwen2_moe,qwen3_moe,olmoe,deepseek_v3}/configuration_*.py``).

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
    parameterization). ``hff_mue`` (the plan dict) survives save_pretrained/from_pretrained.
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
    benchmarks/moe.py: the a = 1 router's logits did not grow over the coordinate check while a = 2, 4
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
