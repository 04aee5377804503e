"""Ordering through real ``datasets`` objects: ordered datasets, score columns (cached), streaming, plots, flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset, IterableDataset, load_dataset

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.ordering.datasets import (
    add_score_column,
    bucket_visits,
    order_dataset,
    order_iterable_dataset,
    order_report,
    plot_orders,
)
from hf_fundamentals.ordering import OrderSpec, order_indices


def _scored(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset.from_dict({"id": list(range(n)), "score": rng.random(n).tolist(),
                              "domain": [f"d{i % 3}" for i in range(n)]})  # fmt: skip


def test_order_dataset_puts_rows_in_the_methods_order():
    ds = _scored()
    ordered = order_dataset(ds, "saw", score_column="score", window_size=10, seed=3)
    want = order_indices(np.array(ds["score"]), "saw", window_size=10, seed=3)
    assert ordered["id"] == want.tolist()
    assert len(ordered) == len(ds) and sorted(ordered["id"]) == list(range(len(ds)))
    flat = order_dataset(ds, OrderSpec("stair"), flatten=True)
    assert flat["id"] == order_indices(np.array(ds["score"]), "stair").tolist()
    report = order_report(order_dataset(ds, "sorting"), batch_size=8)
    assert report.within_batch_std < 0.02 and report.sweeps == 1
    mixed = order_dataset(ds, "sorting", window_size=30, domain_column="domain")
    assert order_report(mixed, batch_size=8, domain_column="domain").longest_domain_run <= 2


def test_order_dataset_errors_name_the_problem():
    ds = _scored()
    with pytest.raises(KeyError, match="score column 'quality' is not in the dataset"):
        order_dataset(ds, "saw", score_column="quality")
    with pytest.raises(TypeError, match="order_iterable_dataset"):
        order_dataset(ds.to_iterable_dataset(), "saw")


def test_score_column_compression_and_user_function_cached(tmp_path):
    path = tmp_path / "data.jsonl"
    texts = ["aaaa aaaa aaaa aaaa aaaa", "the quick brown fox jumps", "x7#Qp!z@L%w2^v"]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ds = load_dataset("json", data_files=str(path), split="train")
    scored = add_score_column(ds, "compression")
    assert scored["score"][0] < scored["score"][1] < scored["score"][2]
    calls = []

    def length_score(batch):
        calls.append(len(batch))
        return [float(len(t)) for t in batch]

    first = add_score_column(ds, length_score, column="length")
    second = add_score_column(ds, length_score, column="length")  # read back from the datasets cache
    assert first["length"] == second["length"] == [float(len(t)) for t in texts]
    assert sum(calls) == len(texts)
    with pytest.raises(ValueError, match="already has a 'length' column"):
        add_score_column(first, length_score, column="length")
    with pytest.raises(ValueError, match="scorer 'bleu'"):
        add_score_column(ds, "bleu")


def test_perplexity_scores_under_a_reference_model(tiny_llama_dir):
    from conftest import TINY_TEXTS
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ds = Dataset.from_dict({"messages": [[{"role": "user", "content": t}] for t in TINY_TEXTS[:6]]})
    scored = add_score_column(
        ds, "perplexity", text_column="messages", model=model, tokenizer=tok, batch_size=4
    )
    assert len(scored["score"]) == 6 and all(np.isfinite(scored["score"]))
    by_path = add_score_column(ds, "perplexity", text_column="messages", model=str(tiny_llama_dir))
    np.testing.assert_allclose(by_path["score"], scored["score"], rtol=1e-4)


def test_streaming_buckets_yield_everything_once_in_the_pattern():
    n = 600
    ds = _scored(n, seed=1)
    stream = ds.to_iterable_dataset()
    ordered = order_iterable_dataset(stream, "folding", layers=3, n_buckets=10)
    assert isinstance(ordered, IterableDataset)
    rows = list(ordered)
    assert sorted(r["id"] for r in rows) == list(range(n))
    q = np.argsort(np.argsort(np.array(ds["score"]))) / (n - 1)
    seq = q[[r["id"] for r in rows]]
    exact = q[order_indices(np.array(ds["score"]), "folding", layers=3)]
    # three sweeps like FO-3, each ascending at bucket resolution (10 buckets: within 0.1 + probe error)
    assert np.corrcoef(seq, exact)[0, 1] > 0.95
    sorted_rows = [r["score"] for r in order_iterable_dataset(stream, "sorting", n_buckets=10)]
    assert np.corrcoef(sorted_rows, np.sort(sorted_rows))[0, 1] > 0.99
    assert bucket_visits(OrderSpec("zigzag", layers=2), 3) == [(0, 0, 2), (1, 0, 2), (2, 0, 2), (2, 1, 2),
                                                                 (1, 1, 2), (0, 1, 2)]  # fmt: skip
    with pytest.raises(ValueError, match="shuffle"):
        order_iterable_dataset(stream, "random")


def test_plot_orders_writes_a_figure(tmp_path):
    s = np.random.default_rng(0).random(500)
    orders = {m: order_indices(s, m) for m in ("random", "saw")}
    fig = plot_orders(orders, s, tmp_path / "orders.png", domains=[i % 2 for i in range(500)])
    assert (tmp_path / "orders.png").stat().st_size > 1000
    assert len(fig.axes) == 2


def test_flags_build_the_spec_and_refuse_stray_knobs():
    args = HffArguments(hff_order="stair", order_layers=4, order_window_size=50, order_score="quality")
    spec = args.order_spec()
    assert (spec.method, spec.layers, spec.window_size) == ("stair", 4, 50)
    assert "order STR(K=2,L=4" in args.enabled_techniques()[0]
    with pytest.raises(ValueError, match="--order_score set but --hff_order is 'none'"):
        HffArguments(order_score="quality")
    with pytest.raises(ValueError, match="--hff_order 'sawtooth'"):
        HffArguments(hff_order="sawtooth")
    with pytest.raises(ValueError, match="layers must be an integer >= 1"):
        HffArguments(hff_order="saw", order_layers=0)


@pytest.mark.embedded
def test_perplexity_default_is_the_embedded_model(embedded):
    rng = np.random.default_rng(0)
    clean = "The cat sat on the mat and looked out of the window at the rain."
    noisy = "".join(chr(c) for c in rng.integers(33, 127, len(clean)))
    ds = Dataset.from_dict({"text": [clean, noisy]})
    scored = add_score_column(ds, "perplexity", batch_size=2)  # model="embedded" by default
    assert scored["score"][0] < scored["score"][1] - 1.0  # nats per token
