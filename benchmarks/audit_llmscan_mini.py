"""LLMScan-mini: audit tiny causal LMs trained on known mixtures of real text, end to end through ``hff audit``.

For each mixture below a small Llama (own BPE tokenizer, CPU, a few minutes) is trained on documents of the
offline corpora drawn with those shares; then ``hff audit`` samples it from BOS at T=1, classifies the
generations and estimates the mixture with every estimator. The auditor's reference text is disjoint from
the LM's training text (a ``file:`` taxonomy written by this script).

Two truths, so the estimator's error is kept apart from the LM's (our hidden domain-tag trick): every
training document starts with a special token naming its domain, so the model samples a tag first; the tags
of the classified generations are their **effective** mixture, what an auditor can at best recover (the
tag is stripped before classification). The **recipe** is the training mixture; recipe vs tags is the LM's
own error (how well it learned the shares), tags vs estimate the auditor's.

    OMP_NUM_THREADS=1 python benchmarks/audit_llmscan_mini.py   # 3 seeds x 6 models; ~2 h on one core the first time
    python benchmarks/audit_llmscan_mini.py --seeds 0 --models 2 --steps 200 --n_generations 300   # smoke run
    python benchmarks/audit_llmscan_mini.py --closed_set         # the closed-set, whole-document audit, as before
    python benchmarks/audit_llmscan_mini.py --open_matched       # the open set with the length-matched confusion

Trained models are cached (``$HFF_CACHE/llmscan_mini/<key>``), so a rerun only re-audits; ``--retrain``
forces training. Writes ``benchmarks/results/audit_llmscan_mini.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from hf_fundamentals import corpora
from hf_fundamentals.audit import (
    DEFAULT_METHOD,
    ci_coverage,
    max_abs_error,
    mean_abs_error,
    overlap_accuracy,
    trivial_baselines,
)
from hf_fundamentals.cache import cache_root

RESULTS = Path(__file__).resolve().parent / "results" / "audit_llmscan_mini.json"
DOMAINS = tuple(
    corpora.DOMAINS
)  # python_code, dictionary, computing, jargon, fortunes, wordnet, licenses, manpages
MIN_CHARS, MAX_CHARS = 200, 800  # short documents: they fit the LM's 256-token window whole

# Known training mixtures (shares of documents, in DOMAINS order). Skewed like real pretraining mixes, one
# near-uniform, one with exact zeros, one heavy on the confusable computing/jargon pair, one random.
MIXTURES: dict[str, list[float]] = {
    "code_heavy": [0.60, 0.04, 0.10, 0.05, 0.03, 0.02, 0.01, 0.15],
    "dictionary_web_like": [0.045, 0.67, 0.045, 0.01, 0.045, 0.15, 0.01, 0.025],
    "confusable_pair": [0.05, 0.05, 0.35, 0.30, 0.10, 0.05, 0.02, 0.08],
    "near_uniform": [0.125] * 8,
    "dominant_with_zeros": [0.10, 0.0, 0.0, 0.0, 0.80, 0.0, 0.0, 0.10],
    "dirichlet_0.5": [],  # drawn from Dirichlet(0.5) with the benchmark seed
}


def tag_token(domain: str) -> str:
    """The hidden special token that starts every training document of ``domain``."""
    return f"<|domain:{domain}|>"


def mixtures(seed: int) -> dict[str, np.ndarray]:
    """The named mixtures as normalised vectors (the random one drawn from ``seed``)."""
    out = {}
    for name, shares in MIXTURES.items():
        if not shares:
            shares = np.random.default_rng(seed).dirichlet(np.full(len(DOMAINS), 0.5))
        v = np.asarray(shares, dtype=np.float64)
        out[name] = v / v.sum()
    return out


# ---- data --------------------------------------------------------------------------------------------------


def split_documents(
    seed: int, n_reference: int, n_lm: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per domain, disjoint reference documents (for the auditor) and LM-training documents."""
    reference, lm = {}, {}
    for i, domain in enumerate(DOMAINS):
        docs = list(corpora.iter_documents(domain, min_chars=MIN_CHARS, max_chars=MAX_CHARS))
        order = np.random.default_rng([seed, i]).permutation(len(docs))
        n_ref = min(n_reference, len(docs) * 3 // 8)  # short domains (licences) keep most text for the LM
        reference[domain] = [docs[j] for j in order[:n_ref]]
        lm[domain] = [docs[j] for j in order[n_ref : n_ref + n_lm]]
    return reference, lm


def write_taxonomy(reference: dict[str, list[str]], folder: Path, n_reference: int) -> Path:
    """A ``file:`` taxonomy over the reference documents (one JSONL per domain) for ``hff audit``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "name: llmscan_mini",
        "description: offline corpora, documents disjoint from the audited LMs' training text",
        f"docs_per_category: {n_reference}",
        "categories:",
    ]
    for domain, docs in reference.items():
        (folder / f"{domain}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
        lines.append(f"  - {{name: {domain}, source: {{file: {domain}.jsonl}}}}")
    path = folder / "taxonomy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_spec(name: str, mixture: np.ndarray, path: Path) -> Path:
    """The recipe as an LLMSurgeon ``category-mixture-v1`` spec (percent)."""
    spec = {
        "schema": "category-mixture-v1",
        "name": name,
        "categories": list(DOMAINS),
        "category_weights": [round(100 * float(w), 6) for w in mixture],
    }
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ---- the tiny LMs ------------------------------------------------------------------------------------------


def train_tokenizer(lm_docs: dict[str, list[str]], vocab_size: int, seed: int):
    """Byte-level BPE trained in-process on a balanced sample of the LM text, plus BOS/EOS/PAD and the tags."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = np.random.default_rng(seed)
    sample = []
    for docs in lm_docs.values():
        take = rng.permutation(len(docs))[:400]
        sample += [docs[j] for j in take]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.add_special_tokens({"additional_special_tokens": [tag_token(d) for d in DOMAINS]})
    return fast


def train_lm(
    tokenizer,
    lm_ids: dict[str, list[list[int]]],
    mixture: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    seq_len: int,
    seed: int,
    out_dir: Path,
    progress_desc: str,
) -> dict[str, float]:
    """Train a small Llama on ``[BOS, tag, document, EOS]`` sequences whose domains follow ``mixture``."""
    import torch
    from tqdm import tqdm
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=seq_len,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    rng = np.random.default_rng(seed)
    tags = [tokenizer.convert_tokens_to_ids(tag_token(d)) for d in DOMAINS]
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    model.train()
    losses = []
    started = time.time()
    for _ in tqdm(range(steps), desc=progress_desc, leave=False):
        domains = rng.choice(len(DOMAINS), size=batch_size, p=mixture)
        rows = []
        for d in domains:
            docs = lm_ids[DOMAINS[d]]
            body = docs[int(rng.integers(len(docs)))][: seq_len - 3]
            rows.append([bos, tags[d], *body, eos])
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    stats = {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "steps": steps,
        "batch_size": batch_size,
        "final_loss": float(np.mean(losses[-50:])),
        "train_seconds": round(time.time() - started, 1),
    }
    (out_dir / "llmscan_train.json").write_text(json.dumps(stats, indent=2))
    return stats


# ---- the audit and its scoring -----------------------------------------------------------------------------


def audit(
    model_dir: Path, taxonomy: Path, spec: Path | None, out_dir: Path, args: argparse.Namespace
) -> dict:
    """Run ``hff audit`` on one model (in-process, exactly the CLI's code path) and return audit.json."""
    from hf_fundamentals.integrations.cli.audit import main as hff_audit

    argv = [
        str(model_dir),
        "--taxonomy", str(taxonomy),
        "--prompts", "bos",
        "--n_generations", str(args.n_generations),
        "--max_new_tokens", str(args.max_new_tokens),
        "--batch_size", "100",
        "--n_bootstrap", str(args.n_bootstrap),
        "--seed", str(args.seed),
        "--output_dir", str(out_dir),
    ]  # fmt: skip
    if spec is not None:
        argv += ["--ground_truth", str(spec)]
    argv += MODE_FLAGS[args.audit_mode]
    if args.audit_mode != "closed":
        argv += ["--snippet_anchor", args.snippet_anchor]
    if args.audit_mode.startswith("open"):
        argv += ["--open_set_shares", args.open_set_shares]
    code = hff_audit(argv)
    if code != 0:
        raise RuntimeError(f"hff audit {' '.join(argv)} exited with {code}")
    return json.loads((out_dir / "audit.json").read_text())


MODE_FLAGS = {
    "open_whole": ["--open_set", "true", "--length_match", "false"],  # hff audit's default
    "open": ["--open_set", "true", "--length_match", "true"],  # the default before the dev-zoo runs
    "closed_matched": [
        "--open_set",
        "false",
        "--length_match",
        "true",
    ],  # the length-matched correction alone
    "closed": ["--open_set", "false", "--length_match", "false"],  # the closed-set, whole-document audit
}
"""Each audit mode's ``hff audit`` flags, all explicit so a change of the CLI's defaults cannot change a mode."""


def _reuse_generations(audit_dir: Path, pattern: str) -> None:
    """Start ``audit_dir`` from another mode's generation cache of the same model and sample settings (the
    sibling folders matching ``pattern``), so the modes are compared on identical generations without sampling
    twice (``hff audit`` refuses a cache whose fingerprint differs, so a wrong source cannot slip in)."""
    cache = audit_dir / "generations.jsonl"
    if cache.exists():
        return
    found = sorted(f for f in audit_dir.parent.glob(f"{pattern}/generations.jsonl") if f.parent != audit_dir)
    if found:
        audit_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], cache)


