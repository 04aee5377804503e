"""A three-domain synthetic taxonomy as local files, for the ``hff audit`` CLI tests (no network)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = {
    "code": "def return import class self lambda yield None True print range len".split(),
    "legal": "licence warranty copyright permission notice liability distribute software terms".split(),
    "kitchen": "flour butter oven sugar whisk bake salt pepper simmer onion garlic".split(),
}


def write_taxonomy(folder: Path) -> Path:
    """Forty 30-word documents per domain, one file each, and a taxonomy YAML that points at them."""
    rng = random.Random(0)
    for name, words in WORDS.items():
        docs = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(40)]
        (folder / f"{name}.txt").write_text("\n\n".join(docs))
    lines = ["name: tiny", "docs_per_category: 40", "categories:"]
    lines += [f"  - {{name: {n}, source: {{file: {n}.txt}}}}" for n in WORDS]
    path = folder / "tiny.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
