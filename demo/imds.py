"""The instance metadata service (IMDSv2) as the demo's instance sees it: a token by PUT, then the
instance's tags (instance_metadata_tags = "enabled") read from moto, 404 for anything else. The
idle checker reads the start link's keep-awake tag here, as on EC2 (idle_keep_awake.py)."""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

TAGS = "/latest/meta-data/tags/instance/"


def serve(instance_id: str, region: str) -> ThreadingHTTPServer:
    token = secrets.token_hex(16)
    ec2: Any = boto3.client("ec2", region_name=region)

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.reply(200, token) if self.path == "/latest/api/token" else self.reply(404, "")

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") != token:
                self.reply(401, "")
                return
            if self.path == "/latest/meta-data/instance-id":
                self.reply(200, instance_id)
                return
            key = self.path.removeprefix(TAGS) if self.path.startswith(TAGS) else None
            reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            tags = {t["Key"]: t["Value"] for t in reservations[0]["Instances"][0].get("Tags", [])}
            if key is not None and key in tags:
                self.reply(200, tags[key])
            else:
                self.reply(404, "")

        def reply(self, code: int, body: str) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