def tag_mixture(out_dir: Path, used_ids: list[int]) -> tuple[np.ndarray, int]:
    """Share of each domain tag among the classified generations, and how many carried no single tag."""
    records = {}
    with (out_dir / "generations.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            rec = json.loads(line)
            if "id" in rec:
                records[rec["id"]] = rec
    counts = np.zeros(len(DOMAINS))
    untagged = 0
    tags = {tag_token(d): i for i, d in enumerate(DOMAINS)}
    for gid in used_ids:
        emitted = [t for t in records[gid].get("meta", {}).get("special_tokens", []) if t in tags]
        if emitted:
            counts[tags[emitted[0]]] += 1  # the first tag is the one sampled after BOS
        else:
            untagged += 1
    return counts / max(counts.sum(), 1), untagged


def score(estimate: dict, truth: np.ndarray) -> dict[str, float]:
    """1 - TV, max and mean absolute error (points) and interval coverage of one estimate against a truth."""
    point = np.array([estimate["point"][d] for d in DOMAINS])
    row = {
        "overlap_accuracy": float(overlap_accuracy(point, truth)),
        "max_abs_error_points": 100 * float(max_abs_error(point, truth)),
        "mean_abs_error_points": 100 * float(mean_abs_error(point, truth)),
    }
    if estimate["ci_low"] is not None:
        lo = np.array([estimate["ci_low"][d] for d in DOMAINS])
        hi = np.array([estimate["ci_high"][d] for d in DOMAINS])
        row["ci_coverage"] = float(ci_coverage(lo, hi, truth))
        row["ci_width_points"] = 100 * float(np.mean(hi - lo))
    return row


def open_set_test(report: dict, tags: np.ndarray, omitted: str) -> dict[str, object]:
    """The "none of these" share of an audit whose taxonomy leaves ``omitted`` out, against that domain's tag
    share, and the in-taxonomy shares against the other tags renormalised."""
    o = report["open_set"]
    truth = float(tags[DOMAINS.index(omitted)])
    kept = [d for d in DOMAINS if d != omitted]
    rest = np.array([tags[DOMAINS.index(d)] for d in kept])
    rest = rest / max(rest.sum(), 1e-12)
    est = report["estimates"][report["default_method"]]
    inside = np.array([est["point"][d] for d in kept])
    return {
        "omitted": omitted,
        "truth": truth,
        "share": o["share"],
        "ci": [o["ci_low"], o["ci_high"]],
        "abs_error_points": 100 * abs(o["share"] - truth),
        "covers": o["ci_low"] is not None and o["ci_low"] <= truth <= o["ci_high"],
        "in_taxonomy_max_abs_error_points": 100 * float(max_abs_error(inside, rest)),
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means over models of each per-model figure (coverage: over every domain of every model)."""
    keys = rows[0].keys()
    out = {}
    for key in keys:
        name = "ci_coverage" if key == "ci_coverage" else f"mean_{key}"
        out[name] = float(np.mean([r[key] for r in rows]))
    return out


def cross_check_summary(models: list[dict]) -> dict[str, object]:
    """How often the auditor's EM <-> PACC cross-check fired on these (style-shifted) generations, by threshold.

    Exact from the recorded gap: the largest gap flagged at the library threshold is flagged at a higher one iff
    any gap is; unflagged ones stay unflagged."""
    from hf_fundamentals.audit.diagnostics import DISAGREEMENT_POINTS

    rates = {}
    for t in (DISAGREEMENT_POINTS, 4.0, 5.0):  # at or above the library's threshold (below it is not exact)
        fired = []
        for r in models:
            gap = r["diagnostics"].get("estimator_gap") or {}
            lo, hi = gap.get("interval_points", (0.0, 0.0))
            excludes = lo > 0 or hi < 0
            size = abs(gap.get("gap_points", 0.0))
            fired.append(
                bool(excludes and size >= t and (t >= DISAGREEMENT_POINTS or gap.get("significant")))
            )
        rates[f"{t:g}"] = float(np.mean(fired))
    return {
        "library_threshold_points": DISAGREEMENT_POINTS,
        "fire_rate_by_threshold": rates,
        "per_model_gap_points": {
            f"{r['name']}@{r.get('seed', 0)}": (r["diagnostics"].get("estimator_gap") or {}).get("gap_points")
            for r in models
        },
    }


def machine() -> dict[str, object]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }


def eos_cut_fraction(out_dir: Path, used_ids: list[int], max_new_tokens: int) -> float:
    """Share of the classified generations that the LM ended with EOS before ``max_new_tokens``."""
    cut = total = 0
    used = set(used_ids)
    with (out_dir / "generations.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            rec = json.loads(line)
            if rec.get("id") in used:
                specials = len(rec.get("meta", {}).get("special_tokens", []))
                cut += rec["n_tokens"] + specials < max_new_tokens
                total += 1
    return cut / max(total, 1)


def zoo_confusion(reference: dict[str, list[str]], lengths: list[int], seed: int) -> dict[str, object]:
    """The default classifier's hard confusion on this seed's reference, on whole documents and on snippets
    as long as the generations, and the domain pairs it confuses at >= 10% (either direction)."""
    from hf_fundamentals.audit import MixtureAuditor
    from hf_fundamentals.audit.reference import length_matched

    texts = [t for d in DOMAINS for t in reference[d]]
    labels = [d for d in DOMAINS for _ in reference[d]]
    auditor = MixtureAuditor(seed=seed).fit(texts, labels, domains=DOMAINS)
    whole = auditor.reference.confusion.hard
    matched = length_matched(auditor.reference, lengths, seed=seed).confusion.hard
    pairs = []
    for i in range(len(DOMAINS)):
        for j in range(i + 1, len(DOMAINS)):
            rate = max(matched[i, j], matched[j, i])
            if rate >= 0.10:
                pairs.append({"pair": [DOMAINS[i], DOMAINS[j]], "rate": round(float(rate), 3)})
    return {
        "hard_confusion_whole_documents": np.round(whole, 3).tolist(),
        "hard_confusion_length_matched": np.round(matched, 3).tolist(),
        "pairs_confused_at_10pct": pairs,
    }


def run_seed(seed: int, args: argparse.Namespace, mode: str) -> tuple[list[dict], dict[str, object]]:
    """Train (or load) this seed's zoo, audit every model, and return the per-model records and the zoo."""
    train_key = {
        k: getattr(args, k) for k in ("steps", "batch_size", "seq_len", "vocab_size", "n_reference", "n_lm")
    }
    train_key["seed"] = seed
    train_key["corpus_format"] = corpora.CORPUS_FORMAT_VERSION
    key = hashlib.sha256(json.dumps(train_key, sort_keys=True).encode()).hexdigest()[:12]
    work = cache_root() / "llmscan_mini" / key
    print(f"[llmscan-mini] seed {seed}: work folder {work}")

    reference, lm_docs = split_documents(seed, args.n_reference, args.n_lm)
    taxonomy = write_taxonomy(reference, work / "reference", args.n_reference)
    omit = args.omit if args.omit and mode.startswith("open") else ""
    omitted_taxonomy = (
        write_taxonomy({d: v for d, v in reference.items() if d != omit}, work / f"reference_omit_{omit}", args.n_reference)
        if omit
        else None
    )  # fmt: skip
    print(
        "[llmscan-mini] documents per domain (reference / LM): "
        + ", ".join(f"{d} {len(reference[d])}/{len(lm_docs[d])}" for d in DOMAINS)
    )
    tokenizer = None
    lm_ids: dict[str, list[list[int]]] = {}
    mixes = dict(list(mixtures(seed).items())[: args.models])
    audit_args = argparse.Namespace(**{**vars(args), "seed": seed})

    models = []
    lengths: list[int] = []
    for index, (name, mixture) in enumerate(mixes.items()):
        model_dir = work / "models" / name
        if args.retrain or not (model_dir / "llmscan_train.json").is_file():
            if tokenizer is None:
                tokenizer = train_tokenizer(lm_docs, args.vocab_size, seed)
                lm_ids = {
                    d: tokenizer(docs, add_special_tokens=False)["input_ids"] for d, docs in lm_docs.items()
                }
            train_lm(
                tokenizer, lm_ids, mixture,
                steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                seed=seed + 1000 * index, out_dir=model_dir, progress_desc=f"seed {seed}: training {name}",
            )  # fmt: skip
        train_stats = json.loads((model_dir / "llmscan_train.json").read_text())
        print(
            f"[llmscan-mini] seed {seed} {name}: {train_stats['parameters'] / 1e6:.2f}M parameters, final loss "
            f"{train_stats['final_loss']:.2f}, trained in {train_stats['train_seconds']} s"
        )
        spec = write_spec(name, mixture, work / "specs" / f"{name}.yaml")
        anchor = "" if mode == "closed" or args.snippet_anchor == "random" else f"-{args.snippet_anchor}"
        if mode.startswith("open") and args.open_set_shares != "all":
            anchor += f"-{args.open_set_shares}"
        stem = f"{name}-n{args.n_generations}-t{args.max_new_tokens}"
        audit_dir = work / "audits" / f"{stem}-{mode}{anchor}"
        _reuse_generations(audit_dir, f"{stem}-[co]*")
        report = audit(model_dir, taxonomy, spec, audit_dir, audit_args)
        used = report["generations"]["used_ids"]
        tags, untagged = tag_mixture(audit_dir, used)
        with (audit_dir / "generations.jsonl").open(encoding="utf-8") as handle:
            texts = {r["id"]: r["text"] for r in map(json.loads, handle) if "id" in r}
        lengths += [len(texts[g]) for g in used]
        omitted = None
        if omitted_taxonomy is not None:
            whole = "-whole" if mode == "open_whole" else ""
            omit_dir = work / "audits" / f"{stem}-omit-{omit}{whole}{anchor}"
            _reuse_generations(omit_dir, f"{stem}-omit-{omit}*")
            omit_report = audit(model_dir, omitted_taxonomy, None, omit_dir, audit_args)
            omit_tags, _ = tag_mixture(omit_dir, omit_report["generations"]["used_ids"])
            omitted = open_set_test(omit_report, omit_tags, omit)
        per_method = {
            m: {"vs_tags": score(e, tags), "vs_recipe": score(e, mixture)}
            for m, e in report["estimates"].items()
        }
        baselines = {
            b: {
                "overlap_accuracy": float(overlap_accuracy(v, tags)),
                "max_abs_error_points": 100 * float(max_abs_error(v, tags)),
                "mean_abs_error_points": 100 * float(mean_abs_error(v, tags)),
            }
            for b, v in trivial_baselines(tags).items()
        }
        models.append(
            {
                "name": name,
                "seed": seed,
                "recipe": dict(zip(DOMAINS, mixture.tolist(), strict=True)),
                "tag_mixture": dict(zip(DOMAINS, tags.tolist(), strict=True)),
                "domains_below_5pct": [d for d, t in zip(DOMAINS, tags, strict=True) if 0 < t < 0.05],
                "untagged_generations": untagged,
                "eos_cut_fraction": eos_cut_fraction(audit_dir, used, args.max_new_tokens),
                "mean_generation_chars": float(np.mean([len(texts[g]) for g in used])),
                "lm_error": {
                    "overlap_accuracy": float(overlap_accuracy(tags, mixture)),
                    "max_abs_error_points": 100 * float(max_abs_error(tags, mixture)),
                },
                "estimates": {m: e["point"] for m, e in report["estimates"].items()},
                "intervals": {
                    m: {"low": e["ci_low"], "high": e["ci_high"]} for m, e in report["estimates"].items()
                },
                "scores": per_method,
                "baselines": baselines,
                "classifier_accuracy": report["classifier_report"]["accuracy"],
                "diagnostics": {
                    k: report["diagnostics"][k]
                    for k in (
                        "condition_number_soft",
                        "sigma_min_soft",
                        "out_of_taxonomy_score",
                        "estimator_gap",
                        "warnings",
                    )
                    if k in report["diagnostics"]
                },
                "generations_used": report["generations"]["used"],
                "open_set": report.get("open_set"),
                "omitted_domain_test": omitted,
                "train": train_stats,
                "audit_seconds": report["seconds"],
            }
        )
    zoo = {"seed": seed, "work_folder": str(work), **zoo_confusion(reference, lengths, seed)}
    return models, zoo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=len(MIXTURES), help="how many of the mixtures to run")
    parser.add_argument("--steps", type=int, default=600, help="training steps per LM")
    parser.add_argument("--batch_size", type=int, default=16, help="training sequences per step")
    parser.add_argument("--seq_len", type=int, default=256, help="LM context (tokens)")
    parser.add_argument("--vocab_size", type=int, default=2048, help="BPE vocabulary size")
    parser.add_argument("--n_reference", type=int, default=300, help="reference documents per domain")
    parser.add_argument("--n_lm", type=int, default=4000, help="LM-training documents per domain (at most)")
    parser.add_argument("--n_generations", type=int, default=1000, help="generations sampled per audit")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="tokens per generation")
    parser.add_argument("--n_bootstrap", type=int, default=200, help="bootstrap replicates per audit")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2],
        help="benchmark seeds: each draws its own reference/LM split, tokenizer, random mixture and LMs",
    )  # fmt: skip
    parser.add_argument("--retrain", action="store_true", help="train the LMs again even if cached")
    parser.add_argument(
        "--merge", type=Path, nargs="+", default=None,
        help="pool the models of these results files (e.g. seeds run in parallel processes) into --output; "
        "no training or audit",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--closed_set", action="store_true",
        help="audit as before the open-set default (--open_set false --length_match false), for comparison",
    )  # fmt: skip
    parser.add_argument(
        "--open_matched", action="store_true",
        help="audit open-set with the length-matched confusion (--length_match true: the default before the "
        "seed-3 dev runs; the seed-0 results file used it)",
    )  # fmt: skip
    parser.add_argument(
        "--open_set_shares", choices=("all", "typical"), default="all",
        help="hff audit --open_set_shares: which generations an open-set audit's category shares come from",
    )  # fmt: skip
    parser.add_argument(
        "--closed_matched", action="store_true",
        help="audit closed-set but with the length-matched confusion (--open_set false), to separate the two",
    )  # fmt: skip
    parser.add_argument(
        "--snippet_anchor", choices=("random", "start", "auto"), default="auto",
        help="hff audit --snippet_anchor (its default, auto, is start with --prompts bos; the seed-0 results "
        "files predate the flag and used random); ignored with --closed_set",
    )  # fmt: skip
    parser.add_argument(
        "--omit", default="manpages",
        help="also audit each model with a taxonomy that leaves this domain out and score the 'none of these' "
        "share against its tag share ('' to skip; ignored with --closed_set)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.omit and args.omit not in DOMAINS:
        parser.error(f"--omit {args.omit!r}: not a domain; domains: {', '.join(DOMAINS)}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds {args.seeds}: each seed once")

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.time()
    if args.closed_set + args.closed_matched + args.open_matched > 1:
        parser.error("--closed_set, --closed_matched, --open_matched: pick one audit mode")
    mode = next(
        (m for m, on in (("closed", args.closed_set), ("closed_matched", args.closed_matched),
                         ("open", args.open_matched)) if on),
        "open_whole",
    )  # fmt: skip
    args.audit_mode = mode
    omit = args.omit if args.omit and mode.startswith("open") else ""
    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        modes = {r["audit_mode"] for r in parts}
        anchors = {
            r["settings"].get("snippet_anchor", "random") for r in parts if r["audit_mode"] != "closed"
        }
        if len(anchors) > 1:
            parser.error(f"--merge: files must share one --snippet_anchor (got {sorted(anchors)})")
        if len(modes) != 1 or len({tuple(r["seeds"]) for r in parts}) != len(parts):
            parser.error(f"--merge: files must share one audit mode and have distinct seeds (modes {modes})")
        models = [m for r in parts for m in r["models"]]
        zoo = [z for r in parts for z in r["zoo"]["per_seed"]]
        started -= sum(r["elapsed_seconds"] for r in parts)
        result = build_result(models, zoo, args, modes.pop(), omit, started)
        result["merged_from"] = [str(f) for f in args.merge]
        args.output.write_text(json.dumps(result, indent=2))
        print_table(result)
        print(f"[llmscan-mini] merged {len(args.merge)} files ({len(models)} models) into {args.output}")
        return
    models, zoo = [], []
    for seed in args.seeds:
        seed_models, seed_zoo = run_seed(seed, args, mode)
        models += seed_models
        zoo.append(seed_zoo)
        result = build_result(models, zoo, args, mode, omit, started)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))  # after every seed: a cut run keeps what it did
        print(f"[llmscan-mini] seed {seed} done; {args.output} now holds seeds {result['seeds']}")
    print_table(result)
    print(f"[llmscan-mini] wrote {args.output} in {result['elapsed_seconds']} s")


