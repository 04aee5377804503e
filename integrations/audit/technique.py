"""The auditor is a command (``hff audit``, flags in :mod:`.flags`), not a training flag; registered so the docs,
the name table and the hook check see every technique."""

from __future__ import annotations

from hf_fundamentals.integrations.registry import Technique


class AuditTechnique(Technique):
    name = "audit"
    title = "LLMSurgeon auditor"
    commands = ("audit",)


TECHNIQUE = AuditTechnique()
