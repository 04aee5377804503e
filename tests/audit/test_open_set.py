"""The out-of-taxonomy ("none of these") share and the length-matched confusion."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hf_fundamentals.audit.open_set import estimate_open_set, storey_share, weighted_quantile
from hf_fundamentals.audit.snippets import draw_snippets
from hf_fundamentals.audit.surgeon import MixtureAuditor

VOCAB = {
    "code": "def return import class self lambda yield None True print range len for while if else".split(),
    "legal": "licence warranty copyright permission notice liability distribute software terms law".split(),
    "kitchen": "flour butter oven sugar whisk bake salt pepper simmer onion garlic stir".split(),
    "sport": "goal match team score player ball referee league season coach win kick".split(),
}
COMMON = "the a of and to in is it that with as on".split()


def _doc(rng: random.Random, domain: str, n_words: int, own: float = 0.5) -> str:
    return " ".join(
        rng.choice(VOCAB[domain]) if rng.random() < own else rng.choice(COMMON) for _ in range(n_words)
    )


def _null(rng: np.random.Generator, n_per_class: int, k: int = 3):
    scores = np.concatenate([rng.normal(c * 0.3, 1.0, n_per_class) for c in range(k)])
    return scores, np.repeat(np.arange(k), n_per_class)


def test_weighted_quantile_matches_numpy_on_equal_weights():
    x = np.random.default_rng(0).normal(size=1001)
    assert weighted_quantile(x, np.ones_like(x), 0.5) == pytest.approx(np.median(x))


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.6])
def test_storey_share_recovers_a_separable_share(share):
    rng = np.random.default_rng(1)
    null, labels = _null(rng, 2000)
    weights = np.array([0.5, 0.3, 0.2])
    n_in = int(6000 * (1 - share))
    inside = np.concatenate([rng.normal(c * 0.3, 1.0, int(n_in * w)) for c, w in enumerate(weights)])
    gens = np.concatenate([inside, rng.normal(-5.0, 1.0, 6000 - inside.size)])
    est, _ = storey_share(gens, null, labels, weights)
    assert est == pytest.approx(share, abs=0.03)


def test_storey_share_is_a_lower_bound_when_foreign_text_looks_typical():
    rng = np.random.default_rng(2)
    null, labels = _null(rng, 2000)
    gens = np.concatenate(
        [rng.normal(0.3, 1.0, 3000), rng.normal(-0.3, 1.0, 3000)]
    )  # half foreign, overlapping
    est, _ = storey_share(gens, null, labels, np.full(3, 1 / 3))
    assert 0.05 < est < 0.5 - 0.1


def test_open_set_interval_covers_the_truth_and_narrows_with_data():
    rng = np.random.default_rng(3)
    widths = []
    for n in (300, 3000):
        null, labels = _null(rng, n)
        gens = np.concatenate([rng.normal(0.3, 1.0, int(0.8 * n)), rng.normal(-5, 1, n - int(0.8 * n))])
        est = estimate_open_set(gens, null, labels, np.full(3, 1 / 3), n_bootstrap=200, seed=0)
        assert est.ci_low <= 0.2 <= est.ci_high
        widths.append(est.ci_high - est.ci_low)
    assert widths[1] < widths[0] / 2


def test_snippets_take_the_generation_lengths():
    rng = random.Random(0)
    texts = [_doc(rng, "code", 200) for _ in range(5)]
    snippets, labels, source = draw_snippets(
        texts, np.array([0, 1, 0, 1, 2]), [40, 41, 42], per_doc=4, seed=0
    )
    assert len(snippets) == 20 and labels.tolist() == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4 + [2] * 4
    assert source.tolist() == [i for i in range(5) for _ in range(4)]
    assert all(38 <= len(s) <= 42 and s in texts[i] for s, i in zip(snippets, source, strict=True))
    with pytest.raises(ValueError, match="no generation has >= 20"):
        draw_snippets(texts, np.zeros(5, int), [5, 10])


def _auditor(rng: random.Random, domains, n_docs: int = 80, own: float = 0.5) -> MixtureAuditor:
    texts, labels = [], []
    for d in domains:
        texts += [_doc(rng, d, 300, own) for _ in range(n_docs)]
        labels += [d] * n_docs
    return MixtureAuditor(seed=0).fit(texts, labels, domains=list(domains))


def test_an_omitted_domain_is_recovered_as_the_open_set_share():
    """Generations from four domains, a taxonomy of three: the fourth's 25% is the none-of-these share."""
    rng = random.Random(0)
    auditor = _auditor(rng, ("code", "legal", "kitchen"), n_docs=120)
    truth = {"code": 0.45, "legal": 0.2, "kitchen": 0.1, "sport": 0.25}
    gens = [_doc(rng, d, rng.randint(20, 60)) for d, w in truth.items() for _ in range(int(1600 * w))]
    result = auditor.audit(
        gens, n_bootstrap=100, open_set=True, open_set_shares="typical", emit_warnings=False
    )
    info = result.open_set
    assert info["share"] == pytest.approx(0.25, abs=0.06) and info["ci_low"] <= 0.25 <= info["ci_high"]
    inside = dict(zip(result.domains, result.default.point, strict=True))
    for d in ("code", "legal", "kitchen"):  # shares of the in-taxonomy part: 0.6, 0.267, 0.133
        assert inside[d] == pytest.approx(truth[d] / 0.75, abs=0.04), d
    of_all = info["shares_of_all"]["point"]
    assert of_all["code"] == pytest.approx((1 - info["share"]) * inside["code"])
    # a closed-set audit must put the foreign quarter on the listed domains: as shares of all text it is off
    closed = auditor.audit(gens, n_bootstrap=0, emit_warnings=False)
    for d in closed.domains:
        assert abs(of_all[d] - truth[d]) < 0.05, d
    assert closed.default.point[0] - truth["code"] > 0.1


