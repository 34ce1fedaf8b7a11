"""A fake instance metadata service (IMDSv2) on loopback: a token by PUT, then, with it, the
instance id, the keep-awake tag (what EC2 serves when instance_metadata_tags is enabled) and the
spot interruption notice; 404 for either while there is none, 401 without the token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from idle_tags import KEEP_AWAKE_TAG

SPOT_NOTICE_PATH = "/latest/meta-data/spot/instance-action"


class FakeIMDS(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 serves it: a token by PUT, then the tag or the notice with it."""

    tag: str | None = None
    instance_id: str | None = "i-0123456789abcdef0"
    spot_notice: str | None = None  # the body of /latest/meta-data/spot/instance-action
    spot_polls = 0  # GETs of the notice, with a valid token or not
    tokens = 0  # PUTs of a token
    token = "t0ken"
    token_status = 200  # what a PUT of a token gets (404: a wrong endpoint, say)

    def do_PUT(self) -> None:
        assert self.path == "/latest/api/token"
        FakeIMDS.tokens += 1
        self.reply(self.token_status, self.token if self.token_status == 200 else "")

    def do_GET(self) -> None:
        if self.path == SPOT_NOTICE_PATH:
            FakeIMDS.spot_polls += 1
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self.reply(401, "")
        elif self.path == f"/latest/meta-data/tags/instance/{KEEP_AWAKE_TAG}" and self.tag:
            self.reply(200, self.tag)
        elif self.path == SPOT_NOTICE_PATH and self.spot_notice is not None:
            self.reply(200, self.spot_notice)
        elif self.path == "/latest/meta-data/instance-id" and self.instance_id:
            self.reply(200, self.instance_id)
        else:
            self.reply(404, "")

    def reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving_imds(port: int = 0) -> Iterator[str]:
    """FakeIMDS on 127.0.0.1 (`port`, or a free one): its URL; its state reset on the way out."""
    server = ThreadingHTTPServer(("127.0.0.1", port), FakeIMDS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        FakeIMDS.tag = None
        FakeIMDS.spot_notice = None
        FakeIMDS.spot_polls = FakeIMDS.tokens = 0
        FakeIMDS.token = "t0ken"
        FakeIMDS.token_status = 200
        FakeIMDS.instance_id = "i-0123456789abcdef0"


@pytest.fixture
def imds() -> Iterator[str]:
    with serving_imds() as url:
        yield url
