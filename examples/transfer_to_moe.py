"""Complete-muE: take the learning rate tuned on a small dense model and train a Mixture-of-Experts model with it.

python examples/transfer_to_moe.py                       # a 16-expert top-2 Qwen3-MoE, d = 128; ~20 s on 2 cores
python examples/transfer_to_moe.py --experts 32 --active 4 --d_model 256 --max_steps 200

The proxy is a dense Qwen3 (d = 64, FFN 128) whose AdamW LR was tuned in the Complete-muE form (the benchmark
``benchmarks/moe.py`` does that sweep); the target is any Qwen3-MoE shape. ``transfer_plan`` turns the
pair into per-group LR / init / weight decay / epsilon and forward multipliers; ``complete_mue_config`` switches
on normalized top-k routing; ``apply_mue`` re-initializes the model under the plan; the plan's optimizer groups
go to a plain ``transformers.Trainer``. The plan is saved as JSON (``--hff_mue plan.json --mue_apply`` gives the
same in ``hff sft`` or any script using ``trainer_extras``) and travels in ``config.hff_mue``, so
``load_mue_model`` reloads the trained model with its multipliers. Tokens are UTF-8 bytes of GCIDE dictionary
entries (offline), so nothing but the model changes between shapes.
"""

import argparse
import math

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3MoeConfig, Trainer, TrainingArguments

from hf_fundamentals.corpora import build_corpus
from hf_fundamentals.integrations.moe import (
    apply_mue,
    complete_mue_config,
    dense_proxy_from_config,
    load_mue_model,
    moe_target_from_config,
    mue_optimizer_cls_and_kwargs,
)
from hf_fundamentals.moe import transfer_plan

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--proxy_lr", type=float, default=2**-6.5, help="the AdamW LR tuned on the dense proxy")
p.add_argument("--experts", type=int, default=16)
p.add_argument("--active", type=int, default=2)
p.add_argument(
    "--expert_width", type=int, default=None, help="default: d_model (as the benchmark's width axis)"
)
p.add_argument("--d_model", type=int, default=128)
p.add_argument("--max_steps", type=int, default=60)
p.add_argument("--output_dir", default="runs/mue_example")
args = p.parse_args()

SEQ, BATCH = 64, 16
common = dict(
    vocab_size=256, num_hidden_layers=2, head_dim=16, max_position_embeddings=SEQ, tie_word_embeddings=False,
    initializer_range=0.02, use_cache=False,
)  # fmt: skip
proxy_cfg = Qwen3Config(
    hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=4, **common
)
h = args.expert_width or args.d_model
heads = args.d_model // 16
target_cfg = Qwen3MoeConfig(
    hidden_size=args.d_model, num_attention_heads=heads, num_key_value_heads=heads, num_experts=args.experts,
    num_experts_per_tok=args.active, moe_intermediate_size=h, intermediate_size=args.active * h, **common,
)  # fmt: skip

# 1. the plan: what was tuned on the proxy, and the target (batch and duration included)
tokens = BATCH * SEQ
proxy = dense_proxy_from_config(
    proxy_cfg, lr=args.proxy_lr, weight_decay=0.1, init_std=0.02, adam_eps=1e-8, betas=(0.9, 0.95),
    batch_tokens=tokens, steps=args.max_steps,
)  # fmt: skip
plan = transfer_plan(proxy, moe_target_from_config(target_cfg, batch_tokens=tokens, steps=args.max_steps))
print(plan.summary())

# 2. the model under the plan: normalized top-k routing in the config, plan init and multipliers on the weights
model = AutoModelForCausalLM.from_config(complete_mue_config(target_cfg, plan))
apply_mue(model, plan, seed=0)

# 3. offline byte-level text, packed into 64-byte rows; the last 32 rows are held out
docs = build_corpus(["dictionary"], docs_per_domain=900, seed=0)
stream = bytearray(b"\x00".join(r["text"].encode("utf-8") for r in docs))
rows = [list(stream[i : i + SEQ]) for i in range(0, len(stream) - SEQ, SEQ)]
train, held = rows[:-32], torch.tensor(rows[-32:])
train_ds = Dataset.from_dict({"input_ids": train, "labels": train})

# 4. a plain Trainer with the plan's parameter groups (its lr / wd / eps / betas replace TrainingArguments')
targs = TrainingArguments(
    output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=BATCH,
    learning_rate=plan.global_hparams.lr, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.1,
    lr_scheduler_type="cosine", warmup_steps=0.1, logging_steps=10, save_strategy="no", report_to=[],
    use_cpu=True, seed=0,
)  # fmt: skip
trainer = Trainer(
    model=model,
    args=targs,
    train_dataset=train_ds,
    optimizer_cls_and_kwargs=mue_optimizer_cls_and_kwargs(plan, targs),
)
trainer.train()
model.eval()
with torch.no_grad():
    loss = float(model(input_ids=held, labels=held).loss)
print(f"held-out loss after {args.max_steps} steps: {loss:.3f} nats/byte ({loss / math.log(2):.2f} bits)")

# 5. save and reload: the plan is in config.hff_mue; load_mue_model re-installs the forward multipliers
trainer.save_model(args.output_dir)
reloaded = load_mue_model(args.output_dir).eval()
with torch.no_grad():
    same = torch.allclose(reloaded(input_ids=held).logits, model(input_ids=held).logits, atol=1e-5)
print(f"saved to {args.output_dir}; reloaded with load_mue_model, same logits: {same}")
with open(f"{args.output_dir}/plan.json", "w") as f:
    f.write(plan.to_json())
print(f"plan written to {args.output_dir}/plan.json (use it with --hff_mue in hff sft)")
