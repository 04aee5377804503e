"""Sampling text from the model under audit: local ``generate`` or an OpenAI-compatible completions server.

Generations are appended to a JSONL cache one batch at a time, so an interrupted audit resumes where it
stopped; each record has ``id``, ``prompt``, ``text`` and ``n_tokens`` (for token-weighted estimates).
Batch ``b`` always holds generations ``b*batch_size .. (b+1)*batch_size-1`` and is seeded from ``(seed, b)``;
a resumed run redoes only incomplete batches, so it gives the same texts as an uninterrupted one on the
same machine and library versions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

NEUTRAL_PROMPTS: tuple[str, ...] = (
    "",
    "\n",
    "\n\n",
    " ",
    "The",
    "A",
    "In",
    "Title:",
    "Abstract:",
    "Introduction",
    "Chapter 1",
    "Continue the passage:",
    "Here is",
    "#",
    "Note:",
    "1.",
)
"""Short, domain-neutral lead-ins (our list, in the spirit of LLMSurgeon's NEUTRAL_PROMPTS; the prefix is
stripped from the text that is classified)."""

PROMPT_PRESETS: dict[str, tuple[str, ...]] = {
    "neutral": NEUTRAL_PROMPTS,
    # unconditional sampling: generation starts from the BOS token alone (the faithful setting)
    "bos": ("",),
}


@dataclass
class GenerationConfig:
    """How many texts to sample and how (defaults: unconditional-ish sampling at T=1, top_p=1)."""

    n: int = 96
    max_new_tokens: int = 64
    prompts: str | Sequence[str] = "neutral"
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    seed: int = 0
    min_chars: int = 20

    def prompt_list(self) -> list[str]:
        """The prompts, from a preset name or an explicit list; generation ``i`` uses prompt ``i % len``."""
        if isinstance(self.prompts, str):
            if self.prompts not in PROMPT_PRESETS:
                raise ValueError(
                    f"prompts={self.prompts!r} is not a preset; accepted: {sorted(PROMPT_PRESETS)} or a list of strings"
                )
            return list(PROMPT_PRESETS[self.prompts])
        prompts = list(self.prompts)
        if not prompts:
            raise ValueError("prompts is an empty list; pass at least one prompt or a preset name")
        return prompts

    def validate(self) -> None:
        """Fail early on values that cannot produce a usable sample."""
        for name, value, low in (("n", self.n, 1), ("max_new_tokens", self.max_new_tokens, 1)):
            if value < low:
                raise ValueError(f"{name}={value} must be >= {low}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0 (sampling, not greedy decoding)")
        self.prompt_list()


@dataclass
class Generation:
    """One sampled text with its provenance."""

    id: int
    prompt: str
    text: str
    n_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)


class GenerationBackend(Protocol):
    """Anything that turns prompts into continuations (local model, remote server)."""

    name: str

    def generate(self, prompts: list[str], ids: list[int], config: GenerationConfig) -> list[Generation]:
        """Continue each prompt once; ``ids`` seed the sampling of each item."""
        ...


def attention_kwargs(attn_implementation: str | None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for ``--attn_implementation`` (an ``hff_*`` name is registered in
    transformers' ``AttentionInterface`` first, so that loading resolves it)."""
    if attn_implementation is None:
        return {}
    if attn_implementation.startswith("hff_"):
        import hf_fundamentals.integrations.attention  # noqa: F401  (registers the hff backends on import)
    return {"attn_implementation": attn_implementation}


