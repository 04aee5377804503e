"""Train in SAW order from your own Trainer script: score the data, order it, and keep that order on every rank.

python examples/train_in_saw_order.py                       # LoRA on the embedded SmolLM2-135M, ~1 min on 2 cores
python examples/train_in_saw_order.py --hff_order stair --order_window_size 16
python examples/train_in_saw_order.py --order_scorer perplexity   # score by the embedded model's loss (slower)

``--hff_order`` switches the Trainer to sequential reading (and refuses to shuffle); ``prepare_train_dataset``
computes the score column if it is missing (``--order_scorer``) and puts the rows in training order. The corpus
has a ``domain`` column, so the window jitter here interleaves domains. ``hff order --dataset_name FILE`` prints
the same metrics for your own data without training.
"""

import logging
import sys
from dataclasses import dataclass, field

from peft import LoraConfig, get_peft_model
from transformers import DataCollatorForLanguageModeling, HfArgumentParser, Trainer, TrainingArguments

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.corpora import load_corpus
from hf_fundamentals.integrations.hub import load_model
from hf_fundamentals.integrations.ordering import order_report, plot_orders
from hf_fundamentals.integrations.trainer import trainer_extras


@dataclass
class ExampleArguments:
    model_name: str = field(default="embedded", metadata={"help": "'embedded', a Hub id or a local path"})
    plot: str = field(default="runs/saw_example/order.png", metadata={"help": "where to draw the order"})


# this example's defaults; anything on the command line overrides them (argparse keeps the last value)
DEFAULTS = [
    "--output_dir", "runs/saw_example", "--max_steps", "20", "--learning_rate", "1e-3",
    "--per_device_train_batch_size", "4", "--logging_steps", "5", "--report_to", "none", "--save_strategy", "no",
    "--hff_order", "saw", "--order_scorer", "compression", "--order_ascending", "false",
    "--order_window_size", "32", "--order_domain_column", "domain",
]  # fmt: skip
parser = HfArgumentParser((ExampleArguments, TrainingArguments, HffArguments))
example, training_args, hff_args = parser.parse_args_into_dataclasses(args=DEFAULTS + sys.argv[1:])
logging.basicConfig(level=logging.WARNING)

model, tokenizer = load_model(example.model_name)
model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
extras = trainer_extras(hff_args, training_args)  # also switches the run to sequential reading
corpus = load_corpus(["fortunes", "jargon"], docs_per_domain=120, seed=0)
ordered = extras.prepare_train_dataset(corpus, training_args)  # scored, then in training order

batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
report = order_report(ordered, hff_args.order_score, batch, domain_column="domain")
print(f"order: {', '.join(hff_args.enabled_techniques())}")
print(f"  first/last 10% mean score quantile: {report.front_mean_q:.2f} / {report.back_mean_q:.2f}")
print(f"  sweeps {report.sweeps}, resets {report.resets}, within-batch spread {report.within_batch_std:.3f}")
print(f"  longest run of one domain: {report.longest_domain_run}")
scores = ordered[hff_args.order_score]
signed = scores if hff_args.order_ascending else [-s for s in scores]
plot_orders({hff_args.hff_order: range(len(ordered))}, signed, example.plot, domains=ordered["domain"])
print(f"  plot: {example.plot}")

dataset = ordered.map(  # map keeps the row order
    lambda b: tokenizer(b["text"], truncation=True, max_length=64),
    batched=True,
    remove_columns=ordered.column_names,
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=dataset,
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    **extras.as_kwargs(),
)
result = trainer.train()
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print(
    f"training loss {losses[0]:.3f} -> {losses[-1]:.3f} in {result.global_step} steps, in {hff_args.hff_order} order"
)
