"""Estimator simulation for the auditor: label-shift resampling of held-out real documents.

LLMSurgeon's ``--simulate_label_shift``, done properly. Each domain's documents are split into a reference part
(classifier-train / calibration / confusion splits, cross-fitted by ``fit_reference``) and a held-out pool that
plays the model's generations: a trial draws a prior (Dirichlet(1), Dirichlet(0.3), or one domain at 80%),
draws N generations' domains from it and their texts from the pools, and asks every estimator for the prior.
Label shift holds exactly, so the numbers are the estimators' own error (classifier error included, LM error
excluded). Text: ``hf_fundamentals.corpora`` (real offline text) when present, else the synthetic topic model.

    python benchmarks/audit_estimators.py                # defaults: ~3-4 minutes on 2 cores
    python benchmarks/audit_estimators.py --trials 30 --n_bootstrap 50   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hf_fundamentals.audit import (
    DEFAULT_METHOD,
    ESTIMATORS,
    AuditWarning,
    Confusion,
    Diagnostics,
    Recalibration,
    TfidfLogisticClassifier,
    bootstrap_priors,
    ci_coverage,
    cross_check_partner,
    diagnose,
    estimate_prior,
    estimator_disagreement,
    fit_calibrator,
    max_abs_error,
    mean_abs_error,
    overlap_accuracy,
    synthetic_corpus,
    tolerance_accuracy,
    trivial_baselines,
)
from hf_fundamentals.audit.diagnostics import DISAGREEMENT_POINTS
from hf_fundamentals.audit.reference import encode_labels, split_reference

FAMILIES = ("dirichlet_1", "dirichlet_0.3", "dominant_80")
ABLATION_METHODS = ("mlls_em", "pacc")
GAP_THRESHOLDS = (2.0, 3.0, 4.0, 5.0)  # cross-check thresholds (points) whose false-alarm rates are reported
RESULTS = Path(__file__).resolve().parent / "results" / "audit_estimators.json"


def load_corpus(kind: str, docs_per_domain: int, seed: int) -> tuple[list[dict[str, str]], str]:
    """Real offline text via hf_fundamentals.corpora when asked/available, else the synthetic topic model."""
    if kind in ("auto", "real"):
        try:
            from hf_fundamentals.corpora import build_corpus

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a short domain says so; it is reported below
                return build_corpus(
                    docs_per_domain=docs_per_domain, seed=seed
                ), "hf_fundamentals.corpora (real text)"
        except Exception as exc:  # noqa: BLE001 (any failure to get real text falls back, and says why)
            if kind == "real":
                raise
            print(f"real corpora unavailable ({type(exc).__name__}: {exc}); using the synthetic topic model")
    return synthetic_corpus(docs_per_domain, seed=seed), "hf_fundamentals.audit.synthetic_corpus (synthetic)"


def draw_prior(family: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """A target prior from one of the simulation's families."""
    if family == "dirichlet_1":
        return rng.dirichlet(np.ones(k))
    if family == "dirichlet_0.3":
        return rng.dirichlet(np.full(k, 0.3))
    prior = 0.2 * rng.dirichlet(np.ones(k - 1))
    top = int(rng.integers(k))
    return np.insert(prior, top, 0.8)


