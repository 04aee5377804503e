"""Benchmark: page-sparse decode attention (``hff_sparse_decode``) on the embedded SmolLM2-135M-Instruct.

    OMP_NUM_THREADS=1 python benchmarks/attention_sparse_decode.py          # ~35 min on one core
    python benchmarks/attention_sparse_decode.py --quick   # 2k only, fewer cases, results in /tmp (~5 min)
    python benchmarks/attention_sparse_decode.py --report                   # reprint from the results file

Sections (CPU, fp32, seed 0; the machine is recorded):

1. **Decode-mode perplexity and pages read** at 2k, 4k, 8k tokens of held-out text (the licence texts under
   /usr/share/common-licenses; the defaults were fixed before this text was read, and the top-p sweep below is
   reported, not used to change them). The last 512 tokens of each window are scored with every sparse layer
   attending exactly as it would at that decode step (``sparse_attention_at_positions``, tested equal to the
   step-by-step function); the rest of the window, and the dense layers, run sdpa. Per sparse layer and query:
   the fraction of pages read, the certified dropped-mass bound and the exact dropped mass (violations counted).
   A top-p sweep at 4k gives quality against pages read (plot).
2. **Passkey retrieval**: a 5-digit key planted at evenly spaced depths of the licence text, the question at the
   end, greedy decoding with ``generate`` from one shared prefill, dense (sdpa) vs sparse.
3. **Speed**: decode tokens/s with ``generate`` at 2k, 4k, 8k: sdpa with transformers' default ``DynamicCache``,
   sdpa with :class:`SparseDecodeCache` (its page-aligned buffers, no sparsity: separates the cache's effect),
   and ``hff_sparse_decode``; all from the same prefilled K/V, in one run. Plus the words of KV state read per
   decoded token (I/O count: summaries + kept pages in sparse layers, everything in dense layers).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, table  # noqa: E402

from hf_fundamentals.attention.sparse_decode import sparse_attention_at_positions  # noqa: E402
from hf_fundamentals.integrations.attention.sparse_decode import (  # noqa: E402
    SPARSE_DECODE,
    SparseDecodeCache,
    SparseDecodeSettings,
    set_sparse_decode,
    settings_of,
    sparse_stats,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "attention_sparse_decode.json"
QUICK_RESULTS = Path("/tmp/attention_sparse_decode_quick.json")
PLOT = ROOT / "benchmarks" / "results" / "attention_sparse_decode.png"
LICENSES = [
    "GPL-3",
    "Apache-2.0",
    "LGPL-3",
    "MPL-2.0",
    "Artistic",
    "GFDL-1.3",
    "GPL-2",
    "LGPL-2.1",
    "MPL-1.1",
]
SCORED = 512
TOL = 1e-5
PASSKEY_LENGTHS = [2048, 4096, 8192]
PASSKEY_DEPTHS = 20
PASSKEY_NEW = 8  # greedy tokens per answer (a 5-digit key is 2-3 tokens after "The pass key is")
PASSKEY_DIR = ROOT / "benchmarks" / "results" / "attention_sparse_decode_passkey"  # one JSON per case


def log(msg: str) -> None:
    print(msg, flush=True)


def heldout_ids(tok, n: int) -> torch.Tensor:
    text = "\n\n".join(
        Path(f"/usr/share/common-licenses/{name}").read_text(errors="replace")
        for name in LICENSES
        if Path(f"/usr/share/common-licenses/{name}").exists()
    )
    ids = tok(text, return_tensors="pt").input_ids[:, :n]
    if ids.shape[1] < n:
        raise RuntimeError(f"only {ids.shape[1]} tokens of held-out text; need {n}")
    return ids


# ------------------------------------------------------------------------------------- 1. decode-mode quality
def prefill(model, ids: torch.Tensor) -> SparseDecodeCache:
    """Run ``ids`` through the model with sdpa into a fresh SparseDecodeCache (prefill is dense in every backend)."""
    model.set_attn_implementation("sdpa")
    cache = SparseDecodeCache(model.config)
    with torch.no_grad():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    return cache


def scored_chunk(model, chunk, targets, cache, start: int, s: SparseDecodeSettings | None) -> dict[str, Any]:
    """NLL of ``targets`` when ``chunk`` (token positions ``start..``) runs on top of ``cache``; with settings, the
    sparse layers' queries attend in decode mode over every key before them (the prefix is shared: causality
    makes it identical for every setting)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    m = chunk.shape[1]
    pos = torch.arange(start, start + m)
    acc = {"pages_read": [], "violations": 0, "max_bound": 0.0, "max_exact": 0.0, "checked": 0}

    def fn(module, q, k, v, mask, **kw):
        out, _ = sdpa_attention_forward(module, q, k, v, mask, **kw)
        if s is None or module.layer_idx < s.dense_layers:
            return out, None
        r = sparse_attention_at_positions(
            q[0], k[0], v[0], pos, page_size=s.page_size, scaling=kw.get("scaling"), top_p=s.top_p,
            sink_pages=s.sink_pages, window=s.window, max_fraction=s.max_fraction, alpha=s.alpha,
        )  # fmt: skip
        out = r.output.transpose(0, 1)[None].to(out.dtype)
        acc["pages_read"].append(float(r.pages_read.mean()))
        acc["violations"] += int((r.exact_dropped > r.mass_bound + TOL).sum())
        acc["checked"] += r.mass_bound.numel()
        acc["max_bound"] = max(acc["max_bound"], float(r.mass_bound.max()))
        acc["max_exact"] = max(acc["max_exact"], float(r.exact_dropped.max()))
        return out, None

    AttentionInterface.register("hff_bench_decode_mode", fn)
    AttentionMaskInterface.register(
        "hff_bench_decode_mode", sdpa_mask
    )  # else the chunk gets no causal offset
    model.set_attn_implementation("hff_bench_decode_mode")
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = model(input_ids=chunk, past_key_values=cache, use_cache=True).logits[0]
    nll = float(torch.nn.functional.cross_entropy(logits.float(), targets))
    res = {"nll": nll, "ppl": math.exp(nll), "seconds": time.perf_counter() - t0}
    if s is not None:
        res.update(
            pages_read=sum(acc["pages_read"]) / len(acc["pages_read"]), violations=acc["violations"],
            bound_checks=acc["checked"], max_mass_bound=acc["max_bound"], max_exact_dropped=acc["max_exact"],
        )  # fmt: skip
    return res


