"""Backend job runs, deterministic: MemoryHuey + execute_next in this process, tiny model."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from seedling.backend.errors import InvalidJob, QueueFull
from seedling.backend.huey_app import make_memory_huey
from seedling.backend.parameters import restore_parameters
from seedling.backend.services import build_services
from seedling.backend.specs import make_spec
from seedling.storage.files import pixel_hash, sha256_file
from seedling.storage.jobs_common import JobStatus
from seedling.storage.pngmeta import read_parameters
from tests.conftest import drain, execute_next


def _generate(services, **fields):
    spec = make_spec("generate", **({"prompt": "a red fox", "seed": 7, "steps": 1} | fields))
    job = services.jobs.submit(spec)
    execute_next(services.huey)
    return services.jobs.view(job.id)


def test_generate_stores_files_rows_parameters_and_timings(services, monkeypatch):
    from seedling.backend import runners

    monkeypatch.setattr(runners, "PREVIEW_EVERY_S", True)  # a preview at every step but the last
    view = _generate(services, num_outputs=2, steps=2)
    assert view.job.status == JobStatus.SUCCEEDED, view.job.error
    assert [im.output_index for im in view.images] == [0, 1]
    for im in view.images:
        path = services.history.path(im)
        assert sha256_file(path) == im.sha256 and (im.width, im.height) == (128, 128)
        with Image.open(path) as png:
            restored = restore_parameters(read_parameters(png))
        assert (restored.prompt, restored.seed, restored.steps, restored.kind) == (
            "a red fox",
            7,
            2,
            "generate",
        )
        assert (restored.width, restored.height, restored.num_outputs) == (128, 128, 2)
    assert view.job.progress_step == view.job.progress_total == 2
    assert {"queue_wait", "save", "submit_to_saved"} <= view.job.timings.keys()
    assert services.jobs.preview(view.job.id) is not None


def test_job_row_exists_before_the_message_is_queued(settings, shared_model_host_loader):
    seen = []
    svc = build_services(settings, huey=make_memory_huey(), loader=shared_model_host_loader)
    enqueue = svc.jobs._enqueue
    svc.jobs._enqueue = lambda job_id: (seen.append(svc.jobs.get(job_id).status), enqueue(job_id))
    svc.jobs.submit(make_spec("generate", prompt="fox"))
    assert seen == [JobStatus.QUEUED]
    svc.close()


def test_rerun_reproduces_pixels_with_the_same_seed(services):
    first = _generate(services, seed=11)
    rerun = services.jobs.rerun(first.job.id)
    execute_next(services.huey)
    second = services.jobs.view(rerun.id)
    assert second.job.rerun_of == first.job.id and second.job.spec == first.job.spec
    assert [im.pixel_hash for im in second.images] == [im.pixel_hash for im in first.images]


def test_model_loads_once_per_worker(settings, shared_model_host_loader):
    calls = []

    def counting_loader(*args):
        calls.append(args)
        return shared_model_host_loader(*args)

    svc = build_services(settings, huey=make_memory_huey(), loader=counting_loader)
    for seed in range(2):
        svc.jobs.submit(make_spec("generate", prompt="fox", seed=seed, steps=1))
    assert drain(svc.huey) == 2 and len(calls) == 1
    svc.close()


def test_edit_of_a_history_image_links_lineage(services):
    source = _generate(services).images[0]
    # the UI hands back pixels, not ids: the same pixels resolve to the history image
    resolved = services.history.store_input(services.history.open(source.id))
    assert resolved.id == source.id
    job = services.jobs.submit(
        make_spec("edit", prompt="make it blue", source_image_id=resolved.id, image_guidance=1.5, steps=1)
    )
    execute_next(services.huey)
    (edited,) = services.jobs.view(job.id).images
    lineage = services.history.lineage(edited.id)
    assert [(r.image.id, r.role) for r in lineage.parents] == [(source.id, "source")]
    assert [r.image.id for r in services.history.lineage(source.id).children] == [edited.id]
    assert edited.task == "edit"


def test_inpaint_with_uploaded_source_and_mask(services):
    upload = services.history.store_input(Image.new("RGB", (128, 128), (0, 128, 255)))
    mask_img = Image.new("L", (128, 128), 0)
    mask_img.paste(255, (32, 32, 96, 96))
    mask = services.history.store_input(mask_img, origin="mask")
    assert (upload.origin, mask.origin) == ("upload", "mask")
    job = services.jobs.submit(
        make_spec("inpaint", prompt="a sun", source_image_id=upload.id, mask_image_id=mask.id, steps=1)
    )
    execute_next(services.huey)
    view = services.jobs.view(job.id)
    assert view.job.status == JobStatus.SUCCEEDED, view.job.error
    roles = {r.role: r.image.id for r in services.history.lineage(view.images[0].id).parents}
    assert roles == {"source": upload.id, "mask": mask.id}


def test_the_same_picture_as_two_references_composes(services):
    """Regression: the same picture in ref1 and ref2 is one image id; the job used to run to the
    end and then fail on the lineage edges' primary key."""
    ref = services.history.store_input(Image.new("RGB", (128, 128), "red"))
    job = services.jobs.submit(
        make_spec("compose", prompt="two of them", reference_image_ids=[ref.id, ref.id], steps=1)
    )
    execute_next(services.huey)
    view = services.jobs.view(job.id)
    assert view.job.status == JobStatus.SUCCEEDED, view.job.error
    parents = services.history.lineage(view.images[0].id).parents
    assert [(r.image.id, r.role, r.position) for r in parents] == [(ref.id, "reference", 0), (ref.id, "reference", 1)]


