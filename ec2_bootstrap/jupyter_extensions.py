"""The small Jupyter server extension of jupyter-on-demand (loaded by jupyter_server_config.py).

1. `HeaderTokenIdentityProvider`: the team logs in with the password; the internal API token is
   accepted only in an `Authorization: token ...` header, never from a URL.
2. Activity recording for the idle checker. An open JupyterLab tab polls the server every ~10 s,
   which moves `/api/status` `last_activity`, so that can't tell a person from a forgotten tab.
   This extension records only what a person does:
   - API calls that change something (POST, PUT, PATCH, DELETE: saving, renaming, creating,
     deleting, starting kernels and terminals), answered without error; but not the workspace
     layout, which an open tab PUTs every ~10 s (measured, JupyterLab 4.6);
   - opening a file or notebook (GET of a file's contents, not the directory listings a tab polls);
   - kernel messages sent by the client, but the ones sent automatically on connect
     (kernel_info_request, comm_info_request);
   - terminal input (stdin), not resizes.
   The time of the latest one goes to a small JSON file (JUPYTER_ACTIVITY_FILE), written at most
   every few seconds and atomically, so it survives Jupyter restarts.
3. `main`: what jupyter-on-demand.service runs, `jupyter lab` without an import it never uses:

       /opt/jupyter-on-demand/venv/bin/python /opt/jupyter-on-demand/jupyter_extensions.py \
           jupyter-lab --config=/opt/jupyter-on-demand/jupyter_server_config.py
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_server.auth.identity import PasswordIdentityProvider

logger = logging.getLogger("jupyter_on_demand.activity")

AUTOMATIC_KERNEL_MESSAGES = frozenset({"kernel_info_request", "comm_info_request"})
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_INTERVAL_SECONDS = 5.0
LAUNCHED_COMMAND = "jupyter-lab"
# Imported by Jupyter's start, used by none of its code: each is made to fail (see main).
UNUSED_IMPORTS = (
    # jsonschema's optional checker of the "iri" formats. Its import compiles 39 Earley parsers
    # (~0.8 s of a 1.6 s start on the 2-core test machine, ~8 s under the VM test's emulation)
    # and no Jupyter schema uses those formats. jsonschema imports it inside
    # `with suppress(ImportError)`: without it, only "iri"/"iri-reference" go unchecked.
    "rfc3987_syntax",
)


class HeaderTokenIdentityProvider(PasswordIdentityProvider):
    """Password login for people; the API token only from the Authorization header."""

    def get_token(self, handler: Any) -> str | None:
        match = self.auth_header_pat.match(handler.request.headers.get("Authorization", ""))
        return match.group(2) if match else ""


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
            logger.exception("could not record activity in %s", self.path)


def is_interaction(
    method: str, path: str, query: dict[str, list[bytes]], status: int
) -> str | None:
    """Why this finished HTTP request is a person's interaction, or None when it is not."""
    if status >= 400 or "/api/" not in path or "/api/workspaces" in path:
        return None
    if method in CHANGING_METHODS:
        return f"{method} {path}"
    if method == "GET" and "/api/contents/" in path:
        kind = (query.get("type") or [b""])[0]
        if kind in (b"file", b"notebook") and (query.get("content") or [b"1"])[0] != b"0":
            return f"open {path}"
    return None


