"""Jupyter starts with the wake, not after it (its imports overlap the wake), and serves only once
root's marker says THIS boot's wake succeeded; it then takes the password the wake wrote."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

import boot
import boot_wake
import idle_check
import jupyter_extensions
import layout
import rootfs
import wake_marker
from demo.git_remote import GitRemote
from tests.ec2_bootstrap.test_jupyter_config import UNIT, unit_command
from tests.support.imds import FakeIMDS
from tests.support.jupyter import (
    ROOT_FLAG,
    free_port,
    hashed,
    jupyter_folders,
    login,
    start_in_session,
    stop_process_group,
    wait_until_up,
)

BOOTSTRAP = Path(boot.__file__).resolve().parent

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
    rootfs.write_file(paths.config, f"JUPYTER_PORT={port}\nJUPYTER_TLS=0\n", 0o644)
    root_dir = paths.config.parent.parent / "root"
    rootfs.write_file(
        paths.jupyter_env,
        f"JUPYTER_HASHED_PASSWORD={hashed(password)}\nJUPYTER_TOKEN={token}\n"
        f"JUPYTER_ROOT_DIR={root_dir}\n",
        0o640,
    )


@contextmanager
def waiting_jupyter(
    paths: layout.Paths, timeout: float = 120, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
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
        **jupyter_folders(work),
        **(extra_env or {}),
    }
    log = work / "jupyter.log"
    process = start_in_session([*unit_command(), "--no-browser", *ROOT_FLAG], env, log)
    try:
        yield process
    finally:
        stop_process_group(process)


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
        wake_marker.mark_wake(paths, True)
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
    wake_marker.mark_wake(paths, None)
    this_boot = wake_marker.current_boot_id()
    if marker == "another boot's":
        rootfs.write_file(paths.wake_marker, "0f0f0f0f-0000-4000-8000-000000000000\n", 0o644)
    elif marker == "planted by the service user":
        rootfs.write_file(paths.wake_marker, f"{this_boot}\n", 0o644, (65534, 65534))
    elif marker == "a symlink":
        paths.wake_marker.symlink_to("/proc/sys/kernel/random/boot_id")
    else:
        rootfs.write_file(paths.wake_marker, f"{this_boot}\n", 0o644)
        paths.run.chmod(0o777)
    assert not wake_marker.roots_marker(paths.wake_marker, this_boot)
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
    wake_marker.mark_wake(paths, False if how == "failed" else None)
    with waiting_jupyter(paths, timeout=2) as process:
        assert process.wait(60) == 3
    assert not listening(port)
    log = (paths.config.parent.parent / "jupyter.log").read_text()
    assert ("wake failed" if how == "failed" else "did not end within 2 s") in log
    assert "RestartPreventExitStatus=3" in UNIT.read_text().splitlines()


def test_the_wake_writes_its_marker_at_its_end_and_removes_it_at_its_start(paths) -> None:
    boot_id = wake_marker.current_boot_id()
    wake_marker.mark_wake(paths, True)
    assert wake_marker.roots_marker(paths.wake_marker, boot_id)
    assert paths.run.stat().st_uid == 0 and paths.wake_marker.stat().st_uid == 0
    wake_marker.mark_wake(paths, None)
    assert not paths.wake_marker.exists() and not paths.wake_failed_marker.exists()
    wake_marker.mark_wake(paths, False)
    assert wake_marker.roots_marker(paths.wake_failed_marker, boot_id)
    assert wake_marker.wake_result(paths, 0) is False
    assert not paths.wake_marker.exists()


@pytest.fixture
def instance(paths, tmp_path, monkeypatch):
    """An instance's wake as root: moto's SSM (both secrets) and EC2 (the instance to tag), a
    git smart-HTTP remote, the settings in config.env, the service user being this user."""
    token = "ghp_wake_wait_token_0123456789abcdef"
    remote = GitRemote(tmp_path / "remote", token=token)
    port = free_port()
    for key, value in {
        "JOD_APP_DIR": str(Path(boot.__file__).parent),
        "JOD_STATE_DIR": str(tmp_path / "state"),
        "JOD_HOME": str(tmp_path / "home"),
        "JOD_USER": "root",
        "JOD_SYSTEMD_DIR": str(tmp_path / "systemd"),
        "JOD_SYSTEMCTL": "true",
        "JOD_RETRY_SECONDS": "0.01",
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "home").mkdir()
    try:
        with mock_aws():
            ssm = boto3.client("ssm", region_name="us-east-1")
            ssm.put_parameter(Name="/jod/team-pass", Value="the-team-password", Type="SecureString")
            ssm.put_parameter(Name="/jod/github-token", Value=token, Type="SecureString")
            ec2 = boto3.client("ec2", region_name="us-east-1")
            instance_id = ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1)[
                "Instances"
            ][0]["InstanceId"]
            rootfs.write_file(
                paths.config,
                "AWS_REGION=us-east-1\nBOOTSTRAP_PARAMETER_PREFIX=/jod/bootstrap\n"
                "TEAM_PASS_PARAMETER=/jod/team-pass\nGITHUB_TOKEN_PARAMETER=/jod/github-token\n"
                f"GITHUB_REPO_URL={remote.url}\nGITHUB_USER_NAME=autosave\n"
                f"JUPYTER_PORT={port}\nJUPYTER_TLS=0\nINSTANCE_ID={instance_id}\n"
                "READY_TAG=jupyter-on-demand:ready-at\n",
                0o644,
            )
            yield {"ssm": ssm, "ec2": ec2, "id": instance_id, "port": port,
                   "paths": layout.Paths.from_env()}  # fmt: skip
    finally:
        remote.stop()


def ready_tag(instance) -> str | None:
    described = instance["ec2"].describe_instances(InstanceIds=[instance["id"]])
    tags = described["Reservations"][0]["Instances"][0].get("Tags", [])
    return {tag["Key"]: tag["Value"] for tag in tags}.get("jupyter-on-demand:ready-at")


def test_one_wake_process_lets_jupyter_serve_then_tags_the_instance_once_it_answers(
    paths, instance, caplog
) -> None:
    """The real Jupyter unit command starts before the wake (as BindsTo= without After= starts
    it); the wake, in one process, writes the password (argon2 made without jupyter_server),
    writes root's marker, logs WAKE DONE, waits for Jupyter's answer and tags the instance."""
    caplog.set_level(logging.INFO)
    with waiting_jupyter(paths) as process:
        assert boot.main(["wake", "--synced"]) == 0
        url = f"http://127.0.0.1:{instance['port']}"
        assert process.poll() is None
        # The hash the wake made: jupyter_server's own login takes the team password with it.
        assert login(url, "the-team-password").get(f"{url}/api/status").status_code == 200
        assert login(url, "not-the-password").get(f"{url}/api/status").status_code == 403
    lines = [record.getMessage() for record in caplog.records]
    assert "JUPYTER-ON-DEMAND WAKE DONE" in lines
    ready = [i for i, line in enumerate(lines) if line.startswith("JUPYTER-ON-DEMAND READY at ")]
    assert len(ready) == 1 and ready[0] > lines.index("JUPYTER-ON-DEMAND WAKE DONE")
    assert ready_tag(instance) == lines[ready[0]].removeprefix("JUPYTER-ON-DEMAND READY at ")
    assert wake_marker.wake_result(paths, 0) is True


def test_after_the_wake_jupyter_imports_only_the_projects_modules_and_the_standard_library(
    paths, instance
) -> None:
    """Jupyter's start is the wake's critical path (README, VM acceptance): what its start imports
    from its packages (the services' handlers, the terminals extension, tornado's asyncio
    platform, jinja2's i18n) is imported before the wake, while the wake runs. After root's
    marker, only the project's modules (its config's) and the standard library's are left.
    PYTHONPROFILEIMPORTTIME traces each import, in order, to the log the wait's line is in."""
    work = paths.config.parent.parent
    with waiting_jupyter(paths, extra_env={"PYTHONPROFILEIMPORTTIME": "1"}) as process:
        wait_for_log(process, work / "jupyter.log", "waiting for this boot's wake")
        assert boot.main(["wake", "--synced"]) == 0
    log = (work / "jupyter.log").read_text()
    before, after = log.split("waiting for this boot's wake", 1)
    imported = re.findall(r"^import time:.*\| +(\S+)$", after, re.M)
    assert "jupyter_auth" in imported  # the trace covers the config's imports, after the wake
    assert "jupyterlab.labapp" in before  # and the imports before it
    # Not counted: the project's and the standard library's modules; and imports that fail,
    # which are traced too: a module left out (UNUSED_IMPORTS), or one not installed (traitlets
    # tries `notebook` for a class Jupyter names by a string).
    ours = {path.stem for path in BOOTSTRAP.glob("*.py")} | sys.stdlib_module_names
    failed = set(jupyter_extensions.UNUSED_IMPORTS)
    tops = {name.split(".")[0] for name in imported}
    failed |= {top for top in tops - ours if importlib.util.find_spec(top) is None}
    assert [name for name in imported if name.split(".")[0] not in ours | failed] == []


