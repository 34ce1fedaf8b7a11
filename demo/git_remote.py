"""The local stand-in for GitHub (demo and tests): a real git smart-HTTP remote on loopback: `git http-backend` behind basic auth with a token.

The server can be switched down (connection refused, like a network outage) or made to answer
5xx, so the autosave's failure paths meet real git errors.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

GIT_HTTP_BACKEND = next(
    (
        p
        for p in ("/usr/lib/git-core/git-http-backend", "/usr/libexec/git-core/git-http-backend")
        if Path(p).exists()
    ),
    None,
)


class GitHTTPHandler(BaseHTTPRequestHandler):
    server: GitRemoteServer

    def log_message(self, format: str, *args) -> None:  # quiet; requests are counted instead
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        _user, _, token = base64.b64decode(header[6:]).decode().partition(":")
        return token == self.server.token

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        self.server.requests += 1
        body = self._read_body() if self.command == "POST" else b""
        if self.server.status_override:
            self.send_error(self.server.status_override)
            return
        if not self._authorized():
            self.server.auth_failures += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "autosave",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        result = subprocess.run(
            [GIT_HTTP_BACKEND], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode(errors="replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitRemoteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), GitHTTPHandler)
        self.root = root
        self.token = token
        self.status_override = 0
        self.requests = 0
        self.auth_failures = 0


class GitRemote:
    """A bare repo `team.git` served over smart HTTP. `.url` has no credentials in it."""

    def __init__(self, root: Path, token: str = "ghp_test_token_0123456789abcdef") -> None:
        if GIT_HTTP_BACKEND is None or shutil.which("git") is None:
            raise RuntimeError("needs git with git-http-backend (apt-get install git)")
        self.root = root
        self.token = token
        self.bare = root / "team.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        self.server: GitRemoteServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/team.git"

    def start(self) -> None:
        """Serve (again) on the same port, so clones keep their remote URL."""
        server = GitRemoteServer(self.root, self.token, self.port)
        self.server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Like a network outage: the port refuses connections."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.bare), *args], capture_output=True, text=True, check=True
        ).stdout

    def head(self, branch: str = "main") -> str | None:
        result = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.bare),
                "rev-parse",
                "-q",
                "--verify",
                f"refs/heads/{branch}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() or None

    def files(self, ref: str = "main") -> list[str]:
        if self.head(ref.removeprefix("refs/heads/")) is None:
            return []
        return self.git("ls-tree", "-r", "--name-only", ref).split()

    def show(self, path: str, ref: str = "main") -> str:
        return self.git("show", f"{ref}:{path}")

    def branches(self) -> list[str]:
        return self.git("for-each-ref", "--format=%(refname:short)", "refs/heads").split()

    def credential_line(self, user: str = "autosave", token: str | None = None) -> str:
        return f"http://{user}:{token or self.token}@127.0.0.1:{self.port}\n"
