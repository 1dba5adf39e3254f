"""The data side of DiT training, shared by the trainers (train.py, distill.py): the task
curriculum, homogeneous (task, #refs, #outputs) batches sized by a token budget, per-step batches
drawn from (seed, step) alone for data workers, and their encoding by the frozen autoencoder."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from seedling.model.autoencoder import images_to_tensor
from seedling.model.data.controls import model_view
from seedling.model.data.tasks import PLANNED_TASKS

TASK_WEIGHTS = {"t2i": 0.34, "edit": 0.2, "inpaint": 0.1, "compose": 0.12, "storyboard": 0.12, "style": 0.12}
# The control tasks (task_table.CONTROL_TASKS) are drawn only when a run gives them a weight.
CURRICULUM = (  # (fraction of training at which the phase starts, tasks enabled)
    (0.0, ("t2i",)),
    (0.15, ("t2i", "edit", "inpaint")),
    (0.35, tuple(TASK_WEIGHTS)),
)
TASK_FLOOR = 0.06  # every enabled task keeps at least this probability


def task_probs(progress: float, weights: dict[str, float] | None = None) -> dict[str, float]:
    """`weights`: the task mix (TASK_WEIGHTS, with any given tasks' weights replaced; a task of
    the table outside TASK_WEIGHTS, e.g. "edges", joins the last phase with its weight). A task
    weighted 0 is never drawn."""
    enabled = [tasks for start, tasks in CURRICULUM if progress >= start][-1]
    mix = {**TASK_WEIGHTS, **(weights or {})}
    if enabled == CURRICULUM[-1][1]:
        enabled = tuple(mix)
    w = {t: mix[t] for t in enabled if mix[t] > 0}
    total = sum(w.values())
    p = {t: max(v / total, TASK_FLOOR) for t, v in w.items()}
    s = sum(p.values())
    return {t: v / s for t, v in p.items()}


def draw_task(rng: np.random.Generator, progress: float, weights: dict[str, float] | None = None) -> str:
    """One task drawn from `task_probs(progress, weights)` (one `rng.choice`)."""
    probs = task_probs(progress, weights)
    return str(rng.choice(list(probs), p=list(probs.values())))


def batch_size_for(n_refs: int, n_out: int, token_budget: int, text_len: int, tpi: int, max_batch: int = 48) -> int:
    """Samples per batch for a (#refs, #outputs) layout: the token budget over the tokens of one
    sample, clamped to [2, max_batch]."""
    tokens = (n_refs + n_out) * tpi + text_len
    return int(max(2, min(max_batch, token_budget // tokens)))


class BatchMaker:
    """Draws samples task by task and groups them into homogeneous (task, N, M) batches."""

    def __init__(
        self, sampler, rng: np.random.Generator, token_budget: int, text_len: int, tokens_per_image: int,
        max_batch: int = 48, boxes: bool = False,
    ):
        """`boxes`: compose batches share one layout and assignment, so that every sample's
        references sit in the same boxes (the positions are one table for the batch)."""
        self.sampler = sampler
        self.boxes = boxes
        self.rng = rng
        self.token_budget = token_budget
        self.text_len = text_len
        self.tpi = tokens_per_image
        self.max_batch = max_batch
        self.buckets: dict[tuple, list] = defaultdict(list)

    def batch_size(self, n_refs: int, n_out: int) -> int:
        return batch_size_for(n_refs, n_out, self.token_budget, self.text_len, self.tpi, self.max_batch)

    def next(self, task: str):
        while True:
            s = self.sampler.sample(task, self.rng)
            key = batch_key(s, self.boxes)
            b = self.buckets[key]
            b.append(s)
            if len(b) >= self.batch_size(key[1], key[2]):
                self.buckets[key] = []
                return b


def batch_key(sample, boxes: bool = False) -> tuple:
    """(task, #refs, #outputs), and with `boxes` the slots too: the samples of one batch share it."""
    key = (sample.task, len(sample.refs), len(sample.outputs))
    if boxes and "slots" in sample.meta:
        key += tuple((r, tuple(box)) for r, box in sample.meta["slots"])
    return key


def planned_batch(sampler, seed: int, step: int, max_steps: int, token_budget: int, text_len: int, tpi: int,
                  max_batch: int, curriculum: bool = True, boxes: bool = False,
                  weights: dict[str, float] | None = None) -> dict:
    """The batch of training step `step`, drawn from an rng seeded by (seed, step) alone: the
    task from the curriculum at that step (and the run's task `weights`), then a full batch of
    samples of one layout (`batch_key`). Returned stacked (`stack_samples`) with "step" and "task".

    Compose and storyboards come in several layouts (compose with `boxes` in dozens). Drawing
    whole samples until one layout filled a batch rendered 2.5-5x the pictures the batch kept (at
    512 px most of a data worker's time), and the race was won by the layouts with the fewest
    keys: with `boxes`, compose batches were almost always of 2 references. Instead the layout is
    drawn from the draws alone (`TaskSampler.layout_of`, nothing rendered) and kept with chance
    2 / (its batch size), so that over many steps each layout's share of the samples is its share
    of the sampler's draws (as with `BatchMaker`'s buckets); then only the batch's own samples
    are rendered, each drawn with that layout kept."""
    rng = np.random.default_rng([seed, step, 0x5EED])
    task = draw_task(rng, step / max_steps if curriculum else 1.0, weights)
    if task not in PLANNED_TASKS:  # one layout: nothing to choose
        samples = BatchMaker(sampler, rng, token_budget, text_len, tpi, max_batch, boxes).next(task)
        return {"step": step, "task": task, **stack_samples(samples)}
    while True:
        key, layout = sampler.layout_of(task, rng, boxes)
        size = batch_size_for(key[1], key[2], token_budget, text_len, tpi, max_batch)
        if rng.random() * size < 2:  # batch_size_for is never below 2
            break
    samples = [sampler.sample(task, rng, layout=layout) for _ in range(size)]
    if any(batch_key(x, boxes) != key for x in samples):
        raise RuntimeError(f"{task}: a sample's layout differs from the batch's ({key})")
    return {"step": step, "task": task, **stack_samples(samples)}


class PlannedBatches(torch.utils.data.IterableDataset):
    """`planned_batch` for steps start, start+1, ... < max_steps, split round-robin over the
    DataLoader's workers (whose in-order delivery gives the steps back in order)."""

    def __init__(self, seed: int, start: int, max_steps: int, token_budget: int, text_len: int, tpi: int,
                 max_batch: int, icons=None, curriculum: bool = True, captions: str = "rich", boxes: bool = False,
                 weights: dict[str, float] | None = None, storyboard_panels: bool = False, size: int = 128,
                 t2i_mix: dict[str, float] | None = None):
        self.args = (seed, start, max_steps, token_budget, text_len, tpi, max_batch)
        self.size = size
        self.t2i_mix = t2i_mix
        self.storyboard_panels = storyboard_panels
        self.boxes = boxes
        self.weights = weights
        self.icons = icons
        self.curriculum = curriculum
        self.captions = captions

    def __iter__(self):
        from seedling.model.data.icons import load_icons
        from seedling.model.data.tasks import TaskSampler

        seed, start, max_steps, token_budget, text_len, tpi, max_batch = self.args
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        icons = self.icons if self.icons is not None else load_icons()
        sampler = TaskSampler(icons, seed=seed, captions=self.captions, storyboard_panels=self.storyboard_panels,
                              size=self.size, t2i_mix=self.t2i_mix)
        for step in range(start + wid, max_steps, nw):
            yield planned_batch(sampler, seed, step, max_steps, token_budget, text_len, tpi, max_batch, self.curriculum,
                                self.boxes, self.weights)


def keep_arrays(batch: dict) -> dict:
    """DataLoader collate for `planned_batch` dicts: numpy arrays -> tensors, nothing else."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def stack_samples(samples) -> dict:
    """Samples of one layout -> uint8 arrays: refs (B, N, H, W, 3) as the model sees them
    (`controls.model_view`: an edge map dark on white), outputs (B, M, H, W, 3), mask (B, H, W) or
    None, and the prompts."""
    B, N = len(samples), len(samples[0].refs)
    refs = (np.stack([np.stack([model_view(s.task, r) for r in s.refs]) for s in samples]) if N
            else np.zeros((B, 0, 1, 1, 3), np.uint8))
    outputs = np.stack([np.stack(s.outputs) for s in samples])
    mask = np.stack([s.mask for s in samples]) if samples[0].mask is not None else None
    return {"refs": refs, "outputs": outputs, "mask": mask, "prompts": [s.prompt for s in samples],
            "ref_boxes": shared_ref_boxes(samples)}


def shared_ref_boxes(samples) -> list | None:
    """Each reference's box (fractions of the output, reference order) when every sample places
    its references alike (a compose batch made with `BatchMaker(boxes=True)`), else None."""
    slots = [s.meta.get("slots") for s in samples]
    if slots[0] is None or any(sl != slots[0] for sl in slots):
        return None
    size = samples[0].outputs[0].shape[0]
    boxes = [None] * len(samples[0].refs)
    for r, box in slots[0]:
        boxes[r] = tuple(v / size for v in box)
    return boxes


class Throughput:
    """Samples per second since the previous call of `rate`."""

    def __init__(self, samples: int = 0):
        self.t, self.n = time.time(), samples

    def rate(self, samples: int) -> float:
        now = time.time()
        r = (samples - self.n) / max(now - self.t, 1e-6)
        self.t, self.n = now, samples
        return r


@torch.no_grad()
def encode_batch(samples, ae, device):
    """-> refs: list of N (B, C, h, w); masks: list of N (B, 1, h, w) or None; x0: (B, M, C, h, w).
    `samples`: a list of `Sample`s of one layout, or their `stack_samples` dict; `ae`: any
    autoencoder of `dcae.load_autoencoder` (f8 or a deep-compression one)."""
    st = samples if isinstance(samples, dict) else stack_samples(samples)
    refs_u8, out_u8 = torch.as_tensor(st["refs"]), torch.as_tensor(st["outputs"])
    B, N, M = refs_u8.shape[0], refs_u8.shape[1], out_u8.shape[1]
    imgs = torch.cat([refs_u8.flatten(0, 1), out_u8.flatten(0, 1)]) if N else out_u8.flatten(0, 1)
    chunk = 64 if torch.device(device).type == "cpu" else 1024
    lat = torch.cat([ae.encode(images_to_tensor(imgs[i : i + chunk], device)) for i in range(0, len(imgs), chunk)])
    C, h, w = lat.shape[1:]
    ref_lat = lat[: B * N].reshape(B, N, C, h, w)
    x0 = lat[B * N :].reshape(B, M, C, h, w)
    refs = [ref_lat[:, j] for j in range(N)]
    masks = None
    if N and st["mask"] is not None:
        pm = (torch.as_tensor(st["mask"]) >= 128).float()[:, None].to(device)
        masks = [F.max_pool2d(pm, ae.factor)] + [torch.zeros(B, 1, h, w, device=device)] * (N - 1)
    return refs, masks, x0
