"""The whole UI: the tabs, the History actions that reach into other tabs, and API-only endpoints.

The Fine-tune tab's adapters appear in every generation tab's Adapters list (and History's
adapter filter): they reload on page load, after a training run, after a delete, and on Refresh.
"""

from __future__ import annotations

import gradio as gr
from gradio.exceptions import InvalidPathError

from seedling.backend.errors import JobError
from seedling.backend.services import Services
from seedling.storage.images_common import ImageRecord
from seedling.ui import compose_tab, edit_tab, finetune_tab, generate_tab, history_tab, storyboard_tab
from seedling.ui.common import PRIVATE, api_call, model_event, run_and_watch

TAB_FOR_KIND = {
    "generate": "generate",
    "edit": "edit",
    "inpaint": "edit",
    "compose": "compose",
    "style": "compose",
    "storyboard": "storyboard",
}


# What a file argument that names no upload is told (a path on the server, a URL, a NUL byte).
NOT_AN_UPLOAD = (
    "Every picture or file must be uploaded to this app; a path on the server, a URL or a file "
    "name with a NUL byte is refused. Upload the file and try again."
)


class StudioBlocks(gr.Blocks):
    """gr.Blocks whose refusal of a file argument that no one uploaded is a sentence that says what
    to do, not Gradio's internal path text (or an empty error when show_error is off)."""

    async def preprocess_data(self, *args, **kwargs):
        try:
            return await super().preprocess_data(*args, **kwargs)
        except gr.Error:
            raise
        except InvalidPathError:
            raise gr.Error(NOT_AN_UPLOAD) from None
        except ValueError as err:
            if "null byte" in str(err):
                raise gr.Error(NOT_AN_UPLOAD) from None
            raise


def build_ui(services: Services) -> gr.Blocks:
    with StudioBlocks(title="Seedling Studio") as demo:
        gr.Markdown("## Seedling Studio")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                gen = generate_tab.build(services)
            with gr.Tab("Edit", id="edit", elem_id="tab-edit"):
                edit = edit_tab.build(services)
            with gr.Tab("Compose", id="compose", elem_id="tab-compose"):
                compose = compose_tab.build(services)
            with gr.Tab("Storyboard", id="storyboard", elem_id="tab-storyboard"):
                story = storyboard_tab.build(services)
            with gr.Tab("Fine-tune", id="finetune", elem_id="tab-finetune"):
                finetune = finetune_tab.build(services)
            with gr.Tab("History", id="history", elem_id="tab-history") as history_item:
                hist = history_tab.build(services)
        _wire_history_actions(services, tabs, hist, gen, edit, compose, story)
        history_item.select(hist.search, hist.query, [hist.gallery, hist.ids], api_visibility=PRIVATE)
        demo.load(hist.adapter_choices, None, hist.adapter, api_visibility=PRIVATE)
        _wire_adapter_lists(services, demo, finetune, hist, [gen, edit, compose, story])
        _api_endpoints(services)
    return demo


def _wire_adapter_lists(services: Services, demo, finetune, hist, tabs) -> None:
    pickers = [tab.adapter_picker.adapters for tab in tabs if tab.adapter_picker is not None]
    lists = [*pickers, finetune.adapter_list]

    def reload(*selected):
        return (
            *[finetune_tab.adapter_dropdown_update(services, keep) for keep in selected],
            hist.adapter_choices(),
        )

    kwargs = {"fn": reload, "inputs": lists, "outputs": [*lists, hist.adapter], "api_visibility": PRIVATE}
    demo.load(**kwargs)
    finetune.refresh.click(**kwargs)
    finetune.deleted.success(**kwargs)
    finetune.trained.then(**kwargs)


def _selected(services: Services, image_id) -> ImageRecord:
    if image_id is None:
        raise gr.Error("Select an image in History first.")
    try:
        return services.history.get(image_id)
    except JobError:
        raise gr.Error(f"Image #{image_id} no longer exists.") from None


