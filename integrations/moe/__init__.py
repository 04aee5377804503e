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

Modules: ``flags`` (``MoEFlags``), ``config`` (plan inputs, config transform), ``model`` (groups, init, hooks,
save/load), ``optimizer`` (param groups, Trainer factory, callback), ``technique``."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "ADAMW_SIDE_GROUPS": "config",
    "DENSE_FAMILIES": "config",
    "MOE_FAMILIES": "config",
    "MUON_OPTIMIZER_KEYS": "config",
    "OPTIMIZERS": "config",
    "as_plan": "config",
    "check_config_matches_plan": "config",
    "complete_mue_config": "config",
    "dense_proxy_from_config": "config",
    "moe_target_from_config": "config",
    "plan_from_config": "config",
    "warn_if_router_gets_no_gradient": "config",
    "apply_mue": "model",
    "classify_mue_parameters": "model",
    "load_mue_model": "model",
    "mue_forward_multipliers": "model",
    "CompleteMueCallback": "optimizer",
    "CompleteMueOptimizerFactory": "optimizer",
    "mue_optimizer_cls_and_kwargs": "optimizer",
    "mue_param_groups": "optimizer",
    "MoEFlags": "flags",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
