"""VM acceptance: the user_data Terraform rendered, read back from moto after a real `terraform
apply` of the stack, booted on a real Debian 12 with cloud-init under QEMU. Everything the guest
needs is on this machine: moto (the SSM parameters Terraform wrote: code bundle, settings,
secrets; EC2 tags), a wheelhouse for pip, and the git smart-HTTP remote with token auth. What a
real platform would add (the instance profile's credentials, the metadata service's instance id)
comes as cloud-init vendor-data that writes the site file local.env, never through user_data.

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
     Jupyter stopped before the flush ran, and the flush done before the network went down.
Boots 3 and 4 record their phases from the guest's clocks (kernel start, network.target,
network-online.target, Jupyter's unit started, secrets step done, Jupyter listening, ready tag
set); at boot 4 Jupyter started between the first two. Records the times in
.cache/bench/vm_acceptance.json.
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

import pytest
import requests

import idle_tags
import layout
from bench.common import RESULTS, report
from demo.git_remote import GitRemote
from tests.ec2_bootstrap.autosave_support import wait_for
from tests.infrastructure.stack import (
    GITHUB_TOKEN,
    apply,
    design_note_variables,
    moto_server,
)
from tests.support.jupyter import authorized, free_port, login, save_notebook
from tests.support.system_python import wheelhouse
from tests.vm.vm import VM, Forward, build_image, make_seed, require_host

pytestmark = pytest.mark.vm

IDLE_MINUTES = 1.0
# Not the default 8443: Jupyter answering on it shows the settings Terraform wrote reached the guest.
JUPYTER_PORT = 8444
TEAM_PASS_PARAMETER = "/jupyter-on-demand/team-pass"  # the design note's default name_prefix
OLD_PASSWORD = "first-team-password"
NEW_PASSWORD = "second-team-password"
READY_TAG = "jupyter-on-demand:ready-at"
ROOT = Path(__file__).resolve().parents[2]
GUEST_PYTHON = "3.11.2"


def serve_directory(folder: Path, port: int) -> ThreadingHTTPServer:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def guest_environment(local_env: dict[str, str]) -> str:
    """The test's vendor-data (cloud-init's channel for what the platform adds, beside the user's
    user_data): a script that cloud-init runs once, before user_data's runcmd starts the install.
    It writes the site file local.env that boot.py merges last into config.env (moto's endpoint and
    fake credentials in place of the instance profile, the instance id in place of the metadata
    service, the host's git remote and wheelhouse), and a unit that prints each wake's phases,
    from the guest's own clocks, to the console once the ready step is done."""
    site = layout.Paths.from_env({}).local_env  # the instance's layout
    return f"""#!/bin/sh
set -eu
install -d -m 0755 {site.parent}
cat > {site} <<'EOF_ENV'
{layout.env_file(local_env)}EOF_ENV
chmod 0644 {site}
cat > /usr/local/sbin/jod-wake-phases <<'EOF_SH'
{WAKE_PHASES_SCRIPT}EOF_SH
chmod 0755 /usr/local/sbin/jod-wake-phases
cat > /etc/systemd/system/jod-wake-phases.service <<'EOF_UNIT'
[Unit]
Description=test only: this wake's phases to the console, once it is ready

[Service]
Type=simple
ExecStart=/usr/local/sbin/jod-wake-phases

[Install]
WantedBy=multi-user.target
EOF_UNIT
systemctl daemon-reload
systemctl enable jod-wake-phases.service
"""


# Monotonic microseconds since the kernel started: systemd's own timestamps (kernel, the network
# and network-online targets) and the journal's of the wake's own lines: Jupyter's unit started
# (its imports begin), "WAKE DONE" (the code, the settings and the secrets are in place: the
# secrets step done), Jupyter's "is running at" and "READY at" (the ready tag set);
# `systemd-analyze time` too.
WAKE_PHASES_SCRIPT = """#!/bin/sh
logged() {
  journalctl -b -o short-monotonic --no-pager 2>/dev/null \\
    | grep -m 1 -F "$1" | sed -n 's/^\\[ *\\([0-9]*\\)\\.\\([0-9]*\\)\\].*/\\1\\2/p'
}
# Once the wake is ready (bounded: 10 minutes; following the journal costs no CPU while waiting).
timeout 600 journalctl -b -f -n all -o cat --no-pager 2>/dev/null \\
  | grep -q -m 1 -F 'JUPYTER-ON-DEMAND READY at' || true
echo "JOD-WAKE-PHASES kernel_us=$(systemctl show -P KernelTimestampMonotonic)" \\
  "network_us=$(systemctl show -P ActiveEnterTimestampMonotonic network.target)" \\
  "network_online_us=$(systemctl show -P ActiveEnterTimestampMonotonic network-online.target)" \\
  "jupyter_started_us=$(logged 'Started jupyter-on-demand.service')" \\
  "secrets_done_us=$(logged 'JUPYTER-ON-DEMAND WAKE DONE')" \\
  "jupyter_listening_us=$(logged 'is running at')" \\
  "ready_us=$(logged 'JUPYTER-ON-DEMAND READY at')" >/dev/ttyS0
echo "JOD-SYSTEMD-ANALYZE $(systemd-analyze time 2>&1 | head -n 1)" >/dev/ttyS0
# Where the wake's time goes: the project's units' lines and the critical chain (bounded).
journalctl -b -o short-monotonic --no-pager -u jupyter-on-demand-install.service \\
  -u jupyter-on-demand-secrets.service -u jupyter-on-demand.service 2>/dev/null \\
  | head -n 80 | sed 's/^/JOD-JOURNAL /' >/dev/ttyS0
systemd-analyze critical-chain jupyter-on-demand.service 2>&1 | head -n 30 \\
  | sed 's/^/JOD-CHAIN /' >/dev/ttyS0
echo "JOD-WAKE-DETAIL-END" >/dev/ttyS0
"""
WAKE_PHASES = re.compile(
    r"JOD-WAKE-PHASES kernel_us=(\d+) network_us=(\d+) network_online_us=(\d+) "
    r"jupyter_started_us=(\d+) secrets_done_us=(\d+) jupyter_listening_us=(\d+) ready_us=(\d+)"
)


def wake_phases(console: str) -> dict[str, float]:
    """Seconds from kernel start of each phase of this wake, as the guest logged them."""
    found = WAKE_PHASES.search(console)
    assert found, f"the guest logged no wake phases:\n{console[-6000:]}"
    kernel, network, online, started, secrets, listening, ready = map(int, found.groups())
    phases = {
        "network_s": (network - kernel) / 1e6,
        "network_online_s": (online - kernel) / 1e6,
        "jupyter_started_s": (started - kernel) / 1e6,
        "secrets_done_s": (secrets - kernel) / 1e6,
        "jupyter_listening_s": (listening - kernel) / 1e6,
        "ready_s": (ready - kernel) / 1e6,
    }
    assert 0 < phases["network_online_s"] < phases["secrets_done_s"] < phases["ready_s"], phases
    assert phases["secrets_done_s"] < phases["jupyter_listening_s"] <= phases["ready_s"], phases
    phases["wake_ratio"] = phases["ready_s"] / phases["network_online_s"]
    return phases


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    require_host()
    image = build_image()
    folder = tmp_path_factory.mktemp("vm")
    with moto_server() as endpoint:
        # The real stack, applied by Terraform against moto: the VM boots its user_data as moto
        # holds it, and reads the code bundle, the settings and the secrets Terraform wrote.
        stack = apply(
            folder / "terraform",
            endpoint,
            design_note_variables(endpoint)
            | {"idle_minutes": IDLE_MINUTES, "jupyter_port": JUPYTER_PORT},
        )
        ec2, ssm = stack.client("ec2"), stack.client("ssm")
        # The second boot finds no team password: the secrets step must fail safe.
        ssm.delete_parameter(Name=TEAM_PASS_PARAMETER)
        moto_port = int(endpoint.rsplit(":", 1)[1])
        wheels_port = free_port()  # served from the second boot on: the first boot's pip fails
        wheels: list[ThreadingHTTPServer] = []
        remote = GitRemote(folder / "remote", token=GITHUB_TOKEN)
        local_env = {
            "AWS_ENDPOINT_URL": "http://10.0.2.100:5000",
            "AWS_ACCESS_KEY_ID": "testing",  # moto's; a real instance uses its instance profile
            "AWS_SECRET_ACCESS_KEY": "testing",
            "INSTANCE_ID": stack.instance_id,  # no metadata service here
            "IMDS_ENDPOINT": "",  # nor its tags: the link's keep-awake is not read here
            "GITHUB_REPO_URL": "http://10.0.2.102:8002/team.git",  # the host's remote
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": "http://10.0.2.101:8001/",
            "PIP_TRUSTED_HOST": "10.0.2.101",  # the plain-HTTP wheelhouse of this test
            # The fail-safe's minutes before any settings arrived (the first boot's failed
            # install): the site's, as on a real site; later the settings' (the same value).
            "IDLE_MINUTES": f"{IDLE_MINUTES:g}",
            "JOD_RETRY_SECONDS": "1",  # the install's backoff, short for the test
            "PIP_RETRIES": "0",  # the first boot's pip fails at once (boot.py retries it anyway)
        }
        seed = make_seed(folder, stack.user_data(), vendor_data=guest_environment(local_env))
        forwards = [
            Forward("10.0.2.100", 5000, moto_port),
            Forward("10.0.2.101", 8001, wheels_port),
            Forward("10.0.2.102", 8002, remote.port),
        ]
        vm = VM(folder, image, seed, forwards, free_port(), jupyter_guest_port=JUPYTER_PORT)
        yield {
            "vm": vm,
            "ec2": ec2,
            "ssm": ssm,
            "instance_id": stack.instance_id,
            "remote": remote,
            "serve_wheels": lambda: wheels.append(
                serve_directory(wheelhouse(GUEST_PYTHON), wheels_port)
            ),
        }
        vm.kill()
        remote.stop()
        for server in wheels:
            server.shutdown()


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


def record_wake(vm: VM, figures: dict[str, float], name: str) -> None:
    """The phases of the wake that just got ready, from the guest's clocks (seconds from kernel
    start); the wake ratio is (ready - kernel start) / (network-online - kernel start)."""
    wait_for(lambda: WAKE_PHASES.search(vm.console_text()), timeout=120, interval=2)
    for phase, seconds in wake_phases(vm.console_text()).items():
        figures[f"{name}_{phase}"] = round(seconds, 3)
    # The detail of this wake (its lines come last on the console), for reading, not asserting.
    wait_for(lambda: "JOD-WAKE-DETAIL-END" in vm.console_text(), timeout=60, interval=2)
    console = vm.console_text()
    detail = console[console.rfind("JOD-WAKE-PHASES") :].splitlines()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"vm_{name}_detail.txt").write_text(
        "".join(f"{line}\n" for line in detail if line.startswith(("JOD-JOURNAL", "JOD-CHAIN")))
    )


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
    assert "JUPYTER-ON-DEMAND BOOT FAILED (wake)" in console, console[-6000:]
    assert STOP_DECISION.search(console), console[-6000:]
    assert not ready_after(host["ec2"], host["instance_id"], 0)

    # 3. The secrets exist: Jupyter, autosave, the idle stop.
    host["ssm"].put_parameter(Name=TEAM_PASS_PARAMETER, Value=OLD_PASSWORD, Type="SecureString")
    figures["boot_to_ready_s"] = boot_until_ready(host, "ready", timeout=600)
    record_wake(vm, figures, "first_wake")
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
    decided_at = datetime.fromisoformat(decided.group(1))
    figures["idle_deadline_to_stop_decision_s"] = decided_at.timestamp() - deadline_wall
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
    # Before the stop, the checker tagged why (publish_verdict.py): the start page says it next.
    tags = host["ec2"].describe_tags(
        Filters=[{"Name": "resource-id", "Values": [host["instance_id"]]}]
    )["Tags"]
    told = {t["Key"]: t["Value"] for t in tags}
    assert told.get(idle_tags.STOP_REASON_TAG) == f"nobody worked for {IDLE_MINUTES:g} min", told
    stopped_at = datetime.fromisoformat(told[idle_tags.STOPPED_AT_TAG].replace("Z", "+00:00"))
    assert abs((stopped_at - decided_at).total_seconds()) < 2  # the stop decision's time

    # 4. A new password; then a save in the last seconds before an external poweroff.
    host["ssm"].put_parameter(
        Name=TEAM_PASS_PARAMETER, Value=NEW_PASSWORD, Type="SecureString", Overwrite=True
    )
    figures["second_boot_to_ready_s"] = boot_until_ready(host, "second", timeout=600)
    record_wake(vm, figures, "second_wake")
    assert "installed; Jupyter is starting" not in vm.console_text()  # no reinstall
    # Jupyter's imports began at network.target, while cloud-init's network stage ran.
    started = figures["second_wake_jupyter_started_s"]
    assert figures["second_wake_network_s"] <= started < figures["second_wake_network_online_s"]
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
    # ... and the flush was done before the network went down (ifupdown's unit in this image).
    flush_stopped = console.find("Stopped jupyter-on-demand-autosave-flush.service")
    network_stopping = console.find("Stopping networking.service")
    assert flush_started < flush_stopped < network_stopping, console[-6000:]
    report("vm_acceptance", figures)
