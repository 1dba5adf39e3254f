"""The adapter service: the fine-tuned adapters the generation tabs offer, and deleting them."""

from __future__ import annotations

import logging

from seedling.storage.adapters_base import AdapterStoreBase
from seedling.storage.adapters_common import AdapterRecord
from seedling.storage.files import FileStore

log = logging.getLogger(__name__)


class AdapterService:
    def __init__(self, store: AdapterStoreBase, files: FileStore):
        self._store = store
        self._files = files

    def list(self) -> list[AdapterRecord]:
        return self._store.list()

    def get(self, adapter_id: int) -> AdapterRecord:
        """The adapter, or AdapterNotFound (a LookupError with a readable message)."""
        return self._store.get(adapter_id)

    def for_job(self, job_id: int) -> AdapterRecord | None:
        """The adapter a fine-tune job made (None until it succeeded)."""
        return self._store.by_job(job_id)

    def delete(self, adapter_id: int) -> AdapterRecord:
        """Delete the row (images and jobs made with it keep their parameters, lose the link), then
        its files. Queued jobs that use it fail with "adapter #N does not exist"."""
        record = self._store.delete(adapter_id)
        if record.file_path:
            from seedling.model.adapters import delete_adapter_files

            delete_adapter_files(self._files.path(record.file_path))  # a peft folder or a file + sidecar
        log.info("deleted adapter %s (#%d)", record.name, record.id)
        return record
