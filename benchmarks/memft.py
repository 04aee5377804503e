"""MemFT and the LoRA memory law on the embedded SmolLM2-135M (PEFT LoRA, CPU).

    python benchmarks/memft.py                       # the default grid (about 50 min on 2 CPU cores)
    python benchmarks/memft.py --ranks 1 4 --items 16 --steps 60   # a smoke run

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

RESULTS = Path(__file__).resolve().parent / "results" / "memft.json"
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


def run(mode: str, rank: int, items, steps: int, out: Path, base_state) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    from hf_fundamentals.integrations.hub import load_model
    from hf_fundamentals.integrations.transformers.memft import memft_trainer_class
    from hf_fundamentals.memorization import MemFTConfig, fidelity

    model, tok = load_model("embedded")
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                             target_modules=[f"layers.{LAYER}.mlp.down_proj"]))  # fmt: skip
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    before = base_state or fidelity(model, items, pad_id=pad, batch_size=16)
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-2,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, optim="adamw_torch", report_to=[],
        use_cpu=True, save_strategy="no", logging_steps=max(1, steps // 5), seed=0, disable_tqdm=True,
        remove_unused_columns=False,
    )  # fmt: skip
    cls = memft_trainer_class(Trainer)
    trainer = cls(model=model, args=args, train_dataset=to_dataset(items), data_collator=default_data_collator,
                  memft=MemFTConfig(mode))  # fmt: skip
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    after = fidelity(trainer.model, items, pad_id=pad, batch_size=16, decode=True)
    tokens_per_step = 8 * float(np.mean([len(p) + len(a) for p, a in items]))
    return {
        "mode": mode, "rank": rank, "items": len(items), "length": after.answer_tokens, "steps": steps,
        "exact_match": after.exact_match, "exact_match_decoded": after.exact_match_decoded,
        "token_accuracy": after.token_accuracy, "coverage": after.coverage, "answer_loss": after.answer_loss,
        "loss_before": before.answer_loss, "delta_l": before.answer_loss - after.answer_loss,
        "fwd_bwd_tokens": tokens_per_step * steps, "seconds": seconds,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--items", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--modes", nargs="+", default=["sft", "ot"])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--summarize", action="store_true", help="only refit and summarize the stored sweep")
    args = parser.parse_args()
    if args.summarize:
        from hf_fundamentals.memorization import fit_memory_law, tokens_per_rank

        sweep = json.loads(RESULTS.read_text())["sweep"]
        _save(sweep, args, json.loads(RESULTS.read_text()).get("seconds_this_run", 0.0), final=True,
              fit=fit_memory_law, per_rank=tokens_per_rank)  # fmt: skip
        return

    from hf_fundamentals.integrations.hub import load_model
    from hf_fundamentals.memorization import fidelity, fit_memory_law, tokens_per_rank

    _, tok = load_model("embedded")
    started = time.time()
    sweep = json.loads(RESULTS.read_text()).get("sweep", []) if RESULTS.exists() else []
    done = {(r["mode"], r["rank"], r["items"], r["steps"]) for r in sweep}
    for n in args.items:
        items = phonebook(n, tok, seed=n)
        base = None
        for rank, mode in itertools.product(args.ranks, args.modes):
            if (mode, rank, n, args.steps) in done:
                continue
            row = run(mode, rank, items, args.steps, Path("/tmp/hff_memft_bench"), base)
            base = base or _Before(row["loss_before"])
            sweep.append(row)
            print(f"items {n:3d} (l={row['length']}) rank {rank:2d} {mode:10s}: EM {row['exact_match']:.3f} "
                  f"(decoded {row['exact_match_decoded']:.3f}) tok-acc {row['token_accuracy']:.3f} coverage "
                  f"{row['coverage']:.3f} dL {row['delta_l']:.2f} ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
            _save(sweep, args, time.time() - started)
    del fidelity
    _save(sweep, args, time.time() - started, final=True, fit=fit_memory_law, per_rank=tokens_per_rank)


class _Before:
    """The answer loss before training (LoRA B = 0: the same for every rank and mode of an item set)."""

    def __init__(self, loss: float) -> None:
        self.answer_loss = loss


def _save(sweep, args, seconds, final=False, fit=None, per_rank=None) -> None:
    data: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["sweep"] = sweep
    data["machine"] = machine()
    data["model"] = f"SmolLM2-135M-Instruct (embedded), LoRA on layers.{LAYER}.mlp.down_proj, alpha = r"
    data["grid"] = {
        "ranks": sorted({r["rank"] for r in sweep}), "items": sorted({r["items"] for r in sweep}),
        "lengths": sorted({r["length"] for r in sweep}), "modes": sorted({r["mode"] for r in sweep}),
        "steps": sorted({r["steps"] for r in sweep}), "batch": 8, "lr": 1e-2,
    }  # fmt: skip
    data["seconds_this_run"] = seconds
    data["seconds_all_runs"] = float(sum(r["seconds"] for r in sweep))
    if final and fit is not None:
        steps = args.steps
        rows = [r for r in sweep if r["steps"] == steps]
        by_mode: dict[str, list[float]] = {}
        # compare modes only on the (rank, items) cells every mode ran
        cells = {
            m: {(r["rank"], r["items"]) for r in rows if r["mode"] == m} for m in {r["mode"] for r in rows}
        }
        shared = set.intersection(*cells.values()) if cells else set()
        for r in rows:
            if (r["rank"], r["items"]) in shared:
                by_mode.setdefault(r["mode"], []).append(r["exact_match"])
        data["exact_match_equal_steps"] = {m: float(np.mean(v)) for m, v in by_mode.items()}
        data["compared_cells"] = sorted(shared)
        data["exact_match_equal_flops"] = dict(data["exact_match_equal_steps"])  # same tokens per step
        data["equal_flops_note"] = "sft, ot and ot_zero_bp run the same forward/backward tokens per step"
        sft = [r for r in rows if r["mode"] == "sft"]
        for name, subset in (("memory_law", sft), ("memory_law_all_modes", rows)):
            if len({(r["rank"], r["length"]) for r in subset}) >= 5:
                f = fit(
                    [r["rank"] for r in subset], [r["length"] for r in subset], [r["delta_l"] for r in subset]
                )
                data[name] = {"C": f.C, "alpha": f.alpha, "beta": f.beta, "b": f.b, "r2": f.r2, "rmse": f.rmse,
                              "n_points": f.n_points}  # fmt: skip
        data["tokens_per_rank"] = {
            m: per_rank([r["rank"] for r in rows if r["mode"] == m], [r["length"] for r in rows if r["mode"] == m],
                        [r["exact_match"] for r in rows if r["mode"] == m], 0.9)
            for m in by_mode
        }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
