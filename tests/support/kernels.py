"""Drive real kernels and terminals of a running Jupyter over their websockets, as a browser does."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.support.jupyter import Jupyter


def ws_url(jupyter: Jupyter, path: str) -> HTTPRequest:
    url = jupyter.url.replace("http", "ws", 1) + path
    return HTTPRequest(
        url, headers={"Authorization": f"token {jupyter.token}"}, validate_cert=False
    )


def start_kernel(jupyter: Jupyter) -> str:
    response = jupyter.api("POST", "/api/kernels", json={"name": "python3"})
    response.raise_for_status()
    return response.json()["id"]


def start_notebook_kernel(jupyter: Jupyter, path: str) -> str:
    """A kernel for the notebook `path`, as JupyterLab opens one (a session)."""
    body = {"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}}
    response = jupyter.api("POST", "/api/sessions", json=body)
    response.raise_for_status()
    return response.json()["kernel"]["id"]


def message(msg_type: str, content: dict[str, Any], session: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "username": "test",
            "session": session,
            "msg_type": msg_type,
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


async def _execute(
    jupyter: Jupyter, kernel_id: str, code: str, wait: bool, timeout: float
) -> dict[str, Any]:
    session = uuid.uuid4().hex
    connection = await websocket_connect(
        ws_url(jupyter, f"/api/kernels/{kernel_id}/channels?session_id={session}")
    )
    request = message(
        "execute_request", {"code": code, "silent": False, "store_history": True}, session
    )
    connection.write_message(json.dumps(request))
    reply: dict[str, Any] = {}
    if wait:
        while True:
            raw = await asyncio.wait_for(connection.read_message(), timeout)
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                continue
            if msg["msg_type"] == "execute_reply":
                reply = msg["content"]
                break
    else:
        # Wait until the kernel says it is busy with this request, so the caller can rely on it.
        while True:
            raw = await asyncio.wait_for(connection.read_message(), timeout)
            msg = json.loads(raw)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy":
                if msg.get("parent_header", {}).get("msg_id") == request["header"]["msg_id"]:
                    break
    connection.close()
    return reply


def execute(
    jupyter: Jupyter,
    code: str,
    kernel_id: str | None = None,
    wait: bool = True,
    timeout: float = 60,
) -> str:
    """Run code in a (new) kernel; returns the kernel id. wait=False returns once it is busy."""
    kernel_id = kernel_id or start_kernel(jupyter)
    reply = asyncio.run(_execute(jupyter, kernel_id, code, wait, timeout))
    if wait and reply.get("status") != "ok":
        raise RuntimeError(f"execution failed: {reply}")
    return kernel_id


def start_terminal(jupyter: Jupyter) -> str:
    response = jupyter.api("POST", "/api/terminals")
    response.raise_for_status()
    return response.json()["name"]


async def _terminal_input(jupyter: Jupyter, name: str, text: str, settle: float) -> None:
    connection = await websocket_connect(ws_url(jupyter, f"/terminals/websocket/{name}"))
    connection.write_message(json.dumps(["stdin", text]))
    await asyncio.sleep(settle)
    connection.close()


def terminal_input(jupyter: Jupyter, name: str, text: str, settle: float = 1.0) -> None:
    """Type into a terminal, as a person in the browser does."""
    asyncio.run(_terminal_input(jupyter, name, text, settle))
