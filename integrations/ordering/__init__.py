"""STR/SAW data ordering for ``datasets`` and the Trainer (``--hff_order``): ordered and scored datasets, the
sampler guards that keep the order across ranks, accumulation and resume.

Modules: ``flags`` (``OrderingFlags``, ``AveragingFlags``), ``averaging`` (``WeightAveragingCallback``,
``load_average``: weight averaging, arXiv 2511.18903), ``datasets`` (``order_dataset``, ``add_score_column``, streaming, plots),
``sampler`` (the Trainer guards), ``technique``. The orders themselves are :mod:`hf_fundamentals.ordering`."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "SCORERS": "datasets",
    "add_score_column": "datasets",
    "bucket_visits": "datasets",
    "order_dataset": "datasets",
    "order_iterable_dataset": "datasets",
    "order_report": "datasets",
    "plot_orders": "datasets",
    "FixedOrderSampler": "sampler",
    "OrderGuardCallback": "sampler",
    "OrderShuffleError": "sampler",
    "OrderedTrainerMixin": "sampler",
    "dataloader_shuffles": "sampler",
    "guard_built_trainer": "sampler",
    "preserve_order": "sampler",
    "shuffle_problems": "sampler",
    "OrderingFlags": "flags",
    "AveragingFlags": "flags",
    "WeightAveragingCallback": "averaging",
    "load_average": "averaging",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
