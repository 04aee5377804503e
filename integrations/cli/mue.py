"""``hff mue``: a Complete-muE transfer plan from a tuned dense proxy to an MoE target, read from their configs.

Prints the plan (globals, forward multipliers, one row per parameter group with its sources) and writes it as
JSON for ``--hff_mue``. ``hff mue sweep`` instead runs per-seed LR sweeps of the proxy and targets under SP and
µE (each finished run stored, so a rerun continues) and prints the transfer regret and drift with intervals. ``--save_model DIR`` also builds the target from its config under the plan (routing
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


def build_sweep_parser() -> argparse.ArgumentParser:
    """Flags of ``hff mue sweep``."""
    p = argparse.ArgumentParser(
        prog="hff mue sweep",
        description="Per-seed LR sweeps of a dense proxy and MoE targets under SP and Complete-muE (byte-level "
        "text, vocab_size >= 256), then transfer regret and drift with bootstrap intervals over seeds.",
    )
    p.add_argument(
        "--proxy", required=True, help="dense proxy config: a folder, a config.json file or a Hub id"
    )
    p.add_argument(
        "--target", required=True, nargs="+", help="targets as NAME=CONFIG (folder, config.json, Hub id)"
    )
    p.add_argument("--out", required=True, help="folder for the stored runs (OUT/runs) and OUT/sweep.json")
    p.add_argument("--train_file", required=True, help="UTF-8 text to train on (its bytes are the tokens)")
    p.add_argument("--eval_file", required=True, help="held-out UTF-8 text (fixed for every run)")
    p.add_argument("--eval_tokens", type=int, default=65536, help="held-out tokens used (at most the file's)")
    p.add_argument(
        "--params", nargs="+", choices=("sp", "mue"), default=["sp", "mue"], help="parameterizations"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="init and data-order seeds")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per run")
    p.add_argument("--batch_size", type=int, default=16, help="sequences per step")
    p.add_argument("--seq_len", type=int, default=64, help="bytes per sequence")
    p.add_argument("--eval_every", type=int, default=50, help="steps between the averaged last evaluations")
    p.add_argument(
        "--last_evals", type=int, default=3, help="held-out evaluations averaged into a run's loss"
    )
    p.add_argument("--lr_center_log2", type=float, default=-7.0, help="centre of the log2 lr grid")
    p.add_argument("--lr_points", type=int, default=7, help="initial lr points")
    p.add_argument("--lr_spacing", type=float, default=0.5, help="log2 lr between grid points")
    p.add_argument("--max_lr_points", type=int, default=11, help="grid points at most, after extension")
    p.add_argument("--weight_decay", type=float, default=0.1, help="AdamW weight decay (matrices)")
    p.add_argument("--init_std", type=float, default=0.02, help="proxy init std of fan-in-d hidden matrices")
    p.add_argument("--n_boot", type=int, default=2000, help="bootstrap resamples over seeds")
    return p


def sweep_main(argv: list[str]) -> int:
    """Run or continue the sweeps, print the regret/drift table and write OUT/sweep.json."""
    import json

    args = build_sweep_parser().parse_args(argv)
    from hf_fundamentals.integrations.moe.lr_sweep import RunStore, SweepSettings, byte_sequences, run_sweeps
    from hf_fundamentals.moe import transfer_table

    targets = {}
    for item in args.target:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--target: {item!r} is not NAME=CONFIG")
        if name in targets or name == "proxy":
            raise ValueError(f"--target: the name {name!r} is used twice (or is 'proxy')")
        targets[name] = path
    for flag, f in (("--train_file", args.train_file), ("--eval_file", args.eval_file)):
        if not Path(f).is_file():
            raise ValueError(f"{flag}: no file {f}")
    settings = SweepSettings(
        steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, weight_decay=args.weight_decay,
        init_std=args.init_std, eval_every=args.eval_every, last_evals=args.last_evals,
    )  # fmt: skip
    try:
        shapes = {"proxy": load_config(args.proxy)} | {n: load_config(p) for n, p in targets.items()}
    except OSError as err:
        raise ValueError(f"--proxy/--target: {err}") from None
    small = [n for n, c in shapes.items() if c.vocab_size < 256]
    if small:
        raise ValueError(f"--proxy/--target: {small} have vocab_size < 256; byte tokens need 256")
    train_ids = byte_sequences([Path(args.train_file).read_text(encoding="utf-8")], args.seq_len)
    eval_ids = byte_sequences([Path(args.eval_file).read_text(encoding="utf-8")], args.seq_len)
    eval_ids = eval_ids[: max(1, args.eval_tokens // args.seq_len)]
    out = Path(args.out)
    sweeps = run_sweeps(
        shapes, "proxy", params=args.params, seeds=args.seeds, settings=settings, train_ids=train_ids,
        eval_ids=eval_ids, store=RunStore(out / "runs"), center_log2=args.lr_center_log2, spacing=args.lr_spacing,
        points=args.lr_points, max_points=args.max_lr_points, log=lambda m: print(m, flush=True),
    )  # fmt: skip
    table = transfer_table(sweeps, "proxy", n_boot=args.n_boot)
    widths = [
        max(len(str(r[i])) for r in [table["header"], *table["rows"]]) for i in range(len(table["header"]))
    ]
    print()
    for row in [table["header"], *table["rows"]]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    for flag in table["flags"]:
        print(f"  flag: {flag}")
    summary = {"sweeps": sweeps, "settings": vars(args), "eval_tokens": int(eval_ids.numel())}
    summary |= {k: v for k, v in table.items() if k not in ("rows", "header")}
    (out / "sweep.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\nsweeps and regret table written to {out / 'sweep.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Make, print and save the plan (and optionally the initialized target model); ``sweep``: the LR sweeps."""
    if argv and argv[0] == "sweep":
        return sweep_main(list(argv[1:]))
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
