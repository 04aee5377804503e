"""Fine-tune with Muon from your own Trainer script: one flag, AdamW-tuned lr and weight decay carried over.

python examples/train_with_muon.py                          # LoRA on the embedded SmolLM2-135M, ~1 min on 2 cores
python examples/train_with_muon.py --model_name HuggingFaceTB/SmolLM2-360M --max_steps 200
python examples/train_with_muon.py --muon_mode regularized --muon_reg_eps 0.01

Every ``HffArguments`` flag (``--hff_optimizer``, ``--muon_*``) is parsed next to ``TrainingArguments``; the
Muon routing (which tensor goes to Muon, which to AdamW, and why) is logged before training and can be
printed on its own with ``hff muon --model embedded --lora_r 8``.
"""

import logging
import sys
from dataclasses import dataclass, field

from peft import LoraConfig, get_peft_model
from transformers import DataCollatorForLanguageModeling, HfArgumentParser, Trainer, TrainingArguments

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.corpora import load_corpus
from hf_fundamentals.integrations.hub import load_model
from hf_fundamentals.integrations.trainer import trainer_extras


@dataclass
class ExampleArguments:
    model_name: str = field(default="embedded", metadata={"help": "'embedded', a Hub id or a local path"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (0: full fine-tuning)"})


# this example's defaults; anything on the command line overrides them (argparse keeps the last value)
DEFAULTS = [
    "--output_dir", "runs/muon_example", "--max_steps", "20", "--learning_rate", "1e-3",
    "--per_device_train_batch_size", "4", "--logging_steps", "5", "--report_to", "none",
    "--save_strategy", "no", "--hff_optimizer", "muon",
]  # fmt: skip
parser = HfArgumentParser((ExampleArguments, TrainingArguments, HffArguments))
example, training_args, hff_args = parser.parse_args_into_dataclasses(args=DEFAULTS + sys.argv[1:])
logging.getLogger("hf_fundamentals.muon").setLevel(logging.INFO)
logging.basicConfig(level=logging.WARNING)

model, tokenizer = load_model(example.model_name)
if example.lora_r:
    model = get_peft_model(model, LoraConfig(r=example.lora_r, target_modules=["q_proj", "v_proj"]))
corpus = load_corpus(["fortunes"], docs_per_domain=200, seed=0)
dataset = corpus.map(
    lambda b: tokenizer(b["text"], truncation=True, max_length=64),
    batched=True,
    remove_columns=corpus.column_names,
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=dataset,
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    **trainer_extras(hff_args, training_args).as_kwargs(),
)
print("techniques on:", ", ".join(hff_args.enabled_techniques()) or "none")
result = trainer.train()
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print(f"training loss {losses[0]:.3f} -> {losses[-1]:.3f} in {result.global_step} steps")
