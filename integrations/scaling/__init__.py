"""Scaling laws during training: ``ScalingLawCallback`` records (N, tokens, eval loss), refits a law, forecasts
the final loss and warns near a turning point; optionally evaluates a perturbed (fake-quantized) copy.

Modules: ``callback``, ``perturb`` (the perturbed copy), ``technique``. The laws and the fitter are :mod:`hf_fundamentals.scaling`."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "JSONL": "callback",
    "ScalingLawCallback": "callback",
    "ScalingPoint": "callback",
    "ScalingReport": "callback",
    "count_parameters": "callback",
    "mean_eval_loss": "callback",
    "parse_perturbation": "callback",
    "perturb_weights_": "callback",
    "restore_weights_": "callback",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
