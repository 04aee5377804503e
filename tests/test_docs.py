"""Every code block in README.md and docs/*.md is run here, or marked as not run with a reason.

A block runs by its language: ``python`` is executed (in a temporary folder, offline), ``bash`` runs each command
line through the shell with this environment's ``hff`` on the PATH, ``yaml`` is parsed (and read as a taxonomy
when marked so). An HTML comment on the line above a fence changes that (one directive per comment):

* ``<!-- docs-test: skip REASON -->``: not run (``REASON`` is required: what it would take, e.g. "needs the Hub").
* ``<!-- docs-test: setup NAME -->``: run after the setup ``NAME`` (see ``SETUPS``) put its names in scope or its
  files in the folder (a tiny model, a dataset, a JSONL file).
* ``<!-- docs-test: continue -->``: run in the same scope and folder as the previous block of the page.
* ``<!-- docs-test: taxonomy -->``: a YAML block that must parse as a taxonomy.
* ``<!-- docs-test: output -->``: a block showing output, not code.

``hff`` commands in bash blocks run with the real CLI entry point; keep them to seconds (``--max_steps 2``) or
skip them with the reason. Heavy setups are built once per session.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<kind>\w+)\s*(?P<arg>.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*$")
RUNNABLE = {"python", "bash", "yaml"}


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    directive: str | None = None
    arg: str = ""
    chain: list[Block] = field(default_factory=list)
    """The blocks this one continues (run first, in order)."""

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def _blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent = i, m["indent"]
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        code = "\n".join(
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        )
        block = Block(page, start + 1, m["lang"] or "text", code)
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        d = DIRECTIVE.search(lines[k]) if k >= 0 else None
        if d:
            block.directive, block.arg = d["kind"], d["arg"]
        if block.directive == "continue":
            previous = next(
                (b for b in reversed(out) if b.directive != "skip" and b.lang == block.lang), None
            )
            assert previous is not None, f"{block.id}: 'continue' with no earlier block to continue"
            block.chain = [*previous.chain, previous]
        out.append(block)
        i = j + 1
    return out


BLOCKS = [b for page in PAGES for b in _blocks(page)]


def test_every_block_is_run_or_marked():
    assert BLOCKS, "no code blocks found"
    unmarked = [b.id for b in BLOCKS if b.lang not in RUNNABLE and b.directive not in ("skip", "output")]
    assert not unmarked, (
        f"blocks in a language that is not run need `<!-- docs-test: skip|output ... -->`: {unmarked}"
    )
    no_reason = [b.id for b in BLOCKS if b.directive == "skip" and len(b.arg) < 5]
    assert not no_reason, f"`docs-test: skip` needs a reason: {no_reason}"
    known = {"skip", "setup", "continue", "taxonomy", "output", None}
    assert all(b.directive in known for b in BLOCKS), [
        (b.id, b.directive) for b in BLOCKS if b.directive not in known
    ]
    unknown_setups = [b.id for b in BLOCKS if b.directive == "setup" and b.arg not in SETUPS]
    assert not unknown_setups, f"unknown setups: {unknown_setups}"


# ------------------------------------------------------------------------------------------------ setups
def _tiny_model(ns: dict[str, Any], folder: Path, tiny_llama_dir: Path) -> None:
    """``model``, ``tokenizer`` (a 2-layer Llama), ``train_dataset`` (tokenized, with ``labels`` and a ``quality``
    score), ``args``
    (TrainingArguments, 2 steps on CPU) and ``model_path``."""
    from conftest import TINY_TEXTS
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ids = [tokenizer(t)["input_ids"][:32] for t in TINY_TEXTS[:32]]
    ids = [x + [tokenizer.pad_token_id] * (32 - len(x)) for x in ids]
    ns.update(
        model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        tokenizer=tokenizer,
        model_path=str(tiny_llama_dir),
        train_dataset=Dataset.from_dict(
            {"input_ids": ids, "labels": ids, "quality": [float((i * 37) % 11) for i in range(len(ids))]}
        ),
        args=TrainingArguments(
            output_dir=str(folder / "out"), max_steps=2, per_device_train_batch_size=4, use_cpu=True,
            report_to=[], save_strategy="no", logging_steps=1,
        ),
    )  # fmt: skip


def _text_files(ns: dict[str, Any], folder: Path, tiny_llama_dir: Path) -> None:
    """``train.jsonl`` (a ``text`` column), ``prompts.jsonl`` (``prompt``, ``answer``), ``scored.jsonl`` (``text``,
    ``quality``) in the folder, and ``tiny-model/`` (a 2-layer Llama checkout)."""
    import json
    import shutil

    from conftest import TINY_TEXTS

    (folder / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXTS))
    (folder / "scored.jsonl").write_text(
        "".join(json.dumps({"text": t, "quality": (i * 37) % 11}) + "\n" for i, t in enumerate(TINY_TEXTS))
    )
    (folder / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{i} + {i} =", "answer": str(2 * i)}) + "\n" for i in range(16))
    )
    shutil.copytree(tiny_llama_dir, folder / "tiny-model")


SETUPS = {"tiny_model": _tiny_model, "text_files": _text_files}


# ------------------------------------------------------------------------------------------------ runners
def _run_python(block: Block, ns: dict[str, Any]) -> None:
    exec(compile(block.code, f"{block.page.name}:{block.line}", "exec"), ns)


def _commands(code: str) -> list[str]:
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    return [
        line.split(" #")[0].strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _run_bash(block: Block, folder: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["HFF_CACHE"] = os.environ.get("HFF_CACHE", str(folder / "cache"))
    for command in _commands(block.code):
        proc = subprocess.run(
            command, shell=True, cwd=folder, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (
            f"{block.id}: `{command}` exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )


def _run_yaml(block: Block) -> None:
    import yaml

    data = yaml.safe_load(block.code)
    if block.directive == "taxonomy":
        from hf_fundamentals.audit.taxonomy import parse_taxonomy

        taxonomy = parse_taxonomy(data, block.id)
        assert taxonomy.categories


RUN = [b for b in BLOCKS if b.lang in RUNNABLE and b.directive not in ("skip", "output")]


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_block_runs(block, tmp_path, monkeypatch, tiny_llama_dir):
    """The block (after the blocks it continues) runs without an error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO))
    ns: dict[str, Any] = {"__name__": "__docs__"}
    for b in [*block.chain, block]:
        if b.directive == "setup":
            SETUPS[b.arg](ns, tmp_path, tiny_llama_dir)
        {"python": lambda b=b: _run_python(b, ns), "bash": lambda b=b: _run_bash(b, tmp_path),
         "yaml": lambda b=b: _run_yaml(b)}[b.lang]()  # fmt: skip


def test_commands_parse_shell_words():
    """Guards the bash runner's splitting (continuations, comments)."""
    assert _commands("hff a \\\n  --x 1   # note\n# only a comment\nhff b") == ["hff a --x 1", "hff b"]
    assert shlex.split("hff a --x 1") == ["hff", "a", "--x", "1"]
