"""What a real `jupyter lab` with the project's config records as a person's interaction in the
activity file the idle checker reads, from jupyter_server's events and from the methods it wraps;
and what it never records: an open tab's polling, failed actions, the server's own work."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.websocket import websocket_connect

import jupyter_activity
from jupyter_patches import PatchError, PatchPoint
from tests.support.jupyter import Jupyter, running_jupyter, stop_process_group
from tests.support.kernels import message, start_kernel, start_terminal, ws_url

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
MARKER = "save marker.txt"


@pytest.fixture
def jupyter(tmp_path) -> Iterator[Jupyter]:
    """A fresh server per test: the recorder writes at most once per WRITE_INTERVAL_SECONDS, so
    each test starts with nothing recorded. Its files are made on disk, where nothing records."""
    with running_jupyter(tmp_path / "root", tmp_path / "work") as server:
        (server.root_dir / "a.ipynb").write_text(json.dumps(NOTEBOOK))
        (server.root_dir / "a.txt").write_text("text\n")
        yield server


def latest(jupyter: Jupyter) -> dict[str, str] | None:
    if not jupyter.activity_file.exists():
        return None
    return dict(json.loads(jupyter.activity_file.read_text()))


def recorded(jupyter: Jupyter, after: dict[str, str] | None = None, timeout: float = 30) -> str:
    """The reason of the first interaction recorded after the record `after` (or any)."""
    deadline = time.monotonic() + timeout
    while (record := latest(jupyter)) in (None, after):
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing recorded within {timeout} s:\n{jupyter.logs()[-3000:]}")
        time.sleep(0.1)
    assert record is not None
    return record["reason"]


def aged(jupyter: Jupyter, reason: str) -> dict[str, str]:
    """The record of the test's setup (it says `reason`), once the recorder's interval is over,
    so that the next interaction is written."""
    assert recorded(jupyter) == reason
    time.sleep(jupyter_activity.WRITE_INTERVAL_SECONDS + 0.5)
    record = latest(jupyter)
    assert record is not None
    return record


def recorded_with_a_marker(jupyter: Jupyter, after: dict[str, str] | None = None) -> str:
    """The first record after `after` once a file is saved: the save's, when what was done
    before the save recorded nothing."""
    assert jupyter.save("marker.txt", "marker").status_code == 201
    return recorded(jupyter, after)


CONTENTS_ACTIONS = {
    "save": ("PUT", "/api/contents/a.txt", {"type": "file", "format": "text", "content": "x"},
             "save a.txt"),
    "save-notebook": ("PUT", "/api/contents/a.ipynb", {"type": "notebook", "content": NOTEBOOK},
                      "save a.ipynb"),
    "new-file": ("POST", "/api/contents", {"type": "file", "ext": ".txt"}, "save untitled.txt"),
    "copy": ("POST", "/api/contents", {"copy_from": "a.txt"}, "save a-Copy1.txt"),  # a copy saves it
    "rename": ("PATCH", "/api/contents/a.txt", {"path": "b.txt"}, "rename b.txt"),
    "delete": ("DELETE", "/api/contents/a.txt", None, "delete a.txt"),
}  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "reason"), CONTENTS_ACTIONS.values(),
                         ids=CONTENTS_ACTIONS.keys())  # fmt: skip
def test_a_change_through_the_contents_api_is_recorded(
    jupyter, method: str, path: str, body: dict[str, Any] | None, reason: str
) -> None:
    assert jupyter.api(method, path, json=body).ok
    assert recorded(jupyter) == reason


@pytest.mark.parametrize(
    ("path", "query", "reason"),
    [
        ("a.ipynb", {"type": "notebook", "content": "1"}, "open a.ipynb"),
        ("a.txt", {"type": "file", "format": "text", "content": "1"}, "open a.txt"),
        ("a.txt", {"type": "file", "format": "text"}, "open a.txt"),  # content defaults to 1
    ],
    ids=["notebook", "file", "file-content-by-default"],
)
def test_opening_a_document_is_recorded(jupyter, path: str, query: dict, reason: str) -> None:
    assert jupyter.api("GET", f"/api/contents/{path}", params=query).status_code == 200
    assert recorded(jupyter) == reason


NOT_INTERACTION = {
    # What an open JupyterLab tab asks by itself, every few seconds:
    "file-browser-listing": ("GET", "/api/contents", {"params": {"content": "1"}}, 200),
    "folder-listing": ("GET", "/api/contents/", {"params": {"type": "directory"}}, 200),
    "document-model-without-content": (
        "GET", "/api/contents/a.ipynb", {"params": {"type": "notebook", "content": "0"}}, 200),
    "kernels": ("GET", "/api/kernels", {}, 200),
    "sessions": ("GET", "/api/sessions", {}, 200),
    "terminals": ("GET", "/api/terminals", {}, 200),
    "status": ("GET", "/api/status", {}, 200),
    "metrics": ("GET", "/metrics", {}, 200),
    "workspace-layout": ("PUT", "/lab/api/workspaces/default",
                         {"json": {"data": {}, "metadata": {"id": "default"}}}, 204),
    # Failed actions:
    "save-of-a-bad-model": ("PUT", "/api/contents/a.txt", {"json": {"type": "file"}}, 400),
    "rename-onto-a-file": ("PATCH", "/api/contents/a.txt", {"json": {"path": "a.ipynb"}}, 409),
    "open-a-missing-file": (
        "GET", "/api/contents/missing.ipynb", {"params": {"type": "notebook"}}, 404),
}  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), NOT_INTERACTION.values(),
                         ids=NOT_INTERACTION.keys())  # fmt: skip
def test_polling_and_failed_actions_are_not_recorded(
    jupyter, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    """The marker save, made after, is the first record: the request before it recorded nothing."""
    assert jupyter.api(method, path, **kwargs).status_code == status
    assert recorded_with_a_marker(jupyter) == MARKER


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (lambda jupyter: start_kernel(jupyter), "kernel start"),
        (lambda jupyter: jupyter.api("POST", "/api/sessions", json={
            "path": "a.ipynb", "type": "notebook", "kernel": {"name": "python3"}}).raise_for_status(),
         "kernel start"),
        (lambda jupyter: start_terminal(jupyter), "terminal start"),
    ],
    ids=["kernel", "notebook-session", "terminal"],
)  # fmt: skip
def test_starting_a_kernel_or_a_terminal_is_recorded(jupyter, start, reason: str) -> None:
    start(jupyter)
    assert recorded(jupyter) == reason


@pytest.mark.parametrize(
    ("method", "action", "reason"),
    [
        ("POST", "/interrupt", "kernel interrupt"),
        ("POST", "/restart", "kernel restart"),
        ("DELETE", "", "kernel shutdown"),
    ],
    ids=["interrupt", "restart", "shutdown"],
)
def test_a_kernel_action_is_recorded(jupyter, method: str, action: str, reason: str) -> None:
    kernel = start_kernel(jupyter)
    started = aged(jupyter, "kernel start")
    assert jupyter.api(method, f"/api/kernels/{kernel}{action}").ok
    assert recorded(jupyter, after=started) == reason


def test_closing_a_terminal_is_recorded(jupyter) -> None:
    name = start_terminal(jupyter)
    started = aged(jupyter, "terminal start")
    assert jupyter.api("DELETE", f"/api/terminals/{name}").status_code == 204
    assert recorded(jupyter, after=started) == "terminal close"


def test_the_kernels_shut_down_by_the_servers_stop_are_not_recorded(jupyter) -> None:
    start_kernel(jupyter)
    started = aged(jupyter, "kernel start")
    stop_process_group(jupyter.process)
    assert "Kernel shutdown" in jupyter.logs()  # the stop did shut the kernel down
    assert latest(jupyter) == started


def kernel_payload(request: dict[str, Any], subprotocol: str | None) -> str | bytes:
    if subprotocol is None:
        return json.dumps(request)
    parts = [
        json.dumps(request[key]).encode()
        for key in ("header", "parent_header", "metadata", "content")
    ]
    return serialize_msg_to_ws_v1(parts, "shell")


def reply_to(raw: str | bytes | None, subprotocol: str | None) -> str | None:
    """The msg_id a message from the kernel replies to."""
    if raw is None:
        raise AssertionError("the kernel websocket closed")
    if subprotocol is None:
        parent = json.loads(raw)["parent_header"]
    else:
        _, parts = deserialize_msg_from_ws_v1(raw)
        parent = json.loads(parts[1])
    return parent.get("msg_id")


async def _ask_kernel(
    jupyter: Jupyter,
    kernel_id: str,
    requests: list[tuple[str, dict[str, Any]]],
    subprotocol: str | None,
) -> None:
    session = uuid.uuid4().hex
    connection = await websocket_connect(
        ws_url(jupyter, f"/api/kernels/{kernel_id}/channels?session_id={session}"),
        subprotocols=[subprotocol] if subprotocol else None,
    )
    for msg_type, content in requests:
        request = message(msg_type, content, session)
        connection.write_message(
            kernel_payload(request, subprotocol), binary=subprotocol is not None
        )
        while (
            reply_to(await asyncio.wait_for(connection.read_message(), 60), subprotocol)
            != request["header"]["msg_id"]
        ):
            pass
    connection.close()


def ask_kernel(
    jupyter: Jupyter,
    kernel_id: str,
    requests: list[tuple[str, dict[str, Any]]],
    subprotocol: str | None,
) -> None:
    """Send requests to a kernel as a client does, each once the kernel answered the one before:
    the server has handled them all when this returns."""
    asyncio.run(_ask_kernel(jupyter, kernel_id, requests, subprotocol))


PROTOCOLS = pytest.mark.parametrize(
    "subprotocol", [None, "v1.kernel.websocket.jupyter.org"], ids=["json", "v1-jupyterlab"]
)


@PROTOCOLS
def test_running_a_cell_is_recorded(jupyter, subprotocol: str | None) -> None:
    kernel = start_kernel(jupyter)
    started = aged(jupyter, "kernel start")
    ask_kernel(
        jupyter, kernel, [("execute_request", {"code": "1 + 1", "silent": False})], subprotocol
    )
    assert recorded(jupyter, after=started) == "kernel execute_request"


@PROTOCOLS
def test_what_a_client_asks_a_kernel_on_connect_is_not_recorded(
    jupyter, subprotocol: str | None
) -> None:
    kernel = start_kernel(jupyter)
    started = aged(jupyter, "kernel start")
    ask_kernel(
        jupyter, kernel, [("kernel_info_request", {}), ("comm_info_request", {})], subprotocol
    )
    assert recorded_with_a_marker(jupyter, after=started) == MARKER


async def _to_terminal(jupyter: Jupyter, name: str, messages: list[list[Any]]) -> None:
    connection = await websocket_connect(ws_url(jupyter, f"/terminals/websocket/{name}"))
    for item in messages:
        connection.write_message(json.dumps(item))
    await asyncio.sleep(1)  # the server reads them as they come
    connection.close()


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([["stdin", "ls\r"]], "terminal input"),
        (
            [["set_size", 24, 80]],
            MARKER,
        ),  # a resize: the browser window changed, not a person typed
    ],
    ids=["typing", "resize"],
)
def test_typing_in_a_terminal_is_recorded_but_not_a_resize(jupyter, messages, reason: str) -> None:
    name = start_terminal(jupyter)
    started = aged(jupyter, "terminal start")
    asyncio.run(_to_terminal(jupyter, name, messages))
    assert recorded_with_a_marker(jupyter, after=started) == reason


@pytest.mark.parametrize("point", jupyter_activity.PATCH_POINTS, ids=lambda point: point.name)
def test_every_method_wrapped_for_activity_is_in_the_installed_jupyter(point: PatchPoint) -> None:
    """Where Jupyter emits no event, activity is recorded by wrapping its methods: an upgrade
    that removes, renames or changes one fails here, naming it."""
    try:
        point.resolve()
    except PatchError as error:
        pytest.fail(str(error))


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (PatchPoint("jupyter_server.not_a_module", "TermSocket", "on_message", True), "is gone"),
        (PatchPoint("jupyter_server_terminals.handlers", "Renamed", "on_message", True), "is gone"),
        (PatchPoint("jupyter_server_terminals.handlers", "TermSocket", "renamed", True), "is gone"),
        (PatchPoint("jupyter_server_terminals.handlers", "TermSocket", "on_message", False),
         "is now a coroutine function"),
        (PatchPoint("jupyter_server_terminals.terminalmanager", "TerminalManager", "create", True),
         "is no longer a coroutine function"),
    ],
    ids=["module", "class", "method", "became-async", "became-sync"],
)  # fmt: skip
def test_a_wrapped_method_an_upgrade_changed_is_named(point: PatchPoint, message: str) -> None:
    with pytest.raises(PatchError, match=rf"^{re.escape(point.name)} {message}"):
        point.resolve()


@pytest.mark.parametrize(
    "schema_id", [jupyter_activity.CONTENTS_EVENTS, jupyter_activity.KERNEL_EVENTS]
)
def test_every_event_listened_to_is_registered_by_the_installed_jupyter_server(
    schema_id: str,
) -> None:
    from jupyter_server.serverapp import ServerApp

    app = ServerApp()
    app.init_event_logger()
    assert schema_id in app.event_logger.schemas.schema_ids, (
        f"jupyter_server no longer emits {schema_id}: update jupyter_activity.py"
    )


@pytest.mark.parametrize(
    ("method", "query", "opens"),
    [
        ("GET", {"type": [b"notebook"], "content": [b"1"]}, True),
        ("GET", {"type": [b"file"], "format": [b"text"]}, True),  # content defaults to 1
        ("GET", {"type": [b"notebook"], "content": [b"0"]}, False),  # the model, no content
        ("GET", {"content": [b"1"]}, False),  # the file browser's listing
        ("GET", {"type": [b"directory"], "content": [b"1"]}, False),
        ("PUT", {"type": [b"notebook"]}, False),  # a save reads the model it saved
    ],
)
def test_which_contents_reads_open_a_document(method: str, query: dict, opens: bool) -> None:
    assert jupyter_activity.opens_a_document(method, query) is opens


def test_a_record_that_cannot_be_written_is_logged_and_never_raises(tmp_path, caplog) -> None:
    (tmp_path / "a-file").write_text("")
    recorder = jupyter_activity.ActivityRecorder(tmp_path / "a-file" / "activity.json")
    recorder.record("save a.txt")
    assert "could not record activity" in caplog.text
