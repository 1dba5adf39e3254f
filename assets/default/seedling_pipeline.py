"""Lets diffusers' DiffusionPipeline.from_pretrained(folder) find the Seedling pipeline class."""

from seedling.model.pipeline import SeedlingPipeline  # noqa: F401
