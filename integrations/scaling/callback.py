"""``ScalingLawCallback``: fit a scaling law to a run while it trains, and say where its loss is going.

At every evaluation the callback records ``(step, N, D, eval_loss)``, with D the tokens the Trainer has counted from
the attention masks (``include_num_input_tokens_seen="non_padding"``; the Trainer sums them over gradient
accumulation and processes), and after every optimizer update the learning rate that update used (read from the
optimizer's first parameter group, which the Trainer's scheduler sets). Once ``min_points`` evaluations exist it
refits and reports:

* **one run** (the default, ``law="annealing"``): Tissue et al.'s schedule-aware law
  ``L(s) = L0 + A·S1^(−α) − C·S2`` (arXiv 2408.11029; :func:`hf_fundamentals.scaling.fit_annealing`), with S1
  and S2 the forward and annealing areas of the LRs actually used, extended to ``max_steps`` by the scheduler's
  own LR lambdas (a scheduler without them: the last LR is held, and the report says so), with the momentum λ
  profiled per refit (``decay="auto"``: the paper's 0.999 remembers ~1000 steps, longer than many runs). It forecasts the loss
  at the last step with a bootstrap prediction interval, and knows that a cosine decay ends lower than its first
  40% suggests;
* ``law="shannon_run"``: the single-run Shannon form ``L(D) = 1/(A·log2(1 + b·D^β/(K·D^δ + 1)))``
  (:class:`hf_fundamentals.scaling.ShannonRunLaw`), whose loss turns up in D exactly when δ > β (the turning-point
  check; blind to the LR schedule);
* **with a prior** (``prior=FitResult`` or a path to ``hff scaling fit --out`` JSON of the full Shannon law, fitted
  on other runs): the prior's shape, shifted by the mean log-residual of this run's points (a single run cannot
  identify the N-dependence; the shift absorbs a different data mix or tokenizer).

Each refit logs the predicted loss at the end of training (with ``law="annealing"`` also its interval), the turning
point D* and the fraction D/D* reached (``shannon_run`` fits), appends them to ``<output_dir>/scaling_law.jsonl``
and to the Trainer's ``log_history`` (so they land in ``trainer_state.json``), writes the annealing fit to
``<output_dir>/scaling_law_fit.json`` (the input of ``hff scaling predict --schedule``), and warns once when
D >= ``warn_fraction``·D*.

The Shannon paper (arXiv 2605.23901) sees the U-shapes mainly after perturbations, so ``perturb`` also
evaluates a perturbed copy every ``perturb_every`` evaluations: ``"noise:0.01"`` adds Gaussian noise of 0.01×each
weight matrix's std, ``"quant:4"`` fake-quantizes weight matrices to 4 bits per output row (symmetric, absmax).
The weights are restored exactly afterwards, and the perturbed points get their own ``shannon_run`` fit, whose D*
drives the turning-point warning.

Usage::

    args = TrainingArguments(..., eval_strategy="steps", eval_steps=50, include_num_input_tokens_seen="non_padding")
    trainer = Trainer(..., callbacks=[ScalingLawCallback(perturb="quant:4")])
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from hf_fundamentals.integrations.scaling.perturb import (  # re-exported: the callback's public helpers
    count_parameters,
    mean_eval_loss,
    parse_perturbation,
    perturb_weights_,
    restore_weights_,
)
from hf_fundamentals.scaling import FitResult, fit_annealing, fit_law

__all__ = [
    "FIT_FILE", "JSONL", "ScalingLawCallback", "ScalingPoint", "ScalingReport", "count_parameters", "mean_eval_loss",
    "parse_perturbation", "perturb_weights_", "restore_weights_",
]  # fmt: skip
logger = logging.getLogger(__name__)

JSONL = "scaling_law.jsonl"
FIT_FILE = "scaling_law_fit.json"
RUN_LAWS = ("annealing", "shannon_run")


@dataclass
class ScalingPoint:
    """One evaluation: step, tokens seen, parameters, eval loss (and the perturbed copy's loss, if evaluated)."""

    step: int
    tokens: float
    n_params: float
    loss: float
    perturbed_loss: float | None = None


@dataclass
class ScalingReport:
    """What one refit says: the law's constants, the predicted final loss, D* and how far along the run is."""

    step: int
    tokens: float
    law: str
    params: dict[str, float]
    predicted_final_loss: float | None
    final_tokens: float | None
    d_star: float | None
    fraction_of_d_star: float | None
    r2_train: float | None
    perturbed: dict[str, Any] | None = field(default=None)
    final_step: int | None = None
    predicted_final_lo: float | None = None
    predicted_final_hi: float | None = None
    """Prediction interval of the final loss (``law="annealing"``; at the fit's ``ci``, 0.9 by default)."""
    identifiability: dict[str, Any] | None = None
    future_lr: str | None = None
    """How the LRs after the current step were obtained: ``scheduler`` (its lambdas) or ``held`` (last LR)."""


class ScalingLawCallback(TrainerCallback):
    """Refit a single-run law (schedule-aware by default) to the run's eval losses, forecast the final loss with
    an interval, and warn near a turning point (module docstring)."""

    def __init__(
        self,
        *,
        n_params: int | None = None,
        law: str = "annealing",
        prior: FitResult | str | Path | None = None,
        min_points: int = 6,
        min_step: int = 1,
        warn_fraction: float = 0.9,
        perturb: str | None = None,
        perturb_every: int = 1,
        perturb_batches: int | None = 8,
        output_file: str | None = JSONL,
        fit_kwargs: dict[str, Any] | None = None,
    ):
        if isinstance(prior, str | Path):
            from hf_fundamentals.scaling import load_fits

            fits = load_fits(prior)
            if "shannon" not in fits:
                raise ValueError(
                    f"prior={str(prior)!r} holds no 'shannon' fit (it holds {sorted(fits)}); "
                    "write one with `hff scaling fit RUNS --law shannon --out FILE`"
                )
            prior = fits["shannon"]
        if prior is not None and prior.law != "shannon":
            raise ValueError(f"prior must be a fit of the full 'shannon' law; got {prior.law!r}")
        if law not in RUN_LAWS:
            raise ValueError(f"law must be one of {list(RUN_LAWS)}; got {law!r}")
        if min_points < 6:
            raise ValueError(
                f"min_points must be >= 6 (the single-run law has 5 constants); got {min_points}"
            )
        if not 0 < warn_fraction <= 1:
            raise ValueError(f"warn_fraction must lie in (0, 1]; got {warn_fraction}")
        if perturb_every < 1:
            raise ValueError(f"perturb_every must be >= 1; got {perturb_every}")
        self.n_params = n_params
        self.law = law
        self.min_step = min_step
        self.prior = prior
        self.min_points = min_points
        self.warn_fraction = warn_fraction
        self.perturbation = parse_perturbation(perturb)
        self.perturb_every = perturb_every
        self.perturb_batches = perturb_batches
        self.output_file = output_file
        self.fit_kwargs = dict(fit_kwargs or {})
        self.lrs: list[float] = []
        """LR of every optimizer update so far (entry k: update k+1), as the scheduler set it."""
        self._scheduler = None
        self.annealing_fit = None
        self.points: list[ScalingPoint] = []
        self.reports: list[ScalingReport] = []
        self._warned = False
        self._evals = 0

    # ------------------------------------------------------------------------------------------ Trainer hooks
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if args.include_num_input_tokens_seen in ("no", False):
            raise ValueError(
                "ScalingLawCallback needs the Trainer to count tokens: set "
                "TrainingArguments(include_num_input_tokens_seen='non_padding')"
            )
        if args.include_num_input_tokens_seen != "non_padding":
            logger.warning(
                "include_num_input_tokens_seen=%r counts padding tokens too; 'non_padding' counts real tokens",
                args.include_num_input_tokens_seen,
            )
        if self.n_params is None and model is not None:
            self.n_params = count_parameters(model)

    def on_optimizer_step(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        """Record the LR this update used (the Trainer steps the scheduler only after this event)."""
        if optimizer is None:
            return
        lr = float(optimizer.param_groups[0]["lr"])
        while len(self.lrs) < state.global_step:  # resumed from a checkpoint: earlier LRs from the scheduler
            self.lrs.append(self._scheduled_lr(lr_scheduler, len(self.lrs), lr))
        self.lrs.append(lr)
        self._scheduler = lr_scheduler

    @staticmethod
    def _scheduled_lr(scheduler, index: int, fallback: float) -> float:
        lambdas = getattr(scheduler, "lr_lambdas", None)
        base = getattr(scheduler, "base_lrs", None)
        if lambdas and base:
            return float(base[0] * lambdas[0](index))
        return fallback

    def lr_sequence(self, final_step: int) -> tuple[list[float], str]:
        """LRs of updates 1..``final_step``: those recorded, then the scheduler's (``scheduler``), or the last one
        held (``held``) when the scheduler has no LR lambdas."""
        if not self.lrs:
            raise ValueError("no learning rates recorded (the callback sees them after each optimizer step)")
        rest = range(len(self.lrs), final_step)
        has_lambdas = bool(getattr(self._scheduler, "lr_lambdas", None))
        how = "scheduler" if has_lambdas or not rest else "held"
        return [*self.lrs, *(self._scheduled_lr(self._scheduler, k, self.lrs[-1]) for k in rest)], how

    def on_evaluate(self, args, state, control, metrics=None, model=None, eval_dataloader=None, **kwargs):
        if not metrics or "eval_loss" not in metrics or state.num_input_tokens_seen <= 0:
            return
        self._evals += 1
        point = ScalingPoint(
            step=state.global_step,
            tokens=float(state.num_input_tokens_seen),
            n_params=float(self.n_params or count_parameters(model)),
            loss=float(metrics["eval_loss"]),
        )
        if self.perturbation is not None and self._evals % self.perturb_every == 0:
            if eval_dataloader is None:
                logger.warning("ScalingLawCallback: no eval dataloader to evaluate the perturbed copy on")
            else:
                kind, value = self.perturbation
                saved = perturb_weights_(model, kind, value, seed=state.global_step)
                try:
                    point.perturbed_loss = mean_eval_loss(model, eval_dataloader, self.perturb_batches)
                finally:
                    restore_weights_(model, saved)
        self.points.append(point)
        if len(self.points) < self.min_points:
            return
        steps_left_total = args.max_steps if args.max_steps and args.max_steps > 0 else state.max_steps
        final_tokens = point.tokens / max(point.step, 1) * steps_left_total if steps_left_total else None
        report = self.refit(final_tokens, final_step=steps_left_total or None)
        self.reports.append(report)
        self._emit(args, state, report)

    # ------------------------------------------------------------------------------------------------ fitting
    def refit(self, final_tokens: float | None = None, final_step: int | None = None) -> ScalingReport:
        """Fit the recorded points now (see the module docstring) and return the report. ``final_step`` is where
        the annealing law forecasts (default: the last step seen); ``final_tokens`` where ``shannon_run`` does."""
        if len(self.points) < self.min_points:
            raise ValueError(f"need at least {self.min_points} evaluations to fit; have {len(self.points)}")
        last = self.points[-1]
        if self.law == "annealing" and (self.prior is None):
            report = self._fit_annealing(final_step or last.step)
            report.final_tokens = final_tokens
        else:
            tokens = np.array([p.tokens for p in self.points])
            losses = np.array([p.loss for p in self.points])
            law, params, d_star, predict, r2 = self._fit(tokens, losses, last.n_params)
            report = ScalingReport(
                step=last.step,
                tokens=last.tokens,
                law=law,
                params=params,
                predicted_final_loss=None if final_tokens is None else float(predict(final_tokens)),
                final_tokens=final_tokens,
                d_star=d_star,
                fraction_of_d_star=None if d_star is None else last.tokens / d_star,
                r2_train=r2,
            )
        perturbed = [(p.tokens, p.perturbed_loss) for p in self.points if p.perturbed_loss is not None]
        if len(perturbed) >= self.min_points:
            t, y = (np.array(c) for c in zip(*perturbed, strict=True))
            plaw, pparams, pd_star, ppredict, pr2 = self._fit(t, y, last.n_params, use_prior=False)
            report.perturbed = {
                "perturbation": f"{self.perturbation[0]}:{self.perturbation[1]:g}",
                "params": pparams,
                "d_star": pd_star,
                "fraction_of_d_star": None if pd_star is None else last.tokens / pd_star,
                "predicted_final_loss": None if final_tokens is None else float(ppredict(final_tokens)),
                "r2_train": pr2,
            }
        return report

    def _kwargs(self, fn) -> dict[str, Any]:
        """``fit_kwargs`` that ``fn`` accepts, over per-law defaults (64 starts for fit_law; for the annealing law
        100 bootstrap refits and λ profiled over a grid, ``decay="auto"``)."""
        defaults = {"n_boot": 100, "decay": "auto"} if fn is fit_annealing else {"n_starts": 64}
        names = set(inspect.signature(fn).parameters)
        return {k: v for k, v in {**defaults, **self.fit_kwargs}.items() if k in names}

    def _fit_annealing(self, final_step: int) -> ScalingReport:
        last = self.points[-1]
        lrs, how = self.lr_sequence(max(final_step, last.step))
        steps = np.array([p.step for p in self.points])
        losses = np.array([p.loss for p in self.points])
        fit = fit_annealing(steps, losses, lrs, min_step=self.min_step, **self._kwargs(fit_annealing))
        self.annealing_fit = fit
        final = float(fit.predict(lrs, [final_step])[0])
        lo, hi = (float(x[0]) for x in fit.predict_interval(lrs, [final_step]))
        return ScalingReport(
            step=last.step, tokens=last.tokens, law="annealing", params=fit.params, predicted_final_loss=final,
            final_tokens=None, d_star=None, fraction_of_d_star=None, r2_train=fit.r2_train,
            final_step=int(final_step), predicted_final_lo=lo if fit.n_boot else None,
            predicted_final_hi=hi if fit.n_boot else None, identifiability=fit.identifiability or None,
            future_lr=how,
        )  # fmt: skip

    def _fit(self, tokens: np.ndarray, losses: np.ndarray, n_params: float, use_prior: bool = True):
        if self.prior is not None and use_prior:
            base = self.prior.predict(np.full_like(tokens, n_params), tokens)
            shift = float(np.mean(np.log(losses) - np.log(base)))
            d_star = self.prior.d_star(n_params)
            resid = np.log(losses) - np.log(base) - shift
            r2 = 1 - float(
                np.sum(resid**2) / max(np.sum((np.log(losses) - np.log(losses).mean()) ** 2), 1e-300)
            )

            def predict(d: float) -> float:
                return float(self.prior.predict(n_params, d)) * math.exp(shift)

            return "shannon (prior, shifted)", {**self.prior.params, "log_shift": shift}, d_star, predict, r2
        fit = fit_law("shannon_run", np.full_like(tokens, n_params), tokens, losses, **self._kwargs(fit_law))

        def predict(d: float) -> float:
            return float(fit.predict(n_params, d))

        return "shannon_run", fit.params, fit.d_star(n_params), predict, fit.r2_train

    def _emit(self, args, state, report: ScalingReport) -> None:
        skip = ("params", "perturbed", "identifiability")
        record = {"scaling/" + k: v for k, v in report.__dict__.items() if k not in skip}
        record["scaling/params"] = report.params
        if report.perturbed is not None:
            record["scaling/perturbed"] = report.perturbed
        state.log_history.append({**record, "step": state.global_step})
        if self.output_file and args.output_dir and state.is_world_process_zero:
            path = Path(args.output_dir) / self.output_file
            path.parent.mkdir(parents=True, exist_ok=True)
            extra = {"scaling/identifiability": report.identifiability} if report.identifiability else {}
            with path.open("a") as fh:
                fh.write(json.dumps({"step": state.global_step, **record, **extra}) + "\n")
            fit = getattr(self, "annealing_fit", None)
            if report.law == "annealing" and fit is not None:
                fit.save(path.with_name(FIT_FILE))
        final = "n/a" if report.predicted_final_loss is None else f"{report.predicted_final_loss:.4f}"
        if report.predicted_final_lo is not None:
            final += f" [{report.predicted_final_lo:.4f}, {report.predicted_final_hi:.4f}]"
        if (
            report.law == "annealing"
            and not (report.predicted_final_lo or report.predicted_final_loss or 0) > 0
        ):
            logger.warning(
                "ScalingLawCallback: the annealing law forecasts a loss <= 0 at step %s: the evaluations so far do not "
                "pin it down (too few, or too early in the run); set min_step to drop the earliest ones",
                report.final_step,
            )
        if report.law == "annealing":
            logger.info("scaling law (annealing) at step %d: predicted loss at step %s: %s", report.step,
                        report.final_step, final)  # fmt: skip
        else:
            d_txt = "none (still falling)" if report.d_star is None else f"{report.d_star:.3g} tokens"
            logger.info(
                "scaling law at %.3g tokens: predicted final loss %s, D* %s", report.tokens, final, d_txt
            )
        fractions = [report.fraction_of_d_star]
        if report.perturbed is not None:
            fractions.append(report.perturbed["fraction_of_d_star"])
        if not self._warned and any(f is not None and f >= self.warn_fraction for f in fractions):
            self._warned = True
            which = (
                "clean" if fractions[0] is not None and fractions[0] >= self.warn_fraction else "perturbed"
            )
            logger.warning(
                "ScalingLawCallback: the run is at %.0f%% of the fitted turning point D* (%s loss): more tokens are "
                "predicted to make that loss worse, not better",
                100 * max(f for f in fractions if f is not None),
                which,
            )