def test_compose_and_storyboard_lineage(services):
    refs = [services.history.store_input(Image.new("RGB", (128, 128), c)) for c in ("red", "green")]
    compose = services.jobs.submit(
        make_spec("compose", prompt="both together", reference_image_ids=[r.id for r in refs], steps=1)
    )
    story = services.jobs.submit(
        make_spec(
            "storyboard",
            prompt="a fox wakes; a fox runs; a fox sleeps",
            num_outputs=3,
            character_image_id=refs[0].id,
            steps=1,
        )
    )
    assert drain(services.huey) == 2
    (composed,) = services.jobs.view(compose.id).images
    parents = services.history.lineage(composed.id).parents
    assert [(r.image.id, r.role, r.position) for r in parents] == [
        (refs[0].id, "reference", 0),
        (refs[1].id, "reference", 1),
    ]
    panels = services.jobs.view(story.id).images
    assert len(panels) == 3
    first = services.history.lineage(panels[0].id).parents
    assert sorted((r.role, r.image.id) for r in first) == sorted(
        [("character", refs[0].id), ("sibling", panels[1].id), ("sibling", panels[2].id)]
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "generate", "prompt": "  "}, "prompt is required"),
        ({"kind": "generate", "prompt": "x", "height": 120}, "multiple of 16"),
        ({"kind": "generate", "prompt": "x", "steps": 0}, "steps"),
        ({"kind": "generate", "prompt": "x", "guidance": float("nan")}, "finite"),
        ({"kind": "edit", "prompt": "x"}, "source_image_id"),
        ({"kind": "compose", "prompt": "x", "reference_image_ids": [1, 2, 3, 4, 5]}, "at most 4"),
        (
            {"kind": "compose", "prompt": "x", "reference_image_ids": [1], "boxes": [[0.5, 0, 0.2, 1]]},
            "x0 < x1",
        ),
        ({"kind": "storyboard", "prompt": "x", "num_outputs": 7}, "num_outputs"),
        ({"kind": "generate", "prompt": "x", "positional": [1, 2]}, "Extra inputs"),
    ],
)
def test_invalid_specs_are_refused_before_queueing(services, fields, message):
    with pytest.raises(InvalidJob, match=message):
        services.jobs.submit_dict(fields)
    assert services.huey.pending_count() == 0


def test_missing_inputs_and_mask_size_are_refused_before_queueing(services):
    src = services.history.store_input(Image.new("RGB", (128, 128)))
    small_mask = services.history.store_input(Image.new("L", (64, 64), 255), origin="mask")
    with pytest.raises(InvalidJob, match="does not exist"):
        services.jobs.submit(make_spec("edit", prompt="x", source_image_id=999))
    with pytest.raises(InvalidJob, match="mask is 64x64"):
        services.jobs.submit(
            make_spec("inpaint", prompt="x", source_image_id=src.id, mask_image_id=small_mask.id)
        )
    assert services.huey.pending_count() == 0


