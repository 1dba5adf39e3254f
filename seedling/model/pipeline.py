"""`SeedlingPipeline`: the public, diffusers-style entry point to the model stack.

    pipe = SeedlingPipeline.from_pretrained("assets/default")
    res = pipe(prompt="a fox", task="t2i", steps=4, seed=0)
    res.images[0].save("fox.png")

One call covers every task: t2i, edit (instruction), inpaint (masked edit), compose (1-4
references), storyboard (M panels generated jointly, optionally from a character reference) and
style (a style reference). Same seed -> same images. Bad input raises ValueError with a sentence
a person understands.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from PIL import Image

from seedling.kernels.executor import get_executor
from seedling.kernels.packed import LINEAR_KERNELS, set_linear_kernel  # noqa: F401  (LINEAR_KERNELS: re-exported)
from seedling.model.adapters import Adapter, added_adapters, load_adapter, low_rank, save_adapter
from seedling.model.autoencoder import AE_CONFIGS, Autoencoder, images_to_tensor, tensor_to_images
from seedling.model.convert import write_pipeline_metadata
from seedling.model.data.controls import model_view
from seedling.model.data.glyphs import prompt_glyph
from seedling.model.data.word_edit import composite as word_edit_composite
from seedling.model.data.word_edit import plan_word_edit
from seedling.model.dcae import load_autoencoder
from seedling.model.dit import DiT_configs, UnifiedDiT
from seedling.model.postprocess import (
    feather_mask,
    keep_low_resolution,
    keep_luminance,
    tile_starts,
    tile_weight,
    transfer_detail,
)
from seedling.model.rope import reference_positions
from seedling.model.sampler import Branch, euler_sample, make_schedule, step_pairs
from seedling.model.task_table import TASK_NAMES, TASKS, UPSCALE_FACTORS, check_size, task_spec

# (min, max) number of input images per task (compatibility name; the task table is the source)
TASK_IMAGES = {name: (int(t.references.lo), int(t.references.hi)) for name, t in TASKS.items()}


def _alias(name: str, value, diffusers_name: str, diffusers_value):
    """One argument given under the studio's name or diffusers' (not two different values)."""
    if diffusers_value is None:
        return value
    if value is not None and value != diffusers_value:
        raise ValueError(f"{name}={value!r} and {diffusers_name}={diffusers_value!r} disagree; give one")
    return diffusers_value


def _whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class GenerationCancelled(Exception):
    """Raised when the callback asks to stop (returns False)."""


# A model folder's task_adapters/<task>.safetensors: adapters (a LoRA, or every weight's change)
# the pipeline applies for that task only (docs/model.md, "Task adapters").
TASK_ADAPTERS = "task_adapters"
QUANTIZED_TASK_ADAPTER_RANK = 64  # a full one's SVD for quantized layers: the text adapter kept its CER (docs/data.md)


def adapter_tasks(adapter: Adapter, path: Path) -> list[str]:
    """The tasks a task adapter file serves: its metadata's "task" (several, comma-separated, when
    one adapter was trained for several tasks: the control tasks share one), else the file's stem."""
    return [t.strip() for t in str(adapter.metadata.get("task", path.stem)).split(",") if t.strip()]


def shared_task_adapters(task_adapters: dict[str, Adapter]) -> list[tuple[list[str], Adapter]]:
    """`task_adapters` (task -> adapter) grouped by adapter object: ([tasks], adapter) in the
    order first met, so a shared adapter is saved, or converted, once."""
    groups: dict[int, tuple[list[str], Adapter]] = {}
    for task, adapter in task_adapters.items():
        groups.setdefault(id(adapter), ([], adapter))[0].append(task)
    return list(groups.values())


EXPANDED_TASKS = ("t2i",)  # what `PipelineConfig.expand_prompts` may name


@dataclass
class PipelineConfig:
    default_steps: int = 4
    guidance: float = 1.5  # text guidance scale (1 = no guidance branch)
    # a task's own default text guidance, where it differs (the text task: glyphs read back far
    # more often at 3 than at 1, docs/data.md); a call's guidance, when given, wins
    task_guidance: dict[str, float] = field(default_factory=dict)
    image_guidance: float = 1.0  # image guidance scale for tasks with references
    schedule: str | list = "uniform"
    shift: float = 1.0
    shortcut: bool = True  # the DiT was trained with the step size as a condition
    default_size: int = 128
    text_len: int = 32
    feather_px: int = 4  # width of the soft edge inside a mask when pasting back
    # Instruction edits: where the model left the picture unchanged, put back the source detail the
    # autoencoder cannot reproduce (see `transfer_detail`); tolerance as a fraction of full scale.
    detail_transfer: bool = True
    detail_tolerance: float = 0.25  # chosen on recolour edits' PSNR outside the edit (docs/model.md)
    # Colourise: the output keeps the gray input's luminance, the model gives the colours
    # (`keep_luminance`); False returns the model's own picture.
    colourise_keeps_luminance: bool = True
    # Upscale: the output, area-averaged down to the small input's size, gives back the small
    # input (`keep_low_resolution`); only when the input is smaller than the output by a whole factor.
    upscale_keeps_input: bool = False
    # Upscale to a size larger than `default_size` (the native one): drawn in overlapping tiles of
    # the native size, each from its part of the small input, cross-faded (`upscale_tiled`); the
    # model was trained on whole pictures at its native size. False: the whole output in one pass.
    upscale_tiled: bool = False
    # Storyboards: one picture of the character (the reference given, else a t2i of the caption's
    # character), then each panel a composition of it in the panel's box, on white, its background
    # painted by an edit after (`storyboard_panels`). For a DiT whose compose task was trained so
    # (seedling-train --reference-boxes --storyboard-panels).
    storyboard_by_panels: bool = False
    # Tasks whose prompts the pipeline runs through the grounded prompt expander first
    # (prompt_expansion/): "could you make a fox for me" is drawn as "a fox". Only t2i: the
    # studio's tabs expand the others, visibly, with their Prompt expansion toggle.
    expand_prompts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.expand_prompts = list(self.expand_prompts)
        for task in self.expand_prompts:
            if task not in EXPANDED_TASKS:
                raise ValueError(f"expand_prompts names the task {task!r}; the pipeline expands prompts of "
                                 f"{list(EXPANDED_TASKS)} only")
        for task, value in self.task_guidance.items():
            if task not in TASKS:
                raise ValueError(f"task_guidance names the task {task!r}; the task table has {list(TASKS)}")
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 30.0):
                raise ValueError(f"task_guidance[{task!r}] is {value!r}: give a number from 0 to 30")

    def to_dict(self) -> dict:
        return asdict(self)


