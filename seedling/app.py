"""Seedling Studio (`python app.py` or `seedling-studio`) starts the job worker and the Gradio UI on 127.0.0.1:7860.

The worker (a Huey consumer, `python -m seedling.backend.worker`) runs as a child process that this
process supervises: restarted if it dies, stopped when the app stops. See docs/app.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from seedling import DEFAULT_MODEL
from seedling.backend.settings import QUANTIZE_MODES, WATCH_MODES, Settings

log = logging.getLogger("seedling")
SHARE_USER = "seedling"
MAX_UPLOAD_MB = 50.0  # pictures, or a zip of a training set


def serve_only_from(data_dir: Path) -> Path:
    """Gradio keeps uploads and copies of results in its temp folder and serves files from there:
    put that folder inside the data folder, so every file the app serves lies in it."""
    temp = (data_dir / "gradio").resolve()  # gradio creates it on the first upload
    os.environ["GRADIO_TEMP_DIR"] = str(temp)  # read when gradio is imported, so set it first
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(temp / "examples")  # also served; none cached today
    return temp


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Seedling Studio: a local image generation studio")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="history database, images, queue")
    p.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: %(default)s)"
    )
    p.add_argument("--device", default="cpu", help='torch device for the worker, e.g. "cpu" or "cuda"')
    p.add_argument("--quantize", default="none", choices=QUANTIZE_MODES)
    p.add_argument(
        "--share", action="store_true", help="public Gradio link; requires --auth or makes a password"
    )
    p.add_argument("--auth", default=None, metavar="USER:PASS", help="require this login")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=MAX_UPLOAD_MB,
        help=f"largest file an upload may be, in MB (default {MAX_UPLOAD_MB:g})",
    )
    p.add_argument(
        "--redis", default=None, metavar="URL", help="Huey on Redis (several workers) instead of SQLite"
    )
    p.add_argument("--max-queue", type=int, default=32, help="jobs waiting or running before 'queue full'")
    p.add_argument(
        "--watch",
        default="push",
        choices=WATCH_MODES,
        help="how waiting requests learn of job changes: one reader per process (push, default) or "
        "each request polling the database every 0.1 s (poll: the old path, for benchmarks)",
    )
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="do not start a worker here (workers run elsewhere, with --redis)",
    )
    p.add_argument(
        "--pe-model",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="a local causal LM folder (transformers) for prompt expansion; default: the grounded expander",
    )
    return p.parse_args(argv)


def resolve_auth(auth: str | None, share: bool) -> tuple[str, str] | None:
    """--auth user:pass, or for --share without it a generated password printed once."""
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            raise SystemExit("--auth must look like user:password")
        return user, password
    if share:
        password = secrets.token_urlsafe(12)
        print(f"--share without --auth: log in as '{SHARE_USER}' with password: {password}", flush=True)
        return SHARE_USER, password
    return None


def _stop_on_sigterm() -> None:
    """SIGTERM ends the app like Ctrl-C, so the worker is stopped on the way out."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s app %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = resolve_auth(args.auth, args.share)
    settings = Settings(
        data_dir=args.data_dir,
        model_path=args.model,
        device=args.device,
        quantize=args.quantize,
        redis_url=args.redis,
        max_queue=args.max_queue,
        pe_model=args.pe_model,
        watch=args.watch,
    )
    if not settings.model_path.is_dir():
        log.warning("model folder %s does not exist: jobs will fail until it does", settings.model_path)

    if not args.max_upload_mb > 0:
        raise SystemExit("--max-upload-mb must be a positive number")
    serve_only_from(settings.data_dir)
    from starlette.middleware import Middleware

    from seedling.backend.services import build_services
    from seedling.backend.supervisor import WorkerSupervisor, wait_for_previous_worker
    from seedling.storage.files import StorageError, ensure_writable
    from seedling.ui.blocks import build_ui
    from seedling.ui.login_page import HideApiInfoOnLogin

    try:  # a read-only or full data folder: say so and stop, rather than fail on every job
        ensure_writable(settings.data_dir, settings.files_dir)
    except StorageError as err:
        print(f"Seedling Studio cannot start. {err}", file=sys.stderr, flush=True)
        return os.EX_CANTCREAT
    if not args.no_worker and not settings.redis_url:
        wait_for_previous_worker(settings.data_dir)  # a killed app's worker finishes its job first
    services = build_services(settings)
    # SQLite queue: no worker is alive now, every running job was interrupted. Redis: workers
    # elsewhere may be running jobs; only those whose lease expired are requeued.
    services.jobs.requeue_interrupted(owners=() if settings.redis_url else None)
    supervisor = None
    if not args.no_worker:
        supervisor = WorkerSupervisor(
            settings.worker_args(), on_restart=lambda dead: services.jobs.requeue_interrupted(owners=[dead])
        )
        supervisor.start()
    _stop_on_sigterm()
    try:
        demo = build_ui(services)
        demo.queue(default_concurrency_limit=settings.max_queue)
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            auth=auth,
            allowed_paths=[str(settings.files_dir.resolve())],
            max_file_size=int(args.max_upload_mb * 1024 * 1024),
            ssr_mode=False,
            # each waiting request holds a thread while it waits (on the job reader or, with
            # --watch poll, in its sleep): room for a full queue of them plus everything else
            max_threads=40 + settings.max_queue,
            # Every refusal is a sentence: Gradio's own (a file path no one uploaded, a malformed
            # value) too, not an empty {"error": null}. Our handlers raise gr.Error sentences.
            show_error=True,
            app_kwargs={"middleware": [Middleware(HideApiInfoOnLogin)]},
            footer_links=["api", "settings"],
        )
    except KeyboardInterrupt:
        pass
    finally:
        if supervisor is not None:
            supervisor.stop()
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
