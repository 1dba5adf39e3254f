"""Loads the pipeline once per worker process and keeps it warm between jobs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# (model folder, device, quantize mode) -> pipeline
Loader = Callable[[Path, str, str], Any]


def load_pipeline(model_path: Path, device: str, quantize: str) -> Any:
    from seedling.model.pipeline import SeedlingPipeline  # imported here: the app process never needs torch

    if not Path(model_path).is_dir():
        raise FileNotFoundError(f"model folder {model_path} does not exist")
    pipe = SeedlingPipeline.from_pretrained(str(model_path))
    pipe.to(device)
    if quantize != "none":
        pipe.quantize(quantize)
    elif device == "cpu":
        from seedling.kernels import fused

        fused.available()  # builds the fused DiT blocks once per machine (~10 s) here, not in the first job
    return pipe


class ModelHost:
    def __init__(self, model_path: Path, device: str, quantize: str, loader: Loader = load_pipeline):
        self.model_path = Path(model_path)
        self.device = device
        self.quantize = quantize
        self._loader = loader
        self._pipe: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model_path.name

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def get(self, report: Callable[[str], None] | None = None) -> Any:
        """The pipeline, loaded on first use; `report(phrase)` hears what the load is doing."""
        with self._lock:
            if self._pipe is None:
                log.info("loading model %s on %s (quantize=%s)", self.model_path, self.device, self.quantize)
                if report is not None:
                    report(self._load_phase())
                self._pipe = self._loader(self.model_path, self.device, self.quantize)
            return self._pipe

    def _load_phase(self) -> str:
        phase = f"loading the model {self.model_path.name}"
        if self.device == "cpu" and self.quantize == "none" and self._loader is load_pipeline:
            from seedling.kernels import fused

            if fused.enabled() and not fused.library_path().exists():
                phase += " and compiling its fused CPU kernels (once per machine, up to a few minutes)"
        return phase
