"""Import paths that moved when the glue was regrouped by technique keep working, with a DeprecationWarning that
names the new spelling (e.g. ``hf_fundamentals.integrations.transformers.muon`` is now
``hf_fundamentals.integrations.optim``). A meta-path finder maps each old name to its new module on first import,
so nothing is imported before it is asked for."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

_ROOT = "hf_fundamentals.integrations"
MOVED: dict[str, str] = {
    f"{_ROOT}.transformers.attention": f"{_ROOT}.attention",
    f"{_ROOT}.transformers.awd": f"{_ROOT}.evolution",
    f"{_ROOT}.transformers.distill": f"{_ROOT}.distill",
    f"{_ROOT}.transformers.drift": f"{_ROOT}.evolution",
    f"{_ROOT}.transformers.es": f"{_ROOT}.evolution",
    f"{_ROOT}.transformers.memft": f"{_ROOT}.memorization",
    f"{_ROOT}.transformers.mue": f"{_ROOT}.moe",
    f"{_ROOT}.transformers.muon": f"{_ROOT}.optim",
    f"{_ROOT}.transformers.ordering": f"{_ROOT}.ordering",
    f"{_ROOT}.transformers.preisach": f"{_ROOT}.attention",
    f"{_ROOT}.transformers.scaling": f"{_ROOT}.scaling",
    f"{_ROOT}.transformers.trainer": f"{_ROOT}.trainer",
    f"{_ROOT}.registration": f"{_ROOT}.registry",
    f"{_ROOT}.audit_reference": f"{_ROOT}.audit.reference",
    f"{_ROOT}.generation": f"{_ROOT}.audit.generation",
}
"""Old module name -> the module (or glue package) that now holds its public names."""
_PACKAGES = {f"{_ROOT}.transformers"}
"""Old packages that no longer exist: an empty stand-in so their moved submodules import."""


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED or fullname in _PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname in _PACKAGES)
        return None

    def create_module(self, spec):
        if spec.name in _PACKAGES:
            module = types.ModuleType(spec.name, f"Moved: its modules are now in {_ROOT}.<technique>.")
            module.__path__ = []
            return module
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
