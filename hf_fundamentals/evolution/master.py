"""fp32 master weights for ES on bf16/fp16 models.

The ES step is tiny: its per-element std is ``α/√N`` (about 9e-5 at α = 5e-4, N = 30), below half the bf16
spacing (about 6e-5 … 1.2e-4) of weights around 0.02, so writing each step straight into bf16 weights rounds
much of it away, and a drift that is consistent over steps but below half an ulp per step is lost entirely
(VsonicV/es-at-scale ``es_at_scale/utils/worker_extension.py`` accumulates the update in fp32 for this reason;
the bf16 arithmetic is ours, tested in ``tests/evolution/test_es_step.py``).
A master copy keeps θ in fp32; the model's low-precision tensors are only its rounded image. It costs one
fp32 copy of the perturbed parameters (twice a bf16 model), which is why it is optional.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

NamedParams = Iterable[tuple[str, torch.Tensor]]


class MasterWeights:
    """fp32 copies of named parameters (on their device, or on ``device``), the source of truth for updates,
    perturbations (perturbed = round(master + σε)) and exact restores (restored = round(master))."""

    def __init__(self, named_params: NamedParams, device: torch.device | str | None = None) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, param in named_params:
                if name in self.tensors:
                    raise ValueError(f"parameter name {name!r} appears twice")
                if not param.is_floating_point():
                    raise ValueError(
                        f"parameter {name!r} has dtype {param.dtype}; master weights are for floats"
                    )
                target = param.device if device is None else torch.device(device)
                self.tensors[name] = param.detach().to(device=target, dtype=torch.float32, copy=True)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise KeyError(
                f"no master weight for parameter {name!r}; it was not in the set the master was built from"
            )
        return self.tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def write_to(self, named_params: NamedParams) -> None:
        """Copy the master values, rounded to each parameter's dtype, into the parameters."""
        with torch.no_grad():
            for name, param in named_params:
                write_master_(param, self[name])


def write_master_(param: torch.Tensor, master: torch.Tensor) -> None:
    """``param ← round(master)`` in ``param``'s dtype and device."""
    with torch.no_grad():
        param.copy_(master.to(device=param.device, dtype=param.dtype))
