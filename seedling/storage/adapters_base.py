"""Interface of the adapter store: rows describing fine-tuned adapters (their files live in the
file store's "adapters" folder)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from seedling.storage.adapters_common import AdapterRecord, NewAdapter


class AdapterStoreBase(ABC):
    @abstractmethod
    def list(self) -> list[AdapterRecord]:
        """All adapters, by name."""

    @abstractmethod
    def get(self, adapter_id: int) -> AdapterRecord:
        """The adapter, or raise AdapterNotFound."""

    @abstractmethod
    def by_name(self, name: str) -> AdapterRecord | None: ...

    @abstractmethod
    def by_job(self, job_id: int) -> AdapterRecord | None:
        """The adapter a fine-tune job made, if it got that far."""

    @abstractmethod
    def add(self, new: NewAdapter) -> AdapterRecord:
        """Insert a row; raise AdapterNameTaken when the name is in use."""

    @abstractmethod
    def delete(self, adapter_id: int) -> AdapterRecord:
        """Delete the row (jobs and images keep no reference: ON DELETE SET NULL); return it."""
