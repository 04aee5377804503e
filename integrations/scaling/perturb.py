"""Helpers of ``ScalingLawCallback``: parameter counts, and the perturbed copy it evaluates (Gaussian noise or
symmetric absmax fake-quantization of every weight matrix, restored exactly afterwards)."""

from __future__ import annotations

import torch


def count_parameters(model: torch.nn.Module, *, embeddings: bool = True) -> int:
    """Trainable-or-not parameter count (``embeddings=False`` drops input/output embedding matrices)."""
    skip: set[int] = set()
    if not embeddings:
        for getter in ("get_input_embeddings", "get_output_embeddings"):
            module = getattr(model, getter, lambda: None)()
            if module is not None and getattr(module, "weight", None) is not None:
                skip.add(id(module.weight))
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or id(p) in skip:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def parse_perturbation(spec: str | None) -> tuple[str, float] | None:
    """``"noise:0.01"`` / ``"quant:4"`` -> (kind, value); None -> None; anything else raises ValueError."""
    if spec is None:
        return None
    kind, _, value = spec.partition(":")
    try:
        val = float(value)
    except ValueError:
        val = float("nan")
    if kind == "noise" and val > 0:
        return kind, val
    if kind == "quant" and val >= 2 and val == int(val):
        return kind, val
    raise ValueError(f"perturb must be 'noise:<relative std > 0>' or 'quant:<bits >= 2>'; got {spec!r}")


@torch.no_grad()
def perturb_weights_(
    model: torch.nn.Module, kind: str, value: float, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Perturb every 2-D weight matrix in place; returns the originals (restore with ``load_state_dict``-style
    copy). ``noise``: add N(0, (value·std)²); ``quant``: symmetric absmax fake-quantization per output row."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    saved: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if p.dim() != 2:
            continue
        saved[name] = p.detach().clone()
        w = p.detach().float()
        if kind == "noise":
            noise = torch.randn(w.shape, generator=gen).to(w.device)
            w = w + value * w.std() * noise
        else:
            levels = 2 ** (int(value) - 1) - 1
            scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / levels
            w = torch.round(w / scale).clamp(-levels, levels) * scale
        p.copy_(w.to(p.dtype))
    return saved


@torch.no_grad()
def restore_weights_(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Undo :func:`perturb_weights_` exactly."""
    params = dict(model.named_parameters())
    for name, value in saved.items():
        params[name].copy_(value)


@torch.no_grad()
def mean_eval_loss(model: torch.nn.Module, dataloader, max_batches: int | None = None) -> float:
    """Token-weighted mean loss of ``model`` over a dataloader of causal-LM batches (labels, -100 ignored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        out = model(**batch)
        labels = batch.get("labels", batch["input_ids"])
        n = int((labels[:, 1:] != -100).sum())
        total += float(out.loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)
