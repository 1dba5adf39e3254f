"""The model and pipeline as diffusers objects: library save/load, DiffusionPipeline.from_pretrained,
the converter for pre-diffusers folders, diffusers' argument names, and the scheduler equivalence."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

from seedling.model.autoencoder import Autoencoder
from seedling.model.convert import convert
from seedling.model.dit import DiT_tiny, UnifiedDiT
from seedling.model.pipeline import GenerationCancelled, SeedlingPipeline
from seedling.model.sampler import make_schedule

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "default"


def pixels(images):
    return np.stack([np.asarray(im) for im in images])


@pytest.fixture(scope="module")
def tiny():
    p = SeedlingPipeline.from_config("tiny", seed=0)
    with torch.no_grad():
        for prm in p.dit.parameters():  # off the zero init, so outputs depend on the weights
            prm.add_(torch.randn_like(prm) * 0.05)
    return p


def test_model_classes_round_trip_through_the_library(tmp_path):
    dit = UnifiedDiT(DiT_tiny())
    assert dit.config.width == 64 and dit.dims.head_dim == 32 and list(dit.config.rope_axes) == [8, 12, 12]
    dit.save_pretrained(tmp_path / "dit")
    assert (tmp_path / "dit" / SAFETENSORS_WEIGHTS_NAME).exists()
    back = UnifiedDiT.from_pretrained(tmp_path / "dit")
    assert {k: v for k, v in back.config.items() if not k.startswith("_")} == \
        {k: v for k, v in dit.config.items() if not k.startswith("_")}
    for (k, a), (_, b) in zip(dit.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    dit.save_pretrained(tmp_path / "half", dtype=torch.float16)  # a smaller copy on disk; fp32 in memory
    assert next(dit.parameters()).dtype == torch.float32
    assert UnifiedDiT.from_pretrained(tmp_path / "half").final.linear.weight.dtype == torch.float32


def test_shipped_folder_loads_through_diffusion_pipeline():
    ours = SeedlingPipeline.from_pretrained(ASSETS)
    theirs = DiffusionPipeline.from_pretrained(str(ASSETS), trust_remote_code=True)
    assert type(theirs) is SeedlingPipeline and isinstance(theirs.scheduler, FlowMatchEulerDiscreteScheduler)
    args = {"prompt": "a red circle", "seed": 0, "num_inference_steps": 2}
    assert np.array_equal(pixels(ours(**args).images), pixels(theirs(**args).images))


def test_save_pretrained_writes_the_diffusers_layout(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["dit"] == ["seedling.model.dit", "UnifiedDiT"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["pipeline_config"] == tiny.settings.to_dict()
    loaded = DiffusionPipeline.from_pretrained(str(tmp_path / "m"), trust_remote_code=True)
    args = {"prompt": "a fox", "seed": 1, "steps": 2, "height": 32, "width": 32}
    assert np.array_equal(pixels(tiny(**args).images), pixels(loaded(**args).images))


def test_converter_brings_a_pre_diffusers_folder_over(tmp_path):
    old = tmp_path / "old"
    for part in ("dit", "autoencoder"):
        (old / part).mkdir(parents=True)
        shutil.copy(ASSETS / part / "model.safetensors", old / part / "model.safetensors")
        cfg = json.loads((ASSETS / part / "config.json").read_text())
        (old / part / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "_class_name"}))
    shutil.copy(ASSETS / "pipeline.json", old / "pipeline.json")
    before = SeedlingPipeline.from_pretrained(old)(prompt="a star", seed=3).images
    convert(old, rename_weights=True)
    assert not (old / "dit" / "model.safetensors").exists()
    after = DiffusionPipeline.from_pretrained(str(old), trust_remote_code=True)(prompt="a star", seed=3).images
    assert np.array_equal(pixels(before), pixels(after))


def test_diffusers_argument_names(tiny):
    base = {"prompt": "a fox", "height": 32, "width": 32}
    a = tiny(**base, steps=3, guidance=2.0, num_outputs=2, seed=5)
    b = tiny(**base, num_inference_steps=3, guidance_scale=2.0, num_images_per_prompt=2,
             generator=torch.Generator().manual_seed(5))
    assert np.array_equal(pixels(a.images), pixels(b.images)) and b.seed == 5
    with pytest.raises(ValueError, match="disagree"):
        tiny(**base, steps=3, num_inference_steps=4)
    with pytest.raises(ValueError, match="seed or a generator"):
        tiny(**base, seed=1, generator=torch.Generator())
    arr = tiny(**base, seed=5, steps=3, guidance=2.0, num_outputs=2, output_type="np").images
    assert arr.shape == (2, 32, 32, 3) and np.allclose(arr * 255, pixels(a.images), atol=1e-3)
    (lat,) = tiny(**base, seed=5, output_type="latent", return_dict=False)
    assert lat.shape == (1, tiny.dit.config.latent_channels, 4, 4)

    seen = []

    def on_end(pipe, i, t, kwargs):
        seen.append((i, float(t), tuple(kwargs["latents"].shape)))
        pipe._interrupt = i == 1
        return kwargs

    with pytest.raises(GenerationCancelled):
        tiny(**base, seed=0, steps=4, callback_on_step_end=on_end)
    assert [s[:2] for s in seen] == [(0, 1.0), (1, 0.75)]


@pytest.mark.parametrize("schedule,shift", [("uniform", 1.0), ("shift", 3.0)])
def test_flow_match_euler_scheduler_is_our_sampler(schedule, shift):
    """The scheduler config in model folders is equivalent: the same time grid (given our schedule's
    times as sigmas) and the same Euler update x + (t_next - t) v."""
    times = make_schedule(8, schedule, shift)
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(sigmas=times[:-1].numpy())
    assert torch.allclose(sched.sigmas, times, atol=1e-7)
    shifted = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    shifted.set_timesteps(sigmas=make_schedule(8, "uniform")[:-1].numpy())
    assert torch.allclose(shifted.sigmas, times, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for i, t in enumerate(sched.timesteps):
        ours = x - (float(times[i]) - float(times[i + 1])) * v
        x_next = sched.step(v, t, x).prev_sample
        assert torch.allclose(x_next, ours, atol=1e-6)
        x = x_next
    assert isinstance(Autoencoder.from_pretrained(ASSETS / "autoencoder"), Autoencoder)
