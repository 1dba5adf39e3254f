"""Helpers shared by the process-level tests and scripts/reliability.py: bounded waits, the
stores of a data folder opened from outside the app, a read-only folder that stops root too."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from seedling.storage.adapters_sqlite import SqliteAdapterStore
from seedling.storage.db import Database
from seedling.storage.files import TEMP_GLOB, sha256_file
from seedling.storage.images_sqlite import SqliteImageStore
from seedling.storage.jobs_sqlite import SqliteJobStore

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.05) -> T:
    """Poll until predicate() is truthy (returned), at most timeout_s; AssertionError otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


@dataclass
class Stores:
    """A data folder's history database, opened read/write from outside the app (WAL allows it)."""

    db: Database
    jobs: SqliteJobStore
    images: SqliteImageStore
    adapters: SqliteAdapterStore


@contextmanager
def open_stores(data_dir: Path) -> Iterator[Stores]:
    db = Database(Path(data_dir) / "history.db")
    try:
        yield Stores(db, SqliteJobStore(db), SqliteImageStore(db), SqliteAdapterStore(db))
    finally:
        db.dispose()


def job_with_prompt(stores: Stores, prompt: str):
    """The newest job whose spec has this prompt, or None."""
    for job in stores.jobs.list(limit=500):
        if job.spec.get("prompt") == prompt:
            return job
    return None


def running_mid_job(stores: Stores, prompt: str, attempt: int | None = None):
    """The job with this prompt once it runs and has finished a step (a kill now is mid-job)."""
    job = job_with_prompt(stores, prompt)
    if job is None or job.status != "running" or job.progress_step < 1:
        return None
    return job if attempt is None or job.attempts == attempt else None


def file_report(stores: Stores, files_root: Path) -> dict:
    """Every history image's file exists and matches its sha256; no temporary (half-written)
    file is left; files no row points at (orphans) are counted."""
    images = stores.images.all()
    bad = [im.id for im in images if sha256_file_or_none(files_root / im.file_path) != im.sha256]
    referenced = {(files_root / im.file_path).resolve() for im in images}
    on_disk = [p.resolve() for p in (files_root / "images").rglob("*.png")] if files_root.exists() else []
    temps = list(files_root.rglob(TEMP_GLOB)) if files_root.exists() else []
    return {
        "images": len(images),
        "hash_mismatch_or_missing": len(bad),
        "rows_pointing_at_temp_files": sum(1 for im in images if im.file_path.endswith(".tmp")),
        "orphan_files": sum(1 for p in on_disk if p not in referenced),
        "temp_files_left": len(temps),
        "hashes": {im.id: im.sha256 for im in images},
    }


def sha256_file_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def vm_rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


@contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make `folder` and every folder under it refuse new files, for root too, and yield how.

    Permission bits do not stop root (CAP_DAC_OVERRIDE), so as root the folders get the
    immutable attribute (`chattr +i`, needs CAP_LINUX_IMMUTABLE); otherwise `chmod a-w`."""
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", *map(str, folders)], check=True, capture_output=True)
        try:
            yield "chattr +i (running as root: chmod would not stop root's writes)"
        finally:
            subprocess.run(["chattr", "-i", *map(str, folders)], check=True, capture_output=True)
        return
    modes = {p: p.stat().st_mode for p in folders}
    for p in folders:
        p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield "chmod a-w"
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def can_make_read_only(tmp: Path) -> bool:
    """True if read_only() really stops writes here (root without chattr support does not)."""
    probe = tmp / "ro-probe"
    probe.mkdir(parents=True, exist_ok=True)
    try:
        with read_only(probe):
            try:
                (probe / "x").write_bytes(b"x")
            except OSError:
                return True
            (probe / "x").unlink()
            return False
    except (OSError, subprocess.CalledProcessError):
        return False


def logged_in_http(url: str, auth: tuple[str, str]):
    """An httpx session logged in to a Gradio app started with --auth."""
    import httpx

    http = httpx.Client(base_url=url.rstrip("/"), timeout=60, trust_env=False)
    r = http.post("/login", data={"username": auth[0], "password": auth[1]})
    assert r.status_code == 200, r.text
    return http


def raw_call(http, client, api_name: str, **values) -> str:
    """Call a named endpoint over plain HTTP with values sent exactly as given (gradio_client would
    upload a FileData path from the *client's* disk, which never tests the server). Parameters not
    named take their defaults. Returns the event stream's text."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"][api_name][
        "parameters"
    ]
    unknown = set(values) - {p["parameter_name"] for p in params}
    assert not unknown, f"{api_name} has no parameters {sorted(unknown)}"
    data = [values.get(p["parameter_name"], p.get("parameter_default")) for p in params]
    name = api_name.lstrip("/")
    r = http.post(f"/gradio_api/call/{name}", json={"data": data})
    assert r.status_code == 200, r.text
    return http.get(f"/gradio_api/call/{name}/{r.json()['event_id']}").text


def error_message(events: str) -> str | None:
    """The message of the first error event in an event stream (None when it has none, or when
    the error came without a message: the `{"error": null}` a person cannot act on)."""
    if "event: error" not in events:
        return None
    data = events.split("event: error", 1)[1].split("data:", 1)[1].split("\n", 1)[0].strip()
    try:
        value = json.loads(data)
    except ValueError:
        return data or None
    if isinstance(value, dict):
        value = value.get("error") or value.get("message")
    return str(value) if value else None


def finished_inpaint(services, prompt: str, colour, box=(16, 32, 80, 96), timeout_s: float = 120):
    """(job, output image) of an inpaint job on the app's own queue, as the Edit tab makes one: a
    128 px `colour` source with `box` painted as the mask; waits for the app's worker to run it."""
    from PIL import Image

    from seedling.backend.specs import make_spec

    source = services.history.store_input(Image.new("RGB", (128, 128), colour))
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, box)
    mask_row = services.history.store_input(mask, "mask")
    job = services.jobs.submit(
        make_spec("inpaint", prompt=prompt, source_image_id=source.id, mask_image_id=mask_row.id)
    )
    wait_for(lambda: services.jobs.get(job.id).status.finished, timeout_s, f"inpaint job {job.id} to end", 0.2)
    (image,) = services.jobs.view(job.id).images
    return job, image
