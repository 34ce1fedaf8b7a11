"""Jupyter starts with the wake, not after it (its imports overlap the wake), and serves only once
root's marker says THIS boot's wake succeeded; it then takes the password the wake wrote."""

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
from pathlib import Path

import pytest

import boot
import idle_check
import layout
from demo.jupyter import ROOT_FLAG, free_port, hashed, login, wait_until_up
from tests.ec2_bootstrap.test_jupyter_config import UNIT, unit_command

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root's marker: runs as root, as CI")


@pytest.fixture
def paths(tmp_path, monkeypatch) -> layout.Paths:
    etc = tmp_path / "etc"
    monkeypatch.setenv("JOD_ETC_DIR", str(etc))
    monkeypatch.setenv("JOD_CONFIG", str(etc / "config.env"))
    monkeypatch.setenv("JOD_RUN_DIR", str(tmp_path / "run"))
    paths = layout.Paths.from_env()
    (tmp_path / "root").mkdir()
    etc.mkdir(mode=0o755)
    paths.secrets.mkdir(mode=0o750)
    return paths


def write_wake_output(paths: layout.Paths, port: int, password: str, token: str) -> None:
    """What a wake writes: config.env and Jupyter's env file (as root, 0644 and 0640)."""
    layout.write_file(paths.config, f"JUPYTER_PORT={port}\nJUPYTER_TLS=0\n", 0o644)
    root_dir = paths.config.parent.parent / "root"
    layout.write_file(
        paths.jupyter_env,
        f"JUPYTER_HASHED_PASSWORD={hashed(password)}\nJUPYTER_TOKEN={token}\n"
        f"JUPYTER_ROOT_DIR={root_dir}\n",
        0o640,
    )


@contextmanager
def waiting_jupyter(paths: layout.Paths, timeout: float = 120) -> Iterator[subprocess.Popen]:
    """The unit's command with the unit's JOD_WAIT_FOR_WAKE, as the unit starts it: before the
    wake, with no password in its environment."""
    work = paths.config.parent.parent
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER_HASHED", "JUPYTER_TOKEN"))
    }
    env |= {
        "JOD_WAIT_FOR_WAKE": "1",
        "JOD_WAKE_TIMEOUT": str(timeout),
        "JUPYTER_IP": "127.0.0.1",
        "JUPYTER_AUTOSAVE": "0",
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_DATA_DIR": str(work / "data"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_ACTIVITY_FILE": str(work / "activity.json"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    log = work / "jupyter.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*unit_command(), "--no-browser", *ROOT_FLAG],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_log(process: subprocess.Popen, log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def test_jupyter_started_before_the_wake_serves_only_after_it_with_the_password_written_after(
    paths,
) -> None:
    port, token = free_port(), secrets.token_hex(16)
    # What an earlier boot left: a port and a password that are no longer the settings.
    write_wake_output(paths, free_port(), "the-old-password", "old-token")
    log = paths.config.parent.parent / "jupyter.log"
    with waiting_jupyter(paths) as process:
        wait_for_log(process, log, "waiting for this boot's wake")
        time.sleep(3)  # its imports are done by now: it still waits
        assert process.poll() is None and not listening(port)
        # The idle checker knows the waiting server by its command line (not a user's process).
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert idle_check.JUPYTER_SERVER.search(cmdline)
        # The wake: the new settings and password, then root's marker of this boot.
        write_wake_output(paths, port, "the-new-password", token)
        boot.mark_wake(paths, True)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, token, process, log, timeout=60)
        assert login(url, "the-new-password").get(f"{url}/api/status").status_code == 200
        assert login(url, "the-old-password").get(f"{url}/api/status").status_code == 403


@pytest.mark.parametrize(
    "marker", ["another boot's", "planted by the service user", "a symlink", "others may write"]
)
def test_a_marker_that_is_not_roots_of_this_boot_never_starts_jupyter(paths, marker) -> None:
    port = free_port()
    write_wake_output(paths, port, "the-team-password", "token")
    boot.mark_wake(paths, None)
    this_boot = layout.current_boot_id()
    if marker == "another boot's":
        layout.write_file(paths.wake_marker, "0f0f0f0f-0000-4000-8000-000000000000\n", 0o644)
    elif marker == "planted by the service user":
        layout.write_file(paths.wake_marker, f"{this_boot}\n", 0o644, (65534, 65534))
    elif marker == "a symlink":
        paths.wake_marker.symlink_to("/proc/sys/kernel/random/boot_id")
    else:
        layout.write_file(paths.wake_marker, f"{this_boot}\n", 0o644)
        paths.run.chmod(0o777)
    assert not layout.roots_marker(paths.wake_marker, this_boot)
    log = paths.config.parent.parent / "jupyter.log"
    with waiting_jupyter(paths) as process:
        wait_for_log(process, log, "waiting for this boot's wake")
        time.sleep(3)
        assert process.poll() is None and not listening(port)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)  # a stop while it waits ends it at once
        process.wait(10)
        assert time.monotonic() - started < 5
    assert not listening(port)


@pytest.mark.parametrize("how", ["failed", "timed out"])
def test_a_failed_or_endless_wake_ends_jupyter_cleanly_and_it_is_not_restarted(paths, how) -> None:
    port = free_port()
    write_wake_output(paths, port, "the-team-password", "token")
    boot.mark_wake(paths, False if how == "failed" else None)
    with waiting_jupyter(paths, timeout=2) as process:
        assert process.wait(60) == 3
    assert not listening(port)
    log = (paths.config.parent.parent / "jupyter.log").read_text()
    assert ("wake failed" if how == "failed" else "did not end within 2 s") in log
    assert "RestartPreventExitStatus=3" in UNIT.read_text().splitlines()


def test_the_wake_writes_its_marker_at_its_end_and_removes_it_at_its_start(paths) -> None:
    boot_id = layout.current_boot_id()
    boot.mark_wake(paths, True)
    assert layout.roots_marker(paths.wake_marker, boot_id)
    assert paths.run.stat().st_uid == 0 and paths.wake_marker.stat().st_uid == 0
    boot.mark_wake(paths, None)
    assert not paths.wake_marker.exists() and not paths.wake_failed_marker.exists()
    boot.mark_wake(paths, False)
    assert layout.roots_marker(paths.wake_failed_marker, boot_id)
    assert layout.wake_result(paths, 0) is False
    assert not paths.wake_marker.exists()
