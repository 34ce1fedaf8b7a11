"""A real `jupyter lab` process on 127.0.0.1 with the project's config file (tests and benchmarks)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ec2_bootstrap" / "jupyter_server_config.py"
PASSWORD = "team-password-for-tests"
# The instance runs Jupyter as the unprivileged `jupyter` user; these machines run tests as root.
ROOT_FLAG = ["--allow-root"] if os.geteuid() == 0 else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hashed(password: str = PASSWORD) -> str:
    from jupyter_server.auth import passwd

    return passwd(password, algorithm="argon2")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "jupyter.crt", folder / "jupyter.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Jupyter:
    url: str
    token: str
    root_dir: Path
    activity_file: Path
    process: subprocess.Popen
    log: Path

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.url}{path}", headers=headers, verify=False, timeout=30, **kwargs
        )

    def save(self, path: str, content: str, kind: str = "file") -> requests.Response:
        model = {"type": kind, "format": "text" if kind == "file" else None, "content": content}
        return self.api("PUT", f"/api/contents/{path}", json=model)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def wait_until_up(
    url: str, token: str, process: subprocess.Popen, log: Path, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"jupyter exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            response = requests.get(
                f"{url}/api/status",
                params={"no_track_activity": "1"},
                headers={"Authorization": f"token {token}"},
                verify=False,
                timeout=2,
            )
            if response.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"jupyter did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_jupyter(
    root_dir: Path,
    work: Path,
    tls: bool = False,
    env: dict[str, str] | None = None,
    hashed_password: str | None = None,
) -> Iterator[Jupyter]:
    port = free_port()
    token = secrets.token_hex(16)
    work.mkdir(parents=True, exist_ok=True)
    root_dir.mkdir(parents=True, exist_ok=True)
    activity = work / "activity.json"
    environment = {
        **os.environ,
        "JUPYTER_IP": "127.0.0.1",
        "JUPYTER_PORT": str(port),
        "JUPYTER_ROOT_DIR": str(root_dir),
        "JUPYTER_TOKEN": token,
        "JUPYTER_HASHED_PASSWORD": hashed_password if hashed_password is not None else hashed(),
        "JUPYTER_ACTIVITY_FILE": str(activity),
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_DATA_DIR": str(work / "data"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_AUTOSAVE_DEBOUNCE": "0.5",
        "HOME": os.environ.get("HOME", str(work)),
        "PYTHONUNBUFFERED": "1",
    }
    environment.pop("JUPYTER_CERTFILE", None)
    environment.pop("JUPYTER_KEYFILE", None)
    if tls:
        cert, key = make_certificate(work)
        environment |= {"JUPYTER_CERTFILE": str(cert), "JUPYTER_KEYFILE": str(key)}
    environment |= env or {}
    log = work / "jupyter.log"
    bin_dir = Path(sys.executable).parent
    environment["PATH"] = f"{bin_dir}:{environment.get('PATH', '')}"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(bin_dir / "jupyter"), "lab", f"--config={CONFIG}", "--no-browser", *ROOT_FLAG],
            cwd=work,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    server = Jupyter(url, token, root_dir, activity, process, log)
    try:
        wait_until_up(url, token, process, log)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def login(url: str, password: str, timeout: float = 30) -> requests.Session:
    """A session logged in through Jupyter's login form, as a browser does (with its _xsrf)."""
    session = requests.Session()
    session.get(f"{url}/login", timeout=timeout, verify=False)
    session.post(
        f"{url}/login",
        data={"password": password, "_xsrf": session.cookies.get("_xsrf")},
        timeout=timeout,
        verify=False,
        allow_redirects=False,
    )
    return session


def authorized(session: requests.Session, url: str) -> bool:
    return session.get(f"{url}/api/contents", timeout=30, verify=False).status_code == 200


def save_notebook(
    session: requests.Session, url: str, path: str, timeout: float = 60
) -> requests.Response:
    """Save an empty notebook through the contents API, as JupyterLab's Ctrl-S does."""
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return session.put(
        f"{url}/api/contents/{path}",
        json={"type": "notebook", "content": notebook},
        headers={"X-XSRFToken": session.cookies["_xsrf"]},
        timeout=timeout,
        verify=False,
    )
