"""MemFT in the Trainer (``--hff_memft``): the trainer mixin with the MemFT loss and retire-when-learned, its
samplers and the paper's single-MLP LoRA placement.

Modules: ``flags`` (``MemorizationFlags``), ``memft_trainer``, ``memft_samplers``, ``lora``, ``technique``. The loss,
fidelity metrics and memory law are :mod:`hf_fundamentals.memorization`."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "ITEM_ID": "memft_trainer",
    "STATE_FILE": "memft_trainer",
    "MemFTTrainerMixin": "memft_trainer",
    "memft_collator": "memft_trainer",
    "memft_trainer_class": "memft_trainer",
    "CurriculumSampler": "memft_samplers",
    "RetireSampler": "memft_samplers",
    "single_mlp_lora_config": "lora",
    "MemorizationFlags": "flags",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
