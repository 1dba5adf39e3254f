"""Security (issue #7): --share needs a login (or makes one), the login really guards the routes,
Gradio serves files only from the data folder, uploads have a size limit, ids and paths cannot
reach outside the data folder, and deleting a history image removes its row and its file.
Everything talks to 127.0.0.1 only."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from seedling.backend.errors import JobError
from seedling.backend.specs import make_spec
from seedling.storage.images_common import ImageQuery
from seedling.ui.blocks import NOT_AN_UPLOAD
from tests.conftest import REPO_ROOT, SECURED_AUTH, SECURED_MAX_UPLOAD_MB, drain
from tests.fuzz_helpers import assert_readable
from tests.helpers import error_message, logged_in_http, raw_call


def _session(app) -> httpx.Client:
    """An HTTP session logged in as the test user."""
    return logged_in_http(app.url, SECURED_AUTH)


def _output_file(app) -> Path:
    """A real result in the data folder (made once per session through the API)."""
    files = sorted((app.data_dir / "files" / "images").rglob("*.png"))
    if not files:
        client = Client(app.url, auth=SECURED_AUTH, verbose=False)
        client.predict(prompt="a fox", width=128, height=128, steps=1, guidance=0, seed=1, num_outputs=1,
                       api_name="/generate")  # fmt: skip
        files = sorted((app.data_dir / "files" / "images").rglob("*.png"))
    return files[0]


# --- --share and --auth ---------------------------------------------------------------------------
def test_share_without_auth_launches_behind_a_generated_password(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    """app.main with --share hands Gradio the printed password, the upload limit, and a file
    allow-list of the data folder only (launch is intercepted: no tunnel leaves this machine)."""
    import gradio as gr

    from seedling import app

    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "unused"))  # restored after the test
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "unused"))
    old_sigterm = signal.getsignal(signal.SIGTERM)
    data = tmp_path / "data"
    try:
        rc = app.main(["--share", "--no-worker", "--data-dir", str(data), "--model", str(tiny_model_dir)])
    finally:
        signal.signal(signal.SIGTERM, old_sigterm)
    assert rc == 0
    out = capsys.readouterr().out
    user, password = launched["auth"]
    assert launched["share"] is True and user == app.SHARE_USER and out.count(password) == 1
    assert launched["allowed_paths"] == [str((data / "files").resolve())]
    assert launched["max_file_size"] == int(app.MAX_UPLOAD_MB * 1024 * 1024)
    assert Path(os.environ["GRADIO_TEMP_DIR"]).is_relative_to(data.resolve())


def test_the_login_guards_every_api_and_file_route(secured_app):
    output = _output_file(secured_app)
    anonymous = httpx.Client(base_url=secured_app.url.rstrip("/"), timeout=30, trust_env=False)
    refused = {
        "GET /config": anonymous.get("/config"),
        "GET /gradio_api/info": anonymous.get("/gradio_api/info"),
        "GET /gradio_api/openapi.json": anonymous.get("/gradio_api/openapi.json"),
        "POST /gradio_api/call/generate": anonymous.post("/gradio_api/call/generate", json={"data": ["x"]}),
        "POST /gradio_api/queue/join": anonymous.post(
            "/gradio_api/queue/join", json={"fn_index": 0, "data": []}
        ),
        "POST /gradio_api/upload": anonymous.post("/gradio_api/upload", files={"files": ("a.png", b"x")}),
        "GET /gradio_api/file=<output>": anonymous.get(f"/gradio_api/file={output}"),
    }
    for route, r in refused.items():
        assert r.status_code in (401, 403), f"{route} answered {r.status_code} without a login"
    wrong = anonymous.post("/login", data={"username": SECURED_AUTH[0], "password": "guess"})
    assert wrong.status_code in (400, 401)
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own login error types
        Client(secured_app.url, auth=(SECURED_AUTH[0], "guess"), verbose=False)
    http = _session(secured_app)
    assert http.get("/config").status_code == 200
    assert http.get(f"/gradio_api/file={output}").status_code == 200  # the control: the route works


# --- files --------------------------------------------------------------------------------------
def test_gradio_serves_files_only_from_the_data_folder(secured_app):
    http = _session(secured_app)
    data = secured_app.data_dir.resolve()
    assert http.get(f"/gradio_api/file={_output_file(secured_app)}").status_code == 200
    secrets = {
        "/etc/passwd": b"root:",
        str(REPO_ROOT / "README.md"): b"Seedling Studio",
        str(data / "history.db"): b"SQLite format",
        str(data / "queue.db"): b"SQLite format",
        str(data / "files" / ".." / "history.db"): b"SQLite format",
        str(data / "files" / "images" / ".." / ".." / ".." / "data-app.log"): b"INFO",
        "../../../../../../etc/passwd": b"root:",
    }
    for path, marker in secrets.items():
        for url in (
            f"/gradio_api/file={path}",
            f"/gradio_api/file={quote(path, safe='')}",
            f"/gradio_api/file/{path}",
            f"/file={path}",
            f"/static/{path}",
            f"/assets/{quote(path, safe='')}",
        ):
            r = http.get(url)
            assert r.status_code >= 400 and marker not in r.content, f"{url} answered {r.status_code}"


def test_uploads_land_in_the_data_folder_and_have_a_size_limit(secured_app):
    http = _session(secured_app)
    small = http.post("/gradio_api/upload", files={"files": ("a.png", b"\x89PNG small")})
    assert small.status_code == 200
    (stored,) = small.json()
    assert Path(stored).resolve().is_relative_to(secured_app.data_dir.resolve())
    big = b"\0" * (SECURED_MAX_UPLOAD_MB * 1024 * 1024 + 1)
    r = http.post("/gradio_api/upload", files={"files": ("big.png", big)})
    assert r.status_code == 413 and "maximum allowed size" in r.text
    # through the client, as a person's script would: the call is refused, with the reason
    client = Client(secured_app.url, auth=SECURED_AUTH, verbose=False)
    path = secured_app.data_dir.parent / "big.png"
    path.write_bytes(big)
    from gradio_client import handle_file

    with pytest.raises(Exception, match="exceeds the maximum file size|maximum allowed size"):
        client.predict(
            editor_value={"background": handle_file(str(path)), "layers": [], "composite": None},
            instruction="x",
            api_name="/edit",
        )


def test_api_ids_and_server_paths_cannot_reach_outside(secured_app):
    client = Client(secured_app.url, auth=SECURED_AUTH, verbose=False)
    for api in ("/job_status", "/cancel_job", "/rerun_job"):
        for bad in ("../../etc/passwd", "/etc/passwd", -1, 2**64):
            with pytest.raises(AppError) as err:
                client.predict(bad, api_name=api)
            assert_readable(err.value)
    # sent as raw JSON: gradio_client would upload the path from the test's own disk instead
    http = _session(secured_app)
    for path in ("/etc/passwd", str(REPO_ROOT / "README.md"), "../../../../../../etc/passwd"):
        fake = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "passwd.png"}
        events = raw_call(http, client, "/compose", mode="compose", prompt="x", ref1=fake)
        assert "event: error" in events, events[-500:]
        assert "root:" not in events and "Seedling" not in events
        # refused by Gradio's path check (InvalidPathError) before any of our code read a byte,
        # with a sentence that says what to do, not {"error": null}
        assert error_message(events) == NOT_AN_UPLOAD, events[-500:]
    con = sqlite3.connect(secured_app.data_dir / "history.db")
    try:
        uploads = con.execute("SELECT count(*) FROM images WHERE width = 0").fetchone()[0]
    finally:
        con.close()
    assert uploads == 0


def test_nan_sent_as_raw_json_gets_a_sentence(secured_app):
    """gradio_client cannot send NaN; a hand-made request can (Python's JSON reads it)."""
    http = _session(secured_app)
    body = '{"data": ["fox", false, "", "1:1", 128, 128, NaN, 0, 1, 1, [], 1.0]}'
    r = http.post("/gradio_api/call/generate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    events = http.get(f"/gradio_api/call/generate/{r.json()['event_id']}").text
    assert "event: error" in events, events[-500:]
    assert_readable(events.split("event: error", 1)[1])


# --- the job layer: ids, paths, delete ------------------------------------------------------------
def test_ids_and_paths_never_touch_files_outside_the_data_folder(services, tmp_path):
    sentinel = tmp_path / "outside.png"
    Image.new("RGB", (8, 8), "red").save(sentinel)
    image = services.history.store_input(Image.new("RGB", (16, 16), "blue"))
    # a damaged row naming a file outside the store: delete removes the row, never that file
    con = sqlite3.connect(services.settings.db_path)
    con.execute("UPDATE images SET file_path = ? WHERE id = ?", (str(sentinel), image.id))
    con.commit()
    con.close()
    services.history.delete(image.id)
    assert sentinel.exists()
    with pytest.raises(JobError):
        services.history.get(image.id)
    for bad in (str(sentinel), "../../etc/passwd", f"1/../{image.id}", "1; DROP TABLE images"):
        for call in (services.history.get, services.history.delete, services.jobs.view, services.jobs.cancel):
            with pytest.raises(JobError) as err:
                call(bad)
            assert_readable(err.value)
    with pytest.raises(ValueError, match="outside the file store"):
        services.files.path(str(sentinel))
    assert sentinel.exists()


def test_history_delete_removes_rows_edges_and_files(services):
    h = services.history
    source = h.store_input(Image.new("RGB", (128, 128), (0, 90, 200)))
    mask_img = Image.new("L", (128, 128), 0)
    mask_img.paste(255, (32, 32, 96, 96))
    mask = h.store_input(mask_img, origin="mask")
    job = services.jobs.submit(
        make_spec("inpaint", prompt="a red sun", source_image_id=source.id, mask_image_id=mask.id, steps=1)
    )
    drain(services.huey)
    (output,) = services.jobs.view(job.id).images
    records = [output, source, mask]
    paths = [h.path(r) for r in records]
    assert all(p.is_file() for p in paths)
    assert [r.id for r in h.search(ImageQuery(text="sun"))] == [output.id]
    for record, path in zip(records, paths):
        h.delete(record.id)
        assert not path.exists()
        with pytest.raises(JobError, match="does not exist"):
            h.get(record.id)
    con = sqlite3.connect(services.settings.db_path)
    try:
        assert con.execute("SELECT count(*) FROM image_edges").fetchone()[0] == 0
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert h.search(ImageQuery(text="sun")) == []
    with pytest.raises(JobError, match="does not exist"):
        h.delete(output.id)  # twice: a sentence, not a crash


BAD_PATHS = ("/etc/passwd", "<db>", "../../../../etc/passwd", "file:///etc/passwd", "x\x00.png")


def _file_params(param: dict) -> str | None:
    """'file' for a FileData parameter, 'editor' for an ImageEditor value, 'files' for a list."""
    component = str(param.get("component", "")).lower()
    if component == "imageeditor":
        return "editor"
    if component in ("image", "file", "uploadbutton") or "filedata" in str(param.get("python_type", "")).lower():
        return "files" if "list" in str(param.get("python_type", {}).get("type", "")).lower() else "file"
    return None


def test_every_file_argument_of_every_route_refuses_server_paths_with_a_sentence(secured_app):
    """Regression: /edit, /compose, /finetune called with a file path (/etc/passwd, history.db,
    ../.., file://, a NUL byte) answered {"error": null}. Each now answers with a sentence."""
    client = Client(secured_app.url, auth=SECURED_AUTH, verbose=False)
    http = _session(secured_app)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    tried = 0
    for api, info in endpoints.items():
        for param in info["parameters"]:
            kind = _file_params(param)
            if kind is None:
                continue
            for bad in BAD_PATHS:
                path = str(secured_app.data_dir / "history.db") if bad == "<db>" else bad
                fake = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
                value = {"editor": {"background": fake, "layers": [], "composite": fake},
                         "files": [fake], "file": fake}[kind]  # fmt: skip
                events = raw_call(http, client, api, **{param["parameter_name"]: value})
                message = error_message(events)
                assert message, f"{api}({param['parameter_name']}={bad!r}) answered without a sentence: {events[-300:]}"
                assert_readable(message)
                assert "root:" not in events and "SQLite format" not in events
                tried += 1
    assert tried >= 15, tried  # /edit, /compose (refs, style), /storyboard, /finetune, PNG restore...


def test_a_fractional_seed_and_a_huge_prompt_are_refused_with_sentences(secured_app):
    """Regression: seed 1.5 was rounded silently; a 1 MB prompt was accepted and echoed by
    /expand_prompt."""
    client = Client(secured_app.url, auth=SECURED_AUTH, verbose=False)
    with pytest.raises(AppError, match="seed must be a whole number"):
        client.predict(prompt="a fox", width=128, height=128, steps=1, guidance=0, seed=1.5, num_outputs=1,
                       api_name="/generate")  # fmt: skip
    with pytest.raises(AppError, match=r"1,000,000 characters long; at most 2,000 .*shorten it"):
        client.predict("x" * 1_000_000, "t2i", api_name="/expand_prompt")


def test_the_login_page_does_not_describe_the_api(secured_app):
    """Regression: the login page embedded the whole API description (window.gradio_api_info)
    while /gradio_api/info answered 401."""
    import httpx

    with httpx.Client(base_url=secured_app.url, timeout=30) as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 200 and '"auth_required"' in page.text
        assert "window.gradio_api_info = null;" in page.text
        assert "named_endpoints" not in page.text and "/generate" not in page.text
        assert anonymous.get("/gradio_api/info").status_code == 401
    http = _session(secured_app)
    assert "named_endpoints" in http.get("/gradio_api/info").text  # logged in: the API is there
