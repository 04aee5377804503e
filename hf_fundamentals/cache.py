"""Where hf_fundamentals keeps what it computes once and reuses (corpora, the embedded model, audit generations)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: ``$HFF_CACHE`` if set, else ``$XDG_CACHE_HOME/hf_fundamentals`` (``~/.cache/...``)."""
    explicit = os.environ.get("HFF_CACHE")
    if explicit:
        root = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "hf_fundamentals"
    root.mkdir(parents=True, exist_ok=True)
    return root