def quality_at(model, ids, ps, default: SparseDecodeSettings) -> tuple[dict[str, Any], SparseDecodeCache]:
    """Decode-mode perplexity of the last SCORED tokens of ``ids``, dense and at each top_p; returns the results
    and the cache holding all but the last token (for the speed section)."""
    from dataclasses import replace

    n = ids.shape[1]
    start = n - SCORED - 1
    t0 = time.perf_counter()
    cache = prefill(model, ids[:, :start])
    log(f"  prefill {start} tokens: {time.perf_counter() - t0:.0f} s")
    chunk, targets = ids[:, start : n - 1], ids[0, start + 1 : n]
    row: dict[str, Any] = {"sparse": {}}
    for p in ps:
        r = scored_chunk(model, chunk, targets, copy.deepcopy(cache), start, replace(default, top_p=p))
        row["sparse"][str(p)] = r
    row["dense"] = dense = scored_chunk(
        model, chunk, targets, cache, start, None
    )  # the cache now holds n - 1
    for p, r in row["sparse"].items():
        r["ppl_rel_increase"] = r["ppl"] / dense["ppl"] - 1
        log(
            f"  {n} tokens, top_p {p}: ppl {r['ppl']:.4f} vs dense {dense['ppl']:.4f} ({r['ppl_rel_increase']:+.2%}), "
            f"pages read {r['pages_read']:.3f}, bound violations {r['violations']}/{r['bound_checks']} "
            f"({r['seconds']:.0f} s)"
        )
    return row, cache


