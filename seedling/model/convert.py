"""Bring a pre-diffusers model folder (pipeline.json, dit/, autoencoder/ with model.safetensors)
over to diffusers' pipeline layout, so `DiffusionPipeline.from_pretrained(folder)` loads it.

    python -m seedling.model.convert assets/default                 # adds the metadata files only
    python -m seedling.model.convert old_model --rename-weights     # also renames the weights files

Metadata written: model_index.json (components, the pipeline's sampling defaults), the
scheduler's config (FlowMatchEulerDiscreteScheduler, equal to our Euler sampler), and
seedling_pipeline.py, the one-line module through which diffusers finds the pipeline class.
The weights are not touched unless `--rename-weights` (model.safetensors ->
diffusion_pytorch_model.safetensors, the library's name); both names load.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seedling.atomic import write_atomic

PIPELINE_MODULE = "seedling_pipeline"
PIPELINE_MODULE_SOURCE = (
    '"""Lets diffusers\' DiffusionPipeline.from_pretrained(folder) find the Seedling pipeline class."""\n\n'
    "from seedling.model.pipeline import SeedlingPipeline  # noqa: F401\n"
)
COMPONENTS = {
    "autoencoder": ["seedling.model.autoencoder", "Autoencoder"],
    "dit": ["seedling.model.dit", "UnifiedDiT"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
}


def write_pipeline_metadata(folder: str | Path, settings: dict) -> None:
    """model_index.json (its class as [module file, class], so DiffusionPipeline finds it), the
    module file, and pipeline.json (the app reads the sampling defaults from it)."""
    import diffusers

    folder = Path(folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index.update({"_class_name": [PIPELINE_MODULE, "SeedlingPipeline"], "_diffusers_version": diffusers.__version__})
    for name, entry in COMPONENTS.items():
        index.setdefault(name, entry)
    index["pipeline_config"] = dict(settings)
    write_atomic(index_path, json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    write_atomic(folder / f"{PIPELINE_MODULE}.py", PIPELINE_MODULE_SOURCE)
    write_atomic(folder / "pipeline.json", json.dumps(dict(settings), indent=2))


def convert(folder: str | Path, rename_weights: bool = False) -> Path:
    """Add diffusers' metadata to a pre-diffusers folder in place; returns the folder."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

    folder = Path(folder)
    if not (folder / "pipeline.json").exists():
        raise FileNotFoundError(f"{folder} has no pipeline.json: not a pre-diffusers Seedling model folder")
    settings = json.loads((folder / "pipeline.json").read_text())
    if not (folder / "scheduler" / "scheduler_config.json").exists():
        FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=float(settings.get("shift", 1.0))).save_config(
            folder / "scheduler")
    for part, cls in (("dit", "UnifiedDiT"), ("autoencoder", "Autoencoder")):
        cfg_path = folder / part / "config.json"
        cfg = json.loads(cfg_path.read_text())
        if "_class_name" not in cfg:
            write_atomic(cfg_path, json.dumps({"_class_name": cls, **cfg}, indent=2) + "\n")
        old = folder / part / "model.safetensors"
        if rename_weights and old.exists():
            old.replace(folder / part / SAFETENSORS_WEIGHTS_NAME)
    write_pipeline_metadata(folder, settings)
    return folder


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--rename-weights", action="store_true",
                    help="rename model.safetensors to diffusion_pytorch_model.safetensors")
    args = ap.parse_args(argv)
    print(f"converted {convert(args.folder, args.rename_weights)}")


if __name__ == "__main__":
    main()
