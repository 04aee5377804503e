"""Memorize a small catalogue verbatim with TRL's SFTTrainer + MemFT, retiring items once they are learned.

python examples/memorize_with_memft.py                          # embedded SmolLM2-135M, LoRA r=8, 2-4 min on 2 cores
python examples/memorize_with_memft.py --hff_memft sft          # the plain loss, same retirement
python examples/memorize_with_memft.py --memft_retire_after 0   # no retirement: every epoch trains every item

The data is prompt-completion pairs (product -> a made-up 8-character code), so SFTTrainer puts the loss on
the completion only. ``--hff_memft ot`` trains only the completion tokens still at p <= 0.5;
``--memft_retire_after 2`` drops an item from sampling after two visits with every token above 0.5, so later
epochs are shorter, and training stops once all items are retired and pass a recheck. The script then scores
exact recall under greedy decoding and prints how many forward/backward tokens the run cost.

Measured on 2 CPU cores (seed 0): exact match 1.00, all 16 items retired, training stopped after 42 of the
60 planned steps (28 re-admissions along the way). At lr 5e-3 the same run churned (52 re-admissions), never
stopped early and ended at exact match 0.88: retirement saves compute only when training is stable.
"""

import logging
import random
import sys

from datasets import Dataset
from transformers import HfArgumentParser
from trl import SFTConfig, SFTTrainer

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.hub import load_model
from hf_fundamentals.integrations.trainer import trainer_extras
from hf_fundamentals.memorization import fidelity

PRODUCTS = ["blue kettle", "oak desk", "steel ladder", "wool scarf", "glass vase", "cotton towel", "brass lamp",
            "linen shirt", "clay pot", "iron pan", "silk tie", "paper fan", "rubber boot", "felt hat",
            "bamboo mat", "copper mug"]  # fmt: skip
DEFAULTS = [
    "--output_dir", "runs/memft_example", "--num_train_epochs", "30", "--learning_rate", "2e-3",
    "--per_device_train_batch_size", "8", "--logging_steps", "10", "--report_to", "none", "--save_strategy", "no",
    "--lr_scheduler_type", "constant", "--use_cpu", "--bf16", "false", "--seed", "0",
    "--hff_memft", "ot", "--memft_retire_after", "2",
]  # fmt: skip


def catalogue(seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    codes = ["".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8)) for _ in PRODUCTS]
    return Dataset.from_dict(
        {"prompt": [f"Catalogue code of the {p}:" for p in PRODUCTS], "completion": [f" {c}" for c in codes]}
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = HfArgumentParser((SFTConfig, HffArguments))
    args, hff = parser.parse_args_into_dataclasses(DEFAULTS + sys.argv[1:])
    model, tokenizer = load_model("embedded")
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")
    )
    data = catalogue(args.seed)
    extras = trainer_extras(hff, args)
    trainer = extras.trainer_class(SFTTrainer)(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, **extras.trainer_kwargs()
    )
    trainer.train()
    items = [
        (
            tokenizer(p, add_special_tokens=False)["input_ids"],
            tokenizer(c, add_special_tokens=False)["input_ids"],
        )
        for p, c in zip(data["prompt"], data["completion"], strict=True)
    ]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    result = fidelity(trainer.model, items, pad_id=pad, decode=True)
    counts = trainer.memft_counts()
    full = args.num_train_epochs * len(data) / args.per_device_train_batch_size
    print(f"exact match (greedy) {result.exact_match_decoded:.2f}, token accuracy {result.token_accuracy:.2f}, "
          f"coverage {result.coverage:.2f}")  # fmt: skip
    print(f"optimizer steps {trainer.state.global_step} of {full:.0f} planned; forward+backward tokens "
          f"{counts['train_tokens']}, recheck (forward-only) tokens {counts['recheck_tokens']}, retired "
          f"{counts['retired']}/{len(data)}")  # fmt: skip


if __name__ == "__main__":
    main()
