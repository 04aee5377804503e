"""MemFT and the LoRA memory law on the embedded SmolLM2-135M (PEFT LoRA, CPU).

    python benchmarks/memorization.py                       # the default grid (about 50 min on 2 CPU cores)
    python benchmarks/memorization.py --ranks 1 4 --items 16 --steps 60   # a smoke run
    python benchmarks/memorization.py --ranks 4 --items 24 --modes sft+retire2 --curve_every 10   # retire-when-learned
    python benchmarks/memorization.py --dataset passage --items 4 --ranks 8 --modes sft ot sw_sliding
    python benchmarks/memorization.py --summarize                   # recompute every summary from the stored runs

Runs already in the results file are skipped, so a sweep resumes where it stopped. A mode "X+retireK" trains
mode X with ``retire_after=K``; its FLOPs to reach the SFT run's final exact match (same cell, run with
``--curve_every``) land in ``retire``.

PhoneBook items: a synthetic full name -> a random 10-digit number ("Name: Ada Moreno\\nPhone:" ->
" 4 0 1 ..."; SmolLM2 tokenizes each digit on its own, so an answer is 10-11 tokens). Memory length l = answer
tokens summed over the items. LoRA sits on one MLP (layer 20's down_proj, our stand-in for the paper's single
MLP intervention; alpha = r, so the update is not rescaled, as in the reference), trained with the Trainer
and the MemFT mixin, AdamW lr 1e-2 with linear decay (the paper's lr), batch 8, the same number of optimizer
steps for every method. sft and MemFT-OT process the same tokens per step, so equal steps is also equal FLOPs
(forward + backward tokens are counted and stored). Fidelity is measured on the answer tokens: exact match
(greedy), token accuracy (teacher forcing) and coverage (p > 0.5). dL = answer loss before training minus
after; the law dL = C r^alpha l^-beta + b is fitted on the sft runs (and separately on all runs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from report import machine

RESULTS = Path(__file__).resolve().parent / "results" / "memorization.json"
FIRST = ["Ada", "Bram", "Cleo", "Dara", "Emil", "Fay", "Gus", "Hana", "Ivo", "Juno", "Kai", "Lena", "Milo", "Nora",
         "Otto", "Pia", "Quin", "Rosa", "Sven", "Tara", "Ugo", "Vera", "Wim", "Xia", "Yara", "Zeno"]  # fmt: skip
LAST = ["Moreno", "Okafor", "Lindqvist", "Haddad", "Novak", "Tanaka", "Ferreira", "Kowalski", "Byrne", "Abbasi",
        "Dubois", "Ivanova", "Mensah", "Rossi", "Schmidt", "Yilmaz", "Nakamura", "Oliveira", "Petrov", "Quint"]  # fmt: skip
LAYER = 20


def phonebook(n: int, tokenizer, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    names = set()
    while len(names) < n:
        names.add(f"{FIRST[rng.integers(len(FIRST))]} {LAST[rng.integers(len(LAST))]}")
    items = []
    for name in sorted(names):
        digits = "".join(str(d) for d in rng.integers(0, 10, 10))
        prompt = tokenizer(f"Name: {name}\nPhone:", add_special_tokens=False)["input_ids"]
        answer = tokenizer(f" {digits}", add_special_tokens=False)["input_ids"]
        items.append((prompt, answer))
    return items


def to_dataset(items):
    from datasets import Dataset

    width = max(len(p) + len(a) for p, a in items)
    ids, labels, mask = [], [], []
    for p, a in items:
        seq = p + a
        pad = width - len(seq)
        ids.append(seq + [0] * pad)
        labels.append([-100] * len(p) + a + [-100] * pad)
        mask.append([1] * len(seq) + [0] * pad)
    return Dataset.from_dict({"input_ids": ids, "labels": labels, "attention_mask": mask})


def passages(n: int, tokenizer, length: int = 64, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """The long-passage variant: "Passage k:" -> the first ``length`` tokens of a real fortune (offline corpus)."""
    from hf_fundamentals.corpora import build_corpus

    docs = build_corpus(
        "fortunes", docs_per_domain=4 * n, seed=seed, min_chars=6 * length, max_chars=40 * length
    )
    items = []
    for doc in docs:
        answer = tokenizer(" " + " ".join(doc["text"].split()), add_special_tokens=False)["input_ids"][
            :length
        ]
        if len(answer) == length:
            items.append(
                (tokenizer(f"Passage {len(items) + 1}:", add_special_tokens=False)["input_ids"], answer)
            )
        if len(items) == n:
            return items
    raise RuntimeError(f"only {len(items)} fortunes of {length}+ tokens; ask for fewer passages")


def make_items(dataset: str, n: int, tokenizer, seed: int):
    return (
        phonebook(n, tokenizer, seed=n + 1000 * seed)
        if dataset == "phonebook"
        else passages(n, tokenizer, seed=seed)
    )


def parse_mode(label: str):
    """'ot' -> MemFTConfig('ot'); 'sft+retire2' -> MemFTConfig('sft', retire_after=2)."""
    from hf_fundamentals.memorization import MemFTConfig

    mode, _, extra = label.partition("+retire")
    return MemFTConfig(mode, retire_after=int(extra) if extra else 0)


def curriculum_epochs_for(n_items: int, batch: int, steps: int) -> int:
    """The longest SW curriculum that fits in ``steps`` optimizer steps (equal steps = equal FLOPs here)."""
    from hf_fundamentals.memorization import MemFTConfig
    from hf_fundamentals.memorization.memft import curriculum_total_steps

    epochs = 1
    while curriculum_total_steps(n_items, batch, epochs + 1, MemFTConfig("sw_curriculum")) <= steps:
        epochs += 1
    return epochs


def run(spec: dict[str, Any], items, out: Path, base_state, curve_every: int = 0) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

    from hf_fundamentals.integrations.hub import load_model
    from hf_fundamentals.integrations.memorization.memft_trainer import memft_trainer_class
    from hf_fundamentals.memorization import fidelity

    rank, steps, batch = spec["rank"], spec["steps"], 8
    model, tok = load_model("embedded")
    target = f"layers.{LAYER}.mlp.down_proj" if spec["placement"] == "mlp" else "all-linear"
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                             target_modules=[target] if spec["placement"] == "mlp" else target))  # fmt: skip
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    before = base_state or fidelity(model, items, pad_id=pad, batch_size=16)
    config = parse_mode(spec["mode"])
    extra: dict[str, Any] = {}
    if config.mode == "sw_curriculum":
        extra["memft_curriculum_epochs"] = curriculum_epochs_for(len(items), batch, steps)
    curve: list[dict[str, float]] = []

    class Curve(TrainerCallback):
        """Teacher-forced exact match every ``curve_every`` steps, against the tokens trained so far."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if curve_every and state.global_step % curve_every == 0:
                f = fidelity(model, items, pad_id=pad, batch_size=16)
                counts = trainer.memft_counts()
                curve.append({"step": state.global_step, "exact_match": f.exact_match, "coverage": f.coverage,
                              "fwd_bwd_tokens": counts["train_tokens"], "recheck_tokens": counts["recheck_tokens"],
                              "retired": counts["retired"]})  # fmt: skip
            return control

    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-2,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, optim="adamw_torch", report_to=[],
        use_cpu=True, save_strategy="no", logging_steps=max(1, steps // 5), seed=spec["seed"], disable_tqdm=True,
        remove_unused_columns=False,
    )  # fmt: skip
    cls = memft_trainer_class(Trainer)
    trainer = cls(model=model, args=args, train_dataset=to_dataset(items), data_collator=default_data_collator,
                  memft=config, callbacks=[Curve()], **extra)  # fmt: skip
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    after = fidelity(trainer.model, items, pad_id=pad, batch_size=16, decode=True)
    counts = trainer.memft_counts()
    return {
        **spec, "length": after.answer_tokens, "optimizer_steps": trainer.state.global_step,
        "exact_match": after.exact_match, "exact_match_decoded": after.exact_match_decoded,
        "token_accuracy": after.token_accuracy, "coverage": after.coverage, "answer_loss": after.answer_loss,
        "loss_before": before.answer_loss, "delta_l": before.answer_loss - after.answer_loss,
        "fwd_bwd_tokens": counts["train_tokens"], "recheck_tokens": counts["recheck_tokens"],
        "retired": counts["retired"], "curve": curve, "seconds": seconds, **extra,
    }  # fmt: skip


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--items", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--modes", nargs="+", default=["sft", "ot"])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--dataset", choices=["phonebook", "passage"], default="phonebook",
                        help="10-digit phone numbers, or 64-token passages of real text (fortunes)")  # fmt: skip
    parser.add_argument("--placement", choices=["mlp", "all-linear"], default="mlp")
    parser.add_argument("--seed", type=int, default=0, help="training seed and item-set offset")
    parser.add_argument(
        "--curve_every", type=int, default=0, help="record exact match every N steps (0 = off)"
    )
    parser.add_argument("--summarize", action="store_true", help="only refit and summarize the stored sweep")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="the results file (read, extended, written)"
    )
    args = parser.parse_args()
    RESULTS = args.results
    if args.summarize:
        data = json.loads(RESULTS.read_text())
        _save(data["sweep"], data.get("seconds_this_run", 0.0), final=True)
        return

    from hf_fundamentals.integrations.hub import load_model

    _, tok = load_model("embedded")
    started = time.time()
    sweep = (
        [_defaults(r) for r in json.loads(RESULTS.read_text()).get("sweep", [])] if RESULTS.exists() else []
    )
    done = {_key(r) for r in sweep}
    for n in args.items:
        items = make_items(args.dataset, n, tok, args.seed)
        base = None
        for rank, mode in itertools.product(args.ranks, args.modes):
            spec = {"dataset": args.dataset, "placement": args.placement, "seed": args.seed, "mode": mode,
                    "rank": rank, "items": n, "steps": args.steps}  # fmt: skip
            if _key(spec) in done:
                continue
            row = run(spec, items, Path("/tmp/hff_memft_bench"), base, curve_every=args.curve_every)
            base = base or _Before(row["loss_before"])
            sweep.append(row)
            print(f"{args.dataset} {n:3d} items (l={row['length']}) rank {rank:2d} {args.placement} seed {args.seed} "
                  f"{mode:12s}: EM {row['exact_match']:.3f} (decoded {row['exact_match_decoded']:.3f}) tok-acc "
                  f"{row['token_accuracy']:.3f} coverage {row['coverage']:.3f} dL {row['delta_l']:.2f} "
                  f"steps {row['optimizer_steps']} ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
            _save(sweep, time.time() - started)
    _save(sweep, time.time() - started, final=True)


KEY = ("dataset", "placement", "seed", "mode", "rank", "items", "steps")
BASELINE = {"dataset": "phonebook", "placement": "mlp", "seed": 0}


def _defaults(row: dict[str, Any]) -> dict[str, Any]:
    """Rows of the first sweep predate the dataset/placement/seed/optimizer_steps fields."""
    row = {**BASELINE, **row}
    row.setdefault("optimizer_steps", row["steps"])
    row.setdefault("recheck_tokens", 0.0)
    row.setdefault("curve", [])
    return row


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in KEY)


