"""Fine-tune with Evolution Strategies, anchor the weights with AWD, and watch the drift.

python examples/es_with_awd.py                 # embedded SmolLM2-135M, 20 ES iterations, about 4 min on 2 cores
python examples/es_with_awd.py --no_awd        # the same run without anchored weight decay

Task: two-digit addition with a 3-shot prefix. The reward is a TRL-style function (prompts, completions,
**columns) -> list[float]; here 1 for an exact greedy answer, else half the fraction of digits right. ES
perturbs only the MLP down-projections (``params_to_perturb``), the cheapest slice that still learns on CPU.
``DriftMonitorCallback`` logs ‖θ − θ0‖, the KL to the base model on its own continuations of a few
sentences, and a prior-task probe every 5 iterations, and writes ``drift_history.json`` and a plot.
``benchmarks/es_awd.py`` is the measured, longer version of this run.
"""

import argparse
import random

from datasets import Dataset

from hf_fundamentals.integrations.hub import load_model
from hf_fundamentals.integrations.transformers.awd import AnchoredWeightDecayCallback
from hf_fundamentals.integrations.transformers.drift import DriftMonitorCallback
from hf_fundamentals.integrations.transformers.es import ESTrainer, ESTrainingConfig

SHOTS = "3+4=7\n12+25=37\n40+18=58\n"
SENTENCES = ["The history of the printing press", "A recipe for bread needs", "The moon orbits the earth and"]


def digit_credit(prompts, completions, answer, **_):
    """1.0 for the exact answer, else 0.5 × the fraction of digits right in place."""
    out = []
    for completion, ans in zip(completions, answer, strict=True):
        got = completion.strip().split("\n")[0].strip()
        out.append(
            1.0 if got == ans else 0.5 * sum(a == b for a, b in zip(got, ans, strict=False)) / len(ans)
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no_awd", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    cli = parser.parse_args()

    rng = random.Random(0)
    rows = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(200)]
    data = Dataset.from_list([{"prompt": f"{SHOTS}{a}+{b}=", "answer": str(a + b)} for a, b in rows])
    model, tokenizer = load_model("embedded")  # or any causal LM: load_model("Qwen/Qwen2.5-0.5B-Instruct")

    monitor = DriftMonitorCallback(every=5, kl_prompts=SENTENCES, kl_max_new_tokens=16, kl_estimator="exact",
                                   plot_path="runs/es_example/drift.png")  # fmt: skip
    callbacks = [monitor]
    if not cli.no_awd:  # shrink per iteration = alpha * lam = 0.025
        callbacks.append(AnchoredWeightDecayCallback(lam=25.0, include=r"mlp\.down_proj"))
    args = ESTrainingConfig(
        output_dir="runs/es_example",
        max_steps=cli.steps,
        per_device_train_batch_size=8,  # prompts per iteration, the same for every member
        population_size=4,
        sigma=2e-3,
        alpha=1e-3,
        params_to_perturb=r"mlp\.down_proj",
        generation_kwargs={"max_new_tokens": 5, "do_sample": False},
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    trainer = ESTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                        reward_funcs=[digit_credit], callbacks=callbacks)  # fmt: skip
    trainer.train()
    for row in monitor.history:
        print(f"step {row['step']:3d}  drift {row['drift_global']:.3f}  KL to base {row['kl_to_base']:.2e}")
    print(
        "seeds and coefficients of every step: runs/es_example/es_updates/; plot: runs/es_example/drift.png"
    )


if __name__ == "__main__":
    main()
