"""What counts as a person interacting with Jupyter, recorded for the idle checker.

An open JupyterLab tab polls the server every ~10 s, which moves `/api/status` `last_activity`,
so that can't tell a person from a forgotten tab. This records only what a person does:

- from jupyter_server's event bus (`serverapp.event_logger`):
  - contents service events: saving, creating, uploading, renaming, copying and deleting a file;
    and opening one: a `get` by the contents API of a file's or notebook's content
    (`type=file|notebook`, `content` not 0), not the directory listings nor the content-less
    checks a tab polls;
  - kernel action events that succeeded: starting, interrupting, restarting, shutting down;
- by wrapping Jupyter's methods (jupyter_patches), where it emits no event:
  - a message a client sends a kernel (running a cell, completing, inspecting), but the ones a
    client sends by itself on connect (kernel_info_request, comm_info_request);
  - terminal input (stdin), not resizes; a terminal's start and close.

An event or a wrapped start or close counts only when an HTTP request made it (jupyter_server's
CallContext names the request's handler): the server's own work does not, such as shutting the
kernels down when it stops. (A kernel Jupyter restarts by itself after it died still counts, up
to the restarter's limit of 5: its restarter runs in the context of the request that started
it.) Failed actions count neither: they emit no event (the schemas say so) and raise before a
wrapper records. The workspace layout an open tab PUTs every ~10 s is no event.

The time of the latest interaction goes to a small JSON file (JUPYTER_ACTIVITY_FILE), written at
most every few seconds and atomically, so it survives Jupyter restarts; idle_check.py reads it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_patches import PatchError, PatchPoint, Reason, Record, wrap

log = logging.getLogger("jupyter_on_demand.activity")

WRITE_INTERVAL_SECONDS = 5.0
CONTENTS_EVENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
KERNEL_EVENTS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
AUTOMATIC_KERNEL_MESSAGES = frozenset({"kernel_info_request", "comm_info_request"})
DOCUMENT_TYPES = frozenset({b"file", b"notebook"})
KERNEL_WEBSOCKET_V1 = "v1.kernel.websocket.jupyter.org"

KERNEL_MESSAGES = PatchPoint(
    "jupyter_server.services.kernels.connection.channels",
    "ZMQChannelsWebsocketConnection",
    "handle_incoming_message",
    is_async=False,
)
TERMINAL_INPUT = PatchPoint("jupyter_server_terminals.handlers", "TermSocket", "on_message", True)
TERMINAL_START = PatchPoint(
    "jupyter_server_terminals.terminalmanager", "TerminalManager", "create", is_async=False
)
TERMINAL_CLOSE = PatchPoint(
    "jupyter_server_terminals.terminalmanager", "TerminalManager", "terminate", is_async=True
)

EventListener = Callable[..., Coroutine[Any, Any, None]]


def default_activity_file() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(
        os.environ.get("JUPYTER_ACTIVITY_FILE") or Path(jupyter_runtime_dir()) / "activity.json"
    )


class ActivityRecorder:
    """Keeps the time of the latest real interaction and writes it to a file, throttled."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._last_write = 0.0

    def record(self, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_write < WRITE_INTERVAL_SECONDS:
                return
            self._last_write = now
        record = {"last_interaction": datetime.now(timezone.utc).isoformat(), "reason": reason}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, delete=False, suffix=".tmp"
            ) as tmp:
                json.dump(record, tmp)
            os.replace(tmp.name, self.path)
        except OSError:
            log.exception("could not record activity in %s", self.path)


def request_handler() -> Any:
    """The handler of the HTTP request this code runs for; None outside of one."""
    from jupyter_server import CallContext

    return CallContext.get(CallContext.JUPYTER_HANDLER)


def opens_a_document(method: str, query: Mapping[str, list[bytes]]) -> bool:
    """Whether a contents API request reads a file's or a notebook's content, as opening it does
    (a tab's polling lists folders, or asks a file's model without its content)."""
    kind = (query.get("type") or [b""])[0]
    content = (query.get("content") or [b"1"])[0]
    return method == "GET" and kind in DOCUMENT_TYPES and content != b"0"


