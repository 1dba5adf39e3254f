"""Settings shared by the app process and the worker process (passed to the worker as flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seedling import DEFAULT_MODEL
from seedling.storage.jobs_common import LEASE_S

WATCH_MODES = ("push", "poll")
QUANTIZE_MODES = ("none", "int8", "w8a8", "w8a8-packed", "bnb-int8", "bnb-nf4")  # kernels.quant.QUANT_MODES


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    model_path: Path = DEFAULT_MODEL
    device: str = "cpu"
    quantize: str = "none"
    redis_url: str | None = None  # Huey on Redis instead of SQLite (several workers)
    max_queue: int = 32  # jobs queued or running before submit answers "queue full"
    max_attempts: int = 3  # a job that kept killing its worker is failed after this many starts
    pe_model: Path | None = None  # a local causal LM folder for prompt expansion (None: grounded expander)
    lease_s: float = LEASE_S  # a running job is requeued by others only after its lease expired
    worker_id: str | None = None  # this worker's lease owner name (default: host:pid:random)
    # How a waiting request learns about its job: "push" (one reader per process wakes it) or
    # "poll" (each request re-reads the job every 0.1 s: the old path, kept as the benchmark's baseline)
    watch: str = "push"

    def __post_init__(self) -> None:
        if not 1.0 <= self.lease_s <= 3600.0:
            raise ValueError(f"lease_s must be between 1 and 3600 seconds, not {self.lease_s!r}")
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, not {self.quantize!r}")
        if self.watch not in WATCH_MODES:
            raise ValueError(f"watch must be one of {', '.join(WATCH_MODES)}, not {self.watch!r}")

    def model_defaults(self) -> dict:
        """The model's own sampling defaults from its pipeline.json (steps, guidance,
        image_guidance), for the UI's labels; {} when the file is missing or unreadable (the
        worker reports that when it loads the model)."""
        import json

        try:
            config = json.loads((self.model_path / "pipeline.json").read_text())
        except (OSError, ValueError):
            return {}
        keys = {"default_steps": "steps", "guidance": "guidance", "image_guidance": "image_guidance"}
        if not isinstance(config, dict):
            return {}
        defaults = {name: config[key] for key, name in keys.items() if key in config}
        per_task = config.get("task_guidance")
        text = per_task.get("text") if isinstance(per_task, dict) else None
        if isinstance(text, (int, float)):  # a prompt that quotes text runs the text task, at its own guidance
            defaults["text_guidance"] = text
        return defaults

    def model_tasks(self) -> tuple[str, ...] | None:
        """The tasks the model's DiT knows (dit/config.json), for the tabs' modes; None when the
        file is missing or unreadable (every mode then shows; the worker says what it lacks)."""
        import json

        try:
            tasks = json.loads((self.model_path / "dit" / "config.json").read_text()).get("tasks")
        except (OSError, ValueError, AttributeError):
            return None
        return tuple(tasks) if isinstance(tasks, list) else None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "history.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.db"

    def worker_args(self) -> list[str]:
        """The same settings as command-line flags of `python -m seedling.backend.worker`."""
        args = [
            "--data-dir",
            str(self.data_dir),
            "--model",
            str(self.model_path),
            "--device",
            self.device,
            "--quantize",
            self.quantize,
        ]
        if self.redis_url:
            args += ["--redis", self.redis_url]
        if self.lease_s != LEASE_S:
            args += ["--lease-s", str(self.lease_s)]
        return args
