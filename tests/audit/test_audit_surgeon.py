"""End to end on synthetic text domains: classifier, cross-fitting, audit, JSON; pluggable classifier; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from hf_fundamentals.audit import (
    DEFAULT_METHOD,
    ESTIMATORS,
    AuditWarning,
    DomainClassifier,
    MixtureAuditor,
    TfidfLogisticClassifier,
    estimate_mixture,
    fit_reference,
    max_abs_error,
    overlap_accuracy,
    synthetic_corpus,
)


@pytest.fixture(scope="module")
def corpus():
    docs = synthetic_corpus(360, seed=0, doc_words=(40, 120))
    reference = [d for i, d in enumerate(docs) if i % 360 < 260]  # 52 per domain in the confusion split
    pool = [d for i, d in enumerate(docs) if i % 360 >= 260]
    return reference, pool


@pytest.fixture(scope="module")
def auditor(corpus):
    reference, _ = corpus
    return MixtureAuditor(seed=0).fit([d["text"] for d in reference], [d["domain"] for d in reference])


def _generations(pool, prior, n, seed):
    rng = np.random.default_rng(seed)
    domains = list(dict.fromkeys(d["domain"] for d in pool))
    by_domain = {name: [d["text"] for d in pool if d["domain"] == name] for name in domains}
    drawn = rng.choice(len(domains), size=n, p=prior)
    return [by_domain[domains[c]][rng.integers(len(by_domain[domains[c]]))] for c in drawn]


def test_end_to_end_audit_recovers_a_skewed_mixture(auditor, corpus):
    _, pool = corpus
    prior = np.array([0.55, 0.1, 0.2, 0.05, 0.05, 0.05])
    gens = _generations(pool, prior, 400, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuditWarning)
        result = auditor.audit(gens, n_bootstrap=60, seed=0)
    assert result.domains == ("web_a", "web_b", "science", "fiction", "dialogue", "code")
    assert result.default_method == DEFAULT_METHOD and set(result.estimates) == set(ESTIMATORS)
    assert result.classifier_report.accuracy > 0.8
    default = result.default
    assert overlap_accuracy(default.point, prior) > 0.88
    assert max_abs_error(default.point, prior) < 0.1
    assert np.all(default.ci_low <= default.point + 1e-9) and np.all(default.point <= default.ci_high + 1e-9)
    payload = json.loads(json.dumps(result.to_dict()))
    assert set(payload["estimates"][DEFAULT_METHOD]["point"]) == set(result.domains)
    assert payload["classifier_report"]["split_sizes"]["confusion"] > 0
    assert payload["diagnostics"]["n_generations"] == 400
    gap = payload["diagnostics"]["estimator_gap"]  # the EM <-> PACC cross-check ran on the shared resamples
    assert set(gap["methods"]) == {"mlls_em", "pacc"} and gap["domain"] in result.domains
    assert gap["significant"] == any(w.startswith("estimators disagree") for w in result.diagnostics.warnings)


def test_token_weights_change_the_estimate(auditor, corpus):
    _, pool = corpus
    gens = _generations(pool, np.array([0.5, 0.1, 0.1, 0.1, 0.1, 0.1]), 150, seed=2)
    weights = np.array([len(g.split()) for g in gens], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuditWarning)
        plain = auditor.audit(gens, methods=["pacc"], n_bootstrap=0)
        weighted = auditor.audit(gens, methods=["pacc"], n_bootstrap=0, weights=weights)
    assert plain.default.ci_low is None and weighted.settings["token_weighted"]
    assert not np.allclose(plain.estimates["pacc"].point, weighted.estimates["pacc"].point)


def test_estimate_mixture_one_call_and_pluggable_classifier(corpus):
    reference, pool = corpus

    class KeywordCounts:
        """A deliberately simple classifier: log of smoothed per-domain word frequencies (naive Bayes)."""

        def fit(self, texts, labels):
            self.vocab = {}
            counts = []
            for text, label in zip(texts, labels, strict=True):
                for word in text.split():
                    self.vocab.setdefault(word, len(self.vocab))
                counts.append((label, text))
            table = np.ones((int(max(labels)) + 1, len(self.vocab)))
            for label, text in counts:
                for word in text.split():
                    table[label, self.vocab[word]] += 1
            self.log_rates = np.log(table / table.sum(axis=1, keepdims=True))
            return self

        def logits(self, texts):
            out = np.zeros((len(texts), self.log_rates.shape[0]))
            for i, text in enumerate(texts):
                idx = [self.vocab[w] for w in text.split() if w in self.vocab]
                out[i] = self.log_rates[:, idx].sum(axis=1) / max(len(idx), 1)
            return out

    assert isinstance(KeywordCounts(), DomainClassifier)
    prior = np.array([0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuditWarning)
        result = estimate_mixture(
            [d["text"] for d in reference],
            [d["domain"] for d in reference],
            _generations(pool, prior, 300, seed=3),
            classifier=KeywordCounts(),
            methods=["pacc"],
            n_bootstrap=20,
            seed=1,
        )
    assert result.settings["classifier"] == "KeywordCounts"
    assert overlap_accuracy(result.default.point, prior) > 0.8


def test_tfidf_classifier_separates_synthetic_domains(corpus):
    reference, pool = corpus
    names = list(dict.fromkeys(d["domain"] for d in reference))
    clf = TfidfLogisticClassifier(max_word_features=5000, max_char_features=5000).fit(
        [d["text"] for d in reference], np.array([names.index(d["domain"]) for d in reference])
    )
    z = clf.logits([d["text"] for d in pool])
    truth = np.array([names.index(d["domain"]) for d in pool])
    assert z.shape == (len(pool), len(names))
    assert np.mean(z.argmax(axis=1) == truth) > 0.85


def test_bad_reference_input_fails_with_clear_messages(corpus):
    reference, _ = corpus
    texts = [d["text"] for d in reference]
    labels = [d["domain"] for d in reference]
    with pytest.raises(
        ValueError, match=r"reference_labels: domains \['legal'\] have no reference documents"
    ):
        fit_reference(texts, labels, domains=[*dict.fromkeys(labels), "legal"])
    with pytest.raises(ValueError, match=r"reference_labels: labels \['code'\] are not in domains"):
        fit_reference(texts, labels, domains=["web_a", "web_b", "science", "fiction", "dialogue"])
    with pytest.raises(ValueError, match="reference_labels: got 3 labels for 1560 reference texts"):
        fit_reference(texts, labels[:3])
    few = [t for t, lab in zip(texts, labels, strict=True) if lab != "code"] + texts[-2:]
    few_labels = [lab for lab in labels if lab != "code"] + ["code", "code"]
    with pytest.raises(ValueError, match="class 5 has 2 documents; each domain needs at least 3"):
        fit_reference(few, few_labels)
    with pytest.raises(ValueError, match=r"fractions: got \(0.5, 0.5, 0.5\)"):
        fit_reference(texts, labels, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="taxonomy needs at least 2 domains"):
        fit_reference(texts[:10], ["web_a"] * 10)
    with pytest.raises(ValueError, match=r"calibration: got 'platt'; accepted: \['bcts'"):
        fit_reference(texts, labels, calibration="platt")
    with pytest.raises(TypeError, match="reference_texts: got a single string"):
        fit_reference("one document", ["a"])


def test_bad_audit_input_fails_with_clear_messages(auditor):
    with pytest.raises(ValueError, match="generations: got 0 texts"):
        auditor.audit([])
    with pytest.raises(TypeError, match="generations: got a single string"):
        auditor.audit("hello")
    with pytest.raises(ValueError, match=r"methods: unknown estimators \['em'\]"):
        auditor.audit(["x y z"], methods=["em"])
    with pytest.raises(ValueError, match=r"probs: has 2 columns but the reference has 6 classes"):
        auditor.audit_probs(np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match=r"weights: expected a 1-D array of length 2"):
        auditor.audit(["a b", "c d"], weights=[1.0], n_bootstrap=0)
    with pytest.raises(RuntimeError, match="call fit"):
        MixtureAuditor().audit(["text"])


def test_core_imports_no_hugging_face_library():
    code = (
        "import sys, hf_fundamentals.audit; "
        "bad = [m for m in ('transformers', 'datasets', 'huggingface_hub', 'torch', 'trl', 'peft') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
