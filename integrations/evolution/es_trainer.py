"""Evolution Strategies fine-tuning as a ``transformers.Trainer``: ``ESTrainer`` and ``ESTrainingConfig``.

One Trainer step is one ES iteration (arXiv 2509.24372; the Trainer wiring is our design) on one batch of
``per_device_train_batch_size`` prompts: direction seeds from ``direction_seeds(args.seed, global_step, ...)``
(so a resumed run continues the seeding), each population member perturbs the chosen parameters in place
(exact restore), generates with ``model.generate`` (left padding, greedy by default) and is scored by
TRL-style reward functions ``fn(prompts, completions, **columns) -> list[float]``; the rewards of all processes
are combined by an all-reduce of a zero-filled vector and every process applies the same update
``θ += (α/N)·Σ c_j ε_j`` (core :func:`~hf_fundamentals.evolution.es_step`). Every process sees the *same*
prompts (the data are not sharded); population members are what is split across processes (member ``m`` on
rank ``m mod world``).

There are no gradients and no optimizer state: the optimizer is a no-op whose learning rate is α, so the
Trainer still calls ``on_optimizer_step`` after each iteration and
:class:`~hf_fundamentals.integrations.evolution.awd.AnchoredWeightDecayCallback` acts on ES exactly as on a
gradient trainer (it reads α from the scheduler, or pass ``lr=alpha``). Memory: one model copy, one noise
tensor at a time, the restore fix-ups of one member (plus an fp32 master copy with ``master_weights`` and an
anchor copy with AWD).

Each iteration's :class:`~hf_fundamentals.evolution.ESStepRecord` (seeds, coefficients, α, N, rewards and
the AWD shrink when an AWD callback ran) is written to ``<output_dir>/es_updates/step_XXXXXX.json`` (the
0-based iteration), so :func:`~hf_fundamentals.evolution.replay_steps` rebuilds the trained weights from θ0.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from hf_fundamentals.evolution import ESStepRecord, MasterWeights, es_step, member_indices
from hf_fundamentals.integrations.evolution.awd import AnchoredWeightDecayCallback
from hf_fundamentals.integrations.evolution.es_config import ESTrainingConfig

logger = logging.getLogger(__name__)
UPDATES_DIR = "es_updates"
MASTER_FILE = "es_master.safetensors"
CONTENTS_FILE = "hff_contents.json"
PROMPT_COLUMN = "prompt"

RewardFunc = Callable[..., Sequence[float | None]]


class _NoOpOptimizer(torch.optim.Optimizer):
    """An optimizer whose step does nothing: ES updates the weights itself, but the Trainer still runs its
    optimizer-step callbacks (AWD) and the scheduler reports ``lr = α``."""

    def __init__(self, params: Sequence[torch.nn.Parameter], lr: float) -> None:
        super().__init__(list(params), {"lr": lr})

    def step(self, closure: Callable[[], float] | None = None) -> None:  # noqa: D102
        return None


class _PromptSampler(torch.utils.data.Sampler[int]):
    """The same order on every process: a permutation seeded by ``seed + epoch`` (or the plain order), the
    epoch read from the Trainer's state when the epoch starts, so a resumed run draws the same order."""

    def __init__(self, n: int, seed: int, shuffle: bool, epoch: Callable[[], int]) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        generator = torch.Generator().manual_seed(self.seed + self.epoch())
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


