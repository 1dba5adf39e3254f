"""The one training loop the trainers share (autoencoder, DiT, distillation, fine-tune).

A trainer is a recipe: it builds its models, hands them to a `Trainer`, and writes the body of
one step. The Trainer owns everything around that body:

- devices and mixed precision: accelerate's `Accelerator` (CPU, one GPU, `accelerate launch`);
- optimisers (AdamW) with learning-rate schedules from `diffusers.optimization.get_scheduler`;
- EMA weights: `diffusers.training_utils.EMAModel` (its warm-up (1 + n) / (10 + n), capped);
- resumable checkpoints: `Accelerator.save_state` / `load_state` (models as safetensors,
  optimiser, schedule and RNG states) plus `trainer.json` (step, the recipe's numpy generator,
  its own counters) and `ema-<part>.safetensors`. Each checkpoint is a new folder; the `latest`
  pointer moves to it atomically, then older folders go, so a crash leaves one whole checkpoint;
- when to stop (planned steps, a wall-clock budget, `stop_after` steps per invocation) and
  progress with an ETA from the measured step time (tqdm on the console, `StepTimer` for callers).

    trainer = Trainer(out, max_steps=1000, ckpt_every=100, seed=0)
    model = trainer.add("model", model, lr=1e-3, schedule="cosine", warmup=100, ema_decay=0.999)
    trainer.resume()
    while trainer.running():
        loss = ...                       # the recipe's step, drawing from trainer.rng
        trainer.step("model", loss)      # backward, clip, optimiser + schedule step, EMA
        trainer.end_step()               # counters, progress, periodic checkpoint
    trainer.finish()                     # the last checkpoint
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from seedling.atomic import write_atomic

# The options `add_run_arguments` adds that are the Trainer's own arguments, under the same names.
_RUN_OPTIONS = ("max_steps", "ckpt_every", "seed", "minutes", "stop_after")

STATE_NAME = "trainer.json"
LATEST = "latest"


class StepTimer:
    """Seconds per step over the last `window` steps, and the ETA of the steps left from it."""

    def __init__(self, window: int = 20):
        self.durations: deque[float] = deque(maxlen=window)
        self._t: float | None = None

    def start(self) -> None:
        self._t = time.perf_counter()

    def stop(self) -> float:
        """Ends the step begun by `start`; returns its duration."""
        if self._t is None:
            raise RuntimeError("StepTimer.stop without start")
        duration = time.perf_counter() - self._t
        self.durations.append(duration)
        self._t = None
        return duration

    @property
    def seconds_per_step(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None

    def eta(self, steps_left: int) -> float | None:
        s = self.seconds_per_step
        return None if s is None else max(0, steps_left) * s


def format_eta(seconds: float | None) -> str:
    """'1 h 05 min', '12 min 30 s', '40 s'; '…' before the first step has been timed."""
    if seconds is None:
        return "…"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


class WeightsError(argparse.ArgumentTypeError, ValueError):
    """A weight list that cannot be read. An ArgumentTypeError, so that an option whose `type=`
    parses one shows its sentence; a ValueError for every other caller."""


def parse_weights(text: str, known, what: str) -> dict[str, float]:
    """'a=1,b=0.5' -> {"a": 1.0, "b": 0.5}, every name one of `known` and every weight a plain
    number, none negative (`WeightsError`, a sentence that says what to write, otherwise)."""
    out = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in known:
            raise WeightsError(f"{part!r}: write {what.split()[-1]}=weight with a {what} of {list(known)}")
        if not value.replace(".", "", 1).isdigit():
            raise WeightsError(f"{part!r}: the weight must be a number, none negative (like 0.5)")
        out[name] = float(value)
    return out


def add_run_arguments(
    p: argparse.ArgumentParser,
    *,
    minutes: float,
    max_steps: int,
    ckpt_every: int,
    lr: float,
    lr_schedule: str = "cosine",
    warmup: int | None = None,
) -> None:
    """The options every trainer's command line has, with its defaults: what `Trainer.from_args`
    reads (when to stop, checkpoints, seed, threads) and the learning rate and its schedule
    (`--warmup` where `warmup` is given)."""
    p.add_argument("--minutes", type=float, default=minutes, help="wall-clock budget for this invocation")
    p.add_argument(
        "--max-steps",
        type=int,
        default=max_steps,
        help="planned steps: the length of the learning-rate schedule (and of a curriculum)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="stop this invocation after N steps (the schedule still follows --max-steps)",
    )
    p.add_argument("--ckpt-every", type=int, default=ckpt_every, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--lr", type=float, default=lr, help="learning rate")
    p.add_argument("--lr-schedule", default=lr_schedule, help="a diffusers.optimization schedule name")
    if warmup is not None:
        p.add_argument("--warmup", type=int, default=warmup, help="learning-rate warm-up steps")


@dataclass
class Part:
    """One trained model with its optimiser, schedule and (optional) EMA."""

    model: nn.Module  # as prepared by accelerate
    params: list[nn.Parameter]
    optimizer: Any
    scheduler: Any
    ema: Any | None
    clip: float | None


class Trainer:
    def __init__(self, out_dir: str | Path, *, max_steps: int, ckpt_every: int, seed: int = 0,
                 minutes: float | None = None, stop_after: int = 0, bf16: bool = False, cpu: bool = False,
                 trainable_only: bool = False, desc: str = "train", progress_bar: bool = True):
        """`trainable_only`: checkpoints hold only the parameters that train (LoRA factors), the
        frozen rest comes from where the recipe built the model."""
        from accelerate import Accelerator

        self.acc = Accelerator(cpu=cpu, mixed_precision="bf16" if bf16 else "no")
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.max_steps, self.ckpt_every, self.stop_after = max_steps, ckpt_every, stop_after
        self.t_end = None if minutes is None else time.time() + minutes * 60
        self.trainable_only = trainable_only
        self.step_count = 0
        self.extra: dict[str, Any] = {}  # the recipe's own counters, saved in trainer.json
        self.files: dict[str, str] = {}  # text files every checkpoint carries (a model config, ...)
        self.rng = np.random.default_rng(seed + 1000 * self.acc.process_index)
        self.parts: dict[str, Part] = {}
        self.timer = StepTimer()
        self._start_step = 0
        self._desc, self._show = desc, progress_bar and self.acc.is_main_process
        self._bar = None
        self._log = None
        self.acc.register_save_state_pre_hook(self._keep_trainable)
        self.acc.register_load_state_pre_hook(self._load_models)

    @classmethod
    def from_args(cls, out_dir: str | Path, args: argparse.Namespace, **kw) -> Trainer:
        """The Trainer a command line made with `add_run_arguments` asks for (its --threads set
        first); `kw` adds the recipe's other arguments or replaces one."""
        if args.threads:
            torch.set_num_threads(args.threads)
        run = {name: getattr(args, name) for name in _RUN_OPTIONS}
        return cls(out_dir, **(run | kw))

    # -- building ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.acc.device

    def add(self, name: str, model: nn.Module, *, lr: float, schedule: str = "cosine", warmup: int = 0,
            betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, ema_decay: float | None = None,
            updates_per_step: int = 1, clip: float | None = 1.0) -> nn.Module:
        """Train `model`'s parameters that require grad with AdamW and the diffusers schedule
        `schedule` (warm-up `warmup` steps, `updates_per_step` optimiser steps per training step);
        returns the prepared model to call in the step body."""
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        if name in self.parts:
            raise ValueError(f"a part named {name!r} is already added")
        model = model.to(self.device)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{name}: no parameter requires grad")
        opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
        total = self.max_steps * updates_per_step
        sched = get_scheduler(schedule, opt, num_warmup_steps=min(warmup * updates_per_step, total),
                              num_training_steps=total)
        ema = EMAModel(params, decay=ema_decay, foreach=True) if ema_decay is not None else None
        prepared, opt, sched = self.acc.prepare(model, opt, sched)
        self.parts[name] = Part(prepared, params, opt, sched, ema, clip)
        return prepared

    def unwrap(self, name: str) -> nn.Module:
        return self.acc.unwrap_model(self.parts[name].model)

    # -- the loop --------------------------------------------------------------------------------
    def running(self) -> bool:
        """True while planned steps remain and neither the time budget nor `stop_after` is spent;
        starts the step's timer and (first call) the progress bar."""
        if self._bar is None and self._show:
            from tqdm import tqdm

            self._bar = tqdm(total=self.max_steps, initial=self.step_count, desc=self._desc)
        go = (self.step_count < self.max_steps
              and (self.t_end is None or time.time() < self.t_end)
              and not (self.stop_after and self.step_count - self._start_step >= self.stop_after))
        if go:
            self.timer.start()
        return go

    def autocast(self):
        return self.acc.autocast()

    def step(self, name: str, loss: torch.Tensor) -> None:
        """Backward `loss` into part `name`, clip, step its optimiser and schedule, update its EMA."""
        part = self.parts[name]
        part.optimizer.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        if part.clip is not None:
            self.acc.clip_grad_norm_(part.params, part.clip)
        part.optimizer.step()
        part.scheduler.step()
        if part.ema is not None:
            part.ema.step(part.params)

    def lr(self, name: str) -> float:
        return float(self.parts[name].scheduler.get_last_lr()[0])

    def end_step(self, **postfix) -> None:
        """Count the step, show progress (`postfix` values on the bar) and checkpoint when due."""
        self.step_count += 1
        self.timer.stop()
        if self._bar is not None:
            self._bar.update(1)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
        if self.ckpt_every and self.step_count % self.ckpt_every == 0:
            self.save()

    def log_row(self, row: dict[str, Any]) -> None:
        """Append a row to <out>/loss.csv (an append-only log, so not written atomically)."""
        if not self.acc.is_main_process:
            return
        if self._log is None:
            path = self.out / "loss.csv"
            new = not path.exists() or path.stat().st_size == 0
            self._log = (open(path, "a", newline=""), new)  # noqa: SIM115 - open for the whole run
        f, new = self._log
        writer = csv.writer(f)
        if new:
            writer.writerow(list(row))
            self._log = (f, False)
        writer.writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row.values()])
        f.flush()

    def finish(self) -> Path | None:
        """Checkpoint (unless this step already is one) and close the bar and log."""
        ck = self.latest_checkpoint()
        if ck is None or json.loads((ck / STATE_NAME).read_text())["step"] != self.step_count:
            ck = self.save()
        if self._bar is not None:
            self._bar.close()
        if self._log is not None:
            self._log[0].close()
            self._log = None
        return ck

    # -- checkpoints -------------------------------------------------------------------------
    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.out)

    def save(self) -> Path:
        """A new checkpoint folder of this step (with `self.files`), then the `latest` pointer,
        then old folders go."""
        ck = self.out / "checkpoints" / f"step-{self.step_count:07d}"
        self.acc.wait_for_everyone()
        self.acc.save_state(str(ck))
        if self.acc.is_main_process:
            for name, part in self.parts.items():
                if part.ema is not None:  # the whole state dict, so an export can load it alone
                    sd = {k: v.cpu().contiguous() for k, v in self.ema_state_dict(name).items()}
                    write_atomic(ck / f"ema-{name}.safetensors", lambda f, sd=sd: save_file(sd, str(f)))
            state = {"step": self.step_count, "rng": self.rng.bit_generator.state, "extra": self.extra,
                     "ema_steps": {n: p.ema.optimization_step for n, p in self.parts.items() if p.ema is not None}}
            for name, text in self.files.items():
                write_atomic(ck / name, text)
            write_atomic(ck / STATE_NAME, json.dumps(state))  # last: a folder counts once it is there
            write_atomic(self.out / LATEST, ck.relative_to(self.out).as_posix())
            for old in (self.out / "checkpoints").glob("step-*"):
                if old.name != ck.name:
                    shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()
        return ck

    def resume(self) -> bool:
        """Load the latest checkpoint of the output folder, if any: weights, optimisers, schedules,
        EMA, RNG states and counters. True when it did."""
        ck = self.latest_checkpoint()
        if ck is None:
            return False
        self.acc.load_state(str(ck))
        state = json.loads((ck / STATE_NAME).read_text())
        self.step_count = self._start_step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        self.extra = dict(state["extra"])
        for name, part in self.parts.items():
            if part.ema is not None:
                shadow = load_file(str(ck / f"ema-{name}.safetensors"), device=str(self.device))
                for p, key in zip(part.ema.shadow_params, self._param_names(name)):
                    p.data.copy_(shadow[key])
                part.ema.optimization_step = int(state["ema_steps"][name])
        return True

    def ema_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """The model's state dict with the EMA weights in place of the trained ones."""
        sd = {k: v.detach().clone() for k, v in self.unwrap(name).state_dict().items()}
        sd.update(zip(self._param_names(name), (p.detach().clone() for p in self.parts[name].ema.shadow_params)))
        return sd

    def _param_names(self, name: str) -> list[str]:
        return [n for n, p in self.unwrap(name).named_parameters() if p.requires_grad]

    def _trainable_names(self, model: nn.Module) -> set[str]:
        return {n for n, p in self.acc.unwrap_model(model).named_parameters() if p.requires_grad}

    def _keep_trainable(self, models: list, weights: list, output_dir: str) -> None:
        if self.trainable_only:
            for model, sd in zip(models, weights):
                keep = self._trainable_names(model)
                for key in [k for k in sd if k not in keep]:
                    del sd[key]

    def _load_models(self, models: list, input_dir: str) -> None:
        """Load each model's file with a check that it holds every trainable parameter (a
        trainable-only checkpoint holds nothing else), then leave nothing for accelerate to load."""
        for i, model in enumerate(models):
            path = Path(input_dir) / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
            sd = load_file(str(path), device=str(self.device))
            missing = sorted(self._trainable_names(model) - set(sd))
            if missing:
                raise ValueError(f"the checkpoint in {input_dir} does not match this model ({missing[0]} missing)")
            self.acc.unwrap_model(model).load_state_dict(sd, strict=not self.trainable_only)
        models.clear()


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint folder `<out>/latest` names, when it is complete."""
    pointer = Path(out_dir) / LATEST
    if not pointer.is_file():
        return None
    ck = Path(out_dir) / pointer.read_text().strip()
    return ck if (ck / STATE_NAME).is_file() else None


def checkpoint_step(out_dir: str | Path) -> int:
    """Steps done in `out_dir`'s latest checkpoint (0 when there is none)."""
    ck = latest_checkpoint(out_dir)
    return int(json.loads((ck / STATE_NAME).read_text())["step"]) if ck is not None else 0
