"""Worker for the two-process ES test, and the tiny model, tokenizer, prompts and reward the ES tests share.

``python -m torch.distributed.run --standalone --nproc_per_node 2 es_dist_worker.py OUT`` trains with the
population split over 2 gloo processes and writes rank r's weights to ``OUT.rank<r>.pt``; ``train(out_dir)``
without a backend is the single-process reference.
"""

from __future__ import annotations

import os
import sys

import torch

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 .,!?-")  # 4 + 42 = 46 tokens
PROMPTS = ["hello", "the cat", "12 x", "why?", "go", "sun is", "xyz", "ok ok"]


def tokenizer():
    """A character-level WordLevel tokenizer (no training, no download)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIAL + CHARS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")  # fmt: skip


def model(seed: int = 0):
    """A 1-layer random Llama over the 46-token vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(SPECIAL) + len(CHARS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
        bos_token_id=1, eos_token_id=2,
    ))  # fmt: skip


def dataset(n: int = 8):
    from datasets import Dataset

    prompts = PROMPTS[:n]
    return Dataset.from_dict({"prompt": prompts, "target": ["a"] * len(prompts)})


def count_target(prompts, completions, target, **kwargs):
    """Share of the completion's characters that are the row's target character."""
    return [c.count(t) / max(len(c), 1) for c, t in zip(completions, target, strict=True)]


def train(out_dir: str, backend: str | None = None, max_steps: int = 4):
    from hf_fundamentals.integrations.evolution.es_config import ESTrainingConfig
    from hf_fundamentals.integrations.evolution.es_trainer import ESTrainer

    args = ESTrainingConfig(
        output_dir=out_dir, max_steps=max_steps, per_device_train_batch_size=4, population_size=6, sigma=0.02,
        alpha=0.02, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, seed=0,
        disable_tqdm=True, generation_kwargs={"max_new_tokens": 6}, ddp_backend=backend,
    )  # fmt: skip
    trainer = ESTrainer(model=model(), args=args, train_dataset=dataset(), processing_class=tokenizer(),
                        reward_funcs=[count_target])  # fmt: skip
    trainer.train()
    return trainer


if __name__ == "__main__":
    out = sys.argv[1]
    trainer = train(os.path.dirname(out), backend="gloo")
    assert trainer.accelerator.num_processes == 2
    torch.save(trainer.model.state_dict(), f"{out}.rank{trainer.accelerator.process_index}.pt")
    # leave the process group before exit: gloo torn down by interpreter exit can abort a rank
    # ("terminate called without an active exception") after the work is done
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
