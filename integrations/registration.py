"""One call that makes every hf_fundamentals extension visible to transformers (attention, masks, experts).

Techniques add ``(kind, name, register_fn)`` entries to ``REGISTRATIONS`` as they land; ``register()`` is
idempotent and is called by every ``hff`` entry point before a model is built, so names such as
``attn_implementation="hff_..."`` also resolve inside processes relaunched by accelerate.
"""

from __future__ import annotations

from collections.abc import Callable


def _register_attention() -> None:
    from hf_fundamentals.integrations.transformers.attention import register_attention

    register_attention()


def _register_preisach() -> None:
    from hf_fundamentals.integrations.transformers.preisach import register_preisach

    register_preisach()


REGISTRATIONS: list[tuple[str, str, Callable[[], None]]] = [
    # issue 9: certified block-sparse and low-rank attention (settings: attention.configure_attention)
    ("attention", "hff_blocksparse", _register_attention),
    ("attention", "hff_lowrank", _register_attention),
    # issue 10: Preisach attention (its parameters come from add_preisach / load_preisach_model)
    ("attention", "hff_preisach", _register_preisach),
]
"""(kind, public name, function that registers it with transformers)."""

_done: set[str] = set()


def register() -> dict[str, list[str]]:
    """Register everything hf_fundamentals provides with transformers; returns ``{kind: [names]}``."""
    registered: dict[str, list[str]] = {}
    for kind, name, fn in REGISTRATIONS:
        if name not in _done:
            fn()
            _done.add(name)
        registered.setdefault(kind, []).append(name)
    return registered
