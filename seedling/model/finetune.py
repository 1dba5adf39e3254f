"""Post-training the DiT on a user's own images: LoRA (peft) on every block's attention and MLP
linears, or a full fine-tune of the DiT. accelerate drives the loop, so the same code runs on the
CPU, one GPU, or several (`accelerate launch -m seedling.model.finetune ...`).

    pipe = SeedlingPipeline.from_pretrained("assets/default")
    examples = load_folder("my-style/")           # cat.png + cat.txt, ... (or edit pairs)
    result = finetune(pipe, examples, FinetuneConfig(), "runs/ft-my-style", metadata={"name": "my-style"})
    save_adapter(result.adapter, "my-style.safetensors")

- The set is encoded once (autoencoder latents + MiniLM states) into the work folder; each step
  draws a batch from it. Same objective as the base training (model/flow.py: flow matching +
  shortcut self-consistency, so the few-step sampler learns the style too) with caption dropout.
- Every step's randomness is a function of (seed, step) only, so a resumed run follows the same
  trajectory as an uninterrupted one.
- `callback(TrainProgress)` sees the loss, the measured seconds per step and the ETA every step,
  and sample images every `sample_every` steps; it returns None, PAUSE (checkpoint and return:
  the app yields the queue to other jobs), STOP (checkpoint and return the adapter trained so
  far) or CANCEL. The loop, schedule and checkpoints (trainable weights only, every
  `checkpoint_every` steps and on pause/stop) are model/training.py's; calling `finetune` again
  with the same work folder resumes from the checkpoint.
- Split by concern: the encoded set is finetune_set.py, the trainable copy and the adapter taken
  out of it finetune_model.py, the pictures and captions finetune_data.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from seedling import DEFAULT_MODEL
from seedling.configs import build_from
from seedling.model.adapters import Adapter, save_adapter
from seedling.model.finetune_config import FinetuneConfig
from seedling.model.finetune_data import (  # noqa: F401 - re-exported: the dataset API lives with the trainer
    CaptionedImage,
    DatasetError,
    EditPair,
    Example,
    load_files,
    load_folder,
    load_zip,
    prepare_image,
    validate_examples,
)
from seedling.model.finetune_model import extract_adapter, trainable_dit
from seedling.model.finetune_set import _texts, encode_examples, fingerprint, load_encoded, save_encoded
from seedling.model.flow import shortcut_flow_loss
from seedling.model.training import (  # noqa: F401 - checkpoint_step re-exported
    STATE_NAME,
    Trainer,
    checkpoint_step,
    format_eta,
    latest_checkpoint,
)

PAUSE = "pause"
STOP = "stop"
CANCEL = "cancel"
MAX_SAMPLES = 4  # sample images per report: a 2x2 grid of 128 px fits the 256 px job preview


@dataclass
class TrainProgress:
    step: int  # steps done
    total: int
    loss: float | None  # this step's loss (None for the report before the first step)
    lr: float
    elapsed: float  # training seconds so far, all chunks together
    samples: list[Image.Image] | None = None  # with the current weights, every `sample_every` steps
    sample_prompts: list[str] = field(default_factory=list)
    losses: list[float] = field(
        default_factory=list, repr=False
    )  # every step's loss so far (resumes included)
    seconds_per_step: float | None = None  # measured over the last steps of this turn
    eta: float | None = None  # seconds to the last step at that pace


@dataclass
class FinetuneResult:
    status: str  # "done" | "stopped" | "paused" | "cancelled"
    step: int
    losses: list[float]
    seconds: float
    adapter: Adapter | None = None  # set when done or stopped

    @property
    def final_loss(self) -> float | None:
        return final_loss(self.losses)


def final_loss(losses: list[float]) -> float | None:
    """The mean of the last 20 losses (one step's loss is too noisy to compare runs by)."""
    tail = losses[-20:]
    return sum(tail) / len(tail) if tail else None


Callback = Callable[[TrainProgress], str | None]


# -- the loop ----------------------------------------------------------------------------------
def _step_generator(config: FinetuneConfig, step: int, rank: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed((config.seed * 1_000_003 + step) * 64 + rank)


def sample_prompts(examples: list[Example], config: FinetuneConfig) -> list[str]:
    if config.sample_prompts:
        return list(config.sample_prompts)[:MAX_SAMPLES]
    return _texts(examples)[: min(3, MAX_SAMPLES)]


@torch.no_grad()
def sample_images(
    pipe, dit: nn.Module, examples: list[Example], config: FinetuneConfig
) -> tuple[list, list[str]]:
    """Images from `dit` (the weights being trained) with the pipeline's sampler, fixed seeds."""
    from seedling.model.pipeline import SeedlingPipeline

    prompts = sample_prompts(examples, config)
    # "plain": leave the classes of the model being trained alone
    sampler = SeedlingPipeline(dit, pipe.autoencoder, pipe.text_encoder, pipe.settings, linear_kernel="plain")
    edit = isinstance(examples[0], EditPair)
    images = []
    for i, prompt in enumerate(prompts):
        source = [prepare_image(examples[i % len(examples)].before, config.size)] if edit else None
        out = sampler(
            prompt=prompt,
            task="edit" if edit else "t2i",
            images=source,
            seed=config.sample_seed + i,
            height=config.size,
            width=config.size,
            previews=False,
        )
        images.append(out.images[0])
    dit.train()
    return images, prompts


def finetune(
    pipe,
    examples: list[Example],
    config: FinetuneConfig,
    work_dir: str | Path,
    callback: Callback | None = None,
    base_dit: nn.Module | None = None,
    metadata: dict | None = None,
) -> FinetuneResult:
    """Train (or resume training of) an adapter on `examples`; see the module docstring.

    `pipe` provides the autoencoder, text encoder and sampler; `base_dit` (default `pipe.dit`, which
    is never modified) the weights to start from. `metadata` goes into the adapter file (name, ...).
    """
    work_dir = Path(work_dir)
    base = base_dit if base_dit is not None else pipe.dit
    trainer = Trainer(work_dir, max_steps=config.steps, ckpt_every=config.checkpoint_every, seed=config.seed,
                      cpu=pipe.device.type == "cpu", trainable_only=True, progress_bar=False)
    acc, dev = trainer.acc, trainer.device

    # 1. the training set, encoded once per work folder
    data_fp = fingerprint(examples, config.size)
    ck = latest_checkpoint(work_dir)
    if ck is not None and json.loads((ck / STATE_NAME).read_text())["extra"].get("fingerprint") != data_fp:
        raise ValueError(
            f"the checkpoint in {work_dir} was trained on other images; remove the folder to start over"
        )
    cache = work_dir / "data.safetensors"
    data = load_encoded(cache) if cache.exists() else None
    if data is None or data.fingerprint != data_fp:
        data = encode_examples(pipe, examples, config.size)
        if acc.is_main_process:
            save_encoded(data, cache)
    data = data.to(dev)

    # 2. model, optimiser and schedule, from the checkpoint when there is one
    warmup = min(config.warmup_steps, config.steps // 10)
    model = trainer.add("adapter", trainable_dit(base, config), lr=config.lr, warmup=warmup)
    trainer.extra.update(fingerprint=data_fp, losses=[], elapsed=0.0)
    trainer.resume()
    raw = trainer.unwrap("adapter")
    losses: list[float] = trainer.extra["losses"]

    def progress(loss: float | None, lr: float, samples=None, prompts=()) -> TrainProgress:
        steps_left = config.steps - trainer.step_count
        return TrainProgress(trainer.step_count, config.steps, loss, lr, trainer.extra["elapsed"], samples,
                             list(prompts), losses, trainer.timer.seconds_per_step, trainer.timer.eta(steps_left))

    def report(pr: TrainProgress) -> str | None:
        return callback(pr) if callback is not None and acc.is_main_process else None

    def result(status: str) -> FinetuneResult:
        adapter = None
        if status in ("done", "stopped"):
            meta = {**(metadata or {}), "steps": trainer.step_count, "examples": len(data), "task": data.task,
                    "final_loss": final_loss(losses)}
            if status == "stopped":
                meta["stopped_at"] = trainer.step_count
            adapter = extract_adapter(raw, base, config, meta)
        trainer.finish()  # a checkpoint of this step: the work folder resumes from exactly here
        return FinetuneResult(status, trainer.step_count, losses, trainer.extra["elapsed"], adapter)

    if trainer.step_count == 0 and config.sample_every:  # what the base model makes of the sample prompts
        action = report(progress(None, trainer.lr("adapter"), *sample_images(pipe, raw, examples, config)))
        if action in (CANCEL, STOP):  # nothing trained yet: nothing to keep
            return FinetuneResult("cancelled", 0, losses, 0.0)

    N, B = len(data), config.batch_size
    model.train()
    while trainer.running():
        t0 = time.perf_counter()
        lr = trainer.lr("adapter")
        gen = _step_generator(config, trainer.step_count, acc.process_index, dev)
        idx = (
            torch.randperm(N, generator=gen, device=dev)[:B]
            if B <= N
            else torch.randint(N, (B,), generator=gen, device=dev)
        )
        drop = torch.rand(B, generator=gen, device=dev) < config.caption_dropout
        states = torch.where(drop[:, None, None], data.empty_states, data.states[idx])
        pooled = torch.where(drop[:, None], data.empty_pooled, data.pooled[idx])
        refs = [data.refs[idx]] if data.refs is not None else []

        def model_fn(x, t, d, sl, states=states, pooled=pooled, refs=refs):
            return model(x, t, states[sl], pooled[sl], data.task, [r[sl] for r in refs], None, d=d)

        loss, _ = shortcut_flow_loss(model_fn, data.x0[idx], config.shortcut_fraction, generator=gen)
        trainer.step("adapter", loss)
        losses.append(float(loss.item()))
        trainer.extra["elapsed"] += time.perf_counter() - t0
        trainer.end_step()

        step = trainer.step_count
        done = step == config.steps
        samples, prompts = None, []
        if done or (config.sample_every and step % config.sample_every == 0):
            samples, prompts = sample_images(pipe, raw, examples, config)
        action = report(progress(losses[-1], lr, samples, prompts))
        if action == CANCEL:
            return FinetuneResult("cancelled", step, losses, trainer.extra["elapsed"])
        if action == STOP and not done:
            trainer.save()
            return result("stopped")
        if action == PAUSE and not done:
            trainer.save()
            return FinetuneResult("paused", step, losses, trainer.extra["elapsed"])
    return result("done")


# -- command line --------------------------------------------------------------------------------
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Fine-tune a Seedling model on a folder or zip of images.")
    p.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model folder (SeedlingPipeline.from_pretrained)"
    )
    p.add_argument("--data", required=True, help="folder or .zip: images with .txt captions, or edit pairs")
    p.add_argument(
        "--out", required=True,
        help="adapter to write: a folder (peft's adapter_config.json + adapter_model.safetensors; LoRA) "
             "or a .safetensors file (a .json goes beside it)",
    )
    p.add_argument("--work-dir", default=None, help="checkpoints (default: <out>.work); rerun to resume")
    defaults = FinetuneConfig()
    p.add_argument("--method", default=defaults.method, choices=("lora", "full"))
    p.add_argument("--rank", type=int, default=defaults.rank)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--sample-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from seedling.model.pipeline import SeedlingPipeline

    data = Path(args.data)
    examples = load_zip(data, data.name) if data.suffix.lower() == ".zip" else load_folder(data)
    validate_examples(examples)
    config = build_from(FinetuneConfig, args, learning_rate=args.lr)  # the options named like its fields
    pipe = SeedlingPipeline.from_pretrained(args.model)
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else out.with_suffix(".work")

    def show(pr: TrainProgress) -> None:
        if pr.loss is not None and (pr.step % 10 == 0 or pr.step == pr.total):
            print(
                f"step {pr.step}/{pr.total} loss {pr.loss:.4f} lr {pr.lr:.2e} {pr.elapsed:.0f}s "
                f"(ETA {format_eta(pr.eta)})", flush=True
            )

    result = finetune(pipe, examples, config, work, callback=show, metadata={"name": out.stem})
    save_adapter(result.adapter, out)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out} ({result.adapter.num_parameters()} parameters, final loss {result.final_loss:.4f})")


if __name__ == "__main__":
    main()