def _wire_history_actions(services, tabs, hist, gen, edit, compose, story) -> None:
    def send_to_edit(image_id):
        path = str(services.history.path(_selected(services, image_id)))
        return {"background": path, "layers": [], "composite": path}, gr.Tabs(selected="edit")

    hist.send_to_edit.click(send_to_edit, hist.selected_id, [edit.editor, tabs], api_visibility=PRIVATE)

    def send_to_compose(image_id, *slots):
        path = str(services.history.path(_selected(services, image_id)))
        free = next((i for i, slot in enumerate(slots) if slot is None), len(slots) - 1)
        return (*[path if i == free else gr.skip() for i in range(len(slots))], gr.Tabs(selected="compose"))

    hist.send_to_compose.click(
        send_to_compose, [hist.selected_id, *compose.refs], [*compose.refs, tabs], api_visibility=PRIVATE
    )

    tab_fields = {
        "generate": (gen.param_outputs, generate_tab.values_from_params),
        "edit": (edit.param_outputs, edit_tab.values_from_params),
        "compose": (compose.param_outputs, compose_tab.values_from_params),
        "storyboard": (story.param_outputs, storyboard_tab.values_from_params),
    }
    reuse_outputs = [c for outputs, _ in tab_fields.values() for c in outputs] + [
        edit.editor,
        *compose.refs,
        tabs,
    ]

    def reuse(image_id):
        """Fill the tab that made the image with its parameters (and input images)."""
        image = _selected(services, image_id)
        target = TAB_FOR_KIND.get(image.params.get("kind", "generate"), "generate")
        values: list = []
        for name, (outputs, from_params) in tab_fields.items():
            values += from_params(image.params) if name == target else [gr.skip()] * len(outputs)
        lineage = services.history.lineage(image.id).parents
        parents = [r for r in lineage if r.role in ("source", "reference", "style")]
        paths = [str(services.history.path(r.image)) for r in parents]
        editor = gr.skip()
        if target == "edit" and parents:
            # an inpaint image brings its mask back, painted on the source: the next Edit is the
            # same masked edit, not a whole-image edit
            mask = next((r for r in lineage if r.role == "mask"), None)
            editor = edit_tab.editor_value(
                services.history.open(parents[0].image.id),
                services.history.open(mask.image.id) if mask is not None else None,
            )
        refs = [
            paths[i] if target == "compose" and i < len(paths) else gr.skip()
            for i in range(len(compose.refs))
        ]
        return (*values, editor, *refs, gr.Tabs(selected=target))

    hist.reuse.click(reuse, hist.selected_id, reuse_outputs, api_visibility=PRIVATE)

    job_state = gr.State(None)

    def rerun(image_id, progress=gr.Progress()):  # noqa: B008 - the Gradio idiom
        image = _selected(services, image_id)
        if image.job_id is None:
            raise gr.Error("This image was uploaded, not generated: there is no job to re-run.")
        for job_id, status, preview, _gallery in run_and_watch(
            services, None, progress, rerun_of=image.job_id
        ):
            yield job_id, status, preview

    hist.rerun.click(
        rerun,
        hist.selected_id,
        [job_state, hist.status, hist.preview],
        api_visibility=PRIVATE,
        **model_event(services),
    ).success(hist.search, hist.query, [hist.gallery, hist.ids], api_visibility=PRIVATE)


def _api_endpoints(services: Services) -> None:
    """Endpoints for gradio_client with no UI of their own."""

    def job_status(job_id: int) -> dict:
        """A job's status, progress, error, timings, and its output image ids once done."""
        view = services.jobs.view(job_id)
        job = view.job
        return {
            "id": job.id,
            "kind": job.kind,
            "status": job.status.value,
            "queue_position": view.queue_position,
            "progress": [job.progress_step, job.progress_total],
            "error": job.error,
            "timings": job.timings,
            "images": [im.id for im in view.images],
        }

    def cancel_job(job_id: int) -> str:
        """Cancel a queued job now, or a running one at its next step; returns the status."""
        return services.jobs.cancel(job_id).value

    def rerun_job(job_id: int) -> int:
        """Queue a past job again with the same parameters and seed; returns the new job id."""
        return services.jobs.rerun(job_id).id

    gr.api(api_call(job_status), api_name="job_status")
    gr.api(api_call(cancel_job), api_name="cancel_job")
    gr.api(api_call(rerun_job), api_name="rerun_job")
