"""Muon in the ``Trainer`` and TRL trainers (``--hff_optimizer muon``): an optimizer factory for
``optimizer_cls_and_kwargs`` and the checks that refuse setups where Muon would silently train something else.

Modules: ``flags`` (``OptimFlags``), ``factory`` (``MuonFactory``, ``muon_optimizer_cls_and_kwargs``), ``technique``
(the registry hooks). The optimizer itself is :mod:`hf_fundamentals.optim`."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "MuonFactory": "factory",
    "muon_optimizer_cls_and_kwargs": "factory",
    "refuse_unsupported_backends": "factory",
    "trainer_decay_parameter_names": "factory",
    "OptimFlags": "flags",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