def kernel_message_type(connection: Any, ws_msg: Any) -> str | None:
    from jupyter_server.services.kernels.connection.base import (
        deserialize_binary_message,
        deserialize_msg_from_ws_v1,
    )

    try:
        if connection.subprotocol == "v1.kernel.websocket.jupyter.org":
            _, parts = deserialize_msg_from_ws_v1(ws_msg)
            return json.loads(parts[0])["msg_type"]
        if isinstance(ws_msg, bytes):
            return deserialize_binary_message(ws_msg)["header"]["msg_type"]
        return json.loads(ws_msg)["header"]["msg_type"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _wrap_request_log(serverapp: Any, recorder: ActivityRecorder) -> None:
    settings = serverapp.web_app.settings
    original = settings.get("log_function")

    def log_function(handler: Any) -> None:
        request = handler.request
        reason = is_interaction(
            request.method, request.path, request.query_arguments, handler.get_status()
        )
        if reason:
            recorder.record(reason)
        if original is not None:
            original(handler)

    settings["log_function"] = log_function


def _wrap_kernel_messages(recorder: ActivityRecorder) -> None:
    from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

    original = ZMQChannelsWebsocketConnection.handle_incoming_message
    if getattr(original, "_jod_wrapped", False):
        return

    def handle_incoming_message(self: Any, incoming_msg: Any) -> None:
        msg_type = kernel_message_type(self, incoming_msg)
        if msg_type and msg_type not in AUTOMATIC_KERNEL_MESSAGES:
            recorder.record(f"kernel {msg_type}")
        return original(self, incoming_msg)

    handle_incoming_message._jod_wrapped = True  # type: ignore[attr-defined]
    ZMQChannelsWebsocketConnection.handle_incoming_message = handle_incoming_message


def _wrap_terminal_input(recorder: ActivityRecorder) -> None:
    try:
        from jupyter_server_terminals.handlers import TermSocket
    except ImportError:
        return
    original = TermSocket.on_message
    if getattr(original, "_jod_wrapped", False):
        return

    async def on_message(self: Any, message: Any) -> None:
        try:
            kind = json.loads(message)[0]
        except (ValueError, IndexError, TypeError, KeyError):
            kind = None
        if kind == "stdin":
            recorder.record("terminal input")
        await original(self, message)

    on_message._jod_wrapped = True  # type: ignore[attr-defined]
    TermSocket.on_message = on_message


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_extensions"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    # Our loggers (activity, autosave) write through Jupyter's own handlers, at INFO.
    ours = logging.getLogger("jupyter_on_demand")
    ours.handlers = list(serverapp.log.handlers)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    recorder = ActivityRecorder(default_activity_file())
    _wrap_request_log(serverapp, recorder)
    _wrap_kernel_messages(recorder)
    _wrap_terminal_input(recorder)
    serverapp.log.info("jupyter-on-demand: recording real interaction in %s", recorder.path)


def main(argv: list[str] | None = None) -> int:
    """`jupyter_extensions.py jupyter-lab [options]`: start JupyterLab as `jupyter lab [options]`
    does, with UNUSED_IMPORTS failing as if not installed.

    Only in this process: kernels and terminals are separate processes and import what they like.
    The command's name stays in the command line: the idle checker tells the Jupyter server's own
    CPU (a tab's polling) from a user's process by it (idle_check.JUPYTER_SERVER).
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != [LAUNCHED_COMMAND]:
        raise SystemExit(f"usage: jupyter_extensions.py {LAUNCHED_COMMAND} [jupyter lab options]")
    for name in UNUSED_IMPORTS:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    from jupyterlab.labapp import LabApp

    if os.environ.get("JOD_WAIT_FOR_WAKE") == "1":
        # The unit starts with the wake, not after it: the imports above (seconds) overlap it.
        # Nothing is configured or served until this boot's wake has succeeded.
        code = wait_for_wake()
        if code:
            return code
    LabApp.launch_instance(args[1:])
    return 0


# The unit's RestartPreventExitStatus=: a failed or missing wake is not retried every few seconds.
WAKE_FAILED_EXIT = 3


def wait_for_wake() -> int:
    """Wait for root's marker of this boot's successful wake (layout.wake_result), then take the
    environment the wake wrote: config.env, then secrets/jupyter.env (what EnvironmentFile= gave
    when the unit started after the wake; read now, so a password changed in SSM is in force).
    0 to go on; WAKE_FAILED_EXIT when the wake failed or did not end in JOD_WAKE_TIMEOUT s."""
    from layout import BootError, Paths, read_root_env, wake_result

    paths = Paths.from_env()
    timeout = float(os.environ.get("JOD_WAKE_TIMEOUT", "960"))
    print(f"jupyter-on-demand: waiting for this boot's wake ({paths.wake_marker})", file=sys.stderr)
    result = wake_result(paths, timeout)
    if result is not True:
        why = "failed" if result is False else f"did not end within {timeout:.0f} s"
        print(f"jupyter-on-demand: this boot's wake {why}; not starting Jupyter without the team "
              "password (journalctl -u jupyter-on-demand-secrets)", file=sys.stderr)  # fmt: skip
        return WAKE_FAILED_EXIT
    try:
        for path in (paths.config, paths.jupyter_env):
            os.environ.update(read_root_env(path))
    except BootError as error:
        print(f"jupyter-on-demand: {error}", file=sys.stderr)
        return WAKE_FAILED_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
