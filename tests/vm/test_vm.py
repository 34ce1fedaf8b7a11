"""VM acceptance: the real user_data template, rendered by `terraform console`, booted on a real
Debian 12 with cloud-init under QEMU. Everything the guest needs is on this machine: moto (SSM,
EC2 tags), a wheelhouse for pip, and the git smart-HTTP remote with token auth.

Four boots of one disk:
  1. the first boot's install fails (PyPI unreachable), so the idle checker never arrives: the
     fail-safe, which user_data installs first, still powers the VM off after the idle time;
  2. the install is retried at the next boot and succeeds, but the secrets step fails (no team
     password in SSM): no Jupyter, and the VM still powers itself off;
  3. Jupyter answers over TLS with the team password and refuses a wrong one; a notebook saved
     through the API arrives as a commit on the host remote; after the short idle timeout the
     VM powers itself off; nothing is reinstalled;
  4. a password changed in SSM in between takes effect, the files are kept; a file saved just
     before an external poweroff (the ACPI power button) is on the remote, and the journal shows
     Jupyter stopped before the flush ran.
Records the times in .cache/bench/vm_acceptance.json.
"""

from __future__ import annotations

import functools
import re
import subprocess
import threading
import time
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import requests

from bench.common import report
from demo.git_remote import GitRemote
from demo.jupyter import authorized, free_port, login, save_notebook
from tests.ec2_bootstrap.autosave_support import wait_for
from tests.infrastructure.terraform import render_bundle, render_template
from tests.support.system_python import wheelhouse
from tests.vm.vm import VM, Forward, build_image, make_seed, require_host

pytestmark = pytest.mark.vm

IDLE_MINUTES = 1.0
OLD_PASSWORD = "first-team-password"
NEW_PASSWORD = "second-team-password"
TOKEN = "ghp_vm_test_token_0123456789"
READY_TAG = "jupyter-on-demand:ready-at"
ROOT = Path(__file__).resolve().parents[2]
GUEST_PYTHON = "3.11.2"


def serve_directory(folder: Path, port: int) -> ThreadingHTTPServer:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    require_host()
    image = build_image()
    folder = tmp_path_factory.mktemp("vm")
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_port = moto.get_host_and_port()[1]
    endpoint = f"http://127.0.0.1:{moto_port}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)  # moto's backends are per process
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=endpoint)
    instance_id = ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    ssm.put_parameter(Name="/jod/github-token", Value=TOKEN, Type="SecureString")
    for name, value in render_bundle().items():
        ssm.put_parameter(Name=f"/jod/bootstrap/{name}", Value=value, Type="String")
    wheels_port = free_port()  # served from the second boot on: the first boot's pip fails
    wheels: list[ThreadingHTTPServer] = []
    remote = GitRemote(folder / "remote", token=TOKEN)
    config = {
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://10.0.2.100:5000",
        "AWS_ACCESS_KEY_ID": "testing",  # moto's; a real instance uses its instance profile
        "AWS_SECRET_ACCESS_KEY": "testing",
        "TEAM_PASS_PARAMETER": "/jod/team-pass",
        "GITHUB_TOKEN_PARAMETER": "/jod/github-token",
        "GITHUB_REPO_URL": "http://10.0.2.102:8002/team.git",
        "GITHUB_USER_NAME": "autosave",
        "JUPYTER_PORT": "8443",
        "JUPYTER_TLS": "1",
        "IDLE_MINUTES": f"{IDLE_MINUTES:g}",
        "READY_TAG": READY_TAG,
        "INSTANCE_ID": instance_id,
        "BOOTSTRAP_PARAMETER_PREFIX": "/jod/bootstrap",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": "http://10.0.2.101:8001/",
        "PIP_TRUSTED_HOST": "10.0.2.101",  # the plain-HTTP wheelhouse of this test
        "JOD_RETRY_SECONDS": "1",  # the install's backoff, short for the test
        "PIP_RETRIES": "0",  # the first boot's pip fails at once (boot.py retries it anyway)
    }
    seed = make_seed(folder, render_template(config))
    forwards = [
        Forward("10.0.2.100", 5000, moto_port),
        Forward("10.0.2.101", 8001, wheels_port),
        Forward("10.0.2.102", 8002, remote.port),
    ]
    vm = VM(folder, image, seed, forwards, free_port())
    yield {
        "vm": vm,
        "ec2": ec2,
        "ssm": ssm,
        "instance_id": instance_id,
        "remote": remote,
        "serve_wheels": lambda: wheels.append(
            serve_directory(wheelhouse(GUEST_PYTHON), wheels_port)
        ),
    }
    vm.kill()
    remote.stop()
    for server in wheels:
        server.shutdown()
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)
    moto.stop()


def ready_after(ec2, instance_id: str, since: float) -> bool:
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
    value = next((t["Value"] for t in tags if t["Key"] == READY_TAG), None)
    if value is None:
        return False
    return datetime.fromisoformat(value).timestamp() >= since - 5


def boot_until_ready(host, name: str, timeout: float) -> float:
    vm: VM = host["vm"]
    wall_start = time.time()
    started = vm.boot(name)
    try:
        wait_for(
            lambda: (
                ready_after(host["ec2"], host["instance_id"], wall_start)
                or vm.process.poll() is not None
                or "BOOT FAILED" in vm.console_text()
            ),
            timeout=timeout,
            interval=3,
        )
    except AssertionError:
        raise AssertionError(
            f"not ready within {timeout} s; console:\n{vm.console_text()[-6000:]}"
        ) from None
    assert vm.process.poll() is None, f"the VM stopped:\n{vm.console_text()[-6000:]}"
    assert "BOOT FAILED" not in vm.console_text(), vm.console_text()[-6000:]
    return time.monotonic() - started


