"""Errors the backend raises for a person to read (the UI shows them as gr.Error)."""

from collections.abc import Iterator
from contextlib import contextmanager


class JobError(Exception):
    """Base of errors whose message is meant for the user."""


class InvalidJob(JobError, ValueError):
    """A job spec failed validation before it was queued."""


class NotFound(JobError, LookupError):
    """A job, image or adapter id that names no row (never existed, or was deleted)."""


@contextmanager
def not_found_as_readable(*missing: type[Exception]) -> Iterator[None]:
    """Turns a store's "no such row" errors (`missing`: ImageNotFound, JobNotFound, ...) raised
    inside the block into NotFound, the error the UI shows."""
    try:
        yield
    except missing as err:
        raise NotFound(str(err)) from None


class QueueFull(JobError):
    """Too many jobs are waiting; try again later."""


class JobCancelled(Exception):
    """The job stopped because someone asked it to (raised inside the worker only)."""


class JobYielded(Exception):
    """The job checkpointed and stopped so that queued jobs can run; it goes to the back of the
    queue and continues from its checkpoint (raised inside the worker only: fine-tune chunks)."""
