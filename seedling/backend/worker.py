"""Worker entry point: `python -m seedling.backend.worker --data-dir data --model assets/default`.

Runs a Huey consumer with one worker thread (one model per process: scale with more processes
on Redis, not threads). `app.py` starts this as a supervised child process.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from seedling import DEFAULT_MODEL
from seedling.backend.settings import QUANTIZE_MODES, Settings
from seedling.configs import build_from
from seedling.storage.jobs_common import LEASE_S

log = logging.getLogger("seedling.backend.worker")

# Poll the SQLite queue every 20-50 ms: an idle poll is one indexed SELECT, and it bounds the
# submit -> start latency (huey's default backs off to 10 s).
POLL_INITIAL_S = 0.02
POLL_MAX_S = 0.05
LOCK_TIMEOUT_S = 150.0  # a worker of an earlier app run may be finishing its job
EXIT_DATA_DIR = os.EX_CANTCREAT  # the data folder cannot be written (read-only, disk full)
EXIT_LOCKED = os.EX_TEMPFAIL  # another worker serves this data folder's SQLite queue


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Seedling Studio job worker (Huey consumer)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    # dest: each option that sets a Settings field is stored under that field's name
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, dest="model_path")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quantize", default="none", choices=QUANTIZE_MODES)
    p.add_argument("--redis", default=None, metavar="URL", dest="redis_url")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    p.add_argument("--worker-id", default=None, help="the name this worker's job leases carry")
    p.add_argument("--lease-s", type=float, default=LEASE_S, help="seconds a job's lease lasts unrenewed")
    return p.parse_args(argv)


def _exit_with_parent(parent_pid: int) -> None:
    """Ask the consumer to stop (SIGINT: finish the running step, then exit) if the app dies."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            log.warning("app process %d is gone; stopping the worker", parent_pid)
            os.kill(os.getpid(), signal.SIGINT)
            return


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    settings = build_from(Settings, args)
    from seedling.backend import worker_status
    from seedling.backend.services import build_services  # after logging is set up
    from seedling.backend.supervisor import WorkerLock
    from seedling.storage.files import StorageError, ensure_writable

    try:
        ensure_writable(settings.data_dir, settings.files_dir)
    except StorageError as err:
        log.error("%s", err)
        return EXIT_DATA_DIR
    lock = None
    if not settings.redis_url:  # the SQLite queue has one worker per data folder
        lock = WorkerLock(settings.data_dir)
        if not lock.acquire(LOCK_TIMEOUT_S):
            log.error("worker %s already serves %s; not starting a second one", lock.holder(), args.data_dir)
            return EXIT_LOCKED
    services = build_services(settings, warm_up=True)
    worker_status.report(settings.data_dir, services.runtime.owner, "starting")
    if lock is not None and (swept := services.files.sweep_temp_files()):
        log.info("removed %d temporary files left by an interrupted write", swept)
    # Outputs written by a worker killed before it committed them: at once when this is the only
    # worker; with Redis only long-abandoned ones (another worker may be between the two writes).
    if orphans := services.history.sweep_orphan_outputs(0.0 if lock is not None else 20 * settings.lease_s):
        log.info("removed %d result files of jobs interrupted before they were recorded", orphans)
    if args.parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid,), daemon=True).start()
    # Leases: renew the running job's, requeue jobs of workers that stopped renewing theirs.
    services.runtime.start_heartbeat(threading.Event())
    if lock is not None:  # sole worker of this folder: wake-ups lost in a crash are put back
        services.jobs.requeue_interrupted(owners=())
    consumer = services.huey.create_consumer(
        workers=1,
        periodic=False,
        initial_delay=POLL_INITIAL_S,
        backoff=1.15,
        max_delay=POLL_MAX_S,
    )
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
