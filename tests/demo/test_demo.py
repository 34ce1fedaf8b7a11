"""`make demo` end to end: start link → wait → URL → notebook saved → commit on the remote →
idle → stopped in moto → the start link wakes it again. Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3
import pytest
import requests

from tests.ec2_bootstrap.autosave_support import wait_for
from tests.support.jupyter import free_port, login, save_notebook

STARTING = "Jupyter Lab will start in 1-3 min. Wait and reload this request to get the access URL."


@pytest.fixture
def demo(tmp_path):
    jupyter_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "demo", "--port", "0", "--jupyter-port", str(jupyter_port),
         "--idle-minutes", "0.25", "--state-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    banner = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "FILES" not in banner:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.match(r"\s+([A-Z ()a-z]+):\s+(.*)", line)
        if match:
            banner[match.group(1).strip()] = match.group(2).strip()
    assert "START LINK" in banner, "".join(lines)
    # The rest of its output, read as it comes (a full pipe would block the demo), for the end.
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    process.output, process.reader = lines, reader  # type: ignore[attr-defined]
    yield process, banner, jupyter_port
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_demo_runs_the_whole_flow(demo) -> None:
    process, banner, jupyter_port = demo
    link = banner["JSON"]
    assert banner["PASSWORD"] in link and banner["START LINK"].endswith("&view=page")

    first = requests.get(link, timeout=30).json()
    assert first["message"] == STARTING

    running = wait_for(
        lambda: (r := requests.get(link, timeout=30).json()).get("ready") and r,
        timeout=120,
        interval=1,
    )
    assert running["url"] == f"http://127.0.0.1:{jupyter_port}/lab"
    assert running["message"].startswith(f"Jupyter Lab already running at {running['url']}.")

    base = running["url"].removesuffix("/lab")
    saved = save_notebook(login(base, banner["PASSWORD"]), base, "demo.ipynb")
    assert saved.status_code in (200, 201), saved.text

    bare = banner["COMMITS"].split("--git-dir ")[1].split()[0]
    wait_for(
        lambda: (
            "demo.ipynb"
            in subprocess.run(
                ["git", "--git-dir", bare, "ls-tree", "-r", "--name-only", "main"],
                capture_output=True,
                text=True,
            ).stdout
        ),
        timeout=30,
    )

    status_link = banner["STATUS"]
    wait_for(
        lambda: requests.get(status_link, timeout=30).json()["state"] == "stopped",
        timeout=120,
        interval=2,
    )
    endpoint, instance_id = banner["AWS (moto)"].split()[0], banner["AWS (moto)"].split()[-1]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)
    assert (
        ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
            "State"
        ]["Name"]
        == "stopped"
    )
    wait_for(lambda: not port_open(jupyter_port), timeout=30)

    again = requests.get(link, timeout=30).json()
    assert again["message"] == STARTING
    wait_for(lambda: requests.get(link, timeout=30).json().get("ready"), timeout=120, interval=1)

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(60) == 0
    assert not port_open(jupyter_port)
    # Every step went right the first time: no wake the stand-in had to run again.
    process.reader.join(30)  # the pipe's end
    log = "".join(process.output)
    for failure in ("hit an error", "BOOT FAILED", "Traceback"):
        assert failure not in log, log