# ----------------------------------------------------------------------------------------------- 2. passkey
def passkey_prompt(tok, n: int, depth: float, key: str) -> torch.Tensor:
    filler = heldout_ids(tok, n)[0]
    needle = tok(
        f"\nThe pass key is {key}. Remember it. {key} is the pass key.\n", return_tensors="pt"
    ).input_ids[0]
    question = tok("\nWhat is the pass key? The pass key is", return_tensors="pt").input_ids[0]
    body = n - len(needle) - len(question)
    at = int(depth * body)
    return torch.cat([filler[:at], needle, filler[at:body], question])[None]


def greedy(model, ids, cache, n_new: int, impl: str) -> torch.Tensor:
    model.set_attn_implementation(impl)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache, max_new_tokens=n_new,
            min_new_tokens=n_new, do_sample=False, pad_token_id=model.config.eos_token_id,
        )  # fmt: skip
    return out[0, ids.shape[1] :]


def dynamic_copy(model, cache: SparseDecodeCache):
    """The K/V of ``cache`` in transformers' default ``DynamicCache`` (what sdpa's ``generate`` would hold)."""
    from transformers import DynamicCache

    c = DynamicCache(config=model.config)
    for i, layer in enumerate(cache.layers):
        c.update(layer.keys.clone(), layer.values.clone(), i)
    return c