def collate_columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows (dicts) → one dict of column lists: the batch that ``ESTrainer.training_step`` receives."""
    if not rows:
        raise ValueError("empty batch of prompts")
    return {key: [row[key] for row in rows] for key in rows[0]}


class ESTrainer(Trainer):
    """ES fine-tuning through the ``Trainer`` loop (see the module docstring).

    ``ESTrainer(model, args=ESTrainingConfig(...), train_dataset=ds, processing_class=tokenizer,
    reward_funcs=[fn, ...])``. ``ds`` needs a ``"prompt"`` column of plain strings; each ``fn`` is called as
    ``fn(prompts=..., completions=..., completion_ids=..., trainer_state=..., **other_columns)`` and returns
    one float (or ``None``: not applicable) per prompt; several are summed with ``args.reward_weights``. A
    member's reward is the mean over the batch's prompts. The loss logged is minus the mean member reward;
    ``reward/mean|std|min|max`` (over the population) and ``completion_length`` are logged too.
    """

    def __init__(
        self,
        model: Any = None,
        args: ESTrainingConfig | None = None,
        train_dataset: Any = None,
        processing_class: Any = None,
        reward_funcs: RewardFunc | Sequence[RewardFunc] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, ESTrainingConfig):
            raise ValueError(f"ESTrainer needs args=ESTrainingConfig(...); got {type(args).__name__}")
        if reward_funcs is None or (not callable(reward_funcs) and len(reward_funcs) == 0):
            raise ValueError("ESTrainer needs reward_funcs: one or more fn(prompts, completions, **columns)")
        funcs = [reward_funcs] if callable(reward_funcs) else list(reward_funcs)
        bad = [f for f in funcs if not callable(f)]
        if bad:
            raise ValueError(f"reward_funcs must be callables fn(prompts, completions, **kw); got {bad!r}")
        weights = args.reward_weights if args.reward_weights is not None else [1.0] * len(funcs)
        if len(weights) != len(funcs):
            raise ValueError(f"reward_weights has {len(weights)} entries for {len(funcs)} reward functions")
        if processing_class is None or not callable(processing_class):
            raise ValueError(
                "ESTrainer needs processing_class=<tokenizer> to encode prompts and decode completions"
            )
        if train_dataset is None:
            raise ValueError("ESTrainer needs a train_dataset with a 'prompt' column")
        columns = getattr(train_dataset, "column_names", None)
        if columns is None:
            columns = list(train_dataset[0]) if len(train_dataset) else []
        if PROMPT_COLUMN not in columns:
            raise ValueError(
                f"train_dataset needs a {PROMPT_COLUMN!r} column (plain strings); it has {columns}"
            )
        if kwargs.get("eval_dataset") is not None or args.eval_strategy != "no":
            raise ValueError("ESTrainer has no evaluation loop; pass no eval_dataset and eval_strategy='no'")
        kwargs.setdefault("data_collator", collate_columns)
        super().__init__(
            model=model, args=args, train_dataset=train_dataset, processing_class=processing_class, **kwargs
        )
        self.reward_funcs = funcs
        self.reward_weights = [float(w) for w in weights]
        self.es = args.es_config()
        self.es_param_names = self._select_params()
        self._es_master: MasterWeights | None = None
        self._es_master_resume: str | None = None
        self._es_last_record: ESStepRecord | None = None
        self._es_metrics: list[dict[str, float]] = []
        self._es_tied = 0
        self.add_callback(_ESStepCallback(self))

    # ------------------------------------------------------------------ parameters
    def _select_params(self) -> list[str]:
        pattern = self.args.params_to_perturb
        trainable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        names = [n for n in trainable if pattern is None or re.search(pattern, n)]
        if not names:
            raise ValueError(
                f"params_to_perturb {pattern!r} matches no trainable parameter; some names: {trainable[:6]}"
            )
        kinds = {n: p for n, p in self.model.named_parameters()}
        ints = [n for n in names if not kinds[n].is_floating_point()]
        if ints:
            raise ValueError(f"ES perturbs floating-point parameters only; {ints[:4]} are not")
        return names

    def es_named_params(self) -> list[tuple[str, torch.Tensor]]:
        """The ``(name, parameter)`` pairs ES perturbs and updates (names of the unwrapped model)."""
        params = dict(self.model.named_parameters())
        return [(n, params[n]) for n in self.es_param_names]

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """A no-op optimizer at ``lr = α`` over the perturbed parameters (no state, no update)."""
        if self.optimizer is None:
            self.optimizer = _NoOpOptimizer([p for _, p in self.es_named_params()], lr=float(self.es.alpha))
        return self.optimizer

    # ------------------------------------------------------------------ data
    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """The same batches on every process (members, not data, are split): a plain DataLoader whose order is
        a permutation seeded by ``data_seed`` (or ``seed``) plus the epoch, or the dataset order when
        ``train_sampling_strategy='sequential'``."""
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        shuffle = self.args.train_sampling_strategy != "sequential"
        sampler = _PromptSampler(len(self.train_dataset), seed, shuffle, lambda: int(self.state.epoch or 0))
        return torch.utils.data.DataLoader(
            self.train_dataset, batch_size=self.args.per_device_train_batch_size, sampler=sampler,
            collate_fn=self.data_collator, drop_last=self.args.dataloader_drop_last, num_workers=0,
        )  # fmt: skip

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The next batches; no token counting (the batches are column lists, not tensors)."""
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        return batches, None

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """Not tracked for ES (no forward/backward on the batch itself)."""
        return 0

    # ------------------------------------------------------------------ generation and rewards
    def _generate(self, prompts: list[str], gen_seed: int) -> tuple[list[str], list[list[int]], float]:
        """Completions of ``prompts`` by the (perturbed) model; returns texts, token ids, mean length."""
        tok = self.processing_class
        if getattr(tok, "pad_token_id", None) is None:
            tok.pad_token = tok.eos_token  # generate needs a pad token for a padded batch
        enc = tok(list(prompts), return_tensors="pt", padding=True, padding_side="left")
        enc = {k: v.to(self.args.device) for k, v in enc.items()}
        settings = self.args.generation_settings()
        settings.setdefault("pad_token_id", tok.pad_token_id)
        model = self.model
        devices = [self.args.device] if self.args.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(
                gen_seed
            )  # sampling (if asked for) is tied to the iteration, the same per member
            out = model.generate(**enc, **settings)
        ids = out[:, enc["input_ids"].shape[1] :].cpu()
        eos = settings.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None))
        eos = tok.eos_token_id if eos is None else eos
        eos_ids = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), dtype=ids.dtype)
        lengths, completion_ids = [], []
        for row in ids:
            stop = torch.isin(row, eos_ids).nonzero() if eos_ids.numel() else row.new_empty((0, 1))
            n = int(stop[0, 0]) + 1 if len(stop) else int(row.numel())
            lengths.append(n)
            completion_ids.append(row[:n].tolist())
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        return texts, completion_ids, float(np.mean(lengths))

    def _score(self, prompts: list[str], completions: list[str], completion_ids: list[list[int]],
               columns: dict[str, list[Any]]) -> float:  # fmt: skip
        """The weighted sum of the reward functions per prompt, averaged over the prompts."""
        total = np.zeros(len(prompts))
        seen = np.zeros(len(prompts), dtype=bool)
        for fn, weight in zip(self.reward_funcs, self.reward_weights, strict=True):
            values = fn(prompts=prompts, completions=completions, completion_ids=completion_ids,
                        trainer_state=self.state, **columns)  # fmt: skip
            name = getattr(fn, "__name__", repr(fn))
            if values is None or len(values) != len(prompts):
                got = "None" if values is None else f"{len(values)} values"
                raise ValueError(f"reward function {name} returned {got} for {len(prompts)} prompts")
            for i, value in enumerate(values):
                if value is None:
                    continue
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"reward function {name} returned {value} for prompt {i}")
                total[i] += weight * value
                seen[i] = True
        if not seen.all():
            raise ValueError(f"no reward function scored prompts {np.flatnonzero(~seen).tolist()}")
        return float(total.mean())

    # ------------------------------------------------------------------ one ES iteration
    def training_step(
        self, model: Any, inputs: dict[str, list[Any]], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """One ES iteration on this batch of prompts; returns ``-mean reward`` (detached) for the loss log."""
        prompts = list(inputs[PROMPT_COLUMN])
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"the {PROMPT_COLUMN!r} column must hold plain strings; got {type(prompts[0])}")
        columns = {k: list(v) for k, v in inputs.items() if k != PROMPT_COLUMN}
        step = int(self.state.global_step)
        params = self.es_named_params()
        master = self._master(params)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        members = member_indices(self.es.population, rank, world)
        lengths: list[float] = []
        gen_seed = (int(self.args.seed) * 1_000_003 + step) % 2**31

        def reward(_params) -> float:
            completions, ids, length = self._generate(prompts, gen_seed)
            lengths.append(length)
            return self._score(prompts, completions, ids, columns)

        population = self.es.population
        all_lengths = np.zeros(population)

        def gather(local: dict[int, float]) -> list[float]:
            vec = torch.zeros(2 * population, dtype=torch.float64, device=self.args.device)
            for (member, value), length in zip(local.items(), lengths, strict=True):
                vec[member], vec[population + member] = value, length
            vec = self.accelerator.reduce(vec, reduction="sum").cpu()
            all_lengths[:] = vec[population:].numpy()
            return vec[:population].tolist()

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                record = es_step(params, reward, self.es, step, master=master, rank=rank, world_size=world,
                                 gather=gather if world > 1 else None)  # fmt: skip
        finally:
            self.model.train(was_training)
        if world == 1:
            all_lengths[members] = lengths
        self._es_last_record = record
        rewards = np.asarray(record.rewards)
        if rewards.size and float(rewards.max() - rewards.min()) == 0.0:
            self._es_tied += 1
            if self._es_tied == 1:
                logger.warning(
                    "ES iteration %d: all %d rewards tied at %.6g, so the update is zero. A reward that tells the "
                    "members apart is needed (partial credit or a log-prob instead of exact match; a larger "
                    "sigma); 'reward/tied_iterations' counts such iterations.",
                    step, rewards.size, float(rewards[0]),
                )  # fmt: skip
        self._es_metrics.append({
            "reward/mean": float(rewards.mean()), "reward/std": float(rewards.std()),
            "reward/min": float(rewards.min()), "reward/max": float(rewards.max()),
            "completion_length": float(all_lengths.mean()),
            "reward/tied_iterations": float(self._es_tied),
        })  # fmt: skip
        return torch.tensor(-float(rewards.mean()), device=self.args.device)

    def _master(self, params: list[tuple[str, torch.Tensor]]) -> MasterWeights | None:
        """The fp32 master copy (built at the first iteration; read from the checkpoint when resuming)."""
        if not self.args.master_weights:
            return None
        if self._es_master is None:
            self._es_master = MasterWeights(params)
            path = self._es_master_resume
            if path is not None and os.path.isfile(os.path.join(path, MASTER_FILE)):
                from safetensors.torch import load_file

                saved = load_file(os.path.join(path, MASTER_FILE))
                for name in self._es_master:
                    self._es_master[name].copy_(saved[name])
                self._es_master.write_to(params)
        return self._es_master

    # ------------------------------------------------------------------ training, logging, state
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """``Trainer.train``; with ``master_weights`` the fp32 master is restored from the checkpoint."""
        if self.args.master_weights and any(
            isinstance(cb, AnchoredWeightDecayCallback) for cb in self.callback_handler.callbacks
        ):
            raise ValueError(
                "master_weights with AnchoredWeightDecayCallback is not supported: the callback decays the "
                "model weights, which the next update overwrites from the fp32 master"
            )
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(self.args.output_dir)
        for cb in self.callback_handler.callbacks:  # ES moves only the perturbed tensors: anchor only those
            if isinstance(cb, AnchoredWeightDecayCallback) and cb.only is None:
                cb.only = set(self.es_param_names)
        self._es_master = None
        self._es_master_resume = checkpoint if isinstance(checkpoint, str) else None
        if self._es_master_resume and self.args.master_weights:
            if not os.path.isfile(os.path.join(self._es_master_resume, MASTER_FILE)):
                raise FileNotFoundError(
                    f"resuming with master_weights needs {MASTER_FILE} in {self._es_master_resume}"
                )
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def checkpoint_contents(self) -> dict[str, str]:
        """What an ES checkpoint folder holds, file by file (written beside it as ``hff_contents.json``)."""
        n = sum(p.numel() for _, p in self.es_named_params())
        out = {
            "model weights": "the model (its trainable part, for a PEFT model) at this iteration, as the Trainer "
            "saves it",
            "trainer_state.json, rng_state*.pth, scheduler.pt": "the Trainer's state, for resume_from_checkpoint",
            "../" + UPDATES_DIR: f"every iteration's seeds and coefficients (replay_steps rebuilds the "
            f"{len(self.es_param_names)} perturbed tensors, {n:,} parameters, from the base weights)",
        }
        if self._es_master is not None:
            out[MASTER_FILE] = f"fp32 master copy of the {len(self.es_param_names)} perturbed tensors"
        awd = [c for c in self.callback_handler.callbacks if isinstance(c, AnchoredWeightDecayCallback)]
        if awd and awd[0].decay is not None:
            count = sum(v.numel() for v in awd[0].decay.anchor.values())
            out["awd_anchor.safetensors"] = (
                f"the AWD anchor: {len(awd[0].decay.anchor)} tensors before training ({count:,} parameters, fp32)"
            )
        return out

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds the ES metrics (averaged over the steps since the last log) to the loss log."""
        if "loss" in logs and self._es_metrics:
            for key in self._es_metrics[0]:
                logs[key] = round(float(np.mean([m[key] for m in self._es_metrics])), 6)
            self._es_metrics = []
        return super().log(logs, *args, **kwargs)

    def write_step_record(self, record: ESStepRecord) -> str:
        """Write ``<output_dir>/es_updates/step_XXXXXX.json`` (main process only); returns the path."""
        folder = os.path.join(self.args.output_dir, UPDATES_DIR)
        path = os.path.join(folder, f"step_{record.step:06d}.json")
        if self.is_world_process_zero():
            os.makedirs(folder, exist_ok=True)
            with open(path, "w") as fh:
                json.dump(record.to_dict(), fh)
        return path


def load_step_records(output_dir: str) -> list[ESStepRecord]:
    """The step records of a run, in step order (``<output_dir>/es_updates/step_*.json``)."""
    folder = os.path.join(output_dir, UPDATES_DIR)
    names = sorted(n for n in os.listdir(folder) if n.startswith("step_") and n.endswith(".json"))
    records = []
    for name in names:
        with open(os.path.join(folder, name)) as fh:
            records.append(ESStepRecord.from_dict(json.load(fh)))
    return records


class _ESStepCallback(TrainerCallback):
    """After the optimizer-step callbacks (AWD) ran: completes the step record with the AWD shrink and
    writes it; on save, writes the fp32 master next to the checkpoint."""

    def __init__(self, trainer: ESTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        record = self.trainer._es_last_record
        if record is None:
            return control
        self.trainer._es_last_record = None
        awd = [
            c for c in self.trainer.callback_handler.callbacks if isinstance(c, AnchoredWeightDecayCallback)
        ]
        if len(awd) > 1:
            raise ValueError("more than one AnchoredWeightDecayCallback: a step record holds one decay")
        if awd and awd[0].last.get("shrink", 0.0) > 0 and awd[0].kind != "none":
            record.decay_kind = awd[0].kind
            record.decay_shrink = float(awd[0].last["shrink"])
        self.trainer.write_step_record(record)
        return control

    def on_save(self, args, state, control, **kwargs):
        master = self.trainer._es_master
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            if master is not None:
                from safetensors.torch import save_file

                save_file({n: master[n].detach().cpu().contiguous() for n in master},
                          os.path.join(folder, MASTER_FILE))  # fmt: skip
            with open(os.path.join(folder, CONTENTS_FILE), "w") as handle:
                json.dump(self.trainer.checkpoint_contents(), handle, indent=1)
        return control
