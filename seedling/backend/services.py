"""The one wiring module (as InvokeAI's app/api/dependencies.py): settings in, services out."""

from __future__ import annotations

from dataclasses import dataclass, field

from huey import Huey

from seedling.backend.adapters import AdapterService
from seedling.backend.finetune import FinetuneService
from seedling.backend.history import HistoryService
from seedling.backend.huey_app import make_huey
from seedling.backend.job_events import JobEvents
from seedling.backend.jobs import JobService
from seedling.backend.model_host import Loader, ModelHost, load_pipeline
from seedling.backend.prompt_expansion import PromptExpansionService
from seedling.backend.settings import Settings
from seedling.backend.tasks import JobTasks, register_tasks
from seedling.backend.worker_runtime import WorkerRuntime
from seedling.storage.adapters_sqlite import SqliteAdapterStore
from seedling.storage.boards_sqlite import SqliteBoardStore
from seedling.storage.db import Database
from seedling.storage.files import FileStore
from seedling.storage.images_sqlite import SqliteImageStore
from seedling.storage.jobs_sqlite import SqliteJobStore
from seedling.storage.migrations import migrate


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
    events: JobEvents | None = None  # one reader of job changes for every waiting request

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
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
    runtime = WorkerRuntime(
        job_store, image_store, files, model, adapter_store, owner=settings.worker_id, lease_s=settings.lease_s
    )
    runtime.max_attempts = settings.max_attempts
    huey = huey if huey is not None else make_huey(settings)
    tasks = register_tasks(huey, runtime, warm_up=warm_up)
    runtime.enqueue = tasks.enqueue  # a fine-tune job requeues itself to let waiting jobs run
    jobs = JobService(
        job_store, image_store, tasks.enqueue, settings.max_queue, settings.max_attempts, adapter_store,
        pending=lambda: len(huey.pending()),
    )
    history = HistoryService(
        image_store, files, adapter_store, SqliteBoardStore(db), inputs_in_use=jobs.inputs_in_use
    )
    return Services(
        settings=settings,
        db=db,
        files=files,
        huey=huey,
        tasks=tasks,
        jobs=jobs,
        history=history,
        adapters=AdapterService(adapter_store, files),
        finetune=FinetuneService(jobs, history, files.root / "work"),
        runtime=runtime,
        expansion=PromptExpansionService(settings.pe_model),
        events=JobEvents(settings.db_path),  # its thread starts with the first waiting request
    )