def test_input_deleted_while_queued_fails_with_a_readable_error(services):
    src = services.history.store_input(Image.new("RGB", (128, 128), "purple"))
    job = services.jobs.submit(make_spec("edit", prompt="x", source_image_id=src.id))
    services.history.delete(src.id)
    execute_next(services.huey)
    failed = services.jobs.get(job.id)
    assert failed.status == JobStatus.FAILED and "does not exist" in failed.error


def test_cancel_while_running_stops_at_the_next_step(services):
    job = services.jobs.submit(make_spec("generate", prompt="fox", steps=3))
    store = services.runtime.jobs
    set_progress = store.set_progress

    def cancel_at_step_two(job_id, step, total, preview):
        set_progress(job_id, step, total, preview)
        if step == 2:
            services.jobs.cancel(job_id)  # what the UI's cancel button does

    store.set_progress = cancel_at_step_two
    execute_next(services.huey)
    view = services.jobs.view(job.id)
    assert view.job.status == JobStatus.CANCELLED and view.job.progress_step == 2 and view.images == []


def test_cancel_while_queued_never_runs(services):
    job = services.jobs.submit(make_spec("generate", prompt="fox"))
    assert services.jobs.cancel(job.id) == JobStatus.CANCELLED
    execute_next(services.huey)
    assert services.jobs.get(job.id).attempts == 0


def test_queue_is_bounded_and_reports_positions(services):
    ids = [
        services.jobs.submit(make_spec("generate", prompt="fox", seed=i, steps=1)).id
        for i in range(services.settings.max_queue)
    ]
    with pytest.raises(QueueFull, match="queue is full"):
        services.jobs.submit(make_spec("generate", prompt="one too many"))
    assert [services.jobs.view(i).queue_position for i in ids] == [1, 2, 3]
    services.jobs.cancel(ids[0])
    assert [services.jobs.view(i).queue_position for i in ids] == [None, 1, 2]
    services.jobs.submit(make_spec("generate", prompt="room again"))  # a cancelled job frees its place


def test_restart_requeues_interrupted_jobs_without_running_twice(settings, shared_model_host_loader):
    before = build_services(settings, huey=make_memory_huey(), loader=shared_model_host_loader)
    crashed = before.jobs.submit(make_spec("generate", prompt="fox", steps=1))
    waiting = before.jobs.submit(make_spec("generate", prompt="owl", steps=1))
    assert before.runtime.jobs.claim(crashed.id)  # the worker took it, then the machine died
    before.close()

    after = build_services(settings, huey=make_memory_huey(), loader=shared_model_host_loader)
    # the crashed job is requeued; both queued jobs get one wake-up each (the new queue is empty)
    assert after.jobs.requeue_interrupted() == [crashed.id] and len(after.huey.pending()) == 2
    after.jobs._enqueue(waiting.id)  # a stale duplicate message, as a persistent queue may hold
    assert drain(after.huey) == 3
    for job_id in (crashed.id, waiting.id):
        job = after.jobs.view(job_id)
        assert job.job.status == JobStatus.SUCCEEDED and len(job.images) == 1
    assert after.jobs.get(crashed.id).attempts == 2 and after.jobs.get(waiting.id).attempts == 1
    after.close()


def test_delete_removes_row_and_file(services):
    image = _generate(services).images[0]
    path = services.history.path(image)
    services.history.delete(image.id)
    assert not path.exists() and services.jobs.view(image.job_id).images == []


def test_verify_reports_damaged_files(services):
    image = _generate(services).images[0]
    assert services.history.verify() == []
    services.history.path(image).write_bytes(b"oops")
    assert [r.id for r in services.history.verify()] == [image.id]


def test_parameters_from_a_dropped_png(services, tmp_path):
    image = _generate(services, seed=99, guidance=3.5).images[0]
    restored = services.history.parameters_from_png(services.history.path(image))
    assert (restored.prompt, restored.seed, restored.guidance) == ("a red fox", 99, 3.5)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(ValueError, match="no generation parameters"):
        services.history.parameters_from_png(plain)


