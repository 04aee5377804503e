"""mkdocs hook: a source tree in which ``hf_fundamentals/integrations`` exists on disk, for mkdocstrings.

The glue folder ``integrations/`` installs as ``hf_fundamentals.integrations`` (``package_dir`` in setup.py), which
griffe's static loader cannot follow; this builds ``build/docs_src/hf_fundamentals`` from symlinks to the core's
entries plus ``integrations`` before the API pages are collected."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHADOW = REPO / "build" / "docs_src" / "hf_fundamentals"


def _build() -> None:
    if SHADOW.exists():
        shutil.rmtree(SHADOW)
    SHADOW.mkdir(parents=True)
    for entry in (REPO / "hf_fundamentals").iterdir():
        if entry.name != "__pycache__":
            (SHADOW / entry.name).symlink_to(entry)
    (SHADOW / "integrations").symlink_to(REPO / "integrations")


def on_config(config, **kwargs):
    _build()
    return config


_build()