def contents_interaction(data: Mapping[str, Any], handler: Any) -> str | None:
    """Why this contents service event is a person's interaction, or None when it is not."""
    if handler is None:
        return None
    if data["action"] != "get":
        return f"{data['action']} {data['path']}"
    from jupyter_server.services.contents.handlers import ContentsHandler

    request = handler.request
    if isinstance(handler, ContentsHandler) and opens_a_document(
        request.method, request.query_arguments
    ):
        return f"open {data['path']}"
    return None


def kernel_interaction(data: Mapping[str, Any], handler: Any) -> str | None:
    """Why this kernel action event is a person's interaction, or None when it is not."""
    if handler is None or data.get("status") != "success":
        return None
    return f"kernel {data['action']}"


def kernel_message_type(connection: Any, ws_msg: Any) -> str | None:
    from jupyter_server.services.kernels.connection.base import (
        deserialize_binary_message,
        deserialize_msg_from_ws_v1,
    )

    try:
        if connection.subprotocol == KERNEL_WEBSOCKET_V1:
            _, parts = deserialize_msg_from_ws_v1(ws_msg)  # type: ignore[no-untyped-call]
            return str(json.loads(parts[0])["msg_type"])
        if isinstance(ws_msg, bytes):
            message = deserialize_binary_message(ws_msg)  # type: ignore[no-untyped-call]
            return str(message["header"]["msg_type"])
        return str(json.loads(ws_msg)["header"]["msg_type"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def kernel_message_interaction(connection: Any, ws_msg: Any) -> str | None:
    msg_type = kernel_message_type(connection, ws_msg)
    if msg_type and msg_type not in AUTOMATIC_KERNEL_MESSAGES:
        return f"kernel {msg_type}"
    return None


def terminal_input_interaction(socket: Any, message: Any) -> str | None:
    try:
        kind = json.loads(message)[0]
    except (ValueError, IndexError, TypeError, KeyError):
        return None
    return "terminal input" if kind == "stdin" else None


def made_by_a_request(reason: str) -> Reason:
    def interaction(*_args: Any, **_kwargs: Any) -> str | None:
        return reason if request_handler() is not None else None

    return interaction


WRAPPED: tuple[tuple[PatchPoint, Reason], ...] = (
    (KERNEL_MESSAGES, kernel_message_interaction),
    (TERMINAL_INPUT, terminal_input_interaction),
    (TERMINAL_START, made_by_a_request("terminal start")),
    (TERMINAL_CLOSE, made_by_a_request("terminal close")),
)
PATCH_POINTS = tuple(point for point, _ in WRAPPED)


def event_listener(
    interaction: Callable[[Mapping[str, Any], Any], str | None], record: Record
) -> EventListener:
    # Called in a task jupyter_events creates as the event is emitted, which copies the context
    # of the code that emitted it, and with it the CallContext of its request.
    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        why = interaction(data, request_handler())
        if why:
            record(why)

    return listener


def record_interactions(serverapp: Any) -> ActivityRecorder:
    """Listen to the events and wrap the methods above; what they say goes to the activity file."""
    recorder = ActivityRecorder(default_activity_file())
    events = serverapp.event_logger
    for schema_id, interaction in (
        (CONTENTS_EVENTS, contents_interaction),
        (KERNEL_EVENTS, kernel_interaction),
    ):
        if schema_id not in events.schemas.schema_ids:
            log.error("jupyter-on-demand: this jupyter_server registers no %s events; that "
                      "activity goes unrecorded: update jupyter_activity.py", schema_id)  # fmt: skip
        events.add_listener(
            schema_id=schema_id, listener=event_listener(interaction, recorder.record)
        )
    for point, reason in WRAPPED:
        try:
            wrap(point, reason, recorder.record)
        except PatchError:
            log.exception("jupyter-on-demand: that activity goes unrecorded")
    return recorder
