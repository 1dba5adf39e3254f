"""The one wiring module (as InvokeAI's app/api/dependencies.py): settings in, services out."""

from __future__ import annotations

from dataclasses import dataclass, field

from huey import Huey

from backend.adapters import AdapterService
from backend.finetune import FinetuneService
from backend.history import HistoryService
from backend.huey_app import make_huey
from backend.jobs import JobService
from backend.model_host import Loader, ModelHost, load_pipeline
from backend.prompt_expansion import PromptExpansionService
from backend.settings import Settings
from backend.tasks import JobTasks, register_tasks
from backend.worker_runtime import WorkerRuntime
from storage.adapters_sqlite import SqliteAdapterStore
from storage.db import Database
from storage.files import FileStore
from storage.images_sqlite import SqliteImageStore
from storage.jobs_sqlite import SqliteJobStore
from storage.migrations import migrate


@dataclass
class Services:
    settings: Settings
    db: Database
    files: FileStore
    huey: Huey
    tasks: JobTasks
    jobs: JobService
    history: HistoryService
    adapters: AdapterService
    finetune: FinetuneService
    runtime: WorkerRuntime  # used only where jobs execute: the worker, or in-process in tests
    expansion: PromptExpansionService = field(default_factory=PromptExpansionService)  # loads on first use

    def close(self) -> None:
        self.db.dispose()


def build_services(
    settings: Settings, huey: Huey | None = None, loader: Loader = load_pipeline, warm_up: bool = False
) -> Services:
    """Open (and migrate) the history database and wire every service. `huey` defaults to the
    one the settings ask for; tests pass a MemoryHuey. Loading the model waits for the first job
    (or warm-up, which the worker asks for)."""
    db = Database(settings.db_path)
    migrate(db)
    files = FileStore(settings.files_dir)
    job_store = SqliteJobStore(db)
    image_store = SqliteImageStore(db)
    adapter_store = SqliteAdapterStore(db)
    model = ModelHost(settings.model_path, settings.device, settings.quantize, loader=loader)
    runtime = WorkerRuntime(job_store, image_store, files, model, adapter_store)
    huey = huey if huey is not None else make_huey(settings)
    tasks = register_tasks(huey, runtime, warm_up=warm_up)
    runtime.enqueue = tasks.enqueue  # a fine-tune job requeues itself to let waiting jobs run
    jobs = JobService(
        job_store, image_store, tasks.enqueue, settings.max_queue, settings.max_attempts, adapter_store
    )
    history = HistoryService(image_store, files, adapter_store)
    return Services(
        settings=settings,
        db=db,
        files=files,
        huey=huey,
        tasks=tasks,
        jobs=jobs,
        history=history,
        adapters=AdapterService(adapter_store, files),
        finetune=FinetuneService(jobs, history),
        runtime=runtime,
        expansion=PromptExpansionService(settings.pe_model),
    )
