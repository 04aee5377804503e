"""PEFT placement helpers for memorizing fine-tunes."""

from __future__ import annotations

from typing import Any


def single_mlp_lora_config(model: Any, r: int, layer: int | None = None, **lora_kwargs: Any):
    """PEFT ``LoraConfig`` for the paper's placement: one adapter on a single decoder layer's MLP.

    The reference adds ``x A B`` to one MLP's output (Qwen3-8B layer 24 of 36, Llama-3.1-8B layer 18 of 32);
    the closest PEFT form is LoRA on that layer's ``down_proj``. ``layer`` defaults to 60% of the depth;
    ``lora_alpha`` defaults to ``r`` so the update is not rescaled (the reference applies no alpha).
    For the usual placement pass ``target_modules="all-linear"`` to PEFT instead.
    """
    from peft import LoraConfig

    n_layers = int(model.config.num_hidden_layers)
    layer = round(0.6 * n_layers) if layer is None else int(layer)
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} is outside the model's 0..{n_layers - 1}")
    names = [n for n, _ in model.named_modules() if n.endswith(f"layers.{layer}.mlp.down_proj")]
    if not names:
        raise ValueError(f"no module named like 'layers.{layer}.mlp.down_proj' in this model")
    lora_kwargs.setdefault("lora_alpha", r)
    return LoraConfig(r=r, target_modules=[f"layers.{layer}.mlp.down_proj"], **lora_kwargs)
