"""``HffArguments``: every hf_fundamentals training flag, one dataclass.

The same dataclass is parsed next to ``TrainingArguments`` by ``HfArgumentParser`` and next to TRL's configs
by ``TrlParser`` (``hff sft``), read from YAML via ``--config``, and built directly in Python. Each technique
adds its fields here with an ``hff_``-free, technique-prefixed name and a help string; a flag that is set
but cannot take effect fails loudly rather than being ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class HffArguments:
    """Flags that switch hf_fundamentals techniques on in a Trainer or TRL script."""

    hff_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder where hf_fundamentals caches what it computes once (the dequantized embedded model, "
            "corpora, audit generations). Default: $HFF_CACHE or ~/.cache/hf_fundamentals."
        },
    )

    def __post_init__(self) -> None:
        if self.hff_cache_dir:
            os.environ["HFF_CACHE"] = os.path.abspath(os.path.expanduser(self.hff_cache_dir))

    def enabled_techniques(self) -> list[str]:
        """Names of the techniques these flags switch on (shown in logs so a run says what it changed)."""
        return []
