"""The start link's answer and its two views: JSON for scripts, an HTML page for people.

No AWS and no request here: handler.py decides, this module only renders what it decided. Like
handler.py, it imports only the standard library (Terraform zips the whole lambda_src/ folder).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

VIEWS = ("json", "page")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
{refresh}<title>Jupyter on demand</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}
a.open{{display:inline-block;font-size:1.6em;padding:.6em 1.2em;background:#f37726;color:#fff;
border-radius:.3em;text-decoration:none}}</style></head>
<body><h1>Jupyter on demand</h1>
<p id="message" data-state="{state}">{message}</p>
{link}</body></html>
"""
PAGE_REFRESH_SECONDS = 10


@dataclass(frozen=True)
class Reply:
    status: int
    message: str
    state: str | None = None
    url: str | None = None
    ready: bool | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "state": self.state}
        if self.url:
            body["url"] = self.url
        if self.ready is not None:
            body["ready"] = self.ready
        return body


def render_page(reply: Reply) -> str:
    waiting = reply.status < 400 and not (reply.url and reply.ready)
    refresh = f'<meta http-equiv="refresh" content="{PAGE_REFRESH_SECONDS}">\n' if waiting else ""
    link = ""
    if reply.url:
        note = "" if reply.ready else "<p>Jupyter is still booting; this page reloads itself.</p>"
        link = f'<p><a class="open" id="open" href="{html.escape(reply.url)}">Open Jupyter Lab</a></p>{note}'
    elif waiting:
        link = f"<p>This page reloads itself every {PAGE_REFRESH_SECONDS} s.</p>"
    return PAGE.format(
        refresh=refresh,
        state=html.escape(reply.state or ""),
        message=html.escape(reply.message),
        link=link,
    )


def respond(reply: Reply, view: str) -> dict[str, Any]:
    """The API Gateway proxy response for `reply`, as JSON or (view=page) as the HTML page."""
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    if view == "page":
        headers["Content-Type"] = "text/html; charset=utf-8"
        body = render_page(reply)
    else:
        headers["Content-Type"] = "application/json"
        body = json.dumps(reply.body())
    return {"statusCode": reply.status, "headers": headers, "body": body}