class ReferenceFit:
    """One cross-fitted reference (classifier trained once) with calibrated probabilities for each calibration
    variant, on the confusion split and on the held-out generation pool."""

    def __init__(
        self, texts: list[str], labels: np.ndarray, pool_texts: list[str], seed: int, fractions
    ) -> None:
        self.labels = labels
        train, cal, conf = split_reference(labels, fractions, seed)
        start = time.perf_counter()
        clf = TfidfLogisticClassifier(seed=seed).fit([texts[i] for i in train], labels[train])
        self.fit_seconds = time.perf_counter() - start
        z_cal = clf.logits([texts[i] for i in cal])
        z_conf = clf.logits([texts[i] for i in conf])
        start = time.perf_counter()
        z_pool = clf.logits(pool_texts)
        self.predict_ms_per_doc = 1e3 * (time.perf_counter() - start) / max(len(pool_texts), 1)
        self.conf_labels = labels[conf]
        self.cal_labels = labels[cal]
        self.z_cal, self.z_conf, self.z_pool = z_cal, z_conf, z_pool
        self.variants: dict[str, tuple[Confusion, np.ndarray, np.ndarray]] = {}
        for method in ("bcts", "temperature", "none"):
            calibrator = fit_calibrator(z_cal, labels[cal], method=method)
            conf_probs = calibrator.transform(z_conf)
            confusion = Confusion.from_predictions(conf_probs, self.conf_labels, int(labels.max()) + 1)
            self.variants[method] = (confusion, conf_probs, calibrator.transform(z_pool))
        conf_probs = self.variants["bcts"][1]
        self.accuracy = float(np.mean(conf_probs.argmax(axis=1) == self.conf_labels))
        self.split_sizes = {
            "train": int(train.size),
            "calibration": int(cal.size),
            "confusion": int(conf.size),
        }
        sv = np.linalg.svd(self.variants["bcts"][0].soft, compute_uv=False)
        self.sigma_min_soft = float(sv[-1])

    def recalibration(self, method: str, picks: np.ndarray) -> Recalibration:
        """What the bootstrap needs to refit the calibrator, for the generations ``picks`` of the pool."""
        return Recalibration(method, self.z_cal, self.cal_labels, self.z_conf, self.z_pool[picks])


def out_of_taxonomy_check(
    texts: list[str], labels: np.ndarray, domains: tuple[str, ...], args: argparse.Namespace, fractions
) -> dict[str, object]:
    """Leave the last domain out of the taxonomy, then mix its documents into the generations: how often does
    the out-of-taxonomy diagnostic fire, by the share of off-taxonomy generations?"""
    rng = np.random.default_rng(args.seed + 7)
    held = len(domains) - 1
    split_rng = np.random.default_rng(args.seed)
    ref_idx, pools = [], []
    for c in range(held):
        idx = split_rng.permutation(np.flatnonzero(labels == c))
        n_pool = max(1, int(round(args.pool_fraction * idx.size)))
        pools.append(idx[:n_pool])
        ref_idx.extend(idx[n_pool:].tolist())
    off_docs = np.flatnonzero(labels == held)
    pool_texts = [texts[i] for part in pools for i in part] + [texts[i] for i in off_docs]
    offsets = np.cumsum([0] + [p.size for p in pools])
    fit = ReferenceFit([texts[i] for i in ref_idx], labels[ref_idx], pool_texts, args.seed, fractions)
    confusion, conf_probs, pool_probs = fit.variants["bcts"]
    by_share: dict[str, dict[str, float]] = {}
    for share in (0.0, 0.1, 0.3):
        fired, scores = [], []
        for _ in range(10):
            n_off = int(round(share * 500))
            drawn = rng.choice(held, size=500 - n_off, p=rng.dirichlet(np.ones(held)))
            picks = [offsets[c] + rng.integers(pools[c].size) for c in drawn]
            picks += [offsets[held] + rng.integers(off_docs.size) for _ in range(n_off)]
            probs = pool_probs[np.array(picks)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AuditWarning)
                prior = estimate_prior(probs, confusion, method=DEFAULT_METHOD).prior
            diag = diagnose(probs, conf_probs, fit.conf_labels, prior, emit=False)
            fired.append(any("out-of-taxonomy" in w or "not a mixture" in w for w in diag.warnings))
            scores.append(diag.out_of_taxonomy_score)
        by_share[f"{share:.1f}"] = {
            "warning_rate": float(np.mean(fired)),
            "mean_score": float(np.mean(scores)),
        }
    return {"held_out_domain": domains[held], "taxonomy": list(domains[:held]), "by_share": by_share}


