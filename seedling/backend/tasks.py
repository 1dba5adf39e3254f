"""Huey tasks, registered on a given Huey instance. The app process registers them to enqueue;
the worker process registers them to execute. A queue message is a wake-up: the worker claims
the first job in the database's queue order, so a requeued job keeps its place in line and a
duplicate message finds nothing to do. The job id travels only for the logs; job parameters live
in the job row, never in the queue message."""

from __future__ import annotations

from dataclasses import dataclass

from huey import Huey
from huey.api import TaskWrapper

from seedling.backend.worker_runtime import WorkerRuntime

RUN_JOB = "seedling.run_job"


@dataclass(frozen=True)
class JobTasks:
    run_job: TaskWrapper

    def enqueue(self, job_id: int) -> None:
        self.run_job(job_id)


def register_tasks(huey: Huey, runtime: WorkerRuntime, warm_up: bool = False) -> JobTasks:
    @huey.task(name=RUN_JOB)
    def run_job(job_id: int) -> None:
        runtime.run_next()

    if warm_up:

        @huey.on_startup(name="seedling.warm_up")
        def _warm_up() -> None:
            runtime.warm_up()

    return JobTasks(run_job=run_job)
