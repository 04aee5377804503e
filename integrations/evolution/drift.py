"""Drift monitor as a ``TrainerCallback``: how far training has moved the model from the base, and what it cost.

Every ``every`` steps (the paper's 25), at the start and at the end of training, the callback records
(our design; metrics as kschweig/es-awd ``evaluation/``):

* weight drift ``‖θ − θ0‖_F`` (global, relative to ``‖θ0‖``, per layer, max ``|Δ|``) against the anchor of an
  :class:`AnchoredWeightDecayCallback` in the same trainer when there is one, else an fp32 CPU snapshot;
* a Monte Carlo KL to the base model: the base model's continuations of ``kl_prompts`` are generated once and
  their base log-probs cached; each check reports the token-weighted mean of ``log p0 − log pθ`` on them;
* user prior-task probes and a target metric (callables ``(model, tokenizer) -> float``, higher is better).

From the history it derives the signals we propose to test the claims of the AWD blog post
(https://www.cognizant.com/us/en/ai-lab/blog/overcoming-forgetting-in-llm-fine-tuning): forgetting
``F(t) = P(0) − P̄(t)``, ``t*_val = argmax target``, ``t*_forget = argmax F``, a warning when the two fall within
one interval ("stopping at the best target step stops at the peak of forgetting"), and the recovery
``R(t) = (P̄(t) − P̄min)/(P(0) − P̄min)`` read at the check nearest ``1.2·t*_val``.

Only callback hooks are used, so it works in any Trainer (SFT, GRPO, :class:`ESTrainer`). All processes compute
the checks (probes may need every rank); only the main process writes ``drift_history.json`` and the plot.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from transformers import TrainerCallback

from hf_fundamentals.evolution.drift import (
    drift_signals,
    kl_to_base,
    sampled_kl_to_base,
    token_logprobs,
    weight_drift,
)
from hf_fundamentals.integrations.evolution.awd import AnchoredWeightDecayCallback

HISTORY_FILE = "drift_history.json"
ScoreFn = Callable[[Any, Any], float]


def _callback_siblings(me: TrainerCallback) -> list[Any]:
    """The callbacks of the handler that is calling ``me`` (found on the call stack: hooks get no trainer)."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            callbacks = getattr(owner, "callbacks", None)
            if isinstance(callbacks, list) and any(c is me for c in callbacks):
                return list(callbacks)
            frame = frame.f_back
    finally:
        del frame
    return []