class PreviewClock:
    """When a step's preview is due. `previews`: True, every step but the last (whose picture is
    the result, decoded right after); False, none; a number of seconds, at most one preview that
    often, the first that long after the clock starts, so a job done sooner decodes none (the
    studio's worker passes one: a preview costs a decode and a stored PNG)."""

    def __init__(self, previews: bool | float):
        if not isinstance(previews, bool) and not (isinstance(previews, (int, float)) and previews >= 0):
            raise ValueError(f"previews must be True, False or a number of seconds >= 0, got {previews!r}")
        self.previews = previews
        self.last = time.perf_counter()

    def due(self, step: int, total: int) -> bool:
        if self.previews is False or step >= total:
            return False
        if self.previews is True:
            return True
        now = time.perf_counter()
        if now - self.last < float(self.previews):
            return False
        self.last = now
        return True


@dataclass
class PipelineOutput:
    images: list[Image.Image]
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)


def control_input(task: str, image: Image.Image, width: int, height: int) -> Image.Image:
    """A control picture as the model was trained on it, at the output's size: a low-resolution
    picture bicubic-upsampled (upscale), a colour one turned gray (colourise; gray stays gray);
    sketches (dark strokes on white) resized; edges (white lines on black) resized and then
    inverted, dark on white, as training gave them (`controls.model_view`)."""
    if task == "colourise":
        image = image.convert("L").convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BICUBIC if task == "upscale" else Image.LANCZOS)
    if task == "edges":
        image = Image.fromarray(model_view(task, np.asarray(image.convert("RGB"))))
    return image


