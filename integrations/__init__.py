"""The glue between hf_fundamentals' techniques and the Hugging Face stack, one folder per technique.

This is the only package that imports transformers, trl, peft, datasets, evaluate, huggingface_hub,
kernels or accelerate. ``registry`` lists the techniques and the hooks each one implements; ``arguments``
composes their flags into ``HffArguments``; ``trainer`` turns the flags into a trainer's extras; ``cli`` is the
``hff`` command. Submodules are imported lazily so ``hff --help`` stays fast.
"""

from hf_fundamentals.integrations import _moved

_moved.install()

__all__: list[str] = []
