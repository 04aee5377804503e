"""hf_fundamentals: 2026 training-fundamentals results as flags for the Hugging Face stack.

The core packages (``hf_fundamentals.<technique>``) depend on torch, numpy, scipy and scikit-learn only;
everything that touches transformers, TRL, PEFT, datasets, kernels or the Hub lives in
``hf_fundamentals.integrations``. Importing this package is cheap: nothing heavy is imported here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
