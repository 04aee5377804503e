"""Packaging glue: ``integrations/`` sits beside the core on disk and installs as ``hf_fundamentals.integrations``.

Keeping the HF glue in its own top-level folder makes the layering visible (the core never imports an HF
library); mapping it under the one import root keeps a single ``import hf_fundamentals`` for users.
Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

core = find_packages(include=["hf_fundamentals", "hf_fundamentals.*"])
glue = ["hf_fundamentals." + name for name in find_packages(include=["integrations", "integrations.*"])]
# model card templates ship as package data so an installed copy can render them too
cards = ["hf_fundamentals.model_cards"]

setup(
    packages=core + glue + cards,
    package_dir={
        "hf_fundamentals.integrations": "integrations",
        "hf_fundamentals.model_cards": "model_cards",
    },
)
