"""Score-based ordering for ``datasets``: score columns, ordered datasets, streaming buckets and plots.

``order_dataset(ds, "saw", score_column="score")`` returns the dataset in training order (an indices mapping,
the rows are not copied). Pass it to a trainer that does not shuffle
(:mod:`hf_fundamentals.integrations.ordering.sampler` makes sure of that). ``add_score_column`` computes a
score with ``Dataset.map`` (batched, cached, progress bar): per-sample loss under a reference causal LM (the
embedded SmolLM2 by default), the compression-ratio heuristic, or your own function.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_fundamentals.ordering import OrderSpec, order_indices
from hf_fundamentals.ordering.guidelines import GuidelineReport, guideline_metrics, score_quantiles

logger = logging.getLogger(__name__)

SCORERS = ("model_nll", "perplexity", "compression")
"""``perplexity`` is the older name of ``model_nll`` (the same score: mean token loss in nats)."""


def _column(ds: Any, name: str, what: str) -> np.ndarray:
    if name not in ds.column_names:
        raise KeyError(f"{what} column {name!r} is not in the dataset; its columns are {ds.column_names}")
    return np.asarray(ds[name])


def order_dataset(
    ds: Any,
    method: str | OrderSpec = "saw",
    score_column: str = "score",
    *,
    domain_column: str | None = None,
    flatten: bool = False,
    **spec_fields: Any,
) -> Any:
    """``ds`` reordered for training by ``method`` over ``ds[score_column]``; returns a ``datasets.Dataset``.

    ``spec_fields`` are :class:`~hf_fundamentals.ordering.OrderSpec` fields (``ascending``, ``layers``,
    ``num_sections``, ``transition_ratio``, ``window_size``, ``gumbel_tau``, ``seed``, ...). With
    ``domain_column`` the window jitter interleaves domains. ``flatten=True`` rewrites the rows in order (faster
    reads later, a copy of the data now); otherwise the order is an indices mapping over the same Arrow table.
    """
    import datasets

    if isinstance(ds, datasets.IterableDataset):
        raise TypeError(
            "order_dataset needs a map-style Dataset (a global order needs every score); for a streaming "
            "IterableDataset use order_iterable_dataset (score-quantile buckets)"
        )
    spec = method if isinstance(method, OrderSpec) else OrderSpec(method=method, **spec_fields)
    if isinstance(method, OrderSpec) and spec_fields:
        raise TypeError("pass either an OrderSpec or spec fields, not both")
    scores = _column(ds, score_column, "score")
    domains = _column(ds, domain_column, "domain") if domain_column else None
    order = order_indices(scores, spec, domains=domains)
    fingerprint = hashlib.sha256(
        json.dumps([ds._fingerprint, score_column, domain_column, spec.to_dict()]).encode()
    ).hexdigest()[:16]
    ordered = ds.select(order, new_fingerprint=fingerprint)
    if flatten:
        ordered = ordered.flatten_indices()
    logger.info(
        "ordered %d rows by %s over %r; train it without shuffling (train_sampling_strategy='sequential', "
        "or hf_fundamentals.integrations.ordering.sampler)",
        len(order),
        spec.label(),
        score_column,
    )
    return ordered


def order_report(
    ds: Any, score_column: str = "score", batch_size: int = 32, domain_column: str | None = None
) -> GuidelineReport:
    """Guideline metrics (G1-G4) of ``ds`` *as it is ordered now* (e.g. the output of :func:`order_dataset`)."""
    scores = _column(ds, score_column, "score")
    domains = _column(ds, domain_column, "domain") if domain_column else None
    return guideline_metrics(np.arange(len(scores)), scores, batch_size, domains=domains)


# ------------------------------------------------------------------------------------------------ scores
def _texts_of(batch: dict[str, list[Any]], text_column: str) -> list[str]:
    values = batch[text_column]
    if values and isinstance(values[0], list):  # conversational: [{"role", "content"}, ...]
        return ["\n".join(str(m.get("content", "")) for m in conv) for conv in values]
    return [str(v) for v in values]


def add_score_column(
    ds: Any,
    scorer: str | Callable[[list[str]], Sequence[float]] = "model_nll",
    *,
    text_column: str = "text",
    column: str = "score",
    model: Any = "embedded",
    tokenizer: Any = None,
    batch_size: int = 16,
    max_length: int = 512,
    device: str | None = None,
    load_from_cache_file: bool | None = None,
    cache_dir: str | Path | None = None,
    chunk_size: int = 1024,
) -> Any:
    """``ds`` with a ``column`` of per-sample scores, computed in batches.

    ``scorer``: ``"model_nll"`` (alias ``"perplexity"``: mean next-token loss in nats under ``model``, a Hub
    id, local path, loaded model or ``"embedded"``; high = surprising to the reference model),
    ``"compression"`` (zlib compression ratio; high = noisy or dense, low = repetitive) or a function
    ``texts -> scores``. Conversational rows (lists of messages) are scored on their joined contents.

    ``model_nll`` runs :func:`hf_fundamentals.ordering.scores.model_nll_scores`: batches of similar length,
    each ``chunk_size`` rows written under ``cache_dir`` (default ``<hff cache>/scores``) as soon as they are
    done, keyed by the texts, the model's weights and ``max_length``; a rerun, an interrupted run or another
    rank reads the finished chunks. The other scorers are cached by ``datasets`` (``Dataset.map``) under a
    fingerprint of the dataset and scorer.
    """
    if text_column not in ds.column_names:
        raise KeyError(
            f"text column {text_column!r} is not in the dataset; its columns are {ds.column_names}"
        )
    if column in ds.column_names:
        raise ValueError(f"the dataset already has a {column!r} column; pass column=... or reuse it")
    if callable(scorer):
        fn, tag = scorer, getattr(scorer, "__qualname__", repr(scorer))
    elif scorer == "compression":
        from hf_fundamentals.ordering.scores import compression_ratios

        fn, tag = compression_ratios, "compression-zlib9"
    elif scorer in ("model_nll", "perplexity"):
        from hf_fundamentals.cache import cache_root
        from hf_fundamentals.integrations.hub import load_model
        from hf_fundamentals.ordering.scores import model_nll_scores

        if isinstance(model, str):
            model, loaded_tok = load_model(model)
            tokenizer = tokenizer or loaded_tok
        if tokenizer is None:
            raise ValueError(f"scorer={scorer!r} with a loaded model needs its tokenizer= as well")
        texts = _texts_of({text_column: ds[text_column]}, text_column)
        folder = Path(cache_dir) if cache_dir is not None else cache_root() / "scores"
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=f"Scoring ({scorer})", unit="row")
        except ImportError:  # pragma: no cover - tqdm comes with datasets
            bar = None

        def tick(done: int, total: int) -> None:
            if bar is not None:
                bar.update(done - bar.n)

        values = model_nll_scores(texts, model, tokenizer, batch_size=batch_size, max_length=max_length,
                                  cache_dir=folder, chunk_size=chunk_size, device=device, progress=tick)  # fmt: skip
        if bar is not None:
            bar.close()
        return ds.add_column(column, values.tolist())
    else:
        raise ValueError(f"scorer {scorer!r}; accepted: {', '.join(SCORERS)} or a function texts -> scores")

    def compute(batch: dict[str, list[Any]]) -> dict[str, list[float]]:
        texts = _texts_of(batch, text_column)
        values = [float(v) for v in fn(texts)]
        if len(values) != len(texts):
            raise ValueError(f"scorer returned {len(values)} scores for {len(texts)} texts")
        return {column: values}

    fingerprint = hashlib.sha256(
        json.dumps([ds._fingerprint, tag, text_column, column]).encode()
    ).hexdigest()[:16]
    return ds.map(
        compute,
        batched=True,
        batch_size=batch_size,
        desc=f"Scoring ({tag.split(':')[0]})",
        new_fingerprint=fingerprint,
        load_from_cache_file=load_from_cache_file,
    )


# -------------------------------------------------------------------------------------------- streaming
def bucket_visits(spec: OrderSpec, n_buckets: int) -> list[tuple[int, int, int]]:
    """The ``(bucket, strand, strands)`` visits that approximate ``spec`` at bucket resolution.

    Buckets are score quantiles (0 = lowest for an ascending order); a strand is every ``strands``-th sample
    of a bucket in stream order. The method runs on the ``n_buckets * strands`` strand units as if they were
    sorted samples, so FO/ZIG/STR/SAW keep their shape with one bucket as the grain.
    """
    r = spec.resolved()
    if r.method in ("random", "segment"):
        raise ValueError(
            f"streaming order {r.method!r} is not bucketed: use IterableDataset.shuffle(buffer_size=...) for "
            "random; segment needs the whole dataset"
        )
    strands = r.layers if r.method in ("folding", "zigzag", "stair", "saw") else 1
    units = n_buckets * strands
    # unit u = (bucket u // strands, strand u % strands), in ascending (bucket, strand) order
    unit_order = order_indices(np.arange(units), OrderSpec(
        method=r.method, ascending=True, layers=r.layers, num_sections=r.num_sections,
        transition_ratio=r.transition_ratio,
    ))  # fmt: skip
    visits = []
    for u in unit_order.tolist():
        bucket, strand = divmod(u, strands)
        visits.append((bucket if r.ascending else n_buckets - 1 - bucket, strand, strands))
    return visits


def order_iterable_dataset(
    ds: Any,
    method: str | OrderSpec = "saw",
    score_column: str = "score",
    *,
    n_buckets: int = 20,
    probe_size: int = 10_000,
    edges: Sequence[float] | None = None,
    **spec_fields: Any,
) -> Any:
    """A streaming ``IterableDataset`` in approximately ``method``'s order, by score-quantile buckets.

    Bucket edges are the score quantiles of the first ``probe_size`` examples (or ``edges``); the stream is
    then read once per visit of :func:`bucket_visits` (``n_buckets * layers`` passes for FO/ZIG/STR/SAW,
    ``n_buckets`` for sorting), each pass yielding one strand of one bucket in stream order. Reading is
    repeated, compute is not; every example is yielded exactly once per epoch.
    """
    import datasets

    spec = method if isinstance(method, OrderSpec) else OrderSpec(method=method, **spec_fields)
    if edges is None:
        probe = [float(ex[score_column]) for ex in ds.take(probe_size)]
        if not probe:
            raise ValueError("the stream is empty")
        edges = np.quantile(probe, np.linspace(0, 1, n_buckets + 1)[1:-1]).tolist()
    edges_arr = np.asarray(edges, dtype=np.float64)
    n_buckets = len(edges_arr) + 1
    visits = bucket_visits(spec, n_buckets)

    def generate() -> Iterator[dict[str, Any]]:
        for bucket, strand, strands in visits:
            seen = 0
            for example in ds:
                if int(np.searchsorted(edges_arr, float(example[score_column]), side="right")) != bucket:
                    continue
                if seen % strands == strand:
                    yield example
                seen += 1

    return datasets.IterableDataset.from_generator(generate, features=ds.features)


# -------------------------------------------------------------------------------------------------- plots
def plot_orders(
    orders: dict[str, Any],
    scores: Any,
    path: str | Path | None = None,
    *,
    domains: Sequence[Any] | None = None,
    title: str | None = None,
    max_points: int = 20_000,
) -> Any:
    """One panel per order: each sample's score quantile against its training position (colour = domain).

    A rolling mean shows the curriculum's shape. Returns the figure; saves it to ``path`` if given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    q_rows = score_quantiles(scores)
    n = q_rows.shape[0]
    fig, axes = plt.subplots(len(orders), 1, figsize=(9, 1.7 * len(orders) + 0.6), sharex=True, squeeze=False)
    codes, labels = (None, [])
    if domains is not None:
        labels, codes = np.unique(np.asarray(domains), return_inverse=True)
    step = max(1, n // max_points)
    cmap = plt.get_cmap("tab10")
    for ax, (name, order) in zip(axes[:, 0], orders.items(), strict=True):
        order = np.asarray(order)
        q = q_rows[order]
        pos = np.arange(n)[::step]
        if codes is None:
            ax.scatter(pos, q[::step], s=2, alpha=0.4, color="tab:blue", linewidths=0)
        else:
            c = codes[order][::step]
            for k, label in enumerate(labels):
                sel = c == k
                ax.scatter(pos[sel], q[::step][sel], s=2, alpha=0.5, color=cmap(k % 10), linewidths=0,
                           label=str(label))  # fmt: skip
        window = max(1, n // 100)
        rolling = np.convolve(q, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(rolling.shape[0]) + window // 2, rolling, color="black", lw=1)
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_ylim(-0.05, 1.05)
    axes[-1, 0].set_xlabel("training position (sample)")
    if codes is not None:
        axes[0, 0].legend(loc="upper left", fontsize=7, markerscale=4, ncol=min(len(labels), 6))
    fig.suptitle(title or "score quantile along the training order (black: rolling mean)", fontsize=10)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
