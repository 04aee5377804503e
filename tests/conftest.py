"""Shared fixtures: no network, a private cache, tiny models built from configs, the embedded model once."""

from __future__ import annotations

import os

# Nothing in the suite may reach a hub; set before transformers / huggingface_hub read them at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The Triton kernels under kernels/ run on CPU through Triton's interpreter. Triton reads this when it is first
# imported (transformers/trl can import it long before a kernel test module runs), so it is set here, first.
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist (``-n auto`` in pyproject's addopts) every worker gets its share of the cores; torch would
# otherwise start one thread per core in each worker and they would fight over the same cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most 4 (each worker imports torch and transformers: ~1 GB)."""
    return max(1, min(os.cpu_count() or 1, 4))


TINY_TEXTS = [
    f"The number {i} is {'even' if i % 2 == 0 else 'odd'} and its square is {i * i}." for i in range(120)
]


def build_tiny_llama(path: Path) -> Path:
    """A 2-layer Llama with an in-process BPE tokenizer, saved like a Hub checkout (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TINY_TEXTS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """Path of a tiny random Llama checkout with its tokenizer."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_text_file(tmp_path_factory) -> Path:
    """A JSONL file with a ``text`` column for SFT smoke tests."""
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXTS))
    return path


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M-Instruct ``(model, tokenizer)``, loaded once per session."""
    from hf_fundamentals.integrations.hub import EmbeddedModelMissing, load_model

    try:
        return load_model("embedded")
    except EmbeddedModelMissing as err:  # the README install step always installs it; say so if it did not
        pytest.fail(f"embedded model package missing: {err}")


TEARDOWN_ABORT = "terminate called without an active exception"


def run_two_processes(worker: Path, *args: object, timeout: int = 300):
    """Run ``worker`` on two gloo processes (torchrun). Retried once when a rank aborts in gloo teardown with
    ``TEARDOWN_ABORT`` (seen with torch 2.13 on CPU after the work is done); the caller still checks outputs."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(worker).parent))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
    ]
    for _ in range(2):
        proc = subprocess.run(
            [*cmd, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode == 0 or TEARDOWN_ABORT not in proc.stderr:
            break
    return proc
