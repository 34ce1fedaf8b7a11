"""A real `jupyter lab` process on 127.0.0.1 with the project's config file (tests and benchmarks)."""

from __future__ import annotations

import contextlib
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

from tests.support.notebooks import notebook, notebook_model

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ec2_bootstrap" / "jupyter_server_config.py"
PASSWORD = "team-password-for-tests"
# The instance runs Jupyter as the unprivileged `jupyter` user; these machines run tests as root.
ROOT_FLAG = ["--allow-root"] if os.geteuid() == 0 else []


# free_port() closes its probe and Jupyter binds the port seconds later (port_retries=0): another
# process may take it meanwhile under `make test`. Jupyter then exits saying so, and starts again.
PORT_TRIES = 3


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

    def save_notebook(self, path: str, *sources: str) -> requests.Response:
        """Save a notebook with a code cell per source, as JupyterLab's Ctrl-S does."""
        return self.api("PUT", f"/api/contents/{path}", json=notebook_model(*sources))

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def keep_awake_file(self) -> Path:
        """Where "Keep awake" in JupyterLab asks the idle checker (jupyter_idle_api.py)."""
        return self.activity_file.with_name("keep-awake.json")

    @property
    def verdict_file(self) -> Path:
        """Where the idle checker leaves its verdict for JupyterLab's status item."""
        return self.activity_file.with_name("idle-verdict.json")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


# In the environment of what start_in_session starts, and so of everything that inherits it: a
# terminal's shell and its jobs too, which run in a session of their own (a pty), outside the
# process group stop_process_group signals.
SESSION_MARK = "JOD_TEST_SESSION"
_MARKS: dict[int, bytes] = {}


def marked_processes(mark: bytes) -> list[int]:
    """The pids whose environment holds `mark` (this user's processes; others can't be read)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue  # gone, or not ours
            if mark in environ.split(b"\0"):
                found.append(int(entry.name))
    return found


def stop_process_group(process: subprocess.Popen, grace: float = 15) -> None:
    """Stop a process started with `start_new_session=True` and everything it started.

    SIGTERM to its process group, up to `grace` seconds to exit, then SIGKILL to the group and a
    wait, so no child (a kernel, git) outlives the test; then SIGKILL to what start_in_session's
    mark finds left (a terminal's jobs). A process that has already exited is not signalled: its
    group id may belong to someone else by now.
    """
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    mark = _MARKS.pop(process.pid, None)
    if mark is not None:
        for pid in marked_processes(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start_in_session(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `command` in its own session (stop it with `stop_process_group`), in `log`'s folder,
    its output and errors to `log`, unbuffered, with this Python's bin folder first on PATH."""
    bin_dir = Path(sys.executable).parent
    token = secrets.token_hex(8)
    environment = {**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                   SESSION_MARK: token}  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=log.parent,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _MARKS[process.pid] = f"{SESSION_MARK}={token}".encode()
    return process


def jupyter_folders(work: Path) -> dict[str, str]:
    """Jupyter's config, data and runtime folders and the activity file, all in `work`."""
    return {
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_DATA_DIR": str(work / "data"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_ACTIVITY_FILE": str(work / "activity.json"),
        "JUPYTER_KEEP_AWAKE_FILE": str(work / "keep-awake.json"),
        "JUPYTER_IDLE_VERDICT_FILE": str(work / "idle-verdict.json"),
    }


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
    token = secrets.token_hex(16)
    work.mkdir(parents=True, exist_ok=True)
    root_dir.mkdir(parents=True, exist_ok=True)
    activity = work / "activity.json"
    environment = {
        **os.environ,
        "JUPYTER_IP": "127.0.0.1",
        "JUPYTER_ROOT_DIR": str(root_dir),
        "JUPYTER_TOKEN": token,
        "JUPYTER_HASHED_PASSWORD": hashed_password if hashed_password is not None else hashed(),
        **jupyter_folders(work),
        "JUPYTER_AUTOSAVE_DEBOUNCE": "0.5",
        "HOME": os.environ.get("HOME", str(work)),
    }
    environment.pop("JUPYTER_CERTFILE", None)
    environment.pop("JUPYTER_KEYFILE", None)
    if tls:
        cert, key = make_certificate(work)
        environment |= {"JUPYTER_CERTFILE": str(cert), "JUPYTER_KEYFILE": str(key)}
    environment |= env or {}
    log = work / "jupyter.log"
    jupyter = Path(sys.executable).parent / "jupyter"
    for tries_left in reversed(range(PORT_TRIES)):
        port = free_port()
        environment["JUPYTER_PORT"] = str(port)
        process = start_in_session(
            [str(jupyter), "lab", f"--config={CONFIG}", "--no-browser", *ROOT_FLAG],
            environment,
            log,
        )
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        try:
            wait_until_up(url, token, process, log)
            break
        except BaseException:
            stop_process_group(process)
            if tries_left and f"port {port} is not available" in log.read_text():
                continue
            raise
    try:
        yield Jupyter(url, token, root_dir, activity, process, log)
    finally:
        stop_process_group(process)


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
    return session.put(
        f"{url}/api/contents/{path}",
        json={"type": "notebook", "content": notebook()},
        headers={"X-XSRFToken": session.cookies["_xsrf"]},
        timeout=timeout,
        verify=False,
    )
