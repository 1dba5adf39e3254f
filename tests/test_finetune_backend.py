"""Fine-tune jobs on the queue (MemoryHuey + execute_next, tiny model): the adapter row and file,
generation with adapters (PNG parameters, history), clear errors, delete, and generation jobs
running in between the chunks of a training job."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from seedling.backend import finetune_runner
from seedling.backend.errors import InvalidJob
from seedling.backend.huey_app import make_memory_huey
from seedling.backend.services import build_services
from seedling.backend.settings import Settings
from seedling.backend.specs import make_spec
from seedling.model.finetune_data import CaptionedImage
from seedling.storage.files import sha256_file
from seedling.storage.jobs_common import JobStatus
from seedling.storage.pngmeta import read_parameters
from tests.conftest import execute_next

TRAIN = {"steps": 4, "batch_size": 4, "rank": 4, "sample_every": 2, "learning_rate": 0.05}


@pytest.fixture
def settings(tmp_path, trainable_model_dir):
    return Settings(data_dir=tmp_path / "data", model_path=trainable_model_dir, max_queue=8)


@pytest.fixture
def services(settings, trainable_loader):
    svc = build_services(settings, huey=make_memory_huey(), loader=trainable_loader)
    yield svc
    svc.close()


def examples(n: int = 6) -> list[CaptionedImage]:
    out = []
    for i in range(n):
        im = Image.new("RGB", (96, 96), (240, 200 - 20 * i, 40))
        ImageDraw.Draw(im).rectangle((20, 20, 70, 70), outline=(0, 0, 0), width=6)
        out.append(CaptionedImage(f"{i}.png", im, f"a framed square number {i}"))
    return out


def train(services, name="boxes", **params):
    job = services.finetune.submit(name, examples(), **(TRAIN | params))
    execute_next(services.huey)
    return services.jobs.view(job.id).job


def test_finetune_job_records_the_adapter_its_data_params_and_loss(services):
    job = train(services)
    assert job.status == JobStatus.SUCCEEDED, job.error
    adapter = services.adapters.for_job(job.id)
    assert (
        adapter.name == "boxes"
        and adapter.kind == "lora"
        and adapter.base_model == services.settings.model_path.name
    )
    assert [d["caption"] for d in adapter.data] == [f"a framed square number {i}" for i in range(6)]
    assert all(services.history.get(d["image_id"]).origin == "upload" for d in adapter.data)
    assert adapter.params["rank"] == 4 and adapter.params["steps"] == 4
    assert [step for step, _ in adapter.metrics["loss"]] == [1, 2, 3, 4] and adapter.metrics["final_loss"] > 0
    path = services.files.path(adapter.file_path)  # peft's folder form, read by PeftModel.from_pretrained
    assert sha256_file(path / "adapter_model.safetensors") == adapter.sha256
    assert (path / "adapter_config.json").is_file()
    assert job.metrics["step_s"] > 0 and job.metrics["eta_s"] is None
    assert job.metrics["adapter_id"] == adapter.id and len(job.metrics["loss"]) == 4
    assert job.metrics["sample_prompts"][0] == "a framed square number 0" and job.metrics["sample_step"] == 4
    assert services.jobs.preview(job.id) is not None  # the samples grid
    assert (job.progress_step, job.progress_total) == (4, 4) and job.timings["train"] > 0
    assert not list((services.files.root / "work").glob("job-*"))  # scratch removed


def test_generation_with_adapters_records_them_and_leaves_the_model_as_it_was(services):
    adapter = services.adapters.for_job(train(services).id)
    pipe = services.runtime.model.get()
    before = {k: v.clone() for k, v in pipe.dit.state_dict().items()}

    def generate(adapters):
        job = services.jobs.submit(
            make_spec("generate", prompt="a framed square", seed=3, steps=2, adapters=adapters)
        )
        execute_next(services.huey)
        view = services.jobs.view(job.id)
        assert view.job.status == JobStatus.SUCCEEDED, view.job.error
        return view.images[0]

    plain, styled = generate([]), generate([(adapter.id, 1.5)])
    assert all(torch.equal(v, before[k]) for k, v in pipe.dit.state_dict().items())
    a = np.asarray(services.history.open(plain.id), dtype=np.int16)
    b = np.asarray(services.history.open(styled.id), dtype=np.int16)
    assert np.abs(a - b).max() > 0
    assert styled.adapter_id == adapter.id and plain.adapter_id is None
    assert styled.params["adapters"] == [{"adapter_id": adapter.id, "strength": 1.5}]
    assert styled.params["adapter_names"] == ["boxes"]
    with Image.open(services.history.path(styled)) as png:
        text = read_parameters(png)
    assert f'Adapters: "boxes (#{adapter.id}): 1.5"' in text
    assert services.history.parameters_from_png(services.history.path(styled)).adapters == (
        (adapter.id, 1.5),
    )
    from seedling.storage.images_common import ImageQuery

    assert [im.id for im in services.history.search(ImageQuery(adapter_id=adapter.id))] == [styled.id]


def test_unknown_or_deleted_adapters_are_clear_errors(services):
    with pytest.raises(InvalidJob, match="adapter #999 does not exist"):
        services.jobs.submit(make_spec("generate", prompt="fox", adapters=[(999, 1.0)]))
    adapter = services.adapters.for_job(train(services).id)
    job = services.jobs.submit(make_spec("generate", prompt="fox", steps=1, adapters=[(adapter.id, 1.0)]))
    deleted = services.adapters.delete(adapter.id)
    assert not services.files.path(deleted.file_path).exists()
    assert not services.files.path(deleted.file_path).with_suffix(".json").exists()
    assert services.adapters.list() == []
    execute_next(services.huey)
    failed = services.jobs.get(job.id)
    assert failed.status == JobStatus.FAILED and f"adapter #{adapter.id} does not exist" in failed.error


def test_submit_refuses_bad_training_sets(services):
    with pytest.raises(InvalidJob, match="no training images"):
        services.finetune.submit("x", [])
    no_caption = [CaptionedImage("a.png", examples()[0].image, "")]
    with pytest.raises(InvalidJob, match="a.png: no caption"):
        services.finetune.submit("x", no_caption)
    small = services.history.store_input(Image.new("RGB", (40, 40), "red"))
    with pytest.raises(InvalidJob, match=f"training image #{small.id} is 40x40"):
        services.jobs.submit(
            make_spec("finetune", name="x", images=[{"image_id": small.id, "caption": "red"}])
        )
    with pytest.raises(InvalidJob, match="give the adapter a name"):
        services.finetune.submit("../../etc", examples())
    train(services, name="taken")
    with pytest.raises(InvalidJob, match="already exists"):
        services.finetune.submit("taken", examples())


def test_generation_runs_between_training_chunks(services, monkeypatch):
    monkeypatch.setattr(finetune_runner, "MIN_CHUNK_S", 0.0)
    ft = services.finetune.submit("chunks", examples(), **(TRAIN | {"steps": 6, "sample_every": 0}))
    gen = services.jobs.submit(make_spec("generate", prompt="fox", steps=1))
    assert services.jobs.view(gen.id).queue_position == 2

    execute_next(services.huey)  # the fine-tune job: one step, then it sees the generation waiting
    ft_view, gen_view = services.jobs.view(ft.id), services.jobs.view(gen.id)
    assert ft_view.job.status == JobStatus.QUEUED and ft_view.job.progress_step == 1
    assert (gen_view.queue_position, ft_view.queue_position) == (1, 2)  # the trainer went to the back

    execute_next(services.huey)  # the generation
    assert services.jobs.get(gen.id).status == JobStatus.SUCCEEDED
    execute_next(services.huey)  # training resumes from its checkpoint; nobody waits now
    done = services.jobs.get(ft.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert [s for s, _ in done.metrics["loss"]] == list(range(1, 7)) and done.attempts == 1


def test_a_restart_resumes_a_yielded_training_job(settings, trainable_loader, monkeypatch):
    monkeypatch.setattr(finetune_runner, "MIN_CHUNK_S", 0.0)
    first = build_services(settings, huey=make_memory_huey(), loader=trainable_loader)
    ft = first.finetune.submit("resumed", examples(), **(TRAIN | {"sample_every": 0}))
    first.jobs.submit(make_spec("generate", prompt="fox", steps=1))
    execute_next(first.huey)  # trains a step, checkpoints, yields; then the app "stops"
    assert first.jobs.get(ft.id).progress_step == 1
    first.close()

    second = build_services(settings, huey=make_memory_huey(), loader=trainable_loader)
    assert second.jobs.requeue_interrupted() == []  # it had yielded: queued, not interrupted...
    assert len(second.huey.pending()) == 2  # ...and the new queue gets a wake-up for each queued job
    while (task := second.huey.dequeue()) is not None:
        second.huey.execute(task)
    job = second.jobs.get(ft.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert len(job.metrics["loss"]) == 4
    assert second.adapters.for_job(ft.id).name == "resumed"
    second.close()


def test_cancelled_between_chunks_leaves_no_scratch(services, monkeypatch):
    monkeypatch.setattr(finetune_runner, "MIN_CHUNK_S", 0.0)
    ft = services.finetune.submit("gone", examples(), **(TRAIN | {"sample_every": 0}))
    services.jobs.submit(make_spec("generate", prompt="fox", steps=1))
    execute_next(services.huey)
    assert services.jobs.cancel(ft.id) == JobStatus.CANCELLED  # it was queued: cancelled at once
    assert (services.files.root / "work" / f"job-{ft.id}").exists()
    execute_next(services.huey)  # the generation
    execute_next(services.huey)  # the stale fine-tune message: not claimable, skipped
    train(services, name="next")  # the next fine-tune job sweeps finished jobs' scratch
    assert not (services.files.root / "work" / f"job-{ft.id}").exists()
    assert services.adapters.list()[0].name == "next"


def test_parameters_png_roundtrip_without_adapters_stays_compatible():
    from seedling.backend.parameters import restore_parameters

    restored = restore_parameters("a fox\nSteps: 4, Seed: 1, Size: 128x128")
    assert restored.adapters == () and restored.seed == 1


def test_a_waiting_finetune_job_does_not_make_training_yield(services, monkeypatch):
    monkeypatch.setattr(finetune_runner, "MIN_CHUNK_S", 0.0)
    first = services.finetune.submit("first", examples(), **(TRAIN | {"sample_every": 0}))
    second = services.finetune.submit("second", examples()[:4], **(TRAIN | {"sample_every": 0}))
    execute_next(services.huey)  # FIFO among trainings: the first one finishes in one turn
    assert services.jobs.get(first.id).status == JobStatus.SUCCEEDED
    assert services.jobs.get(second.id).status == JobStatus.QUEUED


def test_stop_keeps_the_adapter_trained_so_far_and_cancel_before_a_step_keeps_nothing(services, monkeypatch):
    from seedling.model.adapters import load_adapter

    job = services.finetune.submit("halfway", examples(), **(TRAIN | {"steps": 8, "sample_every": 0}))
    real = finetune_runner.time.monotonic
    stops = []

    def stop_after_step_3():  # asks for Stop from "the UI" once step 3 is reported
        view = services.jobs.get(job.id)
        if view.progress_step == 3 and not stops:
            stops.append(services.finetune.stop(job.id))
        return real()

    monkeypatch.setattr(finetune_runner.time, "monotonic", stop_after_step_3)
    execute_next(services.huey)
    done = services.jobs.view(job.id).job
    assert done.status == JobStatus.SUCCEEDED, done.error
    adapter = services.adapters.for_job(job.id)
    assert adapter.metrics["stopped_at"] in (3, 4) and adapter.metrics["planned_steps"] == 8
    assert done.metrics["stopped_at"] == adapter.metrics["stopped_at"]
    loaded = load_adapter(services.files.path(adapter.file_path))  # a usable adapter
    assert loaded.metadata["stopped_at"] == adapter.metrics["stopped_at"]
    assert not list((services.files.root / "work").glob("job-*"))
    with pytest.raises(InvalidJob, match="already ended"):
        services.finetune.stop(job.id)

    queued = services.finetune.submit("never", examples(), **TRAIN)
    services.finetune.stop(queued.id)  # before its first step: nothing to keep
    execute_next(services.huey)
    assert services.jobs.get(queued.id).status == JobStatus.CANCELLED
    assert services.adapters.for_job(queued.id) is None


def test_old_single_file_adapters_still_load_and_delete(services, tmp_path):
    from seedling.model.adapters import load_adapter, save_adapter

    job = train(services)
    record = services.adapters.for_job(job.id)
    folder = services.files.path(record.file_path)
    old = save_adapter(load_adapter(folder), folder.with_suffix(".safetensors"))  # the pre-peft layout
    assert load_adapter(old).tensors.keys() == load_adapter(folder).tensors.keys()
    services.adapters.delete(record.id)
    assert not folder.exists()