def passkey_answers(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Greedy ``PASSKEY_NEW`` tokens after ``ids``, dense (sdpa, ``DynamicCache``) and sparse
    (``hff_sparse_decode``, ``SparseDecodeCache``), from one prefill.

    ``generate``'s first step is the prompt's forward, dense in both backends (the sparse backend calls sdpa for
    it); here it runs once, with sdpa, into the page-aligned cache, and gives the first token. Both backends then
    continue with ``generate`` from a copy of that cache, which is what ``generate`` does after its first step.
    :func:`check_shared_prefill` compares this token for token with two full ``generate`` calls."""
    cache = SparseDecodeCache(model.config)
    first = greedy(
        model, ids, cache, 1, "sdpa"
    )  # the prompt's forward; the cache now holds every prompt token
    ids1 = torch.cat([ids, first[None]], dim=1)
    dense = greedy(model, ids1, dynamic_copy(model, cache), PASSKEY_NEW - 1, "sdpa")
    sparse = greedy(model, ids1, cache, PASSKEY_NEW - 1, SPARSE_DECODE)
    return {"dense": torch.cat([first, dense]), "sparse": torch.cat([first, sparse])}


def check_shared_prefill(model, tok, n: int) -> dict[str, Any]:
    """Are :func:`passkey_answers` identical to full ``generate`` calls (one prefill each: sdpa with the default
    cache, ``hff_sparse_decode`` with its cache)? Run on the first case of length ``n``."""
    ids = passkey_prompt(tok, n, 0.5 / PASSKEY_DEPTHS, passkey_key(n, 0))
    shared = passkey_answers(model, ids)
    full = {
        "dense": greedy(model, ids, None, PASSKEY_NEW, "sdpa"),
        "sparse": greedy(model, ids, SparseDecodeCache(model.config), PASSKEY_NEW, SPARSE_DECODE),
    }
    res = {"length": n, **{k: bool(torch.equal(shared[k], full[k])) for k in full}}
    log(
        f"  shared prefill vs full generate at {n} tokens: dense identical {res['dense']}, sparse {res['sparse']}"
    )
    return res


def passkey_key(n: int, i: int) -> str:
    """The 5-digit key of case ``i`` at length ``n`` (seeded per case, so that any subset of cases can be rerun)."""
    g = torch.Generator().manual_seed(1000 * n + i)
    return str(int(torch.randint(10000, 99999, (1,), generator=g)))


def passkey_case(model, tok, n: int, i: int, n_depths: int) -> dict[str, Any]:
    depth = (i + 0.5) / n_depths
    key = passkey_key(n, i)
    t0 = time.perf_counter()
    out = passkey_answers(model, passkey_prompt(tok, n, depth, key))
    answers = {}
    for name, toks in out.items():
        text = tok.decode(toks)
        found = re.findall(r"\d{5}", text)
        answers[name] = {"text": text, "answer": found[0] if found else None}
    return {
        "length": n, "depth": depth, "index": i, "key": key,
        "dense_right": answers["dense"]["answer"] == key, "sparse_right": answers["sparse"]["answer"] == key,
        "same_answer": answers["dense"]["answer"] == answers["sparse"]["answer"],
        "identical": answers["dense"]["text"] == answers["sparse"]["text"], "answers": answers,
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip


def passkey_sweep(
    model, tok, lengths: list[int], n_depths: int, folder: Path, budget_s: float | None
) -> None:
    """Run the passkey cases not yet stored in ``folder`` (one JSON per case, so the sweep resumes): the even
    depth indices at every length first, then the odd ones, so that a part-run spans depths and lengths. A case is
    not started if the budget would not cover it (the slowest case so far at its length, else a shorter length's
    scaled by the length ratio to the power 1.3)."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    spent: dict[int, list[float]] = {}
    order = [(n, i) for start in (0, 1) for n in lengths for i in range(start, n_depths, 2)]
    for n, i in order:
        path = folder / f"{n}_{i:02d}of{n_depths}.json"
        if path.exists():
            spent.setdefault(n, []).append(json.loads(path.read_text())["seconds"])
    for n, i in order:
        path = folder / f"{n}_{i:02d}of{n_depths}.json"
        if path.exists():
            continue
        known = [m for m in spent if m <= n]
        guess = max(spent[max(known)]) * (n / max(known)) ** 1.3 if known else 0.0
        if budget_s is not None and time.perf_counter() - t0 + guess > budget_s:
            log(
                f"  passkey {n} tokens, case {i}: not started (needs ~{guess:.0f} s; budget {budget_s / 60:.0f} min)"
            )
            continue
        case = passkey_case(model, tok, n, i, n_depths)
        path.write_text(json.dumps(case, indent=1))
        spent.setdefault(n, []).append(case["seconds"])
        log(f"  passkey {n} tokens, depth {case['depth']:.3f}: dense {case['dense_right']}, sparse "
            f"{case['sparse_right']}, identical text {case['identical']} ({case['seconds']:.0f} s)")  # fmt: skip


def explain_case(model, tok, n: int, i: int, n_depths: int = PASSKEY_DEPTHS) -> dict[str, Any]:
    """Why a passkey case differs: at the first sparse decode step (after the dense prefill's first token), per
    sparse layer, the exact (dense) attention mass of the query heads on the needle's tokens and whether the
    needle's pages were read, by KV head."""
    import hf_fundamentals.integrations.attention.sparse_decode as glue

    depth, key = (i + 0.5) / n_depths, passkey_key(n, i)
    ids = passkey_prompt(tok, n, depth, key)
    needle_len = len(tok(f"\nThe pass key is {key}. Remember it. {key} is the pass key.\n").input_ids)
    question_len = len(tok("\nWhat is the pass key? The pass key is").input_ids)
    at = int(depth * (n - needle_len - question_len))
    pages = torch.arange(at // 16, (at + needle_len - 1) // 16 + 1)
    rows, real = [], glue.sparse_decode_attention

    def spy(query, k, v, **kw):
        res = real(query, k, v, **kw)
        m, s = kw["n"], kw.get("scaling") or query.shape[-1] ** -0.5
        g = query.shape[1] // k.shape[1]
        kk = k[:, :, :m].repeat_interleave(g, dim=1)
        p = torch.softmax(torch.einsum("bhd,bhnd->bhn", query.float(), kk.float()) * s, dim=-1)[0]
        rows.append({
            "needle_mass_max_head": float(p[:, at : at + needle_len].sum(-1).max()),
            "needle_pages_read_by_kv_head": res.keep[0][:, pages].float().mean(-1).tolist(),
            "kept_mass_of_needle_head": float((p * res.keep[0].repeat_interleave(g, 0).repeat_interleave(
                16, -1)[:, :m].float()).sum(-1)[p[:, at : at + needle_len].sum(-1).argmax()]),
        })  # fmt: skip
        return res

    cache = SparseDecodeCache(model.config)
    first = greedy(model, ids, cache, 1, "sdpa")
    glue.sparse_decode_attention = spy
    try:
        greedy(model, torch.cat([ids, first[None]], dim=1), cache, 1, SPARSE_DECODE)
    finally:
        glue.sparse_decode_attention = real
    first_layer = settings_of(model).dense_layers
    out = {"length": n, "index": i, "needle_tokens": [at, at + needle_len], "layers": {}}
    for j, r in enumerate(rows):
        out["layers"][str(first_layer + j)] = r
    for j, r in out["layers"].items():
        log(f"  layer {j}: needle mass (max head) {r['needle_mass_max_head']:.3f}, needle pages read by KV head "
            f"{[round(x, 2) for x in r['needle_pages_read_by_kv_head']]}, that head's kept mass "
            f"{r['kept_mass_of_needle_head']:.3f}")  # fmt: skip
    return out


def stored_cases(folder: Path, lengths: list[int], n_depths: int) -> list[dict[str, Any]]:
    paths = [folder / f"{n}_{i:02d}of{n_depths}.json" for n in lengths for i in range(n_depths)]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


# ------------------------------------------------------------------------------------------------- 3. speed
def kv_words_per_token(cfg, n: int, s: SparseDecodeSettings, pages_read: float | None) -> float:
    """Words of KV state read per decoded token over all layers: dense layers read K and V; sparse layers read
    both summaries (2 per page) and the kept pages of K and V."""
    per_layer = 2 * n * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    if pages_read is None:
        return float(cfg.num_hidden_layers * per_layer)
    sparse = per_layer / s.page_size + pages_read * per_layer
    return float(s.dense_layers * per_layer + (cfg.num_hidden_layers - s.dense_layers) * sparse)


def speed_at(model, ids, cache, n_new: int, repeats: int, s: SparseDecodeSettings) -> dict[str, Any]:
    """Decode tokens/s with generate from ``cache`` (all of ``ids`` but the last token), three ways, interleaved,
    best of ``repeats``."""
    n = ids.shape[1]
    times: dict[str, float] = {}
    pages = None
    for _ in range(repeats):
        for name, impl in (("sdpa_dynamic_cache", "sdpa"), ("sdpa_sparse_cache", "sdpa"), ("sparse", SPARSE_DECODE)):  # fmt: skip
            c = dynamic_copy(model, cache) if name == "sdpa_dynamic_cache" else copy.deepcopy(cache)
            t0 = time.perf_counter()
            greedy(model, ids, c, n_new, impl)
            times[name] = min(times.get(name, math.inf), time.perf_counter() - t0)
            if name == "sparse":
                st = [x.pages_read for x in sparse_stats(model) if x.path == "sparse"]
                pages = sum(st) / len(st) if st else None
            del c
    row: dict[str, Any] = {k: {"seconds": v, "tokens_per_s": n_new / v} for k, v in times.items()}
    row["speedup_vs_sdpa"] = times["sdpa_dynamic_cache"] / times["sparse"]
    row["speedup_vs_sdpa_same_cache"] = times["sdpa_sparse_cache"] / times["sparse"]
    row["pages_read_last_step"] = pages
    row["kv_words_per_token_dense"] = kv_words_per_token(model.config, n, s, None)
    row["kv_words_per_token_sparse"] = kv_words_per_token(model.config, n, s, pages)
    log(
        f"  {n} tokens: sdpa {row['sdpa_dynamic_cache']['tokens_per_s']:.2f} tok/s, sdpa+sparse cache "
        f"{row['sdpa_sparse_cache']['tokens_per_s']:.2f}, sparse {row['sparse']['tokens_per_s']:.2f} "
        f"(x{row['speedup_vs_sdpa']:.2f} vs sdpa, x{row['speedup_vs_sdpa_same_cache']:.2f} same cache)"
    )
    return row


# ------------------------------------------------------------------------------------------------- report
def report(res: dict[str, Any]) -> None:
    q = res["quality"]
    rows = []
    for n, row in sorted(q.items(), key=lambda kv: int(kv[0])):
        for p, r in row["sparse"].items():
            rows.append(
                [n, p, row["dense"]["ppl"], r["ppl"], r["ppl_rel_increase"], r["pages_read"], r["violations"]]
            )
    print(
        table(
            rows, ["tokens", "top_p", "dense ppl", "sparse ppl", "rel increase", "pages read", "violations"]
        )
    )
    if "speed" in res:
        rows = [
            [n, r["sdpa_dynamic_cache"]["tokens_per_s"], r["sdpa_sparse_cache"]["tokens_per_s"],
             r["sparse"]["tokens_per_s"], r["speedup_vs_sdpa"], r["kv_words_per_token_dense"],
             r["kv_words_per_token_sparse"]]
            for n, r in sorted(res["speed"].items(), key=lambda kv: int(kv[0]))
        ]  # fmt: skip
        print(table(rows, ["tokens", "sdpa tok/s", "sdpa+cache tok/s", "sparse tok/s", "speedup", "KV words dense", "KV words sparse"]))  # fmt: skip
    pk = res.get("passkey", {})
    if pk.get("cases"):
        rows = [
            [n, r["cases"], r["dense_right"], r["sparse_right"], r["same_answer_where_dense_right"]]
            for n, r in pk["by_length"].items()
        ]
        print(table(rows, ["passkey tokens", "cases", "dense right", "sparse right", "same answer where dense right"]))  # fmt: skip
        print(
            f"passkey: {pk['cases_done']}/{pk['cases_planned']} cases run; sparse gives dense's answer in "
            f"{pk['same_answer_where_dense_right']:.3f} of the cases dense gets right"
        )
    for why in res.get("skipped", []):
        print(f"skipped: {why}")
    print(json.dumps(res["summary"], indent=1))


def plot(res: dict[str, Any], n: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = res["quality"][n]
    ps = sorted(row["sparse"], key=float)
    x = [row["sparse"][p]["pages_read"] for p in ps]
    y = [100 * row["sparse"][p]["ppl_rel_increase"] for p in ps]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(x, y, "o-")
    for p, xi, yi in zip(ps, x, y, strict=True):
        ax.annotate(f"p={p}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(1.0, ls="--", c="gray", lw=0.8)
    ax.set_xlabel("fraction of KV pages read (sparse layers)")
    ax.set_ylabel("decode-mode perplexity increase (%)")
    ax.set_title(f"SmolLM2-135M, {n} tokens, top-p sweep")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)


def _share(cases: list[dict[str, Any]], key: str, among: str | None = None) -> float | None:
    pool = [c for c in cases if among is None or c[among]]
    return sum(c[key] for c in pool) / len(pool) if pool else None


def passkey_summary(cases: list[dict[str, Any]], planned: int) -> dict[str, Any]:
    """Accuracies and agreement over the stored cases; ``same_answer_where_dense_right`` is the target's figure:
    the fraction of the cases dense answers right in which the sparse backend gives the same answer."""
    if not cases:
        return {"cases": [], "cases_done": 0, "cases_planned": planned}
    by_length = {}
    for n in sorted({c["length"] for c in cases}):
        cs = [c for c in cases if c["length"] == n]
        by_length[str(n)] = {
            "cases": len(cs), "dense_right": sum(c["dense_right"] for c in cs),
            "sparse_right": sum(c["sparse_right"] for c in cs),
            "same_answer_where_dense_right": _share(cs, "same_answer", "dense_right"),
            "seconds_per_case": sum(c["seconds"] for c in cs) / len(cs),
        }  # fmt: skip
    return {
        "cases": cases,
        "cases_done": len(cases),
        "cases_planned": planned,
        "by_length": by_length,
        "dense_accuracy": _share(cases, "dense_right"),
        "sparse_accuracy": _share(cases, "sparse_right"),
        "same_answer_where_dense_right": _share(cases, "same_answer", "dense_right"),
        "sparse_right_where_dense_right": _share(cases, "sparse_right", "dense_right"),
        "same_answer_all_cases": _share(cases, "same_answer"),
        "identical_text": _share(cases, "identical"),
    }


def assemble(qual, spd, pk, skipped, s, sweep, sweep_len, args, t_start, extra=None) -> dict[str, Any]:
    """The results file: the summary keys at the longest length measured so far, and everything measured."""
    summary: dict[str, Any] = {
        "passkey_agreement_with_dense": pk.get("same_answer_where_dense_right"),
        "passkey_cases_done": pk.get("cases_done", 0),
        "passkey_cases_planned": pk.get("cases_planned", 0),
    }
    if qual:
        last = str(max(int(n) for n in qual))
        k = f"{int(last) // 1024}k" if int(last) >= 1024 else last
        default = qual[last]["sparse"][str(s.top_p)]
        rows = [r for row in qual.values() for r in row["sparse"].values()]
        summary.update({
            f"pages_read_fraction_{k}": default["pages_read"],
            f"decode_ppl_rel_increase_{k}": default["ppl_rel_increase"],
            f"decode_speedup_vs_sdpa_{k}": spd[last]["speedup_vs_sdpa"],
            "dropped_mass_bound_violations": sum(r["violations"] for r in rows),
            "dropped_mass_bound_checks": sum(r["bound_checks"] for r in rows),
            "measured_at_tokens": int(last),
            "decode_speedup_vs_sdpa_by_length": {n: spd[n]["speedup_vs_sdpa"] for n in sorted(spd, key=int)},
        })  # fmt: skip
    return {
        "summary": summary,
        "settings": {**s.__dict__, "scored_tokens": SCORED, "top_p_sweep": sweep, "sweep_length": sweep_len,
                     "dtype": "float32", "seed": 0, "quick": args.quick, "text": "licence texts (held out)",
                     "passkey_lengths": PASSKEY_LENGTHS, "passkey_depths": PASSKEY_DEPTHS,
                     "passkey_new_tokens": PASSKEY_NEW, "passkey_cases": str(PASSKEY_DIR.relative_to(ROOT) if PASSKEY_DIR.is_relative_to(ROOT) else PASSKEY_DIR)},
        "skipped": skipped,
        "machine": machine(),
        "quality": qual,
        "speed": spd,
        "passkey": pk,
        **(extra or {}),
        "seconds": time.perf_counter() - t_start,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny lengths, every code path, results in /tmp")
    ap.add_argument(
        "--stop_at", default=None, help="HH:MM UTC: skip the stages that would not finish by then"
    )
    ap.add_argument(
        "--lengths", default=None, help="comma-separated lengths to (re)measure, merged into the results"
    )
    ap.add_argument(
        "--passkey", action="store_true", help="run the passkey cases not yet stored, merged into the results"
    )
    ap.add_argument("--budget_min", type=float, default=None, help="with --passkey: start no case past this")
    ap.add_argument(
        "--check_shared_prefill", type=int, default=None, metavar="N",
        help="with --passkey: first compare the shared-prefill answers with full generate calls at N tokens",
    )  # fmt: skip
    ap.add_argument(
        "--explain",
        default=None,
        metavar="N,I",
        help="diagnose passkey case I at N tokens (stored in the results)",
    )
    args = ap.parse_args()
    if args.report:
        report(json.loads((QUICK_RESULTS if args.quick else RESULTS).read_text()))
        return
    torch.manual_seed(0)
    from hf_fundamentals.integrations.hub import load_model

    global SCORED, PASSKEY_LENGTHS, PASSKEY_DEPTHS, PASSKEY_DIR
    t_start = time.perf_counter()
    model, tok = load_model("embedded")
    model.eval()
    s = SparseDecodeSettings()
    set_sparse_decode(model, **{k: getattr(s, k) for k in s.__dataclass_fields__})
    results = QUICK_RESULTS if args.quick or args.smoke else RESULTS
    if args.smoke:  # seconds: tiny lengths, every code path
        SCORED = 64
        s = replace(s, min_seq_len=0)
        set_sparse_decode(model, min_seq_len=0)
        PASSKEY_LENGTHS, PASSKEY_DEPTHS, PASSKEY_DIR = (
            [608],
            1,
            Path("/tmp/attention_sparse_decode_smoke_passkey"),
        )
        stages = [("length", 600), ("passkey", 0)]
    elif args.quick:
        PASSKEY_LENGTHS, PASSKEY_DEPTHS, PASSKEY_DIR = (
            [1024],
            2,
            Path("/tmp/attention_sparse_decode_quick_passkey"),
        )
        stages = [("length", 2048), ("passkey", 0)]
    else:  # the targets (8k) first, then the sweep; the passkey sweep runs in budgeted pieces (--passkey)
        stages = [("length", 8192), ("length", 2048), ("length", 4096), ("passkey", 0)]
    minutes = {
        600: 1,
        1024: 1.5,
        2048: 5,
        4096: 8,
        8192: 12,
    }  # measured on one shared core (8k: prefill 104 s)
    stop = None
    if args.stop_at:
        hh, mm = (int(x) for x in args.stop_at.split(":"))
        stop = datetime.now(UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
    sweep_len = 600 if args.smoke else 2048
    sweep = [0.9, 0.95, 0.99, 0.999]
    qual: dict[str, Any] = {}
    spd: dict[str, Any] = {}
    skipped: list[str] = []
    extra: dict[str, Any] = {}
    if (
        args.lengths or args.passkey or args.explain
    ):  # only these stages, merged into the results file a stopped run left
        stages = [("length", int(n)) for n in args.lengths.split(",")] if args.lengths else []
        stages += [("passkey", 0)] if args.passkey else []
        if results.exists():
            old = json.loads(results.read_text())
            qual, spd = old["quality"], old["speed"]
            extra = {k: old[k] for k in ("shared_prefill_check", "passkey_explained") if k in old}
            skipped = [w for w in old.get("skipped", []) if not any(f"length {n} " in w for _, n in stages)]
            skipped = [w for w in skipped if not w.startswith("passkey")]  # recounted from the stored cases
    planned = len(PASSKEY_LENGTHS) * PASSKEY_DEPTHS

    def write() -> dict[str, Any]:
        pk = passkey_summary(stored_cases(PASSKEY_DIR, PASSKEY_LENGTHS, PASSKEY_DEPTHS), planned)
        left = planned - pk["cases_done"]
        todo = [f"passkey: {left} of {planned} cases not run yet (resume with --passkey)"] if left else []
        res = assemble(qual, spd, pk, skipped + todo, s, sweep, sweep_len, args, t_start, extra)
        results.write_text(
            json.dumps(res, indent=1)
        )  # after every stage: a stopped run keeps what it measured
        return res

    if args.explain:
        n, i = (int(x) for x in args.explain.split(","))
        log(f"passkey case {i} at {n} tokens: needle mass and needle pages read at the first sparse step")
        extra.setdefault("passkey_explained", {})[f"{n}_{i}"] = explain_case(model, tok, n, i)
        stages = [st for st in stages if st[0] == "passkey"] if args.passkey else []
    for kind, n in stages:
        if kind == "passkey":
            log(
                f"passkey retrieval: {PASSKEY_DEPTHS} depths x {PASSKEY_LENGTHS} tokens, stored in {PASSKEY_DIR}"
            )
            check = PASSKEY_LENGTHS[0] if args.smoke else args.check_shared_prefill
            if check:
                extra["shared_prefill_check"] = check_shared_prefill(model, tok, check)
                write()
            budget = args.budget_min * 60 if args.budget_min else None
            if stop is not None:
                left = stop.timestamp() - datetime.now(UTC).timestamp()
                budget = left if budget is None else min(budget, left)
            passkey_sweep(model, tok, PASSKEY_LENGTHS, PASSKEY_DEPTHS, PASSKEY_DIR, budget)
            write()
            continue
        if stop is not None and datetime.now(UTC).timestamp() + 60 * minutes[n] > stop.timestamp():
            skipped.append(f"length {n} (needs ~{minutes[n]:.0f} min, past --stop_at {args.stop_at})")
            log(f"skipped: {skipped[-1]}")
            continue
        log(f"{n} tokens: decode-mode perplexity, pages read, dropped-mass bound; then decode speed")
        ids = heldout_ids(tok, n)
        ps = sorted(set(sweep + [s.top_p])) if n == sweep_len else [s.top_p]
        qual[str(n)], cache = quality_at(model, ids, ps, s)
        spd[str(n)] = speed_at(model, ids, cache, 2 if args.smoke else 8, 1 if args.smoke else 2, s)
        del cache
        write()
    res = write()
    if not (args.quick or args.smoke) and str(sweep_len) in qual:
        plot(res, str(sweep_len))
    report(res)


if __name__ == "__main__":
    main()
