"""The auditor's core on your own texts: labelled reference documents in, a mixture estimate out.

No model and no Hugging Face library involved: ``estimate_mixture`` trains a TF-IDF classifier on the
reference text, calibrates it (BCTS) on a separate split, measures its confusion on a third, and inverts
the label shift of the generations with every estimator. Here the "generations" are held-out offline-corpus
documents drawn with a known mixture, so the printout can be checked against the truth.

    python examples/estimate_mixture_from_texts.py
"""

import numpy as np

from hf_fundamentals.audit import estimate_mixture
from hf_fundamentals.corpora import build_corpus

domains = ["python_code", "dictionary", "fortunes", "manpages"]
docs = build_corpus(domains, docs_per_domain=400, seed=0)
rng = np.random.default_rng(0)
by_domain = {d: [r["text"] for r in docs if r["domain"] == d] for d in domains}
reference_texts, reference_labels, pools = [], [], {}
for d, texts in by_domain.items():
    reference_texts += texts[:200]
    reference_labels += [d] * 200
    pools[d] = texts[200:]

truth = np.array([0.70, 0.05, 0.20, 0.05])
picks = rng.choice(len(domains), size=400, p=truth)
generations = [pools[domains[k]][rng.integers(len(pools[domains[k]]))] for k in picks]
truth = np.bincount(picks, minlength=len(domains)) / len(picks)  # the shares actually drawn

result = estimate_mixture(reference_texts, reference_labels, generations, domains=domains, seed=0)
print(f"{'domain':12s} truth   {'  '.join(f'{m:>8s}' for m in result.estimates)}")
for i, d in enumerate(domains):
    row = "  ".join(f"{100 * e.point[i]:7.1f}%" for e in result.estimates.values())
    print(f"{d:12s} {100 * truth[i]:4.1f}%  {row}")
print("default:", result.default_method, "| warnings:", result.diagnostics.warnings or "none")
