"""Evolution Strategies as a ``Trainer`` (``ESTrainer`` with ``ESTrainingConfig``), anchored weight decay as a
callback for any trainer (``--hff_awd``) and the drift monitor.

Modules: ``flags`` (``EvolutionFlags``), ``es_config``, ``es_trainer``, ``awd``, ``drift``, ``technique``. The ES math,
the anchored decay and the drift measures are :mod:`hf_fundamentals.evolution`."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "DEFAULT_GENERATION": "es_config",
    "ESTrainingConfig": "es_config",
    "MASTER_FILE": "es_trainer",
    "PROMPT_COLUMN": "es_trainer",
    "UPDATES_DIR": "es_trainer",
    "ESTrainer": "es_trainer",
    "collate_columns": "es_trainer",
    "load_step_records": "es_trainer",
    "ANCHOR_FILE": "awd",
    "AnchoredWeightDecayCallback": "awd",
    "HISTORY_FILE": "drift",
    "DriftMonitorCallback": "drift",
    "drift_signals": "drift",
    "EvolutionFlags": "flags",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