class LocalBackend:
    """``model.generate`` on this machine: batched, left-padded, seeded per batch from the generation ids.

    A model loaded with ``attn_implementation="hff_sparse_decode"`` generates with its ``SparseDecodeCache`` (the
    page summaries are kept beside K/V instead of recomputed each step); ``sparse_decode_top_p`` sets its top-p.
    Its settings are part of ``name``, so a generation cache sampled with other attention is refused."""

    def __init__(
        self, model: Any, tokenizer: Any, name: str = "local", sparse_decode_top_p: float | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        config = getattr(model, "config", None)
        self.sparse_decode = getattr(config, "_attn_implementation", None) == "hff_sparse_decode"
        if sparse_decode_top_p is not None and not self.sparse_decode:
            raise ValueError(
                "sparse_decode_top_p needs a model loaded with attn_implementation='hff_sparse_decode'"
            )
        if self.sparse_decode:
            from hf_fundamentals.integrations.attention.sparse_decode import set_sparse_decode_settings

            extra = {} if sparse_decode_top_p is None else {"top_p": sparse_decode_top_p}
            settings = set_sparse_decode_settings(model, **extra)
            name = f"{name}+hff_sparse_decode(top_p={settings.top_p})"
        self.name = name
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _encode(self, prompts: list[str]):
        """Prompts with BOS prepended when the tokenizer has one (so an empty prompt still has a token)."""
        import torch

        tok = self.tokenizer
        prefix = [tok.bos_token_id] if tok.bos_token_id is not None else []
        rows = [prefix + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if any(len(r) == 0 for r in rows):
            raise ValueError(
                "an empty prompt needs a BOS token but this tokenizer has none; use prompts='neutral' or "
                "non-empty prompts"
            )
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return input_ids, attention

    def generate(self, prompts: list[str], ids: list[int], config: GenerationConfig) -> list[Generation]:
        import torch

        input_ids, attention = self._encode(prompts)
        input_ids = input_ids.to(self.model.device)
        attention = attention.to(self.model.device)
        torch.manual_seed(config.seed * 1_000_003 + ids[0])
        cache = {}
        if self.sparse_decode:
            from hf_fundamentals.integrations.attention.sparse_decode import SparseDecodeCache

            cache["past_key_values"] = SparseDecodeCache(self.model.config)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                **cache,
                max_new_tokens=config.max_new_tokens,
                do_sample=True,
                temperature=config.temperature,
                top_p=config.top_p,
                top_k=0,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, input_ids.shape[1] :]
        results = []
        specials = set(self.tokenizer.all_special_ids)
        for gid, prompt, row in zip(ids, prompts, new.tolist(), strict=True):
            kept, dropped = [], []
            for token in row:
                if token == self.tokenizer.eos_token_id:
                    break
                if token in specials:
                    dropped.append(token)
                else:
                    kept.append(token)
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            # special tokens the model emitted are kept out of the classified text but recorded (e.g. a
            # domain tag a benchmark model was trained to emit first)
            meta = {"special_tokens": self.tokenizer.convert_ids_to_tokens(dropped)} if dropped else {}
            results.append(Generation(gid, prompt, text, len(kept), meta))
        return results


SAMPLE_SETTINGS = ("max_new_tokens", "prompts", "temperature", "top_p", "seed")
"""The generation settings that change what is sampled (with the backend's name): a cache written under other
values of these is refused; ``batch_size``, ``n`` and ``min_chars`` do not change a sample and may differ."""


def sample_fingerprint(config: GenerationConfig, backend_name: str) -> dict[str, Any]:
    """What a cached generation was sampled under (:data:`SAMPLE_SETTINGS`, the prompt list, the backend)."""
    found = {k: getattr(config, k) for k in SAMPLE_SETTINGS}
    found["prompts"] = config.prompt_list()
    found["backend"] = backend_name
    return found


def _differences(cached: dict[str, Any], now: dict[str, Any]) -> str:
    keys = [k for k in now if cached.get(k) != now[k]] + [k for k in cached if k not in now]
    shown = []
    for k in keys:
        old, new = cached.get(k), now.get(k)
        if k == "prompts" and isinstance(old, list) and isinstance(new, list):
            old, new = f"{len(old)} prompts", f"{len(new)} prompts (different)"
        shown.append(f"{k}: cache {old!r}, now {new!r}")
    return "; ".join(shown)


def _repair_cut_line(path: Path) -> None:
    """Drop a last line cut by a crash (no final newline), so the next record starts on a line of its own."""
    with path.open("rb+") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        block = min(size, 1 << 20)
        handle.seek(size - block)
        tail = handle.read(block)
        cut = tail.rfind(b"\n")
        handle.truncate(size - block + cut + 1 if cut >= 0 else 0)


def _read_cache(path: Path, fingerprint: dict[str, Any]) -> dict[int, Generation]:
    """Generations already in the cache. A cache sampled under other settings is an error naming the settings
    that differ (mixing two distributions would bias the audit); a cache with no generation yet is reused."""
    done: dict[int, Generation] = {}
    if not path.exists():
        return done
    _repair_cut_line(path)
    header = None
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a damaged line: drop it, it will be regenerated
                continue
            if "fingerprint" in record:
                header = record["fingerprint"]
                continue
            done[int(record["id"])] = Generation(**record)
    if header is not None and done:
        cached = {k: header.get(k) for k in (*SAMPLE_SETTINGS, "prompts", "backend")}
        if cached != fingerprint:
            raise ValueError(
                f"the generation cache {path} holds {len(done)} generations sampled under other settings "
                f"({_differences(cached, fingerprint)})",
            )
    if not done:  # only a header (a run that failed before its first batch): start afresh
        path.unlink()
    return done


def generate_corpus(
    backend: GenerationBackend,
    config: GenerationConfig,
    cache_path: str | Path | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Sample ``config.n`` texts (resuming from ``cache_path`` if present) and return them in id order."""
    from tqdm.auto import tqdm

    config.validate()
    prompts = config.prompt_list()
    fingerprint = sample_fingerprint(config, backend.name)
    path = Path(cache_path) if cache_path is not None else None
    done = _read_cache(path, fingerprint) if path else {}
    size = config.batch_size
    batches = [list(range(b, min(b + size, config.n))) for b in range(0, config.n, size)]
    todo = [ids for ids in batches if not all(i in done for i in ids)]
    handle = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    header_due = path is not None and not done  # written with the first finished batch, never alone
    try:
        remaining = sum(len(ids) for ids in todo)
        with tqdm(
            total=config.n, initial=config.n - remaining, desc="generating", disable=not progress
        ) as bar:
            for ids in todo:
                batch = backend.generate([prompts[i % len(prompts)] for i in ids], ids, config)
                if path is not None and handle is None:
                    handle = path.open("a", encoding="utf-8")
                lines = [json.dumps({"fingerprint": fingerprint})] if header_due else []
                header_due = False
                lines += [json.dumps(asdict(gen)) for gen in batch]
                for gen in batch:
                    done[gen.id] = gen
                if handle is not None:
                    handle.write("".join(line + "\n" for line in lines))
                    handle.flush()
                bar.update(len(ids))
                if on_batch is not None:
                    on_batch(len(done))
    finally:
        if handle is not None:
            handle.close()
    return [done[i] for i in range(config.n)]
