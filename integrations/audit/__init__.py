"""The LLMSurgeon auditor end to end (``hff audit``): sample a model (local ``generate`` or an OpenAI-compatible
server), read the taxonomy's reference text, estimate the mixture, and write ``audit.json``, a plot and a
model-card section.

Modules: ``flags`` (``AuditArguments``), ``run`` (``run_audit``, report, plot, card), ``generation`` (local sampling and
the resumable cache), ``server`` (OpenAI-compatible servers), ``reference``, ``technique``. The estimators are :mod:`hf_fundamentals.audit`."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "default_output_dir": "run",
    "evaluate_against": "run",
    "plot_audit": "run",
    "run_audit": "run",
    "write_model_card": "run",
    "load_reference": "reference",
    "NEUTRAL_PROMPTS": "generation",
    "PROMPT_PRESETS": "generation",
    "Generation": "generation",
    "GenerationBackend": "generation",
    "GenerationConfig": "generation",
    "LocalBackend": "generation",
    "OpenAICompletionsBackend": "server",
    "server_bos_text": "server",
    "generate_corpus": "generation",
    "AuditArguments": "flags",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