class _Before:
    """The answer loss before training (LoRA B = 0: the same for every rank and mode of an item set)."""

    def __init__(self, loss: float) -> None:
        self.answer_loss = loss


def _flops_to_reach(curve: list[dict[str, float]], target: float) -> float | None:
    """Training FLOPs, in forward+backward token units (a forward-only recheck token counts 1/3), at the first
    curve point whose exact match reaches ``target``; None if it never does."""
    for point in curve:
        if point["exact_match"] >= target - 1e-9:
            return point["fwd_bwd_tokens"] + point["recheck_tokens"] / 3
    return None


def _save(sweep, seconds, final=False) -> None:
    from hf_fundamentals.memorization import fit_memory_law, tokens_per_rank

    data: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["sweep"] = sweep
    data["machine"] = machine()
    data["model"] = "SmolLM2-135M-Instruct (embedded), PEFT LoRA with alpha = r"
    data["grid"] = {
        **{k: sorted({r[k] for r in sweep}) for k in ("dataset", "placement", "seed", "mode", "rank", "items",
                                                       "length", "steps")},
        "batch": 8, "lr": 1e-2, "lora": {"mlp": f"layers.{LAYER}.mlp.down_proj", "all-linear": "all-linear"},
        "cells": [_key(r) for r in sweep],
    }  # fmt: skip
    data["seconds_this_run"] = seconds
    data["seconds_all_runs"] = float(sum(r["seconds"] for r in sweep))
    if final:
        plain = [r for r in sweep if "+retire" not in r["mode"]]

        def cell(r):
            return (r["dataset"], r["placement"], r["seed"], r["rank"], r["items"], r["steps"])

        sft = {cell(r): r for r in plain if r["mode"] == "sft"}
        paired: dict[str, dict[str, Any]] = {}
        for mode in sorted({r["mode"] for r in plain} - {"sft"}):
            rows = [r for r in plain if r["mode"] == mode and cell(r) in sft]
            paired[mode] = {
                "cells": [cell(r) for r in rows], "n": len(rows),
                mode: float(np.mean([r["exact_match"] for r in rows])) if rows else None,
                "sft": float(np.mean([sft[cell(r)]["exact_match"] for r in rows])) if rows else None,
                "token_accuracy": float(np.mean([r["token_accuracy"] for r in rows])) if rows else None,
                "sft_token_accuracy": float(np.mean([sft[cell(r)]["token_accuracy"] for r in rows])) if rows else None,
            }  # fmt: skip
        data["paired_with_sft"] = paired
        # every mode here runs the same forward/backward tokens per optimizer step, so equal steps = equal FLOPs;
        # the headline compares the modes on the cells that every one of them ran
        by_mode: dict[str, set] = {}
        for r in plain:
            by_mode.setdefault(r["mode"], set()).add(cell(r))
        shared = set.intersection(*by_mode.values()) if by_mode else set()
        data["equal_steps_cells"] = sorted(shared)
        data["exact_match_equal_steps"] = {
            m: float(np.mean([r["exact_match"] for r in plain if r["mode"] == m and cell(r) in shared]))
            for m in sorted(by_mode)
        } if shared else {}  # fmt: skip
        data["exact_match_equal_flops"] = dict(data["exact_match_equal_steps"])
        data["equal_flops_note"] = ("sft, ot, ot_zero_bp, sw_sliding and sw_curriculum (epochs chosen to fit the "
                                    "step budget) train the same batch per step, so equal steps is equal FLOPs; "
                                    "both dicts average over equal_steps_cells (every mode ran them); "
                                    "paired_with_sft compares each variant with sft on all cells it ran")  # fmt: skip
        law_rows = [r for r in sft.values() if all(r[k] == v for k, v in BASELINE.items())]
        for name, subset in (("memory_law", law_rows), ("memory_law_all_modes", plain)):
            subset = [r for r in subset if all(r[k] == v for k, v in BASELINE.items())]
            if len({(r["rank"], r["length"]) for r in subset}) >= 5:
                f = fit_memory_law([r["rank"] for r in subset], [r["length"] for r in subset],
                                   [r["delta_l"] for r in subset])  # fmt: skip
                data[name] = {"C": f.C, "alpha": f.alpha, "beta": f.beta, "b": f.b, "r2": f.r2, "rmse": f.rmse,
                              "n_points": f.n_points,
                              # with tiny exponents C r^a ~ C + C a ln r: only these slopes are identified
                              "dL_per_ln_rank": f.C * f.alpha, "dL_per_ln_length": -f.C * f.beta}  # fmt: skip
        data["tokens_per_rank"] = {
            m: tokens_per_rank([r["rank"] for r in rows], [r["length"] for r in rows],
                               [r["exact_match"] for r in rows], 0.9)
            for m in ("sft", "ot")
            if (rows := [r for r in plain if r["mode"] == m and all(r[k] == v for k, v in BASELINE.items())])
        }  # fmt: skip
        retire = {}
        for r in (r for r in sweep if "+retire" in r["mode"]):
            base = sft.get(cell(r))
            if base is None or not base["curve"]:
                continue
            target = base["exact_match"]
            flops_sft = _flops_to_reach(base["curve"], target)
            flops = _flops_to_reach(r["curve"], target)
            retire[f"{r['mode']} {cell(r)}"] = {
                "target_exact_match": target, "flops_to_reach": flops, "sft_flops_to_reach": flops_sft,
                "sft_flops_full_run": base["fwd_bwd_tokens"],
                "run_flops": r["fwd_bwd_tokens"] + r["recheck_tokens"] / 3, "final_exact_match": r["exact_match"],
                "retired": r["retired"], "optimizer_steps": r["optimizer_steps"],
            }  # fmt: skip
        data["retire"] = retire

        def first(curve, target):
            return next((p["step"] for p in curve if p["exact_match"] >= target - 1e-9), None)

        data["steps_to_exact_match"] = {  # from the teacher-forced curve, every curve_every steps
            f"{r['mode']} {cell(r)}": {"0.9": first(r["curve"], 0.9), "1.0": first(r["curve"], 1.0)}
            for r in sweep
            if r["curve"]
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