def test_open_set_shares_all_are_the_closed_set_shares_and_cost_accuracy_on_foreign_text():
    """``open_set_shares="all"`` (the default): the category shares are the closed-set ones (the foreign quarter
    spread over the listed domains), the none-of-these share is the same; typical-only is closer here, where the
    foreign text is clearly foreign."""
    rng = random.Random(0)
    auditor = _auditor(rng, ("code", "legal", "kitchen"), n_docs=120)
    truth = {"code": 0.45, "legal": 0.2, "kitchen": 0.1, "sport": 0.25}
    gens = [_doc(rng, d, rng.randint(20, 60)) for d, w in truth.items() for _ in range(int(1600 * w))]
    typical = auditor.audit(
        gens, n_bootstrap=0, open_set=True, open_set_shares="typical", emit_warnings=False
    )
    every = auditor.audit(gens, n_bootstrap=0, open_set=True, open_set_shares="all", emit_warnings=False)
    closed = auditor.audit(gens, n_bootstrap=0, emit_warnings=False)
    np.testing.assert_allclose(every.default.point, closed.default.point, atol=1e-9)
    assert every.open_set["in_taxonomy_shares_from"] == "all generations"
    assert typical.open_set["in_taxonomy_shares_from"] == "typical generations"
    assert every.open_set["share"] == pytest.approx(typical.open_set["share"], abs=0.03)
    inside = np.array([truth[d] / 0.75 for d in typical.domains])
    assert np.abs(typical.default.point - inside).max() < np.abs(every.default.point - inside).max()
    with pytest.raises(ValueError, match="open_set_shares"):
        auditor.audit(gens, n_bootstrap=0, open_set=True, open_set_shares="some")


