"""The offline corpora (:mod:`hf_fundamentals.corpora`) as ``datasets.Dataset`` objects, cached per seed."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "LOAD_CORPUS_VERSION": "dataset",
    "corpus_cache_dir": "dataset",
    "domain_counts": "dataset",
    "load_corpus": "dataset",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
