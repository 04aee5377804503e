"""Fine-tune with Evolution Strategies, anchor the weights with AWD, and watch the drift.

python examples/es_with_awd.py                 # embedded SmolLM2-135M, 20 ES iterations, about 4 min on 2 cores
python examples/es_with_awd.py --no_awd        # the same run without anchored weight decay

Task: two-digit addition with a 3-shot prefix. The reward is a TRL-style function (prompts, completions,
**columns) -> list[float]; here the teacher-forced mean log-probability of the right answer under the member
being scored (the closure reads the model, which ES has perturbed in place). An exact-match reward works the
same way but with 4 members and 8 prompts most members tie, and tied rewards give a zero step. ES perturbs only
the MLP down-projections (``params_to_perturb``), the cheapest slice that still learns on CPU.
``DriftMonitorCallback`` logs ‖θ − θ0‖, the KL to the base model on its own continuations of a few
sentences, and a prior-task probe every 5 iterations, and writes ``drift_history.json`` and a plot.
``benchmarks/evolution.py`` is the measured, longer version of this run.
"""

import argparse
import random

import torch
from datasets import Dataset

from hf_fundamentals.integrations.evolution import (
    AnchoredWeightDecayCallback,
    DriftMonitorCallback,
    ESTrainer,
    ESTrainingConfig,
)
from hf_fundamentals.integrations.hub import load_model

SHOTS = "3+4=7\n12+25=37\n40+18=58\n"
SENTENCES = ["The history of the printing press", "A recipe for bread needs", "The moon orbits the earth and"]


def answer_logprob_reward(model, tokenizer):
    """A reward that scores the right answer by teacher forcing: mean log p(answer tokens | prompt)."""

    @torch.no_grad()
    def answer_logprob(prompts, completions, answer, **_):
        starts = [len(tokenizer(p)["input_ids"]) for p in prompts]
        enc = tokenizer([p + a for p, a in zip(prompts, answer, strict=True)], return_tensors="pt",
                        padding=True, padding_side="right")  # fmt: skip
        logp = torch.log_softmax(model(**enc).logits[:, :-1].float(), -1)
        token_lp = logp.gather(-1, enc["input_ids"][:, 1:, None]).squeeze(-1)
        ends = enc["attention_mask"].sum(1).tolist()
        return [
            float(token_lp[i, s - 1 : e - 1].mean())
            for i, (s, e) in enumerate(zip(starts, ends, strict=True))
        ]

    return answer_logprob


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no_awd", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    cli = parser.parse_args()

    rng = random.Random(0)
    rows = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(200)]
    data = Dataset.from_list([{"prompt": f"{SHOTS}{a}+{b}=", "answer": str(a + b)} for a, b in rows])
    model, tokenizer = load_model("embedded")  # or any causal LM: load_model("Qwen/Qwen2.5-0.5B-Instruct")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token

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
        generation_kwargs={"max_new_tokens": 1, "do_sample": False},  # the reward does not read completions
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    trainer = ESTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                        reward_funcs=[answer_logprob_reward(model, tokenizer)], callbacks=callbacks)  # fmt: skip
    trainer.train()
    for row in monitor.history:
        print(f"step {row['step']:3d}  drift {row['drift_global']:.3f}  KL to base {row['kl_to_base']:.2e}")
    print(
        "seeds and coefficients of every step: runs/es_example/es_updates/; plot: runs/es_example/drift.png"
    )


if __name__ == "__main__":
    main()