def powers_itself_off(vm: VM, name: str, timeout: float) -> float:
    """Boot and wait until the guest powers itself off; seconds from boot."""
    started = vm.boot(name)
    try:
        vm.wait_powered_off(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the VM did not stop itself within {timeout} s; console:\n{vm.console_text()[-6000:]}"
        ) from None
    assert vm.process.returncode == 0, vm.console_text()[-6000:]  # a clean guest poweroff
    return time.monotonic() - started


STOP_DECISION = re.compile(r'\{"time": "([^"]+)", "idle": true, [^\n]*"action": "stop"')


def test_failed_boots_still_stop_then_jupyter_autosave_idle_stop_and_poweroff_flush(host) -> None:
    vm: VM = host["vm"]
    remote: GitRemote = host["remote"]
    url = f"https://127.0.0.1:{vm.jupyter_host_port}"
    figures: dict[str, float] = {}

    # 1. The install fails (pip can't reach its index), so the checker never arrives: the
    # fail-safe that user_data installed first still stops the machine.
    figures["install_failed_boot_to_power_off_s"] = powers_itself_off(vm, "install-fails", 600)
    console = vm.console_text()
    assert "JUPYTER-ON-DEMAND BOOT FAILED (install)" in console, console[-6000:]
    assert "the fail-safe stops the machine" in console, console[-6000:]

    # 2. The install is retried at the next boot; the secrets step fails: still stopped.
    host["serve_wheels"]()
    figures["secrets_failed_boot_to_power_off_s"] = powers_itself_off(vm, "secrets-fail", 1500)
    console = vm.console_text()
    assert "installed; Jupyter is starting" in console, console[-6000:]
    assert "JUPYTER-ON-DEMAND BOOT FAILED (secrets)" in console, console[-6000:]
    assert STOP_DECISION.search(console), console[-6000:]
    assert not ready_after(host["ec2"], host["instance_id"], 0)

    # 3. The secrets exist: Jupyter, autosave, the idle stop.
    host["ssm"].put_parameter(Name="/jod/team-pass", Value=OLD_PASSWORD, Type="SecureString")
    figures["boot_to_ready_s"] = boot_until_ready(host, "ready", timeout=600)
    assert "installed; Jupyter is starting" not in vm.console_text()  # no reinstall
    assert authorized(login(url, OLD_PASSWORD), url)
    assert not authorized(login(url, "not-the-password"), url)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url.replace("https", "http") + "/login", timeout=10)  # TLS only

    saved = save_notebook(login(url, OLD_PASSWORD), url, "from-vm.ipynb")
    assert saved.status_code in (200, 201), saved.text
    deadline = time.monotonic() + IDLE_MINUTES * 60
    deadline_wall = time.time() + IDLE_MINUTES * 60
    wait_for(lambda: "from-vm.ipynb" in remote.files(), timeout=120, interval=2)

    powered_off = vm.wait_powered_off(timeout=IDLE_MINUTES * 60 + 240)
    figures["idle_deadline_to_power_off_s"] = powered_off - deadline
    # The guest's clock is the host's (UTC from the emulated RTC): its log times compare directly.
    decided = STOP_DECISION.search(vm.console_text())
    assert decided, "the guest logged no stop decision"
    figures["idle_deadline_to_stop_decision_s"] = (
        datetime.fromisoformat(decided.group(1)).timestamp() - deadline_wall
    )
    stopping = re.search(
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) idle-check WARNING stopping the machine",
        vm.console_text(),
    )
    assert stopping, "the guest logged no stop command"
    stop_at = datetime.strptime(stopping.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    figures["idle_deadline_to_stop_command_s"] = (
        stop_at.timestamp() - deadline_wall
    )  # after the flush
    assert vm.process.returncode == 0  # QEMU exits 0 when the guest powers itself off

    # 4. A new password; then a save in the last seconds before an external poweroff.
    host["ssm"].put_parameter(
        Name="/jod/team-pass", Value=NEW_PASSWORD, Type="SecureString", Overwrite=True
    )
    figures["second_boot_to_ready_s"] = boot_until_ready(host, "second", timeout=600)
    assert "installed; Jupyter is starting" not in vm.console_text()  # no reinstall
    session = login(url, NEW_PASSWORD)
    assert authorized(session, url)
    assert not authorized(login(url, OLD_PASSWORD), url)
    kept = session.get(f"{url}/api/contents/from-vm.ipynb", timeout=30, verify=False)
    assert kept.status_code == 200
    last = session.put(
        f"{url}/api/contents/last-seconds.txt",
        json={"type": "file", "format": "text", "content": "saved just before the poweroff\n"},
        headers={"X-XSRFToken": session.cookies.get("_xsrf", "")},
        timeout=30,
        verify=False,
    )
    assert last.status_code in (200, 201), last.text
    pressed = time.monotonic()
    vm.press_power_button()
    figures["power_button_to_off_s"] = vm.wait_powered_off(timeout=240) - pressed
    assert remote.show("last-seconds.txt") == "saved just before the poweroff\n"
    console = vm.console_text()
    jupyter_stopped = console.find("Stopped jupyter-on-demand.service")
    flush_started = console.find("Stopping jupyter-on-demand-autosave-flush.service")
    assert 0 <= jupyter_stopped < flush_started, console[-6000:]
    report("vm_acceptance", figures)