def test_tornados_tls_defaults_are_made_with_the_imports_before_the_wake() -> None:
    """tornado makes its default client TLS context (it loads the system's CA store) at the
    server's first TLS connection, which is the wake's readiness check; the launcher makes it
    with the imports, before the wake."""
    script = (
        "import jupyter_extensions as j; j.import_jupyter(); from tornado import netutil; "
        "print(netutil._client_ssl_defaults.cache_info().currsize)"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=BOOTSTRAP, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert result.stdout.strip() == "1"


def test_the_instance_id_comes_from_imdsv2_without_requests_nor_a_proxy(imds: str) -> None:
    """The ready tag's instance id: IMDSv2 with the standard library (importing requests was a
    second of the wake's end under the VM test's emulation), never through a site's proxy."""
    script = (
        "import sys, boot_ready; print(boot_ready.instance_id({})); "
        "print('requests' in sys.modules)"
    )
    env = {**os.environ, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds,
           "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "NO_PROXY": "", "no_proxy": ""}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], cwd=BOOTSTRAP, env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert result.stdout.split() == [FakeIMDS.instance_id, "False"]


def test_an_instance_id_the_metadata_lacks_is_said(imds: str, monkeypatch) -> None:
    """A 404 is "none" to the metadata client: the ready tag's instance id then fails, saying so,
    rather than tagging an empty id."""
    import boot_ready

    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
    FakeIMDS.instance_id = None
    with pytest.raises(layout.BootError, match="no instance-id"):
        boot_ready.instance_id({})


def test_the_ec2_client_is_made_while_jupyter_is_asked(paths, monkeypatch) -> None:
    """After root's marker, Jupyter reads its config and listens while the wake makes its EC2
    client (EC2's large model) and reads the instance id: neither waits for the other."""
    import boot_ready

    write_wake_output(paths, free_port(), "pw", "tok")
    rootfs.write_file(paths.config, f"{paths.config.read_text()}INSTANCE_ID=i-1\n"
                      "READY_TAG=jupyter-on-demand:ready-at\n", 0o644)  # fmt: skip
    asked, tags = threading.Event(), []

    class EC2:
        def create_tags(self, **request: object) -> None:
            tags.append(request)

    def client(service: str, config: dict[str, str]) -> EC2:
        assert asked.wait(10), "the EC2 client was made before Jupyter was asked"
        return EC2()

    def answers(config: dict[str, str], jupyter_env: dict[str, str]) -> bool:
        asked.set()
        return True

    monkeypatch.setattr(boot_ready, "aws_client", client)
    monkeypatch.setattr(boot_ready, "jupyter_answers", answers)
    monkeypatch.setattr(boot_ready, "start_idle_clock", lambda paths: None)
    boot_ready.announce_ready(paths, timeout=30)
    assert [tag["Resources"] for tag in tags] == [["i-1"]]


def test_a_tag_that_cannot_be_prepared_still_restarts_the_idle_clock(paths, monkeypatch) -> None:
    """No metadata service, say: Jupyter serves, so the idle clock starts at its answer; the
    wake's end fails (the unit's READY_FAILED_EXIT), saying why."""
    import boot_ready

    write_wake_output(paths, free_port(), "pw", "tok")
    restarted = []

    def client(service: str, config: dict[str, str]) -> None:
        raise OSError("no route to the metadata service")

    monkeypatch.setattr(boot_ready, "aws_client", client)
    monkeypatch.setattr(boot_ready, "jupyter_answers", lambda config, jupyter_env: True)
    monkeypatch.setattr(boot_ready, "start_idle_clock", restarted.append)
    with pytest.raises(OSError, match="no route to the metadata service"):
        boot_ready.announce_ready(paths, timeout=30)
    assert restarted == [paths]


def test_a_failed_wake_tags_nothing_and_says_no_wake_done(paths, instance, caplog) -> None:
    caplog.set_level(logging.INFO)
    instance["ssm"].delete_parameter(Name="/jod/team-pass")
    assert boot.main(["wake", "--synced"]) == 1
    assert wake_marker.wake_result(paths, 0) is False
    assert ready_tag(instance) is None
    assert "JUPYTER-ON-DEMAND WAKE DONE" not in caplog.text
    assert "JUPYTER-ON-DEMAND READY" not in caplog.text


def test_a_ready_tag_that_fails_after_the_wake_keeps_its_success_and_says_why(
    paths, instance, caplog, monkeypatch
) -> None:
    """Fault: Jupyter never answers (not started; the wait shortened). The wake's marker stays a
    success (Jupyter would serve), the exit is the one the unit counts a success, no tag."""
    import boot_ready

    monkeypatch.setattr(boot_ready, "READY_TIMEOUT", 1.0)
    assert boot.main(["wake", "--synced"]) == boot_wake.READY_FAILED_EXIT
    assert wake_marker.wake_result(paths, 0) is True
    assert not paths.wake_failed_marker.exists()
    assert ready_tag(instance) is None
    assert "JUPYTER-ON-DEMAND READY FAILED" in caplog.text
    assert "Jupyter did not answer within 1 s" in caplog.text


def test_the_wake_in_new_code_retires_the_previous_versions_ready_unit(
    paths, instance, monkeypatch, tmp_path
) -> None:
    """At the upgrade, the previous version's sync runs and execs `wake --synced` in this code."""
    import boot_ready

    monkeypatch.setattr(boot_ready, "READY_TIMEOUT", 0.5)
    old = instance["paths"].systemd / "jupyter-on-demand-ready.service"
    assert old.is_relative_to(tmp_path)
    old.parent.mkdir(parents=True)
    old.write_text("[Service]\nExecStart=/bin/true\n")
    assert boot.main(["wake", "--synced"]) == boot_wake.READY_FAILED_EXIT
    assert not old.exists()


def test_the_wake_in_new_code_enables_and_starts_the_units_new_to_the_previous_version(
    instance, monkeypatch, tmp_path
) -> None:
    """The previous version's sync enabled only the units it knew (no spot watcher): the wake it
    execs in this code enables this version's and starts the watcher at this very boot."""
    import boot_ready
    from tests.ec2_bootstrap.test_bundle import recording_systemctl

    monkeypatch.setattr(boot_ready, "READY_TIMEOUT", 0.5)
    log = recording_systemctl(tmp_path, monkeypatch)
    assert boot.main(["wake", "--synced"]) == boot_wake.READY_FAILED_EXIT
    calls = log.read_text().splitlines()
    assert f"enable {' '.join(layout.ENABLED)}" in calls
    assert layout.SPOT_UNIT in layout.ENABLED
    assert f"start --no-block {layout.IDLE_TIMER} {layout.SPOT_UNIT}" in calls