def test_no_foreign_text_gives_a_small_open_set_share():
    rng = random.Random(1)
    auditor = _auditor(rng, ("code", "legal", "kitchen"))
    gens = [
        _doc(rng, d, rng.randint(20, 60))
        for d, n in (("code", 200), ("legal", 150), ("kitchen", 150))
        for _ in range(n)
    ]
    info = auditor.audit(gens, n_bootstrap=100, open_set=True, emit_warnings=False).open_set
    assert info["share"] < 0.06 and info["ci_low"] == pytest.approx(0.0, abs=1e-9)


def test_length_matched_confusion_removes_the_short_text_bias():
    """Two domains that differ in 1 word of 12: whole documents are never confused, 12-word continuations
    often are, so a confusion measured on whole documents under-corrects."""
    rng = random.Random(2)
    auditor = _auditor(rng, ("code", "legal"), n_docs=80, own=0.08)
    assert auditor.reference.report.accuracy > 0.97  # on whole documents
    gens = [_doc(rng, d, 12, own=0.08) for d, n in (("code", 480), ("legal", 120)) for _ in range(n)]
    whole = auditor.audit(gens, methods=["pacc"], default_method="pacc", n_bootstrap=0, emit_warnings=False)
    matched = auditor.audit(gens, methods=["pacc"], default_method="pacc", n_bootstrap=0, emit_warnings=False,
                            length_match=True)  # fmt: skip
    assert abs(whole.default.point[0] - 0.8) > 0.04  # whole-document confusion under-corrects
    assert matched.default.point[0] == pytest.approx(0.8, abs=0.03)
    assert matched.settings["length_matched"] and not whole.settings["length_matched"]


def _headed_doc(rng: random.Random, domain: str, n_words: int, head: int = 6) -> str:
    """A document whose first ``head`` words name its domain (a headword, a title) and whose body barely does."""
    return _doc(rng, domain, head, own=0.9) + " " + _doc(rng, domain, n_words - head, own=0.03)


def test_draw_snippets_start_anchor_cuts_prefixes():
    texts = ["alpha beta gamma delta epsilon zeta eta theta", "short"]
    snippets, labels, source = draw_snippets(texts, np.array([0, 1]), [20, 25], per_doc=4, anchor="start")
    for s, i in zip(snippets, source, strict=True):
        assert texts[i].startswith(s) and (len(s) in (20, 25) or s == texts[i])
    assert labels.tolist() == [0] * 4 + [1] * 4
    with pytest.raises(ValueError, match="anchor: got 'middle'"):
        draw_snippets(texts, np.array([0, 1]), [20], anchor="middle")


def test_start_anchored_snippets_match_bos_generations():
    """Generations sampled from BOS are document beginnings. When the domain shows in a document's first words
    (GCIDE's headword, a man page's NAME line), random windows of the same length are confused far more often
    than the beginnings are, so a confusion measured on them over-corrects; beginnings give the right one."""
    rng = random.Random(3)
    domains = ("code", "legal")
    texts, labels = [], []
    for d in domains:
        texts += [_headed_doc(rng, d, 300) for _ in range(80)]
        labels += [d] * 80
    auditor = MixtureAuditor(seed=0).fit(texts, labels, domains=list(domains))
    gens = [_headed_doc(rng, d, 300)[:80] for d, n in (("code", 450), ("legal", 150)) for _ in range(n)]
    options = dict(
        methods=["pacc"], default_method="pacc", n_bootstrap=0, emit_warnings=False, length_match=True
    )
    window = auditor.audit(gens, snippet_anchor="random", **options)
    start = auditor.audit(gens, snippet_anchor="start", **options)
    assert abs(window.default.point[0] - 0.75) > 0.05  # mid-document windows: the wrong confusion
    assert start.default.point[0] == pytest.approx(0.75, abs=0.03)
    assert start.settings["snippet_anchor"] == "start" and window.settings["snippet_anchor"] == "random"
    with pytest.raises(ValueError, match="snippet_anchor: got 'end'"):
        auditor.audit(gens, snippet_anchor="end", **options)
