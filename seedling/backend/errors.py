"""Errors the backend raises for a person to read (the UI shows them as gr.Error)."""


class JobError(Exception):
    """Base of errors whose message is meant for the user."""


class InvalidJob(JobError, ValueError):
    """A job spec failed validation before it was queued."""


class NotFound(JobError, LookupError):
    """A job, image or adapter id that names no row (never existed, or was deleted)."""


class QueueFull(JobError):
    """Too many jobs are waiting; try again later."""


class JobCancelled(Exception):
    """The job stopped because someone asked it to (raised inside the worker only)."""


class JobYielded(Exception):
    """The job checkpointed and stopped so that queued jobs can run; it goes to the back of the
    queue and continues from its checkpoint (raised inside the worker only: fine-tune chunks)."""
