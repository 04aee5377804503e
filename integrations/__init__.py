"""The glue between hf_fundamentals' techniques and the Hugging Face stack.

This is the only package that imports transformers, trl, peft, datasets, evaluate, huggingface_hub,
kernels or accelerate. Submodules are imported lazily so ``hff --help`` stays fast.
"""

__all__: list[str] = []
