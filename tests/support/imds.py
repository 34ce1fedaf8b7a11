"""A fake instance metadata service (IMDSv2) on loopback: a token by PUT, then the keep-awake
tag with it, 404 without one; what EC2 serves when instance_metadata_tags is enabled."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from idle_tags import KEEP_AWAKE_TAG


class FakeIMDS(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 serves it: a token by PUT, then the tag with it; 404 without a tag."""

    tag: str | None = None
    token = "t0ken"

    def do_PUT(self) -> None:
        assert self.path == "/latest/api/token"
        self.reply(200, self.token)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self.reply(401, "")
        elif self.path == f"/latest/meta-data/tags/instance/{KEEP_AWAKE_TAG}" and self.tag:
            self.reply(200, self.tag)
        else:
            self.reply(404, "")

    def reply(self, code: int, body: str) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIMDS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        FakeIMDS.tag = None
