"""``hff muon``: show where ``--hff_optimizer muon`` sends every parameter of a model, before training.

Builds the model on the meta device from its config (no weights are loaded, so a 70B id is instant once its
config is cached), optionally wraps it in LoRA, and prints the routing table: each tensor, its role, Muon or
AdamW, weight decay, and why. ``--json`` also writes it for scripts.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``hff muon``."""
    p = argparse.ArgumentParser(prog="hff muon", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="embedded", help="'embedded', a Hub id, a local path or a config.json file"
    )
    p.add_argument(
        "--lora_r", type=int, default=0, help="wrap in LoRA of this rank first (0: full fine-tuning)"
    )
    p.add_argument(
        "--lora_target_modules", nargs="+", default=["q_proj", "v_proj"], help="LoRA target modules"
    )
    p.add_argument("--lora_a", choices=["adamw", "muon"], default="adamw", help="optimizer for LoRA A")
    p.add_argument("--routers", choices=["adamw", "muon"], default="adamw", help="optimizer for MoE routers")
    p.add_argument(
        "--unknown", choices=["error", "adamw", "muon"], default="error", help="unrecognized tensors"
    )
    p.add_argument("--trust_remote_code", action="store_true", help="allow custom model code from the Hub")
    p.add_argument("--json", default=None, help="also write the routing as JSON to this file")
    return p


def build_meta_model(name: str, trust_remote_code: bool = False):
    """The model's modules with meta tensors (shapes only), from its config."""

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hf_fundamentals.integrations.hub import resolve_model_path

    if name.endswith(".json") and Path(name).is_file():
        config = AutoConfig.from_pretrained(str(Path(name).parent), trust_remote_code=trust_remote_code)
    else:
        path, extra = resolve_model_path(name)
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally save) the Muon routing of a model."""
    args = build_parser().parse_args(argv)
    from hf_fundamentals.integrations.hub import check_model_reference
    from hf_fundamentals.integrations.optim.factory import trainer_decay_parameter_names
    from hf_fundamentals.optim import route_parameters, routing_table

    if not (args.model.endswith(".json") and Path(args.model).is_file()):  # a bare config routes too
        check_model_reference(args.model, flag="--model")
    model = build_meta_model(args.model, args.trust_remote_code)
    if args.lora_r:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=args.lora_r, target_modules=args.lora_target_modules))
    routes = route_parameters(
        model,
        lora_a=args.lora_a,
        routers=args.routers,
        unknown=args.unknown,
        decay_names=trainer_decay_parameter_names(model),
    )
    print(routing_table(routes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in routes], f, indent=1)
        print(f"routing written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
