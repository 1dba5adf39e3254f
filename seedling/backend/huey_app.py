"""The Huey instance (huey docs' layout: one module for the instance, one for tasks, one entry
point). Built by a function, not at import: which storage it uses depends on the settings."""

from __future__ import annotations

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey

from seedling.backend.settings import Settings

HUEY_NAME = "seedling"


def make_huey(settings: Settings) -> Huey:
    """SqliteHuey in the data folder by default; RedisHuey when several workers share a queue.
    Results are not stored: job outcomes live in the history database."""
    if settings.redis_url:
        return RedisHuey(HUEY_NAME, url=settings.redis_url, results=False, blocking=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(HUEY_NAME, filename=str(settings.queue_path), results=False)


def make_memory_huey(immediate: bool = False) -> Huey:
    """For tests: tasks run by `execute_next` (or at once when immediate)."""
    return MemoryHuey(HUEY_NAME, results=False, immediate=immediate)
