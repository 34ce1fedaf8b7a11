"""The process helpers every real-Jupyter test stops its server with."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.support import jupyter as harness
from tests.support.jupyter import start_in_session, stop_process_group


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_child_in_a_session_of_its_own_does_not_outlive_the_stop(tmp_path: Path) -> None:
    """A Jupyter terminal's shell and its jobs run in a session of their own (a pty), outside
    the server's process group: stopping the server's group alone left a CPU loop typed in a
    terminal running on after the test (seen in a loaded `make test`)."""
    pid_file = tmp_path / "child.pid"
    process = start_in_session(
        # The child writes its own pid once in its new session: `$!` read from outside could
        # name it before setsid(2) ran (CI saw it still in the parent's session).
        ["/bin/sh", "-c", f"setsid sh -c 'echo $$ > \"{pid_file}\"; exec sleep 300' & wait"],
        dict(os.environ),
        tmp_path / "log.txt",
    )
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert os.getsid(child) != os.getsid(process.pid)  # out of the group the stop signals
    stop_process_group(process, grace=5)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_port_another_process_took_before_jupyter_bound_it_gets_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() closes its probe before Jupyter binds the port, seconds later (its imports):
    under `make test` another process may take it meanwhile. Jupyter then says so and exits
    (port_retries=0): the harness starts it again on another port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        real = harness.free_port
        monkeypatch.setattr(harness, "free_port", lambda: next(ports, None) or real())
        with harness.running_jupyter(tmp_path / "root", tmp_path / "work") as jupyter:
            assert jupyter.url != f"http://127.0.0.1:{taken.getsockname()[1]}"
            assert jupyter.api("GET", "/api/status?no_track_activity=1").status_code == 200
