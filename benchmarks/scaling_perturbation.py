"""Shannon-law (arXiv 2605.23901) perturbation study: does loss after fake quantization turn up with more
training tokens, and does the single-run Shannon law capture that shape where a monotone law cannot?

    python benchmarks/scaling_perturbation.py            # about 10-15 min on 2 CPU cores
    python benchmarks/scaling_perturbation.py --quick    # 200 steps (smoke run)

Setup (seed 0): byte-level causal LM (vocab 256, UTF-8 bytes, a 0 byte between documents) on the offline
``manpages`` domain (600 documents train, 40 held out), a 4-layer Llama (hidden 128, ~0.8M parameters), AdamW
lr 3e-3 with cosine decay, batch 16 × 128 bytes, ``max_steps`` 1200. :class:`ScalingLawCallback` records the
held-out loss every 40 steps, and the loss of a copy fake-quantized to ``--bits`` bits per output row
(symmetric absmax; weights restored exactly after each evaluation). Tokens are what the Trainer counted from the
attention masks.

Then, for the clean and the perturbed curve: the single-run Shannon law and a monotone law (Chinchilla along one
run, ``E + B/D^β``) are fitted on the first 60% of the evaluations and scored on the last 40% (held-out R²,
RMSE), and the fitted D* is compared with where the measured curve actually bottoms out.
Results: ``benchmarks/results/scaling_perturbation.json`` and ``scaling_perturbation.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, table  # noqa: E402

from hf_fundamentals.scaling import fit_law  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def byte_data(seq: int = 128, train_docs: int = 600, eval_docs: int = 40, seed: int = 0):
    from datasets import Dataset

    from hf_fundamentals.corpora import build_corpus

    docs = [r["text"] for r in build_corpus(["manpages"], docs_per_domain=train_docs + eval_docs, seed=seed)]

    def pack(items: list[str]) -> Dataset:
        stream = bytearray()
        for t in items:
            stream += t.encode("utf-8") + b"\x00"
        n = len(stream) // seq
        ids = torch.tensor(list(stream[: n * seq]), dtype=torch.long).view(n, seq)
        return Dataset.from_dict({"input_ids": ids.tolist()})

    return pack(docs[eval_docs:]), pack(docs[:eval_docs]).select(range(64))


def collate(features):
    ids = torch.tensor([f["input_ids"] for f in features])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def run(steps: int, bits: int, eval_every: int, out_dir: Path):
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from hf_fundamentals.integrations.scaling.callback import ScalingLawCallback

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=128, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    train, held = byte_data()
    cb = ScalingLawCallback(
        min_points=6,
        perturb=f"quant:{bits}",
        perturb_batches=None,
        output_file=None,
        fit_kwargs={"n_starts": 32},
    )
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=16, per_device_eval_batch_size=32,
        learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.0,
        eval_strategy="steps", eval_steps=eval_every, logging_steps=eval_every, save_strategy="no", report_to=[],
        use_cpu=True, seed=0, include_num_input_tokens_seen="non_padding", disable_tqdm=False,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=held, data_collator=collate, callbacks=[cb]
    )
    trainer.train()
    return cb, sum(p.numel() for p in model.parameters())


def score(tokens: np.ndarray, losses: np.ndarray, n_params: float, frac: float) -> dict[str, Any]:
    n_fit = max(6, int(round(frac * len(tokens))))
    held = np.arange(len(tokens)) >= n_fit
    out: dict[str, Any] = {"n_fit": n_fit, "n_heldout": int(held.sum())}
    for law in ("shannon_run", "chinchilla"):
        fit = fit_law(law, np.full_like(tokens, n_params), tokens, losses, heldout=held, n_starts=64)
        out[law] = {
            "params": fit.params,
            "r2_heldout": fit.r2_heldout,
            "rmse_heldout": fit.rmse_heldout,
            "r2_train": fit.r2_train,
            "d_star": fit.d_star(n_params),
            "prediction": fit.predict(n_params, tokens).tolist(),
        }
    i = int(np.argmin(losses))
    out["measured_argmin_tokens"] = float(tokens[i])
    out["measured_min_is_interior"] = 0 < i < len(tokens) - 1
    out["rise_after_min"] = float(losses[-1] - losses[i])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bits", type=int, default=3, help="fake-quantization bits of the perturbed copy")
    parser.add_argument("--steps", type=int, default=1200)
    args = parser.parse_args(argv)
    steps = 200 if args.quick else args.steps
    eval_every = 20 if args.quick else max(20, steps // 30)
    t0 = time.time()
    cb, n_params = run(steps, args.bits, eval_every, ROOT / "runs" / "scaling_perturbation")
    tokens = np.array([p.tokens for p in cb.points])
    clean = np.array([p.loss for p in cb.points])
    pert = np.array([p.perturbed_loss for p in cb.points])
    res: dict[str, Any] = {
        "clean": score(tokens, clean, n_params, 0.6),
        "perturbed": score(tokens, pert, n_params, 0.6),
        "points": [p.__dict__ for p in cb.points],
        "callback_last_report": cb.reports[-1].__dict__ if cb.reports else None,
        "settings": {
            "steps": steps,
            "eval_every": eval_every,
            "bits": args.bits,
            "n_params": n_params,
            "fit_fraction": 0.6,
            "model": "Llama 4x128, byte-level",
            "data": "manpages 600 train / 40 held-out docs",
            "seed": 0,
        },  # fmt: skip
        "machine": machine(),
    }
    rows = []
    for curve in ("clean", "perturbed"):
        for law in ("shannon_run", "chinchilla"):
            x = res[curve][law]
            rows.append([curve, law, x["r2_heldout"], x["rmse_heldout"], x["d_star"] or "none"])
    print(table(rows, ["curve", "law", "held-out R²", "RMSE", "fitted D*"]))
    for curve in ("clean", "perturbed"):
        x = res[curve]
        print(
            f"{curve}: measured minimum at {x['measured_argmin_tokens']:.3g} tokens "
            f"(interior: {x['measured_min_is_interior']}), final minus min {x['rise_after_min']:+.4f}"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (curve, y) in zip(axes, (("clean", clean), ("perturbed", pert)), strict=True):
        n_fit = res[curve]["n_fit"]
        ax.plot(tokens[:n_fit], y[:n_fit], "ko", label="fitted")
        ax.plot(tokens[n_fit:], y[n_fit:], "o", mfc="none", mec="k", label="held out")
        for law, style in (("shannon_run", "-"), ("chinchilla", "--")):
            ax.plot(tokens, res[curve][law]["prediction"], style, label=law)
        ax.set_xscale("log")
        ax.set_xlabel("tokens")
        ax.set_title(curve if curve == "clean" else f"fake-quantized to {args.bits} bits")
        ax.legend()
    axes[0].set_ylabel("held-out loss (nats/byte)")
    fig.tight_layout()
    name = "scaling_perturbation" + ("_quick" if args.quick else "")
    fig.savefig(OUT / f"{name}.png", dpi=120)
    res["seconds"] = time.time() - t0
    (OUT / f"{name}.json").write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {OUT / f'{name}.json'} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