def default_scheduler(shift: float = 1.0) -> FlowMatchEulerDiscreteScheduler:
    """The diffusers scheduler equal to our sampler's time grid and Euler update: flow matching,
    x_{t'} = x_t + (t' - t) v, times shifted by t' = s t / (1 + (s - 1) t) (tests/test_diffusers_native.py)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


class SeedlingPipeline(DiffusionPipeline):
    """Components: `dit` (UnifiedDiT), `autoencoder` (Autoencoder), `scheduler`
    (FlowMatchEulerDiscreteScheduler, the sampler's equivalent); the MiniLM text encoder is built
    from its PyPI package unless given. `settings` (PipelineConfig) are the model's sampling
    defaults, saved in model_index.json ("pipeline_config") and in pipeline.json. `executor`
    (kernels/executor.py) runs the DiT's forward passes: "fused" (CPU speed-ups) or "plain"."""

    tasks = TASK_NAMES
    model_cpu_offload_seq = "dit->autoencoder"
    _optional_components = ["scheduler"]

    def __init__(self, dit: UnifiedDiT, autoencoder: Autoencoder, text_encoder=None,
                 pipeline_config: PipelineConfig | dict | None = None, linear_kernel: str = "packed",
                 scheduler: FlowMatchEulerDiscreteScheduler | None = None, executor: str = "fused"):
        super().__init__()
        if isinstance(pipeline_config, dict):
            pipeline_config = PipelineConfig(**pipeline_config)
        self.settings = pipeline_config or PipelineConfig(text_len=dit.config.text_len)
        if scheduler is None:
            scheduler = default_scheduler(self.settings.shift)
        self.register_modules(dit=dit.eval(), autoencoder=autoencoder.eval(), scheduler=scheduler)
        self.register_to_config(pipeline_config=self.settings.to_dict())
        # task -> adapter applied (over any user adapters) only while that task runs; from the model
        # folder's task_adapters/ (seedling-train --task-adapter trains one for a task a model adds)
        self.task_adapters: dict[str, Adapter] = {}
        if text_encoder is None:
            from seedling.model.text_encoder import TextEncoder

            text_encoder = TextEncoder(max_length=dit.config.text_len)
        self.text_encoder = text_encoder
        self._expander = None  # the grounded prompt expander, made on the first call that needs it
        self.quantization = "none"
        if dit.config.latent_channels != autoencoder.config.latent_channels:
            raise ValueError("the DiT and the autoencoder disagree on the number of latent channels")
        self.set_linear_kernel(linear_kernel)  # sets self.linear_kernel
        self.set_executor(executor)  # sets self.executor

    # -- construction and persistence -----------------------------------------------------
    @classmethod
    def from_config(cls, name: str = "tiny", seed: int = 0, text_encoder=None) -> SeedlingPipeline:
        """Random weights from a named config ("tiny" for tests, "default")."""
        if name not in DiT_configs:
            raise ValueError(f"unknown config {name!r}; choose one of {sorted(DiT_configs)}")
        torch.manual_seed(seed)
        dit = UnifiedDiT(DiT_configs[name]())
        ae = Autoencoder(AE_CONFIGS["tiny" if name == "tiny" else "default"])
        return cls(dit, ae, text_encoder, PipelineConfig(text_len=dit.config.text_len))

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu", text_encoder=None, **kwargs) -> SeedlingPipeline:
        """A model folder: diffusers' layout (model_index.json) or the pre-diffusers one (pipeline.json,
        dit/, autoencoder/; seedling/model/convert.py adds model_index.json to it). Runs no code from
        the folder (unlike `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`, which
        imports its seedling_pipeline.py and gives the same pipeline)."""
        folder = Path(folder)
        if (folder / "model_index.json").exists():
            index = json.loads((folder / "model_index.json").read_text())
            settings = index.get("pipeline_config")
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder / "scheduler") if (
                folder / "scheduler" / "scheduler_config.json").exists() else None
        elif (folder / "pipeline.json").exists():
            settings, scheduler = json.loads((folder / "pipeline.json").read_text()), None
        else:
            raise FileNotFoundError(f"{folder} is not a Seedling model folder (no model_index.json or pipeline.json)")
        dit = UnifiedDiT.from_pretrained(folder / "dit", **kwargs)
        ae = load_autoencoder(folder / "autoencoder", **kwargs)
        pipe = cls(dit, ae, text_encoder, PipelineConfig(**settings) if settings else None, scheduler=scheduler)
        for path in sorted((folder / TASK_ADAPTERS).glob("*.safetensors")):
            adapter = load_adapter(path)
            for task in adapter_tasks(adapter, path):  # one file may serve several tasks (one object, shared)
                if task not in dit.dims.tasks:
                    raise ValueError(f"{path}: an adapter for the task {task!r}, which this model's DiT does not know")
                if task in pipe.task_adapters:
                    raise ValueError(f"{path}: a second adapter for the task {task!r} in {folder / TASK_ADAPTERS}; keep one")
                pipe.task_adapters[task] = adapter
        return pipe.to(device)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float32, **kwargs) -> None:
        """diffusers' layout (model_index.json, dit/, autoencoder/, scheduler/) plus pipeline.json
        (the app reads the sampling defaults from it) and the module file that lets
        DiffusionPipeline.from_pretrained find this class. `dtype`: the weights' precision on disk."""
        if self.quantization != "none":
            raise ValueError("save the model before quantizing it: quantized layers are an inference-time form")
        folder = Path(folder)
        self.register_to_config(pipeline_config=self.settings.to_dict())
        super().save_pretrained(str(folder), **kwargs)
        if dtype != torch.float32:  # the library saved fp32 weights: replace them with the smaller copy
            self.dit.save_pretrained(folder / "dit", dtype=dtype)
            self.autoencoder.save_pretrained(folder / "autoencoder", dtype=dtype)
        write_pipeline_metadata(folder, self.settings.to_dict())
        for tasks, adapter in shared_task_adapters(self.task_adapters):
            named = replace(adapter, metadata={**adapter.metadata, "task": ",".join(tasks)})
            save_adapter(named, folder / TASK_ADAPTERS / f"{'-'.join(tasks)}.safetensors")

    def to(self, device) -> SeedlingPipeline:
        self.dit.to(device)
        self.autoencoder.to(device)
        self.text_encoder.to(device)
        return self

    def set_linear_kernel(self, kind: str) -> SeedlingPipeline:
        """How the DiT's full-precision linears multiply on CPU: "packed" (the default) or "plain"
        (kernels/packed.py, `set_linear_kernel`)."""
        self.linear_kernel = set_linear_kernel(self.dit, kind)
        return self

    def set_executor(self, name: str) -> SeedlingPipeline:
        """How the DiT's forward passes run (kernels/executor.py): "fused" (the default: step plans,
        modulation tables, the fused C++ blocks and K/V buffers wherever the model qualifies for
        them) or "plain" (the model's own forward passes, the reference)."""
        self.executor = get_executor(name)
        return self

    def quantize(
        self, mode: str | None, int8_compute: str = "auto", backend: str = "studio"
    ) -> SeedlingPipeline:
        """Quantize the DiT's linear layers ("none", "int8", "w8a8", "bnb-int8", "bnb-nf4").
        `int8_compute` ("auto", "bf16", "fp32"): the product dtype of "int8" layers on fp32 CPU
        inputs; "auto" uses bf16 where the CPU multiplies it natively. `backend`: who implements
        the mode, "studio" or "torchao" (kernels/quant.py's QUANT_BACKENDS)."""
        from seedling.kernels.quant import quantize

        mode = mode or "none"
        if mode == self.quantization:
            return self
        if self.quantization != "none":
            raise ValueError(f"the model is already quantized ({self.quantization}); reload it to change mode")
        quantize(self.dit, mode, int8_compute=int8_compute, backend=backend)
        self.quantization = mode
        for tasks, adapter in shared_task_adapters(self.task_adapters):  # quantized layers take a LoRA (as a hook)
            if adapter.kind == "full":
                lora = low_rank(adapter, QUANTIZED_TASK_ADAPTER_RANK)  # once per file, still shared by its tasks
                self.task_adapters.update(dict.fromkeys(tasks, lora))
        return self

    @property
    def default_steps(self) -> int:
        return self.settings.default_steps

    @property
    def grid(self) -> int:
        """Image sides must be multiples of this (autoencoder factor x DiT patch)."""
        return self.autoencoder.factor * self.dit.config.patch

    # -- validation ---------------------------------------------------------------------------
    def _check(self, task, images, mask, num_outputs, steps, guidance, image_guidance, height, width):
        spec = task_spec(task)
        lim = spec.limits
        if task not in self.dit.dims.tasks:
            raise ValueError(f"this model was not trained for the {task!r} task (it knows "
                             f"{', '.join(self.dit.dims.tasks)}); load a model trained with it "
                             f"(seedling-train --task-weights {task}=0.1)")
        n = len(images)
        if not spec.references.contains(n):
            raise ValueError(f"the {task!r} task takes {spec.references.describe()} input image(s), but {n} were given")
        if not _whole(num_outputs) or not spec.outputs.contains(num_outputs):
            raise ValueError(f"num_outputs for the {task!r} task must be a whole number from "
                             f"{spec.outputs.lo} to {spec.outputs.hi}, got {num_outputs!r}")
        if not _whole(steps) or not lim.steps.contains(steps):
            raise ValueError(f"steps must be a whole number from {lim.steps.lo} to {lim.steps.hi}, got {steps!r}")
        for name, val, rng in (("guidance", guidance, lim.guidance), ("image_guidance", image_guidance, lim.image_guidance)):
            if not isinstance(val, (int, float)) or not math.isfinite(val) or not rng.contains(val):
                raise ValueError(f"{name} must be a finite number between {rng.lo:g} and {rng.hi:g}, got {val!r}")
        check_size(height, width, self.grid, lim)
        if task == "inpaint" and mask is None:
            raise ValueError("the 'inpaint' task needs a mask (white = the region to change)")
        if mask is not None and task != "inpaint":
            raise ValueError(f"a mask is only used by the 'inpaint' task, not {task!r}")
        if task == "inpaint" and images and images[0].size != (width, height):
            raise ValueError(f"an inpaint keeps the source's size ({images[0].size[0]}x{images[0].size[1]}); "
                             f"leave height/width empty or use the same size")
        if mask is not None and mask.size != images[0].size:
            raise ValueError(f"the mask is {mask.size[0]}x{mask.size[1]} but the image is "
                             f"{images[0].size[0]}x{images[0].size[1]}; they must be the same size")

    def _ref_positions(self, boxes, n_refs: int, rows: int, cols: int) -> list | None:
        if boxes is not None and len(boxes) != n_refs:
            raise ValueError(f"got {len(boxes)} boxes for {n_refs} input images: give one box (or None) per image")
        return reference_positions(self.dit.dims.ref_index_offset, boxes, rows, cols)

    # -- generation ---------------------------------------------------------------------------
    def make_branches(self, task: str, states: torch.Tensor, pooled: torch.Tensor, refs: list, ref_masks,
                      batch: int, guidance: float, image_guidance: float, use_ref_cache: bool = True,
                      batch_branches: bool = True, n_out: int | None = None, steps=None,
                      ref_indices=None) -> list[Branch]:
        """The guidance branches of one generation, ready for `euler_sample`.

        states/pooled: (2, ...) encodings of [prompt, ""]. Branches: "cond" (prompt, refs),
        "no_text" (empty prompt, refs) when guidance != 1, "none" (empty prompt, no refs) when
        there are refs and image_guidance != 1. "cond" and "no_text" share the references, so with
        `batch_branches` they run as one batch of 2 x `batch` (the weights are read once a step).
        With `use_ref_cache` each branch's context K/V is computed here, once. `steps`: the (t, d)
        pairs the sampler will run (`sampler.step_pairs`), which the executor plans for up front;
        `n_out`: the output tokens per sample (the context K/V go straight into the step buffers);
        `ref_indices`: the references' positions where they are placed in boxes."""
        names = ["cond"]
        if guidance != 1.0 or (refs and image_guidance != 1.0):
            names.append("no_text")
        groups = [tuple(names)] if batch_branches else [(n,) for n in names]
        if refs and image_guidance != 1.0:
            groups.append(("none",))
        text_row = {"cond": 0, "no_text": 1, "none": 1}
        branches = []
        for group in groups:
            rows = torch.tensor([text_row[n] for n in group], device=states.device)
            no_refs = group == ("none",)
            fn = self.executor.denoiser(self.dit, states[rows], pooled[rows], task, [] if no_refs else refs,
                                        None if no_refs else ref_masks, cached=use_ref_cache, batch=batch,
                                        steps=steps, n_out=n_out, ref_indices=None if no_refs else ref_indices)
            branches.append(Branch(group[0] if len(group) == 1 else group, fn))
        return branches

    @torch.no_grad()
    def __call__(self, prompt: str = "", task: str = "t2i", images: Sequence[Image.Image] | None = None,
                 mask: Image.Image | None = None, num_outputs: int | None = None, steps: int | None = None,
                 guidance: float | None = None, image_guidance: float | None = None, seed: int | None = None,
                 height: int | None = None, width: int | None = None, use_ref_cache: bool = True,
                 callback: Callable | None = None, previews: bool | float = True,
                 schedule: str | list | None = None, *, boxes: Sequence | None = None,
                 num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, image_guidance_scale: float | None = None,
                 num_images_per_prompt: int | None = None, generator: torch.Generator | None = None,
                 callback_on_step_end: Callable | None = None, output_type: str = "pil",
                 return_dict: bool = True, expand_prompt: bool | None = None) -> PipelineOutput:
        """One generation. diffusers' names and the studio's name the same things:
        num_inference_steps = steps, guidance_scale = guidance, image_guidance_scale = image_guidance,
        num_images_per_prompt = num_outputs (panels for a storyboard); `generator` instead of `seed`
        (the result's seed is its initial seed). `callback(step, total, preview)` may return False to
        cancel; `previews` says which steps decode a preview for it (`PreviewClock`: True, every
        step but the last; False, none; seconds, at most one that often);
        `callback_on_step_end(pipe, step, t, {"latents": ...})` is diffusers' form (set
        `pipe._interrupt = True` in it to cancel). output_type: "pil", "np" (floats in [0, 1]) or
        "latent". `boxes`: one (x0, y0, x1, y1) box (fractions of the output) or None per input
        image: where that reference goes (layout-aware positions; None: free, as without boxes).
        `expand_prompt`: run a t2i prompt through the grounded prompt expander first (None: as
        pipeline.json's `expand_prompts` says); the result's parameters then hold `typed_prompt`
        and `prompt_expansion` (budget, grounded, notes). A prompt it cannot ground runs as typed.
        Bad input raises ValueError with a sentence."""
        steps = _alias("steps", steps, "num_inference_steps", num_inference_steps)
        guidance = _alias("guidance", guidance, "guidance_scale", guidance_scale)
        image_guidance = _alias("image_guidance", image_guidance, "image_guidance_scale", image_guidance_scale)
        num_outputs = _alias("num_outputs", num_outputs, "num_images_per_prompt", num_images_per_prompt)
        if output_type not in ("pil", "np", "latent"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")
        if generator is not None and seed is not None:
            raise ValueError("give a seed or a generator, not both")
        if expand_prompt and task not in EXPANDED_TASKS:
            raise ValueError(f"expand_prompt is for {' and '.join(EXPANDED_TASKS)} prompts; for {task!r}, expand "
                             "the prompt first (seedling.model.prompt_expansion.load_expander) and pass its result")
        self._interrupt = False
        t_start = time.perf_counter()
        prompt = "" if prompt is None else str(prompt)
        images = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)) for im in (images or [])]
        images = [im.convert("RGB") for im in images]
        if mask is not None and not isinstance(mask, Image.Image):
            mask = Image.fromarray(np.asarray(mask))
        outputs_asked = num_outputs
        if num_outputs is None:
            num_outputs = task_spec(task).default_outputs
        steps = self.settings.default_steps if steps is None else steps
        image_guidance = self.settings.image_guidance if image_guidance is None else image_guidance
        if images and task_spec(task).keeps_source_size and height is None and width is None:
            width, height = images[0].size
        height = self.settings.default_size if height is None else height
        width = self.settings.default_size if width is None else width
        if task == "storyboard" and self.settings.storyboard_by_panels:
            g = self.settings.task_guidance.get(task, self.settings.guidance) if guidance is None else guidance
            self._check(task, images, mask, num_outputs, steps, g, image_guidance, height, width)
            if generator is not None:
                seed = generator.initial_seed()
            if output_type == "latent":
                raise ValueError("a storyboard drawn panel by panel returns pictures: use output_type 'pil' or 'np'")
            return self.storyboard_panels(prompt, images, outputs_asked, steps=steps, guidance=guidance,
                                          image_guidance=image_guidance, seed=seed, height=height, width=width,
                                          callback=callback, previews=previews, output_type=output_type,
                                          return_dict=return_dict)
        if task == "edit" and mask is None and len(images) == 1 and "text" in self.dit.dims.tasks:
            source = images[0] if images[0].size == (width, height) else images[0].resize((width, height), Image.LANCZOS)
            word_edit = plan_word_edit(prompt, source)  # 'change the word to "SALE"' on a picture of a word
            if word_edit is not None:
                g = self.settings.task_guidance.get("text", self.settings.guidance) if guidance is None else guidance
                self._check(task, images, mask, num_outputs, steps, g, image_guidance, height, width)
                if output_type == "latent":
                    raise ValueError("a word edit returns pictures (the new word laid on the old picture): "
                                     "use output_type 'pil' or 'np'")
                return self.edit_words(prompt, source, word_edit, num_outputs=outputs_asked, steps=steps,
                                       guidance=guidance, seed=seed, generator=generator, callback=callback,
                                       previews=previews, output_type=output_type, return_dict=return_dict)
        typed, expansion = prompt, None
        if task in EXPANDED_TASKS and (task in self.settings.expand_prompts if expand_prompt is None else expand_prompt):
            expansion = self._expand(prompt, task)  # 'could you make a fox for me' -> 'a fox'
            if expansion.grounded:
                prompt = expansion.prompt
        glyph = None
        if task == "t2i" and "text" in self.dit.dims.tasks:  # quoted text: drawn, then restyled by the text task
            glyph = prompt_glyph(prompt, width, height)
            if glyph is not None:
                task, images = "text", [Image.fromarray(glyph)]
        if guidance is None:  # after the task is known: quoted text runs the text task, with its own default
            guidance = self.settings.task_guidance.get(task, self.settings.guidance)
        self._check(task, images, mask, num_outputs, steps, guidance, image_guidance, height, width)
        native = self.settings.default_size
        if task == "upscale" and images and self.settings.upscale_tiled and max(height, width) > native:
            if output_type == "latent":
                raise ValueError("an upscale drawn in tiles returns pictures: use output_type 'pil' or 'np'")
            if generator is not None:
                seed = generator.initial_seed()
            return self.upscale_tiled(images[0], width, height, prompt=prompt, num_outputs=num_outputs, steps=steps,
                                      guidance=guidance, image_guidance=image_guidance, seed=seed, callback=callback,
                                      previews=previews, output_type=output_type, return_dict=return_dict)
        small = None  # upscale: the small picture given, and by what factor the output is larger
        if task == "upscale" and images and self.settings.upscale_keeps_input:
            w0, h0 = images[0].size
            factor = width // w0
            if factor > 1 and (w0 * factor, h0 * factor) == (width, height):
                small = (np.asarray(images[0], np.float32), factor)
        if task_spec(task).control:
            images = [control_input(task, im, width, height) for im in images]
        placement = None
        if task == "compose" and boxes is None and images and self.dit.dims.reference_boxes:
            placement = self.compose_placement(prompt, images)  # the prompt's layout words -> boxes
            boxes = placement.boxes
        if generator is not None:
            gen, seed = generator, generator.initial_seed()
        else:
            if seed is None:
                seed = random.randrange(2**31)
            gen = torch.Generator().manual_seed(int(seed))
        timings: dict[str, float] = {}

        # Storyboards are M panels of one sequence (they attend to each other); other tasks give
        # num_outputs independent samples of M = 1 (a batch).
        B, M = (1, num_outputs) if task == "storyboard" else (num_outputs, 1)
        f = self.autoencoder.factor
        C = self.dit.config.latent_channels
        h, w = height // f, width // f
        dev = self.device

        t0 = time.perf_counter()
        states, pooled = self.text_encoder.encode([prompt, ""])
        states, pooled = states.to(dev), pooled.to(dev)
        timings["encode_text"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        refs, ref_masks, src_latent, lat_mask, pix_mask = [], None, None, None, None
        if images:
            sized = [im if im.size == (width, height) else im.resize((width, height), Image.LANCZOS) for im in images]
            lat = self.autoencoder.encode(images_to_tensor(sized, dev))  # (N, C, h, w)
            refs = [lat[j : j + 1] for j in range(len(sized))]
            ref_masks = [torch.zeros(1, 1, h, w, device=dev) for _ in refs]
            if mask is not None:
                pix_mask = np.asarray(mask.convert("L")) >= 128  # (H, W) True = change
                pm = torch.from_numpy(pix_mask.astype(np.float32))[None, None].to(dev)
                lat_mask = F.max_pool2d(pm, f)  # a latent cell is free if any of its pixels is
                ref_masks = [lat_mask]
                src_latent = refs[0]
        timings["encode_images"] = time.perf_counter() - t0

        adapter = self.task_adapters.get(task)
        t0 = time.perf_counter()
        with added_adapters(self.dit, [(adapter, 1.0)] if adapter is not None else []):
            if adapter is not None:
                timings["task_adapter"] = time.perf_counter() - t0  # merged for this call (taken off after)
            times = make_schedule(steps, schedule if schedule is not None else self.settings.schedule, self.settings.shift)
            t0 = time.perf_counter()
            p = self.dit.config.patch
            branches = self.make_branches(task, states, pooled, refs, ref_masks, B, guidance, image_guidance, use_ref_cache,
                                          n_out=M * (h // p) * (w // p), steps=step_pairs(times, self.settings.shortcut),
                                          ref_indices=self._ref_positions(boxes, len(refs), h // p, w // p))
            timings["encode_context"] = time.perf_counter() - t0

            noise = torch.randn((B, M, C, h, w), generator=gen).to(dev)
            project = None
            if src_latent is not None and lat_mask is not None:
                keep = (1 - lat_mask)[:, None]  # (1, 1, 1, h, w)
                z_src = src_latent[:, None]

                def project(x, t):  # hold the known region on the source's noising path
                    return x * (1 - keep) + keep * ((1 - t) * z_src + t * noise)

            clock = PreviewClock(previews)

            def on_step(i, total, x, x0_pred):
                if callback_on_step_end is not None:
                    callback_on_step_end(self, i - 1, times[i - 1], {"latents": x, "x0_pred": x0_pred})
                    if self._interrupt:
                        raise GenerationCancelled(f"interrupted at step {i} of {total}")
                if callback is None:
                    return
                preview = None
                if clock.due(i, total):
                    preview = tensor_to_images(self.autoencoder.decode(x0_pred[0, :1]))[0]
                if callback(i, total, preview) is False:
                    raise GenerationCancelled(f"cancelled at step {i} of {total}")

            t0 = time.perf_counter()
            lat = euler_sample(branches, noise.clone(), times.to(dev), guidance, image_guidance, shortcut=self.settings.shortcut,
                               on_step=on_step if callback or callback_on_step_end else None, project=project)
            timings["sample"] = time.perf_counter() - t0

        if output_type == "latent":
            return self._output(lat.reshape(B * M, C, h, w), seed, timings, t_start, return_dict)
        t0 = time.perf_counter()
        out = tensor_to_images(self.autoencoder.decode(lat.reshape(B * M, C, h, w)))
        if task == "edit" and pix_mask is None and self.settings.detail_transfer:
            src = np.asarray(sized[0], dtype=np.float32)
            recon = np.asarray(tensor_to_images(self.autoencoder.decode(refs[0]))[0], dtype=np.float32)
            out = [Image.fromarray(np.round(transfer_detail(src, recon, np.asarray(o, np.float32),
                                                            self.settings.detail_tolerance)).astype(np.uint8))
                   for o in out]
        if task == "colourise" and self.settings.colourise_keeps_luminance:
            gray = np.asarray(images[0].convert("L"), dtype=np.float32)
            out = [Image.fromarray(np.round(keep_luminance(gray, np.asarray(o, np.float32))).astype(np.uint8)) for o in out]
        if small is not None:
            out = [Image.fromarray(np.round(keep_low_resolution(small[0], np.asarray(o, np.float32), small[1]))
                                   .astype(np.uint8)) for o in out]
        if pix_mask is not None:
            wgt = feather_mask(pix_mask, self.settings.feather_px)[..., None]
            src = np.asarray(images[0], dtype=np.float32)
            out = [Image.fromarray(np.round(src * (1 - wgt) + np.asarray(o, np.float32) * wgt).astype(np.uint8))
                   for o in out]
        timings["decode"] = time.perf_counter() - t0
        params = {"prompt": prompt, "task": task, "num_outputs": num_outputs, "steps": steps, "guidance": guidance,
                      "image_guidance": image_guidance, "seed": int(seed), "height": height, "width": width}
        if expansion is not None:
            params["typed_prompt"] = typed
            params["prompt_expansion"] = {"budget": expansion.budget, "grounded": expansion.grounded,
                                          "notes": list(expansion.notes)}
        if glyph is not None:
            params["glyph"] = True  # the text task drew the prompt's quoted text (data/glyphs.py)
        if task == "colourise":
            params["luminance_kept"] = self.settings.colourise_keeps_luminance
        if task == "upscale":
            params["input_kept"] = small is not None  # the small input's block means, back-projected
        if placement is not None:  # boxes the pipeline read from the prompt (none were given)
            params["boxes"] = [list(b) for b in boxes] if boxes is not None else None
            params["placement_notes"] = placement.notes
        if output_type == "np":
            out = np.stack([np.asarray(o, dtype=np.float32) / 255.0 for o in out])
        return self._output(out, seed, timings, t_start, return_dict, params)

    def compose_placement(self, prompt: str, images: Sequence):
        """Where each reference goes (`placement.Placement`: boxes in reference order, or None),
        from the prompt's layout words: by order, side by side, or named subjects matched to the
        references by look. The pipeline uses it for compose when no boxes are given and the DiT
        was trained with reference boxes."""
        from seedling.model.prompt_expansion.placement import icon_image, place_references

        return place_references(self._expand(prompt, "compose", n_refs=len(images)), images, icon_image)

    def _expand(self, prompt: str, task: str, **kw):
        if self._expander is None:
            from seedling.model.prompt_expansion.grounded import GroundedExpander

            self._expander = GroundedExpander(text_encoder=self.text_encoder)
        return self._expander.expand(prompt, task, **kw)

    def storyboard_panels(self, prompt: str, images: Sequence | None = None, num_outputs: int | None = None, *,
                          seed: int | None = None, callback: Callable | None = None, output_type: str = "pil",
                          return_dict: bool = True, **sampling) -> PipelineOutput:
        """A storyboard drawn panel by panel from one picture of its character, so that every panel
        shows the same one: the reference given, else a t2i of the character the caption names;
        then each panel a composition of that picture on white, placed in the panel's box
        (reference boxes), and the panel's background painted by an edit ("make the background
        blue"; none on white). The prompt is read by the grounded expander, whose
        storyboard captions `placement.panel_plan` parses; `num_outputs` panels (default: the
        prompt's). `sampling`: steps, guidance, image_guidance, height, width, previews, as
        `__call__` takes them. Seeds: the character `seed`, panel i `seed + 1 + i`."""
        from seedling.model.prompt_expansion.placement import panel_plan

        t_start = time.perf_counter()
        result = self._expand(prompt, "storyboard", num_outputs=num_outputs)
        plan = panel_plan(result.prompt) if result.grounded else None
        if plan is None:
            why = " ".join(result.notes) or "name the character and what changes from panel to panel"
            raise ValueError(f"this storyboard prompt could not be read as panels: {why}")
        n = num_outputs or len(plan.panels)
        plan.panels = [plan.panels[i % len(plan.panels)] for i in range(n)]
        if seed is None:
            seed = random.randrange(2**31)
        steps = sampling.get("steps") or self.settings.default_steps
        edits = plan.edits()
        total = (n + sum(e is not None for e in edits) + (0 if images else 1)) * steps
        done = 0

        def progress(step, _total, preview):  # one bar over the character and every panel
            return None if callback is None else callback(done + step, total, preview)

        timings: dict[str, float] = {}
        if images:
            character = images[0]
        else:
            char = self(prompt=plan.noun, task="t2i", num_outputs=1, seed=seed, callback=progress, **sampling)
            character, done = char.images[0], steps
            timings["character"] = char.timings["total"]
        panels = []
        for i, (text, box, edit) in enumerate(zip(plan.prompts(), plan.boxes(), edits)):
            out = self(prompt=text, task="compose", images=[character], num_outputs=1, seed=seed + 1 + i,
                       boxes=[box], callback=progress, **sampling)
            timings[f"panel_{i + 1}"] = out.timings["total"]
            done += steps
            if edit is not None:
                out = self(prompt=edit, task="edit", images=[out.images[0]], num_outputs=1, seed=seed + 1 + i,
                           callback=progress, **sampling)
                timings[f"panel_{i + 1}"] += out.timings["total"]
                done += steps
            panels.append(out.images[0])
        params = {"prompt": prompt, "task": "storyboard", "num_outputs": n, "steps": steps, "seed": int(seed),
                  "height": out.parameters["height"], "width": out.parameters["width"],
                  "guidance": out.parameters["guidance"], "image_guidance": out.parameters["image_guidance"],
                  "by_panels": True, "character": "given" if images else plan.noun, "panel_prompts": plan.prompts(),
                  "panel_edits": edits}
        if output_type == "np":
            panels = np.stack([np.asarray(o, dtype=np.float32) / 255.0 for o in panels])
        return self._output(panels, seed, timings, t_start, return_dict, params)

    def upscale_tiled(self, image: Image.Image, width: int, height: int, *, prompt: str = "", num_outputs: int = 1,
                      seed: int | None = None, callback: Callable | None = None, previews: bool | float = True,
                      output_type: str = "pil", return_dict: bool = True, **sampling) -> PipelineOutput:
        """An upscale to more than the native size (`default_size`), drawn in overlapping tiles of
        the native size: each tile is the upscale task on its part of the small input (the task as
        trained: a whole native-size output from 1/factor of it), the tiles overlap by a quarter of
        their side and cross-fade over an eighth (`tile_starts`, `tile_weight`), and with `upscale_keeps_input` the
        whole picture is back-projected onto the small input (`keep_low_resolution`). The output must
        be the input times a trained factor (2 or 4) on both sides. `sampling`: steps, guidance,
        image_guidance. Tile k of output i has the seed `seed + i * tiles + k`."""
        t_start = time.perf_counter()
        w0, h0 = image.size
        factor = width // w0
        if factor not in UPSCALE_FACTORS or (w0 * factor, h0 * factor) != (width, height):
            sizes = " or ".join(f"{w0 * f}x{h0 * f}" for f in UPSCALE_FACTORS)
            raise ValueError(f"an upscale larger than the model's native {self.settings.default_size} px is drawn in "
                             f"tiles and makes the output {' or '.join(map(str, UPSCALE_FACTORS))} times the input: "
                             f"for this {w0}x{h0} picture ask {sizes}, not {width}x{height}")
        native = self.settings.default_size
        tw, th = min(native, width), min(native, height)  # a tile of the output, in px
        xs = tile_starts(w0, tw // factor)  # in the small picture's px
        ys = tile_starts(h0, th // factor)
        weight = tile_weight(th, tw, native // 8)
        small = np.asarray(image.convert("RGB"))
        n_tiles = len(xs) * len(ys)
        if seed is None:
            seed = random.randrange(2**31)
        steps = sampling.get("steps") or self.settings.default_steps
        total, done = num_outputs * n_tiles * steps, 0
        timings: dict[str, float] = {}
        outs = []
        adapter = self.task_adapters.get("upscale")
        clock = PreviewClock(previews)
        t0 = time.perf_counter()
        # the task's adapter applied once for every tile: each tile's call finds it applied already
        with added_adapters(self.dit, [(adapter, 1.0)] if adapter is not None else []):
            timings["task_adapter"] = time.perf_counter() - t0
            for i in range(num_outputs):
                acc = np.zeros((height, width, 3), np.float32)
                wsum = np.zeros((height, width, 1), np.float32)
                for k, (y, x) in enumerate((y, x) for y in ys for x in xs):
                    crop = Image.fromarray(small[y : y + th // factor, x : x + tw // factor])

                    def progress(step, steps_of_tile, _preview, acc=acc, wsum=wsum, before=done):
                        if callback is None:
                            return None
                        canvas = None  # the picture so far: the tiles drawn, bicubic where none is yet
                        if step == steps_of_tile and clock.due(before + step, total):
                            bicubic = np.asarray(image.convert("RGB").resize((width, height), Image.BICUBIC),
                                                 np.float32)
                            canvas = Image.fromarray(np.where(wsum > 0, acc / np.maximum(wsum, 1e-6), bicubic)
                                                     .round().clip(0, 255).astype(np.uint8))
                        return callback(before + step, total, canvas)

                    tile = self(prompt=prompt, task="upscale", images=[crop], num_outputs=1,
                                seed=seed + i * n_tiles + k, height=th, width=tw, callback=progress, previews=False,
                                **sampling)
                    y1, x1 = y * factor, x * factor
                    acc[y1 : y1 + th, x1 : x1 + tw] += weight * np.asarray(tile.images[0], np.float32)
                    wsum[y1 : y1 + th, x1 : x1 + tw] += weight
                    done += steps
                    for key, value in tile.timings.items():
                        if key not in ("total", "task_adapter"):
                            timings[key] = timings.get(key, 0.0) + value
                out = acc / wsum
                if self.settings.upscale_keeps_input:
                    out = keep_low_resolution(small.astype(np.float32), out, factor)
                outs.append(Image.fromarray(np.round(out).clip(0, 255).astype(np.uint8)))
        params = {"prompt": prompt, "task": "upscale", "num_outputs": num_outputs, "steps": steps,
                  "guidance": tile.parameters["guidance"], "image_guidance": tile.parameters["image_guidance"],
                  "seed": int(seed), "height": height, "width": width, "input_kept": self.settings.upscale_keeps_input,
                  "tiles": {"count": n_tiles, "width": tw, "height": th}}
        if output_type == "np":
            outs = np.stack([np.asarray(o, dtype=np.float32) / 255.0 for o in outs])
        return self._output(outs, seed, timings, t_start, return_dict, params)

    def edit_words(self, prompt: str, picture: Image.Image, edit, *, output_type: str = "pil",
                   return_dict: bool = True, **sampling) -> PipelineOutput:
        """A word edit (`word_edit.plan_word_edit`: 'change the word to "SALE"'): the text task draws
        the new word from its glyph, placed where the old word was, in the old word's ink (and font
        and size, when the prompt quotes the old word); the picture keeps every pixel outside the
        words' region. `sampling`: the text task's call's arguments (steps, guidance, seed, ...)."""
        t_start = time.perf_counter()
        drawn = self(prompt=edit.prompt, task="text", images=[Image.fromarray(edit.glyph)],
                     height=picture.height, width=picture.width, **sampling)
        src = np.asarray(picture.convert("RGB"))
        out = [Image.fromarray(word_edit_composite(src, im, edit)) for im in drawn.images]
        params = {**drawn.parameters, "prompt": prompt, "task": "edit", "glyph": True,
                  "word_edit": {"old": edit.old, "new": edit.new, "font": edit.font, "color": edit.color,
                                "text_prompt": edit.prompt, "ink_box": list(edit.ink_box)}}
        if output_type == "np":
            out = np.stack([np.asarray(o, dtype=np.float32) / 255.0 for o in out])
        return self._output(out, drawn.seed, dict(drawn.timings), t_start, return_dict, params)

    @staticmethod
    def _output(images, seed, timings, t_start, return_dict, params=None):
        timings["total"] = time.perf_counter() - t_start
        if not return_dict:
            return (images,)
        return PipelineOutput(images=images, seed=int(seed), timings=timings, parameters=params or {})
