"""Scaling laws have no training flags: ``ScalingLawCallback`` is added by hand, and ``hff scaling`` fits and
predicts. Registered so the docs, the name table and the hook check see every technique."""

from __future__ import annotations

from hf_fundamentals.integrations.registry import Technique


class ScalingTechnique(Technique):
    name = "scaling"
    title = "scaling laws"
    commands = ("scaling",)


TECHNIQUE = ScalingTechnique()