def build_result(
    models: list[dict], zoo: list[dict], args: argparse.Namespace, mode: str, omit: str, started: float
) -> dict:
    """The results file's content for the seeds finished so far (pooled over every model of every seed)."""
    methods = list(models[0]["scores"])
    estimators = {m: summarise([r["scores"][m]["vs_tags"] for r in models]) for m in methods}
    for m in methods:
        estimators[m]["worst_model_max_abs_error_points"] = float(
            max(r["scores"][m]["vs_tags"]["max_abs_error_points"] for r in models)
        )
    estimators_recipe = {m: summarise([r["scores"][m]["vs_recipe"] for r in models]) for m in methods}
    baselines = {b: summarise([r["baselines"][b] for r in models]) for b in models[0]["baselines"]}
    default = DEFAULT_METHOD
    per_model_default = [r["scores"][default]["vs_tags"]["max_abs_error_points"] for r in models]
    result = {
        "benchmark": "llmscan_mini",
        "description": __doc__.strip().splitlines()[0],
        "machine": machine(),
        "seeds": [z["seed"] for z in zoo],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "domains": list(DOMAINS),
        "zoo": {
            "models_per_seed": len(models) // len(zoo),
            "mixtures": list(MIXTURES),
            "per_seed": zoo,
            "mean_eos_cut_fraction": float(np.mean([r["eos_cut_fraction"] for r in models])),
            "models_with_a_domain_below_5pct": int(sum(bool(r["domains_below_5pct"]) for r in models)),
        },
        "truth": "tag_mixture (the effective mixture of the classified generations); vs_recipe figures below",
        "estimators": estimators,
        "estimators_vs_recipe": estimators_recipe,
        "default": {"name": default, **estimators[default]},
        "targets": {
            "max_abs_error_points_every_model": 2.7,
            "ci_coverage": 0.9,
            "open_set_abs_error_points": 3.0,
        },
        "targets_met": {
            "max_abs_error_every_model": max(per_model_default) <= 2.7,
            "models_within_2.7": f"{sum(e <= 2.7 for e in per_model_default)}/{len(per_model_default)}",
            "ci_coverage": estimators[default]["ci_coverage"] >= 0.9,
            "beats_pcc": estimators[default]["mean_max_abs_error_points"]
            < estimators["pcc"]["mean_max_abs_error_points"],
            "beats_repo_recipe": estimators[default]["mean_max_abs_error_points"]
            < estimators["llmsurgeon_repo"]["mean_max_abs_error_points"],
        },
        "lm_error": {
            "mean_overlap_accuracy": float(np.mean([r["lm_error"]["overlap_accuracy"] for r in models])),
            "mean_max_abs_error_points": float(
                np.mean([r["lm_error"]["max_abs_error_points"] for r in models])
            ),
        },
        "baselines": baselines,
        "audit_mode": mode,
        "open_set_omitted_domain": None
        if not omit
        else {
            "omitted": omit,
            "mean_abs_error_points": float(
                np.mean([r["omitted_domain_test"]["abs_error_points"] for r in models])
            ),
            "max_abs_error_points": float(
                np.max([r["omitted_domain_test"]["abs_error_points"] for r in models])
            ),
            "coverage": float(np.mean([r["omitted_domain_test"]["covers"] for r in models])),
            "target_abs_error_points": 3.0,
        },
        "estimator_cross_check": cross_check_summary(models),
        "models": models,
        "elapsed_seconds": round(time.time() - started, 1),
    }
    if omit:
        result["targets_met"]["open_set_within_3_points_every_model"] = (
            result["open_set_omitted_domain"]["max_abs_error_points"] <= 3.0
        )
    return result