class DriftMonitorCallback(TrainerCallback):
    """Records weight drift, KL to the base, prior-task probes and a target every ``every`` steps.

    ``kl_prompts``: prompts whose base continuations (at most ``kl_max_new_tokens``) are generated once, before
    the first step: sampled at T = 1 with no top-k/top-p, seeded by ``kl_seed`` (the paper's setting, under which
    ``log p0 − log pθ`` is an unbiased KL estimate), or greedy with ``kl_do_sample=False`` (deterministic across
    library versions, but then the estimate is biased and can be negative). The sampled estimate is unbiased
    but its noise is first order in the drift while KL is second order, so small drifts can read negative;
    ``kl_estimator="exact"`` instead keeps the base's fp32 log-probs over the whole vocabulary at the continuation
    positions (positions × vocab × 4 bytes: 16 prompts × 32 tokens × 49k ≈ 100 MB) and reports the exact
    ``Σ_v p0 (log p0 − log pθ)`` there, token-averaged (the sampled one is kept as ``kl_to_base_sampled``). ``probes``: name →
    ``fn(model, tokenizer) -> float`` prior-task scores; ``target``: the target metric; both higher = better and
    called in eval mode under ``no_grad``. ``anchor``: an :class:`AnchoredWeightDecayCallback` or a name → tensor
    mapping for θ0; by default an AWD callback in the same trainer is reused, else the trainable parameters are
    snapshotted (fp32, CPU). Rows land in ``self.history``, in the Trainer logs (``drift/...``, on the check
    steps after the first) and in ``<output_dir>/drift_history.json``; ``plot_path`` gets a plot at train end.
    """

    def __init__(
        self,
        every: int = 25,
        kl_prompts: list[str] | None = None,
        probes: Mapping[str, ScoreFn] | None = None,
        target: ScoreFn | None = None,
        anchor: AnchoredWeightDecayCallback | Mapping[str, torch.Tensor] | None = None,
        plot_path: str | None = None,
        kl_max_new_tokens: int = 32,
        kl_do_sample: bool = True,
        kl_seed: int = 0,
        layer_pattern: str | None = None,
        kl_estimator: str = "sampled",
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"DriftMonitorCallback every must be an int >= 1 (steps); got {every!r}")
        if kl_estimator not in ("sampled", "exact"):
            raise ValueError(f"kl_estimator must be 'sampled' or 'exact'; got {kl_estimator!r}")
        if kl_max_new_tokens < 1:
            raise ValueError(f"kl_max_new_tokens must be >= 1; got {kl_max_new_tokens}")
        for name, fn in {**(probes or {}), **({"target": target} if target else {})}.items():
            if not callable(fn):
                raise ValueError(f"probe {name!r} must be a callable (model, tokenizer) -> float; got {fn!r}")
        self.every, self.target, self.plot_path = every, target, plot_path
        self.kl_prompts, self.probes = list(kl_prompts or []), dict(probes or {})
        self.kl_max_new_tokens, self.kl_do_sample, self.kl_seed = kl_max_new_tokens, kl_do_sample, kl_seed
        self.layer_pattern, self.kl_estimator = layer_pattern, kl_estimator
        self._anchor_arg = anchor
        self._awd: AnchoredWeightDecayCallback | None = (
            anchor if isinstance(anchor, AnchoredWeightDecayCallback) else None
        )
        self._own_anchor: dict[str, torch.Tensor] | None = None
        self.anchor_source: str | None = None  # "awd", "given" or "snapshot" once training began
        self.history: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._kl: dict[str, torch.Tensor] | None = None
        self._started = False
        self._pending: dict[str, float] | None = None
        self._pending_step = -1

    # -- the anchor -------------------------------------------------------------------------------------------
    @property
    def anchor(self) -> Mapping[str, torch.Tensor]:
        """θ0: the AWD callback's anchor when reused, else the given mapping or our own snapshot."""
        if self._awd is not None and self._awd.decay is not None:
            return self._awd.decay.anchor
        if self._own_anchor is not None:
            return self._own_anchor
        raise RuntimeError("DriftMonitorCallback has no anchor yet; training has not begun")

    def _setup_anchor(self, model: Any) -> None:
        if self._awd is None and self._anchor_arg is None:
            found = [c for c in _callback_siblings(self) if isinstance(c, AnchoredWeightDecayCallback)]
            self._awd = found[0] if found else None
        if self._awd is not None:
            if self._awd.decay is None:
                raise RuntimeError(
                    "the AnchoredWeightDecayCallback given to DriftMonitorCallback has no anchor: is it in the "
                    "trainer's callbacks?"
                )
            self.anchor_source = "awd"
        elif isinstance(self._anchor_arg, Mapping):
            self._own_anchor = {k: v.detach().float().cpu() for k, v in self._anchor_arg.items()}
            self.anchor_source = "given"
        else:
            self._own_anchor = {
                n: p.detach().to(device="cpu", dtype=torch.float32, copy=True)
                for n, p in model.named_parameters()
                if p.requires_grad
            }
            if not self._own_anchor:
                raise ValueError("DriftMonitorCallback found no trainable parameter to anchor")
            self.anchor_source = "snapshot"

    # -- KL probe ---------------------------------------------------------------------------------------------
    def _sample_base(self, model: Any, tokenizer: Any) -> None:
        """Generate the base continuations once and cache their base log-probs (as kschweig/es-awd
        ``evaluation/evaluate_kl_divergence.py``)."""
        if not self.kl_prompts:
            return
        if tokenizer is None:
            raise ValueError(
                "DriftMonitorCallback with kl_prompts needs the trainer's processing_class (tokenizer)"
            )
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        seqs, starts = [], []
        for i, prompt in enumerate(self.kl_prompts):
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
            kwargs = dict(
                max_new_tokens=self.kl_max_new_tokens, do_sample=self.kl_do_sample, pad_token_id=pad
            )
            if self.kl_do_sample:  # plain T = 1 sampling: top-k/top-p would bias the Monte Carlo estimate
                kwargs.update(temperature=1.0, top_k=0, top_p=1.0)
                torch.manual_seed(self.kl_seed + i)  # inside fork_rng: training's RNG is untouched
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)[0]
            if out.numel() > ids.shape[1]:
                seqs.append(out.cpu())
                starts.append(ids.shape[1])
        if not seqs:
            warnings.warn(
                "DriftMonitorCallback: the base model generated nothing for kl_prompts; KL is off",
                stacklevel=2,
            )
            return
        length = max(s.numel() for s in seqs)
        ids = torch.full((len(seqs), length), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        cont = torch.zeros_like(ids, dtype=torch.bool)
        for i, (s, start) in enumerate(zip(seqs, starts, strict=True)):
            ids[i, : s.numel()], attn[i, : s.numel()], cont[i, start : s.numel()] = s, 1, True
        self._kl = {"input_ids": ids, "attention_mask": attn, "mask": cont[:, 1:]}
        base_logits = self._logits(model)
        self._kl["base"] = token_logprobs(base_logits, ids[:, 1:]).cpu()
        if self.kl_estimator == "exact":  # fp32 log-probs at the continuation positions only
            self._kl["base_full"] = torch.log_softmax(base_logits[self._kl["mask"]].float(), dim=-1).cpu()

    def _logits(self, model: Any) -> torch.Tensor:
        """Next-token logits ``[B, T-1, V]`` of the cached base continuations (right padded)."""
        device = next(model.parameters()).device
        ids, attn = self._kl["input_ids"].to(device), self._kl["attention_mask"].to(device)
        return model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]

    # -- one check --------------------------------------------------------------------------------------------
    def _check(self, state: Any, model: Any, tokenizer: Any) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        devices = [d.index or 0 for d in {p.device for p in model.parameters()} if d.type == "cuda"]
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                if not self._started:
                    self._sample_base(model, tokenizer)
                row: dict[str, Any] = {"step": int(state.global_step)}
                anchor = self.anchor
                named = [(n, p) for n, p in model.named_parameters() if n in anchor]
                if len(named) != len(anchor):
                    missing = sorted(set(anchor) - {n for n, _ in named})[:3]
                    raise ValueError(
                        f"DriftMonitorCallback: anchored parameters missing from the model: {missing}"
                    )
                kw = {"layer_pattern": self.layer_pattern} if self.layer_pattern else {}
                wd = weight_drift(named, anchor, **kw)
                row.update(drift_global=wd.global_norm, drift_relative=wd.relative, drift_max_abs=wd.max_abs,
                           drift_per_layer=wd.per_layer)  # fmt: skip
                row["kl_to_base"] = None
                if self._kl is not None:
                    logits = self._logits(model)
                    current = token_logprobs(logits, self._kl["input_ids"][:, 1:].to(logits.device)).cpu()
                    sampled = float(sampled_kl_to_base(self._kl["base"], current, self._kl["mask"]))
                    row["kl_to_base"] = sampled
                    if "base_full" in self._kl:
                        base = self._kl["base_full"].unsqueeze(0)
                        now = logits[self._kl["mask"].to(logits.device)].unsqueeze(0)
                        ones = torch.ones(base.shape[:2], dtype=torch.bool)
                        row["kl_to_base"] = float(kl_to_base(base, now.to(base.device), ones))
                        row["kl_to_base_sampled"] = sampled
                scores = {name: float(fn(model, tokenizer)) for name, fn in self.probes.items()}
                row.update({f"probe/{name}": v for name, v in scores.items()})
                row["target"] = float(self.target(model, tokenizer)) if self.target is not None else None
                row["prior_mean"] = sum(scores.values()) / len(scores) if scores else None
        finally:
            model.train(was_training)
        p0 = self.history[0]["prior_mean"] if self.history else row["prior_mean"]
        row["forgetting"] = p0 - row["prior_mean"] if row["prior_mean"] is not None else None
        self._started = True
        self.history.append(row)
        return row

    def _record(self, args: Any, state: Any, model: Any, tokenizer: Any) -> dict[str, Any]:
        row = self._check(state, model, tokenizer)
        self._pending = {
            f"drift/{k.removeprefix('drift_')}": v
            for k, v in row.items()
            if isinstance(v, int | float) and k != "step"
        }
        self._pending_step = row["step"]
        if state.is_world_process_zero:
            self._write(args.output_dir)
        return row

    def _write(self, output_dir: str) -> None:
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, HISTORY_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump({"every": self.every, "anchor_source": self.anchor_source, "history": self.history,
                       "summary": self.summary()}, f, indent=1, default=float)  # fmt: skip
        os.replace(path + ".tmp", path)

    # -- hooks ------------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            raise ValueError("DriftMonitorCallback needs the model in on_train_begin")
        self.history, self.warnings, self._kl, self._started = [], [], None, False
        self._awd = self._anchor_arg if isinstance(self._anchor_arg, AnchoredWeightDecayCallback) else None
        self._own_anchor = None
        return control

    def _begin(self, args, state, model, kwargs) -> None:
        """The step-0 check, run before the first step (so an AWD callback listed after us has its anchor)."""
        self._setup_anchor(model)
        self._record(args, state, model, kwargs.get("processing_class") or kwargs.get("tokenizer"))

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if not self._started:
            self._begin(args, state, model, kwargs)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step % self.every == 0 or (state.max_steps > 0 and step >= state.max_steps):
            self._record(args, state, model, kwargs.get("processing_class") or kwargs.get("tokenizer"))
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if (
            logs is not None
            and self._pending
            and self._pending_step == state.global_step
            and self._pending_step > 0
        ):
            logs.update(self._pending)
            if state.log_history:
                state.log_history[-1].update(self._pending)
            self._pending = None
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None:
            return control
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if not self._started:
            self._begin(args, state, model, kwargs)
        if self.history[-1]["step"] != state.global_step:
            self._record(args, state, model, tokenizer)
        message = self.summary()["warning"]
        if message and message not in self.warnings:
            self.warnings.append(message)
            warnings.warn(message, stacklevel=2)
        if self.plot_path and state.is_world_process_zero:
            self.plot(self.plot_path)
        return control

    # -- results ----------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """:func:`drift_signals` of the history so far, plus the last row's drift and KL."""
        out = drift_signals(self.history, self.every)
        last = self.history[-1] if self.history else {}
        out.update(final_drift_global=last.get("drift_global"), final_drift_relative=last.get("drift_relative"),
                   final_kl_to_base=last.get("kl_to_base"), checks=len(self.history))  # fmt: skip
        return out

    def plot(self, path: str) -> str:
        """Target and prior mean (twin axes), weight drift and KL vs step; dashed lines at t*_val and
        t*_forget. Writes ``path`` with matplotlib's Agg backend and returns it."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.history:
            raise ValueError("DriftMonitorCallback.plot: the history is empty; train first")
        signals = drift_signals(self.history, self.every)
        steps = [r["step"] for r in self.history]

        def series(key: str) -> tuple[list[int], list[float]]:
            pts = [(r["step"], r[key]) for r in self.history if r.get(key) is not None]
            return [s for s, _ in pts], [v for _, v in pts]

        fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
        ax = axes[0]
        ax.plot(*series("target"), "o-", color="tab:blue", label="target")
        ax.set_ylabel("target", color="tab:blue")
        twin = ax.twinx()
        twin.plot(*series("prior_mean"), "s-", color="tab:red", label="prior mean")
        twin.set_ylabel("prior-task mean", color="tab:red")
        marks = (
            ("t*_val", signals["t_val"], "tab:blue", "--"),
            ("t*_forget", signals["t_forget"], "tab:red", ":"),
        )
        for i, (name, t, color, style) in enumerate(marks):
            if t is not None:
                for a in axes:
                    a.axvline(t, color=color, linestyle=style)
                ax.annotate(f"{name}={t}", (t, 1.02 + 0.07 * i), xycoords=("data", "axes fraction"), fontsize=8,
                            color=color, ha="center")  # fmt: skip
        axes[1].plot(*series("drift_global"), "o-", color="tab:green")
        axes[1].set_ylabel("‖θ − θ0‖_F")
        axes[2].plot(*series("kl_to_base"), "o-", color="tab:purple")
        axes[2].set_ylabel("KL to base (token MC)")
        axes[2].set_xlabel("step")
        axes[2].set_xlim(min(steps) - 0.5, max(steps) + 0.5)
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
