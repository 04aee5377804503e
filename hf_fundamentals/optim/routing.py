"""Which parameters Muon trains, decided by role, not by ``ndim``.

Shape rules fail both ways: embeddings and the LM head are 2-D but belong to AdamW, MoE expert stacks are
3-D and belong to Muon (one matrix per expert), GPT-OSS expert biases are 2-D and belong to AdamW. So each
parameter is classified by what it is (module type, tensor identity for tied embeddings, the model config
for fused blocks and expert layouts), every decision carries its reason, and a parameter that fits no rule
is an error unless the caller says what to do with it. The model is read by duck typing (``config``,
``get_output_embeddings``, experts' ``is_transposed``/``is_concatenated``), so this module imports no HF
library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ADAMW_ROLES = {
    "embedding",
    "lm_head",
    "tied_embedding",
    "norm",
    "bias",
    "scalar",
    "expert_bias",
    "router",
    "vector_head",
    "lora_embedding",
}
_TRANSPOSED_EXPERT_MODELS = {"gpt_oss", "llama4", "llama4_text"}
_TRAINER_NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


@dataclass(frozen=True)
class ParamRoute:
    """Where one parameter goes and why."""

    name: str
    shape: tuple[int, ...]
    role: str
    optimizer: str  # "muon", "adamw" or "frozen"
    decay: bool
    reason: str
    layout: str = "out_in"
    split_sizes: tuple[int, ...] | None = None
    split_interleave: int | None = None
    flatten: bool = False


def _text_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        try:
            return config.get_text_config()
        except Exception:  # noqa: BLE001 - a config without text sub-config is its own text config
            return config
    return config


def _cfg(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules(remove_duplicate=False)}


def _embedding_prefixes(model: nn.Module) -> tuple[set[int], set[int], list[str], list[str]]:
    """(input-embedding param ids, output-embedding param ids, their module name prefixes)."""
    names = _module_names(model)
    inp_ids: set[int] = set()
    out_ids: set[int] = set()
    inp_prefixes: list[str] = []
    out_prefixes: list[str] = []
    for getter, ids, prefixes in (
        ("get_input_embeddings", inp_ids, inp_prefixes),
        ("get_output_embeddings", out_ids, out_prefixes),
    ):
        fn = getattr(model, getter, None)
        if not callable(fn):
            continue
        try:
            module = fn()
        except (NotImplementedError, AttributeError):
            continue
        if module is None:
            continue
        ids.update(id(p) for p in module.parameters())
        if id(module) in names and names[id(module)]:
            prefixes.append(names[id(module)] + ".")
    return inp_ids, out_ids, inp_prefixes, out_prefixes


def _fused_split(leaf: str, rows: int, config: Any) -> tuple[str, tuple[int, ...] | None]:
    """(role, split sizes along the output dim) for a fused 2-D projection, from the config."""
    if config is None:
        return "hidden_matrix", None
    heads = _cfg(config, "num_attention_heads", "n_head")
    hidden = _cfg(config, "hidden_size", "n_embd", "d_model")
    if leaf in ("qkv_proj", "Wqkv", "c_attn") and heads and hidden:
        kv = _cfg(config, "num_key_value_heads") or heads
        head_dim = _cfg(config, "head_dim") or hidden // heads
        sizes = (heads * head_dim, kv * head_dim, kv * head_dim)
        if sum(sizes) == rows:
            return "fused_qkv", sizes
    if leaf == "gate_up_proj" and rows % 2 == 0:
        return "fused_gate_up", (rows // 2, rows // 2)
    return "hidden_matrix", None


def route_parameters(
    model: nn.Module,
    *,
    lora_a: str = "adamw",
    lora_b: str = "muon",
    routers: str = "adamw",
    unknown: str = "error",
    split_fused: bool = True,
    decay_names: Iterable[str] | None = None,
) -> list[ParamRoute]:
    """Classify every parameter of ``model`` (frozen ones included, as ``optimizer="frozen"``).

    Args:
        lora_a, lora_b: optimizer for LoRA's A (in x r, extreme aspect ratio, noisy under Newton-Schulz) and
            B matrices; default AdamW on A, Muon on B.
        routers: optimizer for MoE router weights (small, classifier-like): "adamw" (default) or "muon".
        unknown: what to do with a tensor no rule recognizes: "error" (default; the message lists them),
            "adamw" or "muon" (an explicit choice, recorded as the reason).
        split_fused: orthogonalize fused QKV / gate-up blocks separately (sizes from the model config).
        decay_names: names that get weight decay (the Trainer's ``get_decay_parameter_names``); default:
            the Trainer's rule (no decay on biases and norms).
    """
    for arg, value, accepted in (
        ("lora_a", lora_a, ("adamw", "muon")),
        ("lora_b", lora_b, ("adamw", "muon")),
        ("routers", routers, ("adamw", "muon")),
        ("unknown", unknown, ("error", "adamw", "muon")),
    ):
        if value not in accepted:
            raise ValueError(f"{arg}={value!r}; accepted: {', '.join(accepted)}")
    config = _text_config(model)
    model_type = str(getattr(config, "model_type", "") or "")
    num_experts = _cfg(config, "num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
    hidden = _cfg(config, "hidden_size", "n_embd", "d_model")
    vocab = _cfg(config, "vocab_size")
    inp_ids, out_ids, inp_prefixes, out_prefixes = _embedding_prefixes(model)
    decay_set = set(decay_names) if decay_names is not None else None
    layer_norm_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)
    }

    routes: list[ParamRoute] = []
    unknowns: list[str] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for leaf_param, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{leaf_param}" if mod_name else leaf_param
            shape = tuple(p.shape)
            leaf_module = mod_name.rsplit(".", 1)[-1]
            cls = type(module).__name__
            path = name.split(".")
            if decay_set is not None:
                decay = name in decay_set
            else:
                decay = id(p) not in layer_norm_ids and not any(
                    re.search(pat, name.lower()) for pat in _TRAINER_NO_DECAY
                )

            def add(role: str, optimizer: str, reason: str, _n=name, _s=shape, _d=decay, **kw: Any) -> None:
                routes.append(ParamRoute(_n, _s, role, optimizer, _d, reason, **kw))

            if not p.requires_grad:
                add("frozen", "frozen", "requires_grad=False")
                continue
            is_in = id(p) in inp_ids or any(name.startswith(x) for x in inp_prefixes)
            is_out = id(p) in out_ids or any(name.startswith(x) for x in out_prefixes)
            if is_in and is_out:
                add("tied_embedding", "adamw", "input and output embeddings are one tensor (tied)")
                continue
            if is_out:
                add("lm_head", "adamw", "the model's output embeddings (get_output_embeddings)")
                continue
            if is_in or isinstance(module, nn.Embedding):
                add("embedding", "adamw", "an embedding table (get_input_embeddings / nn.Embedding)")
                continue
            if any(part.startswith("lora_embedding") for part in path):
                add("lora_embedding", "adamw", "LoRA factor of an embedding")
                continue
            if "lora_A" in path:
                add("lora_A", lora_a, f"LoRA A (in x r); lora_a={lora_a}")
                continue
            if "lora_B" in path:
                add("lora_B", lora_b, f"LoRA B (r x out); lora_b={lora_b}")
                continue
            if p.ndim <= 1:
                if "norm" in cls.lower() or "norm" in name.lower():
                    add("norm", "adamw", "normalization gain (1-D)")
                elif "bias" in leaf_param:
                    add("bias", "adamw", "bias (1-D)")
                else:
                    add("scalar", "adamw", f"{p.ndim}-D tensor (vector or scalar)")
                continue
            if "bias" in leaf_param:
                add("expert_bias", "adamw", f"{p.ndim}-D bias (per-expert biases are vectors, not matrices)")
                continue
            if "norm" in cls.lower():
                add("norm", "adamw", f"parameter of normalization module {cls}")
                continue
            is_router = "router" in cls.lower() or (
                leaf_param == "weight"
                and leaf_module in ("gate", "router")
                and num_experts is not None
                and p.ndim == 2
                and shape[0] == num_experts
            )
            if is_router:
                add("router", routers, f"MoE router ({cls}); routers={routers}")
                continue
            is_experts = p.ndim == 3 and (
                "experts" in cls.lower()
                or hasattr(module, "num_experts")
                or (num_experts is not None and shape[0] == num_experts)
            )
            if is_experts:
                transposed = getattr(module, "is_transposed", None)
                if transposed is None:
                    if model_type in _TRANSPOSED_EXPERT_MODELS:
                        transposed = True
                    elif hidden is not None and "down" in leaf_param:
                        transposed = shape[-1] == hidden and shape[-2] != hidden
                    elif hidden is not None:
                        transposed = shape[-2] == hidden and shape[-1] != hidden
                    else:
                        transposed = False
                layout = "in_out" if transposed else "out_in"
                sizes, interleave, role = None, None, "expert_stack"
                out_rows = shape[-1] if transposed else shape[-2]
                if split_fused and "gate_up" in leaf_param and out_rows % 2 == 0:
                    role = "expert_gate_up"
                    if getattr(module, "is_concatenated", True) is False:
                        interleave = 2
                    else:
                        sizes = (out_rows // 2, out_rows // 2)
                how = "interleaved gate/up" if interleave else ("gate|up halves" if sizes else "whole")
                add(
                    role,
                    "muon",
                    f"{shape[0]} expert matrices ({layout}, {how}), orthogonalized per expert",
                    layout=layout,
                    split_sizes=sizes,
                    split_interleave=interleave,
                )
                continue
            if isinstance(module, nn.modules.conv._ConvNd) and p.ndim >= 3:
                add("conv", "muon", f"{cls} kernel read as (out, in*k)", flatten=True)
                continue
            linear_like = isinstance(module, nn.Linear) or "linear" in cls.lower() or cls == "Conv1D"
            if linear_like and p.ndim == 2:
                if min(shape) == 1:
                    add("vector_head", "adamw", f"{shape} projection (a vector: nothing to orthogonalize)")
                    continue
                layout = "in_out" if cls == "Conv1D" else "out_in"
                rows = shape[1] if layout == "in_out" else shape[0]
                if vocab is not None and rows == vocab:
                    add("lm_head", "adamw", f"projects to the vocabulary ({vocab}): an output head")
                    continue
                role, sizes = _fused_split(leaf_module, rows, config) if split_fused else ("", None)
                role = role or "hidden_matrix"
                reason = f"{cls} weight" + (f", blocks {sizes}" if sizes else "")
                add(role, "muon", reason, layout=layout, split_sizes=sizes)
                continue
            if unknown == "error":
                unknowns.append(f"{name} {shape} in {cls}")
                continue
            add("unknown", unknown, f"no rule for this {p.ndim}-D tensor in {cls}; unknown={unknown}")
    if unknowns:
        raise ValueError(
            "Muon routing found parameters no rule recognizes (pass unknown='adamw' or 'muon', "
            "--muon_unknown adamw|muon on the command line, to choose):\n  " + "\n  ".join(unknowns)
        )
    return routes


def muon_param_groups(
    model: nn.Module | None = None,
    *,
    routes: list[ParamRoute] | None = None,
    weight_decay: float = 0.0,
    muon_overrides: dict[str, Any] | None = None,
    adamw_overrides: dict[str, Any] | None = None,
    **route_kwargs: Any,
) -> list[dict[str, Any]]:
    """Parameter groups for :class:`~hf_fundamentals.optim.MuonAdamW`: one per (optimizer, decay, matrix view).

    ``muon_overrides``/``adamw_overrides`` are merged into the Muon/AdamW groups (e.g. a separate ``lr``).
    """
    if routes is None:
        if model is None:
            raise ValueError("muon_param_groups needs a model or routes")
        routes = route_parameters(model, **route_kwargs)
    params = dict(model.named_parameters()) if model is not None else {}
    if model is not None:  # tied / shared tensors appear under their first name only
        for name, p in model.named_parameters(remove_duplicate=False):
            params.setdefault(name, p)
    groups: dict[tuple, dict[str, Any]] = {}
    for route in routes:
        if route.optimizer == "frozen":
            continue
        use_muon = route.optimizer == "muon"
        key = (use_muon, route.decay, route.layout, route.split_sizes, route.split_interleave, route.flatten)
        if key not in groups:
            group: dict[str, Any] = {
                "params": [],
                "use_muon": use_muon,
                "weight_decay": weight_decay if route.decay else 0.0,
                "role": set(),
            }
            if use_muon:
                group.update(
                    layout=route.layout,
                    split_sizes=route.split_sizes,
                    split_interleave=route.split_interleave,
                    flatten=route.flatten,
                )
                group.update(muon_overrides or {})
            else:
                group.update(adamw_overrides or {})
            groups[key] = group
        groups[key]["params"].append(params[route.name])
        groups[key]["role"].add(route.role)
    out = []
    for group in groups.values():
        group["role"] = ",".join(sorted(group["role"]))
        out.append(group)
    return out


def routing_table(routes: list[ParamRoute]) -> str:
    """A plain-text table of every parameter, its role, its optimizer and why (for logs and ``hff muon``)."""
    rows = [("parameter", "shape", "role", "optimizer", "decay", "why")]
    rows += [
        (r.name, "x".join(map(str, r.shape)), r.role, r.optimizer, "yes" if r.decay else "no", r.reason)
        for r in routes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5]
        for row in rows
    ]
    counts: dict[str, int] = {}
    numel: dict[str, int] = {}
    for r in routes:
        counts[r.optimizer] = counts.get(r.optimizer, 0) + 1
        numel[r.optimizer] = numel.get(r.optimizer, 0) + int(torch.Size(r.shape).numel())
    summary = ", ".join(f"{k}: {counts[k]} tensors / {numel[k]:,} values" for k in sorted(counts))
    return "\n".join(lines + ["", summary])


def routing_summary(routes: list[ParamRoute]) -> str:
    """One line per (role, optimizer): tensor count, values and an example name (for training logs)."""
    groups: dict[tuple[str, str], list[ParamRoute]] = {}
    for r in routes:
        groups.setdefault((r.role, r.optimizer), []).append(r)
    rows = [("role", "optimizer", "tensors", "values", "example")]
    for (role, optimizer), items in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        numel = sum(int(torch.Size(r.shape).numel()) for r in items)
        rows.append((role, optimizer, str(len(items)), f"{numel:,}", items[0].name))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows
    )