def print_table(result: dict) -> None:
    """Per-estimator means (against the tags, and against the recipe), then per-model figures."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title=f"LLMScan-mini: {len(result['models'])} tiny LMs, mean over models")
    for col in ("estimator", "1-TV (tags)", "max abs err, pts (tags)", "CI coverage (tags)", "1-TV (recipe)",
                "max abs err, pts (recipe)"):  # fmt: skip
        table.add_column(col, justify="right" if col != "estimator" else "left")
    for m, row in result["estimators"].items():
        rec = result["estimators_vs_recipe"][m]
        name = f"{m} (default)" if m == result["default"]["name"] else m
        table.add_row(
            name,
            f"{row['mean_overlap_accuracy']:.3f}",
            f"{row['mean_max_abs_error_points']:.2f}",
            f"{row.get('ci_coverage', float('nan')):.2f}",
            f"{rec['mean_overlap_accuracy']:.3f}",
            f"{rec['mean_max_abs_error_points']:.2f}",
        )
    for b, row in result["baselines"].items():
        table.add_row(f"[dim]{b}[/dim]", f"{row['mean_overlap_accuracy']:.3f}",
                      f"{row['mean_max_abs_error_points']:.2f}", "-", "-", "-")  # fmt: skip
    console.print(table)
    per = Table(title="per model (default estimator vs tags; the LM's own error = tags vs recipe)")
    for col in (
        "model",
        "seed",
        "EOS-cut",
        "classifier acc",
        "1-TV",
        "max abs err",
        "coverage",
        "LM 1-TV",
        "LM max err",
        "warnings",
        "none of these",
        "omitted: truth / share",
    ):
        per.add_column(col)
    default = result["default"]["name"]
    for r in result["models"]:
        s = r["scores"][default]["vs_tags"]
        per.add_row(
            r["name"],
            str(r.get("seed", "-")),
            f"{r.get('eos_cut_fraction', float('nan')):.2f}",
            f"{r['classifier_accuracy']:.3f}",
            f"{s['overlap_accuracy']:.3f}",
            f"{s['max_abs_error_points']:.2f}",
            f"{s.get('ci_coverage', float('nan')):.2f}",
            f"{r['lm_error']['overlap_accuracy']:.3f}",
            f"{r['lm_error']['max_abs_error_points']:.2f}",
            str(len(r["diagnostics"].get("warnings", []))),
            "-" if r.get("open_set") is None else f"{100 * r['open_set']['share']:.1f}",
            "-"
            if r.get("omitted_domain_test") is None
            else f"{100 * r['omitted_domain_test']['truth']:.1f} / {100 * r['omitted_domain_test']['share']:.1f}",
        )
    console.print(per)
    if result.get("open_set_omitted_domain"):
        o = result["open_set_omitted_domain"]
        console.print(
            f"'none of these' with {o['omitted']} left out of the taxonomy: mean abs error "
            f"{o['mean_abs_error_points']:.2f} points, max {o['max_abs_error_points']:.2f}, interval coverage "
            f"{o['coverage']:.2f} (target: within {o['target_abs_error_points']} points)"
        )
    for z in result.get("zoo", {}).get("per_seed", []):
        pairs = ", ".join(
            f"{a}/{b} {100 * p['rate']:.0f}%" for p in z["pairs_confused_at_10pct"] for a, b in [p["pair"]]
        )
        console.print(
            f"seed {z['seed']}: pairs the classifier confuses at >= 10% on generation-length text: {pairs}"
        )
    worst = result["default"].get("worst_model_max_abs_error_points")
    if worst is not None:
        console.print(
            f"default estimator, worst model's max abs error: {worst:.2f} points (target <= 2.7 on every model)"
        )
    console.print(f"targets met: {result['targets_met']}")


if __name__ == "__main__":
    main()
