"""A local stand-in for API Gateway: turns HTTP requests into REST (v1) proxy events.

Used by `make demo` and by the browser tests. It calls the real `lambda_src/handler.py` in this
process, so the handler's boto3 clients go wherever the environment points them (moto).

    python3 -m demo.gateway --port 8080
"""

from __future__ import annotations

import argparse
import importlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
STAGE = "v1"
logger = logging.getLogger("gateway")


def load_handler():
    return importlib.import_module("handler")


def to_event(method: str, raw_path: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """The v1 proxy event API Gateway would send for this request, or None when no route matches."""
    parts = urlsplit(raw_path)
    prefix = f"/{STAGE}"
    if not parts.path.startswith(prefix + "/"):
        return None
    resource = parts.path[len(prefix) :]
    multi = parse_qs(parts.query, keep_blank_values=True)
    return {
        "resource": resource,
        "path": resource,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"stage": STAGE, "path": parts.path, "httpMethod": method},
        "body": None,
        "isBase64Encoded": False,
    }


class GatewayHandler(BaseHTTPRequestHandler):
    server_version = "local-api-gateway"
    lambda_handler = None  # set by serve()
    requests_seen = 0

    def do_GET(self) -> None:
        self._invoke("GET")

    def do_POST(self) -> None:
        self._invoke("POST")

    def _invoke(self, method: str) -> None:
        type(self).requests_seen += 1
        event = to_event(method, self.path, dict(self.headers.items()))
        if event is None:
            self._send(
                403,
                {"Content-Type": "application/json"},
                '{"message":"Missing Authentication Token"}',
            )
            return
        response = type(self).lambda_handler(event, None)
        self._send(response["statusCode"], response.get("headers", {}), response["body"])

    def _send(self, status: int, headers: dict[str, str], body: str) -> None:
        data = body.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Like the real stage's access log: method and path, never the query (it holds the password).
        logger.info(
            "%s %s -> %s", self.command, urlsplit(self.path).path, args[1] if len(args) > 1 else ""
        )


def serve(host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """Start the gateway in a daemon thread and return the server (call .shutdown() to stop)."""
    handler_class = type("Handler", (GatewayHandler,), {"requests_seen": 0})
    handler_class.lambda_handler = staticmethod(load_handler().lambda_handler)
    server = ThreadingHTTPServer((host, port), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = serve(args.host, args.port)
    logger.info("gateway on http://%s:%s/%s/start", args.host, server.server_port, STAGE)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