def evaluate(
    name: str, points: dict[str, np.ndarray], cis: dict[str, tuple[np.ndarray, np.ndarray]], truth: np.ndarray
) -> dict[str, float]:
    """Per-trial metrics of one estimator."""
    est = points[name]
    row = {
        "overlap_accuracy": overlap_accuracy(est, truth),
        "max_abs_error_points": 100.0 * max_abs_error(est, truth),
        "mean_abs_error_points": 100.0 * mean_abs_error(est, truth),
        "tolerance_accuracy_2pt": tolerance_accuracy(est, truth, 0.02),
    }
    if name in cis:
        lo, hi = cis[name]
        row["ci_coverage"] = ci_coverage(lo, hi, truth)
        row["ci_width_points"] = float(100.0 * np.mean(hi - lo))
    return row


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over trials (``mean_`` prefixed, as in the results schema)."""
    keys = rows[0].keys()
    out = {}
    for key in keys:
        values = [r[key] for r in rows if key in r]
        label = key if key.startswith("ci_") else f"mean_{key}"
        out[label] = float(np.mean(values))
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trials", type=int, default=90, help="label-shift trials in all (split over families)"
    )
    parser.add_argument(
        "--reference_fits", type=int, default=3, help="independent reference splits/classifiers"
    )
    parser.add_argument(
        "--n_bootstrap", type=int, default=100, help="bootstrap replicates per trial and estimator"
    )
    parser.add_argument("--docs_per_domain", type=int, default=500, help="documents per domain in the corpus")
    parser.add_argument(
        "--pool_fraction", type=float, default=0.4, help="share of each domain held out as pool"
    )
    parser.add_argument("--n_min", type=int, default=300, help="fewest generations in a trial")
    parser.add_argument("--n_max", type=int, default=1000, help="most generations in a trial")
    parser.add_argument("--corpus", choices=("auto", "real", "synthetic"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.trials < len(FAMILIES) or args.reference_fits < 1 or not 0 < args.pool_fraction < 1:
        parser.error("need --trials >= 3, --reference_fits >= 1 and 0 < --pool_fraction < 1")
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    fractions = (0.6, 0.2, 0.2)

    docs, corpus_name = load_corpus(args.corpus, args.docs_per_domain, args.seed)
    labels, domains = encode_labels([d["domain"] for d in docs])
    texts = [d["text"] for d in docs]
    k = len(domains)
    counts = np.bincount(labels, minlength=k)
    print(
        f"corpus: {corpus_name}; {len(docs)} documents, {k} domains: "
        + ", ".join(f"{d} ({c})" for d, c in zip(domains, counts, strict=True))
    )

    methods = list(ESTIMATORS)
    per_method: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    per_family: dict[str, dict[str, list[dict[str, float]]]] = {f: {m: [] for m in methods} for f in FAMILIES}
    ablation: dict[str, list[dict[str, float]]] = {}
    baselines: dict[str, list[dict[str, float]]] = {"uniform": [], "all_on_dominant": []}
    fits_report = []
    clean_diagnostics: list[Diagnostics] = []
    clean_gaps = []  # the EM <-> PACC cross-check on trials where label shift holds exactly (false alarms)
    trials_per_fit = np.array_split(np.arange(args.trials), args.reference_fits)
    progress = tqdm(total=args.trials, desc="label-shift trials", unit="trial")
    for fit_index, trial_ids in enumerate(trials_per_fit):
        fit_seed = args.seed + 1000 * fit_index
        split_rng = np.random.default_rng(fit_seed)
        ref_idx, pool_idx = [], []
        for c in range(k):
            idx = split_rng.permutation(np.flatnonzero(labels == c))
            n_pool = max(1, int(round(args.pool_fraction * idx.size)))
            pool_idx.append(idx[:n_pool])
            ref_idx.extend(idx[n_pool:].tolist())
        pool_texts = [texts[i] for part in pool_idx for i in part]
        pool_offsets = np.cumsum([0] + [p.size for p in pool_idx])
        fit = ReferenceFit([texts[i] for i in ref_idx], labels[ref_idx], pool_texts, fit_seed, fractions)
        fits_report.append(
            {
                "seed": fit_seed,
                "classifier_accuracy": fit.accuracy,
                "sigma_min_soft": fit.sigma_min_soft,
                "split_sizes": fit.split_sizes,
                "pool_sizes": [int(p.size) for p in pool_idx],
                "classifier_fit_seconds": fit.fit_seconds,
                "predict_ms_per_doc": fit.predict_ms_per_doc,
            }
        )
        for trial in trial_ids:
            family = FAMILIES[trial % len(FAMILIES)]
            truth = draw_prior(family, k, rng)
            n = int(rng.integers(args.n_min, args.n_max + 1))
            drawn = rng.choice(k, size=n, p=truth)
            picks = np.array([pool_offsets[c] + rng.integers(pool_idx[c].size) for c in drawn])
            boot_seed = int(rng.integers(2**31))
            for variant, variant_methods in (
                ("bcts", methods),
                ("temperature", ABLATION_METHODS),
                ("none", ABLATION_METHODS),
            ):
                confusion, conf_probs, pool_probs = fit.variants[variant]
                probs = pool_probs[picks]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AuditWarning)
                    points = {m: estimate_prior(probs, confusion, method=m).prior for m in variant_methods}
                    boot = bootstrap_priors(
                        probs,
                        conf_probs,
                        fit.conf_labels,
                        variant_methods,
                        n_bootstrap=args.n_bootstrap,
                        seed=boot_seed,
                        recalibration=fit.recalibration(variant, picks),
                    )
                    if variant == "bcts":
                        diag = diagnose(
                            probs, conf_probs, fit.conf_labels, points[DEFAULT_METHOD], emit=False
                        )
                        clean_diagnostics.append(diag)
                        pair = (DEFAULT_METHOD, cross_check_partner(DEFAULT_METHOD))
                        clean_gaps.append(
                            {
                                t: estimator_disagreement(
                                    pair,
                                    (points[pair[0]], points[pair[1]]),
                                    (boot[pair[0]].samples, boot[pair[1]].samples),
                                    domains,
                                    min_points=t,
                                )
                                for t in GAP_THRESHOLDS
                            }
                        )
                cis = {m: (b.ci_low, b.ci_high) for m, b in boot.items()}
                for m in variant_methods:
                    row = evaluate(m, points, cis, truth)
                    if variant == "bcts":
                        per_method[m].append(row)
                        per_family[family][m].append(row)
                    else:
                        ablation.setdefault(f"{m}[{variant}]", []).append(row)
            for name, est in trivial_baselines(truth).items():
                baselines[name].append(evaluate(name, {name: est}, {}, truth))
            progress.update(1)
    progress.close()
    out_of_taxonomy = out_of_taxonomy_check(texts, labels, domains, args, fractions)

    summary = {m: summarise(rows) for m, rows in per_method.items()}
    for m in ABLATION_METHODS:
        ablation.setdefault(f"{m}[bcts]", per_method[m])
    ablation_summary = {name: summarise(rows) for name, rows in sorted(ablation.items())}
    baseline_summary = {name: summarise(rows) for name, rows in baselines.items()}
    best = min(summary, key=lambda m: summary[m]["mean_max_abs_error_points"])
    elapsed = time.perf_counter() - started

    header = (
        f"{'estimator':<22}{'1 - TV':>8}{'max err (pt)':>14}{'MAE (pt)':>10}{'CI cover':>10}{'CI width':>10}"
    )
    print(
        f"\n{args.trials} trials ({', '.join(FAMILIES)}), N in [{args.n_min}, {args.n_max}], "
        f"{args.n_bootstrap} bootstrap replicates, {args.reference_fits} reference fits, calibration BCTS"
    )
    print(header)
    for name, s in list(summary.items()) + list(baseline_summary.items()):
        cover = f"{s['ci_coverage']:.3f}" if "ci_coverage" in s else "-"
        width = f"{s['ci_width_points']:.1f}" if "ci_width_points" in s else "-"
        print(
            f"{name:<22}{s['mean_overlap_accuracy']:>8.4f}{s['mean_max_abs_error_points']:>14.2f}"
            f"{s['mean_mean_abs_error_points']:>10.2f}{cover:>10}{width:>10}"
        )
    print("\nper prior family, mean max abs error (points):")
    print(f"{'estimator':<22}" + "".join(f"{f:>16}" for f in FAMILIES))
    for m in methods:
        cells = "".join(
            f"{np.mean([r['max_abs_error_points'] for r in per_family[f][m]]):>16.2f}" for f in FAMILIES
        )
        print(f"{m:<22}{cells}")
    print("\ncalibration ablation:")
    print(header)
    for name, s in ablation_summary.items():
        print(
            f"{name:<22}{s['mean_overlap_accuracy']:>8.4f}{s['mean_max_abs_error_points']:>14.2f}"
            f"{s['mean_mean_abs_error_points']:>10.2f}{s['ci_coverage']:>10.3f}{s['ci_width_points']:>10.1f}"
        )
    clean_oot = {
        "warning_rate": float(np.mean([bool(d.warnings) for d in clean_diagnostics])),
        "out_of_taxonomy_warning_rate": float(
            np.mean([any("out-of-taxonomy" in w for w in d.warnings) for d in clean_diagnostics])
        ),
        "mean_out_of_taxonomy_score": float(np.mean([d.out_of_taxonomy_score for d in clean_diagnostics])),
        "estimator_disagreement_rate": float(
            np.mean([g[DISAGREEMENT_POINTS].significant for g in clean_gaps])
        ),
        "estimator_disagreement_rate_by_threshold": {
            f"{t:g}": float(np.mean([g[t].significant for g in clean_gaps])) for t in GAP_THRESHOLDS
        },
        "mean_abs_estimator_gap_points": float(
            np.mean([abs(g[DISAGREEMENT_POINTS].gap_points) for g in clean_gaps])
        ),
    }
    print(
        f"\ndiagnostics on the clean trials: any warning {clean_oot['warning_rate']:.0%}, out-of-taxonomy "
        f"warning {clean_oot['out_of_taxonomy_warning_rate']:.0%}, mean score "
        f"{clean_oot['mean_out_of_taxonomy_score']:.3f} (expected 0); estimator cross-check "
        f"({DEFAULT_METHOD} vs {cross_check_partner(DEFAULT_METHOD)}) fired on "
        f"{clean_oot['estimator_disagreement_rate']:.0%} at {DISAGREEMENT_POINTS:g} points (by threshold: "
        f"{clean_oot['estimator_disagreement_rate_by_threshold']}), mean largest gap "
        f"{clean_oot['mean_abs_estimator_gap_points']:.2f} points"
    )
    print(f"out-of-taxonomy check (domain {out_of_taxonomy['held_out_domain']!r} left out of the taxonomy):")
    for share, row in out_of_taxonomy["by_share"].items():
        print(
            f"  {float(share):>4.0%} of generations off-taxonomy: warning rate {row['warning_rate']:.0%}, "
            f"mean score {row['mean_score']:.3f}"
        )
    print(
        f"\nclassifier held-out accuracy per fit: {[round(f['classifier_accuracy'], 4) for f in fits_report]}"
    )
    print(f"most accurate by mean max abs error: {best} (library default: {DEFAULT_METHOD}); {elapsed:.0f} s")

    result: dict[str, object] = {
        "benchmark": "audit_estimators",
        "description": "label-shift resampling of held-out reference documents; every estimator; BCTS calibration",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
        },
        "seed": args.seed,
        "settings": {
            "trials": args.trials,
            "families": list(FAMILIES),
            "reference_fits": args.reference_fits,
            "n_bootstrap": args.n_bootstrap,
            "n_generations_range": [args.n_min, args.n_max],
            "docs_per_domain": args.docs_per_domain,
            "pool_fraction": args.pool_fraction,
            "reference_fractions": list(fractions),
            "classifier": "TfidfLogisticClassifier (defaults)",
            "confidence": 0.95,
        },
        "corpus": {"source": corpus_name, "domains": list(domains), "documents_per_domain": counts.tolist()},
        "reference_fits": fits_report,
        "estimators": summary,
        "per_family": {f: {m: summarise(rows) for m, rows in per_family[f].items()} for f in FAMILIES},
        "calibration_ablation": ablation_summary,
        "baselines": baseline_summary,
        "diagnostics_clean_trials": clean_oot,
        "out_of_taxonomy_check": out_of_taxonomy,
        "best_by_max_abs_error": best,
        "default": {"name": DEFAULT_METHOD, **summary[DEFAULT_METHOD]},
        "elapsed_seconds": elapsed,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