def test_pixel_hash_is_what_the_store_records(services):
    image = _generate(services).images[0]
    with Image.open(services.history.path(image)) as png:
        assert pixel_hash(png.convert("RGB")) == image.pixel_hash


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 0.0), ("0", 0.0), ("0.05", 0.05), ("-1", 0.0), ("slow", 0.0), ("1e9", 0.0)]
)
def test_injected_step_delay_reads_only_sane_values(monkeypatch, value, expected):
    from seedling.backend.context import STEP_DELAY_ENV, step_delay_s

    if value is None:
        monkeypatch.delenv(STEP_DELAY_ENV, raising=False)
    else:
        monkeypatch.setenv(STEP_DELAY_ENV, value)
    assert step_delay_s() == expected


def test_injected_step_delay_makes_each_step_last_at_least_that_long(settings, shared_model_host_loader, monkeypatch):
    """The crash tests' fault injection: a job of n steps takes at least n x the delay."""
    import time

    from seedling.backend.context import STEP_DELAY_ENV

    monkeypatch.setenv(STEP_DELAY_ENV, "0.1")
    svc = build_services(settings, huey=make_memory_huey(), loader=shared_model_host_loader)
    try:
        job = svc.jobs.submit(make_spec("generate", prompt="a slow owl", steps=4))
        started = time.monotonic()
        execute_next(svc.huey)
        elapsed = time.monotonic() - started
        assert svc.jobs.get(job.id).status == JobStatus.SUCCEEDED and elapsed >= 0.4
    finally:
        svc.close()


def test_waiting_jobs_are_told_what_start_up_is_doing(tmp_path, tiny_model_dir):
    """Regression: on a first start the worker compiled kernels for minutes while jobs only said
    "waiting in the queue"."""
    import subprocess
    import sys

    from seedling.backend import worker_status
    from seedling.backend.model_host import ModelHost
    from seedling.storage.jobs_common import JobRecord
    from seedling.ui.common import _status_line

    assert worker_status.waiting_because(tmp_path) is None  # no worker has said anything
    worker_status.report(tmp_path, "w1", "loading the model tiny")
    why = worker_status.waiting_because(tmp_path)
    assert why.startswith("loading the model tiny (for ")
    job = JobRecord(id=4, kind="generate", status=JobStatus.QUEUED, spec={}, created_at=0.0)
    assert _status_line(job, 1, why).startswith("Job 4: waiting in the queue (position 1); the worker is loading")
    assert worker_status.phase(tmp_path, "w2") is None  # not reported yet
    worker_status.report(tmp_path, "w2", worker_status.READY)
    assert worker_status.waiting_because(tmp_path) is None  # one worker takes jobs: nothing to explain
    assert worker_status.phase(tmp_path, "w2") == worker_status.READY
    assert worker_status.phase(tmp_path, "w1") == "loading the model tiny"
    # a worker that died while loading is not reported (its file is removed)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True)
    (tmp_path / "workers" / "w2.json").unlink()
    status = tmp_path / "workers" / "w1.json"
    status.write_text(status.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead.stdout.strip()}'))
    assert worker_status.waiting_because(tmp_path) is None and not status.exists()
    # the phase names the kernel build when it is still to come
    host = ModelHost(tiny_model_dir, "cpu", "none")
    phases = []
    host.get(phases.append)
    assert phases and phases[0].startswith(f"loading the model {tiny_model_dir.name}")


def test_restarts_do_not_multiply_queue_messages(settings):
    """Regression: every worker restart re-enqueued all queued jobs (55 duplicate messages after 3
    kills). On the persistent SQLite queue a restart now adds only the wake-ups that are missing."""
    services = build_services(settings)  # SqliteHuey in the data folder, as the app runs it
    try:
        ids = [services.jobs.submit(make_spec("generate", prompt=f"fox {i}", steps=1)).id for i in range(3)]
        assert len(services.huey.pending()) == 3
        for _ in range(3):
            services.jobs.requeue_interrupted(owners=["a-dead-worker"])
        assert len(services.huey.pending()) == 3
        services.huey.dequeue()  # a worker took a message and died before it claimed the job
        services.jobs.requeue_interrupted()
        assert len(services.huey.pending()) == 3 and services.jobs.get(ids[0]).status == JobStatus.QUEUED
    finally:
        services.close()
