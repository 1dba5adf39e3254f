"""SQLAlchemy 2 ORM models for history. The schema itself is created by `migrations.py`;
`tests/test_storage_migrations.py` checks that these classes and the migrated tables agree.

Times are UNIX seconds (REAL): they sort, compare and filter without timezone parsing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Adapter(Base):
    """A fine-tuned adapter (LoRA or full weights) produced by a fine-tune job."""

    __tablename__ = "adapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    kind: Mapped[str] = mapped_column(String)  # "lora" | "full"
    file_path: Mapped[str | None] = mapped_column(String, nullable=True)  # relative to the data dir
    sha256: Mapped[str | None] = mapped_column(String, nullable=True)
    base_model: Mapped[str] = mapped_column(String, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # training hyperparameters
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    data: Mapped[list[Any]] = mapped_column(JSON, default=list)  # training set: image ids + captions
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # final loss, loss curve, time


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String)  # the spec's kind: generate, edit, inpaint, ...
    status: Mapped[str] = mapped_column(String, index=True)  # storage.jobs_common.JobStatus
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    rerun_of: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    adapter_id: Mapped[int | None] = mapped_column(
        ForeignKey("adapters.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    preview_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Integer, default=0)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # orders the queue
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # live training metrics
    # A running job belongs to the worker holding its lease; the worker renews it while it runs.
    lease_owner: Mapped[str | None] = mapped_column(String, nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    images: Mapped[list[Image]] = relationship(back_populates="job", passive_deletes=True)


class Image(Base):
    __tablename__ = "images"
    # Exactly once: one set of outputs per job (a rerun after a crash cannot add a second).
    __table_args__ = (
        Index(
            "ux_images_job_output",
            "job_id",
            "output_index",
            unique=True,
            sqlite_where=text("origin = 'output' AND job_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    origin: Mapped[str] = mapped_column(String)  # "output" | "upload" | "mask"
    output_index: Mapped[int] = mapped_column(Integer, default=0)
    file_path: Mapped[str] = mapped_column(String, unique=True)  # relative to the data dir
    sha256: Mapped[str] = mapped_column(String)  # of the file's bytes
    pixel_hash: Mapped[str] = mapped_column(String, index=True)  # of mode+size+pixels, finds re-uploads
    file_size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    task: Mapped[str | None] = mapped_column(String, nullable=True, index=True)
    prompt: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    adapter_id: Mapped[int | None] = mapped_column(
        ForeignKey("adapters.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[float] = mapped_column(Float, index=True)
    favourite: Mapped[bool] = mapped_column(Integer, default=0)
    # Set when the image went to the trash: hidden from history, its file kept until the trash is emptied.
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)

    job: Mapped[Job | None] = relationship(back_populates="images")


class ImageEdge(Base):
    """Lineage: `parent` went into making `child` as `role` (source, mask, reference, character,
    sibling); `position` orders several parents of one role (compose references)."""

    __tablename__ = "image_edges"

    child_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)


class Board(Base):
    """A named collection of images (a mood board, a client's picks); names are unique ignoring case."""

    __tablename__ = "boards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(collation="NOCASE"), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class BoardImage(Base):
    """Membership: an image may be on several boards; it leaves them when its row is removed."""

    __tablename__ = "board_images"

    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[float] = mapped_column(Float)
