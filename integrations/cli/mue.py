"""``hff mue``: a Complete-muE transfer plan from a tuned dense proxy to an MoE target, read from their configs.

Prints the plan (globals, forward multipliers, one row per parameter group with its sources) and writes it as
JSON for ``--hff_mue``. ``--save_model DIR`` also builds the target from its config under the plan (routing
fields, plan init, plan in ``config.hff_mue``) and saves it, ready for ``hff sft --model_name_or_path DIR
--hff_mue plan.json`` or ``load_mue_model(DIR)``. Configs come from a local folder, a ``config.json`` file
or a Hub id (AutoConfig).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_fundamentals.moe import EPS_WIDTH_RULES, H_ACT_CONVENTIONS, READOUT_LR_RULES, WD_COUPLINGS


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``hff mue``."""
    p = argparse.ArgumentParser(prog="hff mue", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--proxy", required=True, help="dense proxy config: a folder, a config.json file or a Hub id"
    )
    p.add_argument(
        "--target", required=True, help="MoE (or dense) target config: folder, config.json or Hub id"
    )
    p.add_argument("--lr", type=float, required=True, help="AdamW learning rate tuned on the proxy")
    p.add_argument(
        "--weight_decay", type=float, required=True, help="decoupled AdamW weight decay tuned on it"
    )
    p.add_argument("--init_std", type=float, required=True, help="init std of its fan-in-d hidden matrices")
    p.add_argument("--adam_eps", type=float, default=1e-8, help="AdamW epsilon of the proxy run")
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999), help="AdamW betas of the proxy run")
    p.add_argument("--batch_tokens", type=int, required=True, help="proxy tokens per optimizer step")
    p.add_argument("--steps", type=int, required=True, help="proxy optimizer steps")
    p.add_argument(
        "--target_batch_tokens", type=int, default=None, help="target tokens per step (default: proxy's)"
    )
    p.add_argument("--target_steps", type=int, default=None, help="target optimizer steps (default: proxy's)")
    p.add_argument("--eps_width_rule", choices=EPS_WIDTH_RULES, default="mup", help="Adam eps across width")
    p.add_argument("--wd_coupling", choices=WD_COUPLINGS, default="keep_lr_wd", help="wd across width")
    p.add_argument(
        "--h_act_convention", choices=H_ACT_CONVENTIONS, default="ah", help="how H_act counts SwiGLU"
    )
    p.add_argument(
        "--readout_lr",
        choices=READOUT_LR_RULES,
        default="mup",
        help="untied lm_head LR across width: mup = unchanged (µP readout), blog = x1/rho_d (worked example)",
    )
    p.add_argument("--sigma0_gamma", type=float, default=0.0, help="Bridge-II sigma0 knob (0: the identity)")
    p.add_argument(
        "--no_fold", action="store_true", help="keep A, R and the readout as forward multipliers (hooks)"
    )
    p.add_argument("--out", required=True, help="where to write the plan JSON")
    p.add_argument("--save_model", default=None, help="also build the target under the plan and save it here")
    p.add_argument("--seed", type=int, default=0, help="init seed for --save_model")
    p.add_argument("--trust_remote_code", action="store_true", help="allow custom config code from the Hub")
    return p


def load_config(name: str, trust_remote_code: bool = False):
    """A transformers config from a folder, a JSON file or a Hub id (``embedded`` too)."""
    from transformers import AutoConfig

    from hf_fundamentals.integrations.hub import resolve_model_path

    if Path(name).expanduser().exists():
        return AutoConfig.from_pretrained(str(Path(name).expanduser()), trust_remote_code=trust_remote_code)
    path, extra = resolve_model_path(name)
    return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)


def main(argv: list[str] | None = None) -> int:
    """Make, print and save the plan (and optionally the initialized target model)."""
    args = build_parser().parse_args(argv)
    from hf_fundamentals.integrations.hub import check_model_reference
    from hf_fundamentals.integrations.moe.config import (
        complete_mue_config,
        dense_proxy_from_config,
        moe_target_from_config,
    )
    from hf_fundamentals.integrations.moe.model import apply_mue
    from hf_fundamentals.moe import TransferOptions, transfer_plan

    for flag, name in (("--proxy", args.proxy), ("--target", args.target)):
        if not Path(name).expanduser().is_file():  # a config.json file is fine; anything else must be a model
            check_model_reference(name, flag=flag)
    try:
        proxy_cfg = load_config(args.proxy, args.trust_remote_code)
        target_cfg = load_config(args.target, args.trust_remote_code)
        proxy = dense_proxy_from_config(
            proxy_cfg,
            lr=args.lr,
            weight_decay=args.weight_decay,
            init_std=args.init_std,
            adam_eps=args.adam_eps,
            betas=tuple(args.betas),
            batch_tokens=args.batch_tokens,
            steps=args.steps,
        )
        target = moe_target_from_config(
            target_cfg,
            batch_tokens=args.batch_tokens if args.target_batch_tokens is None else args.target_batch_tokens,
            steps=args.steps if args.target_steps is None else args.target_steps,
        )
        target_tied = bool(getattr(target_cfg, "tie_word_embeddings", False))
        if target_tied != proxy.tied_embeddings:
            raise ValueError(
                f"the proxy has tie_word_embeddings={proxy.tied_embeddings} and the target {target_tied}; the "
                "lm_head rule and the readout follow the tying, so proxy and target must tie the same way"
            )
        options = TransferOptions(
            eps_width_rule=args.eps_width_rule,
            wd_coupling=args.wd_coupling,
            sigma0_gamma=args.sigma0_gamma,
            fold_multipliers=not args.no_fold,
            h_act_convention=args.h_act_convention,
            readout_lr=args.readout_lr,
        )
        plan = transfer_plan(proxy, target, options)
        new_cfg = complete_mue_config(target_cfg, plan) if args.save_model else None
    except OSError as err:  # a folder or Hub id transformers cannot read as a config
        raise ValueError(f"--proxy/--target: {err}") from None
    print(plan.summary())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(plan.to_json())
    print(f"\nplan written to {out}")
    if new_cfg is not None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(new_cfg, trust_remote_code=args.trust_remote_code)
        apply_mue(model, plan, seed=args.seed)
        model.save_pretrained(args.save_model)
        print(f"target model initialized under the plan (seed {args.seed}) and saved to {args.save_model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
