"""No way from the notebook user to root: every root step against a real unprivileged user.

A notebook runs code as the service user. These tests create one (`jod-notebook`), run the real
root steps (install, sync, secrets with its `repo` step as that user, ready, the idle check and
its flush) as root on the system Python's venv, with moto for SSM/EC2 and the git smart-HTTP
remote, and check that:
  - the user can plant nothing (file, symlink) where root writes;
  - a symlink left at any root-written path (an older layout let the user plant them) is replaced,
    never followed: its target, a root-only file, keeps its bytes, mode and owner;
  - root reads the user's activity file without following a symlink or blocking on a FIFO;
  - the flush before a stop runs with the user's rights only.
Needs root (to create the user and run the steps as root), as CI has.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import requests

import boot_wake
import idle_check
from demo.git_remote import GitRemote
from layout import Paths, read_config
from tests.ec2_bootstrap.conftest import NO_BOOT_GRACE
from tests.infrastructure.terraform import render_bundle
from tests.support.jupyter import running_jupyter
from tests.support.ssm import PREFIX, put_bundle, put_settings, settings_for
from tests.support.system_python import system_python_version, system_venv, wheelhouse

USER = "jod-notebook"
PASSWORD = "the-team-password"
TOKEN = "ghp_privilege_test_token_0123456789"
BOOTSTRAP = Path(__file__).resolve().parents[2] / "ec2_bootstrap"
READY_TAG = "jupyter-on-demand:ready-at"


@pytest.fixture(scope="module")
def notebook_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("these tests create a user and run the root steps: run them as root (CI does)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/bash", USER], check=True
        )
    yield USER
    subprocess.run(["userdel", USER], check=False)


@pytest.fixture(scope="module")
def venv_python() -> Path:
    return system_venv()


@dataclass
class Instance:
    root: Path
    paths: Paths
    env: dict[str, str]
    python: Path
    remote: GitRemote
    ec2: object

    def step(self, name: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        # The wake ends by waiting for Jupyter's answer; here no Jupyter runs yet: `ready` is
        # run on its own once this test's Jupyter runs (the same code, boot_ready.announce_ready).
        wake = {"JOD_READY_TIMEOUT": "0"} if name == "wake" else {}
        result = subprocess.run(
            [str(self.python), str(BOOTSTRAP / "boot.py"), name],
            env={**self.env, **wake},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check:
            ok = (0, boot_wake.READY_FAILED_EXIT) if name == "wake" else (0,)
            assert result.returncode in ok, f"boot.py {name}:\n{result.stderr}"
        return result

    def idle_check(self, *args: str) -> dict:
        result = subprocess.run(
            [
                str(self.python),
                str(BOOTSTRAP / "idle_check.py"),
                "--instance",
                *NO_BOOT_GRACE,
                *args,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[0])

    def as_user(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", USER, "--", "/usr/bin/python3", "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd="/",
        )


@pytest.fixture
def instance(notebook_user, venv_python) -> Iterator[Instance]:
    from moto.server import ThreadedMotoServer

    root = Path(tempfile.mkdtemp(prefix="jod-privileges-", dir="/var/tmp"))
    root.chmod(0o755)  # like / on the instance: the user may look, not write
    home = root / "home"
    home.mkdir()
    user = pwd.getpwnam(USER)
    os.chown(home, user.pw_uid, user.pw_gid)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto.get_host_and_port()[1]}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)  # the backends are per process
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=endpoint)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)
    ssm.put_parameter(Name="/jod/team-pass", Value=PASSWORD, Type="SecureString")
    ssm.put_parameter(Name="/jod/github-token", Value=TOKEN, Type="SecureString")
    put_bundle(ssm, PREFIX, render_bundle())
    instance_id = ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    remote = GitRemote(root / "remote", token=TOKEN)
    put_settings(ssm, PREFIX, settings_for(remote.url, READY_TAG=READY_TAG))
    config = root / "etc" / "config.env"  # written by boot.py from the settings
    config.parent.mkdir()
    # user_data's bootstrap.env, and the site's local.env with what this test adds.
    (config.parent / "bootstrap.env").write_text(
        "AWS_REGION=us-east-1\nBOOTSTRAP_PARAMETER_PREFIX=/jod/bootstrap\n"
    )
    (config.parent / "local.env").write_text(
        f"AWS_ENDPOINT_URL={endpoint}\nAWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n"
        f"INSTANCE_ID={instance_id}\nPIP_NO_INDEX=1\n"
        f"PIP_FIND_LINKS={wheelhouse(system_python_version())}\n"
    )
    app = root / "app"
    app.mkdir()
    (app / "venv").symlink_to(venv_python.parent.parent)  # the venv install would build
    env = {
        **os.environ,
        "JOD_CONFIG": str(config),
        "JOD_ETC_DIR": str(config.parent),
        "JOD_STATE_DIR": str(root / "state"),
        "JOD_APP_DIR": str(app),
        "JOD_HOME": str(home),
        "JOD_USER": USER,
        "JOD_SYSTEMD_DIR": str(root / "systemd"),
        "JOD_SYSTEMCTL": "true",
        "JOD_SYSTEM_ETC": str(root / "system-etc"),
        "JOD_RUN_DIR": str(root / "run"),  # cron.deny and at.deny, not this machine's
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("JOD_")})
    paths = Paths.from_env()
    os.environ.clear()
    os.environ.update(saved)
    try:
        yield Instance(root, paths, env, venv_python, remote, ec2)
    finally:
        remote.stop()
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)


def root_written(paths: Paths) -> list[Path]:
    """Every file a root step writes (sync, install, secrets, ready, the idle check)."""
    return [
        paths.jupyter_env,
        paths.credentials,
        paths.certfile,
        paths.keyfile,
        paths.idle_state,
        paths.install_stamp,
        paths.bundle_stamp,
        paths.idle_heartbeat,
        paths.config,
        paths.app / "boot.py",
        paths.app / "idle_check.py",
        paths.systemd / "jupyter-on-demand-idle.service",
    ]


def first_boot(instance: Instance) -> None:
    instance.step("sync")  # user_data ships only the installer; the test's app folder is empty
    instance.step("install")
    instance.step("wake")
    instance.idle_check("--dry-run")  # writes root's idle state


def fingerprint(path: Path) -> tuple[bytes, int, int, int]:
    info = path.lstat()
    return path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


PLANT = """
import os, sys
planted = []
for path in sys.argv[1:]:
    for attempt in (path, path + ".tmp", os.path.join(os.path.dirname(path), ".planted")):
        try:
            if os.path.lexists(attempt):
                os.rename(attempt, attempt + ".moved")
                os.rename(attempt + ".moved", attempt)
            else:
                os.symlink("/etc/shadow", attempt)
            planted.append(attempt)
        except OSError:
            pass
print("\\n".join(planted))
"""


def test_the_notebook_user_can_plant_nothing_where_root_writes(instance) -> None:
    first_boot(instance)
    targets = [
        *root_written(instance.paths),
        instance.paths.bootstrap_env,
        instance.paths.local_env,
    ]
    assert all(path.exists() for path in targets), [p for p in targets if not p.exists()]
    result = instance.as_user(PLANT, *map(str, targets))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the notebook user planted:\n{result.stdout}"


def test_root_steps_replace_a_planted_symlink_and_never_follow_it(instance) -> None:
    first_boot(instance)
    victims = instance.root / "victims"
    victims.mkdir(mode=0o700)
    planted = {}
    for path in root_written(instance.paths):
        path.unlink()
        # The path itself, and the temp names an older version wrote first and then chowned.
        for link in (path, path.with_name(f".{path.name}.tmp"), path.with_suffix(".tmp")):
            if link.is_symlink():
                continue  # jupyter.crt and jupyter.key share jupyter.tmp
            victim = victims / f"victim-{len(planted)}"
            victim.write_text(f"root-only file {len(planted)}, must never change\n")
            victim.chmod(0o600)
            link.symlink_to(victim)
            planted[link] = (victim, fingerprint(victim))
    instance.step("sync")
    instance.step("install")  # the stamp is a link now: a full (quick) install
    instance.step("wake")
    with running_jupyter(instance.root / "jroot", instance.root / "jwork", tls=True) as jupyter:
        token = read_config(instance.paths.jupyter_env)["JUPYTER_TOKEN"]
        env_text = instance.paths.jupyter_env.read_text().replace(token, jupyter.token)
        instance.paths.jupyter_env.write_text(env_text)  # this test's Jupyter, on its own port
        port = jupyter.url.rsplit(":", 1)[1]
        config = instance.paths.config.read_text().replace(
            "JUPYTER_PORT=8443", f"JUPYTER_PORT={port}"
        )
        instance.paths.config.write_text(config)
        instance.step("ready")
        instance.idle_check("--stop-command", "true")
    for link, (victim, before) in planted.items():
        assert fingerprint(victim) == before, f"root wrote through {link}"
    for path in root_written(instance.paths):
        assert stat.S_ISREG(path.lstat().st_mode), f"{path} is still not a regular file"


def test_root_fixes_a_state_folder_an_older_layout_gave_to_the_user(instance) -> None:
    user = pwd.getpwnam(USER)
    instance.paths.state.mkdir()
    os.chown(instance.paths.state, user.pw_uid, user.pw_gid)
    first_boot(instance)
    info = instance.paths.state.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
    assert instance.paths.user_state.stat().st_uid == user.pw_uid


def test_the_notebook_user_may_not_schedule_jobs_that_outlive_a_reboot(instance) -> None:
    system_etc = instance.root / "system-etc"
    system_etc.mkdir()
    (system_etc / "at.deny").write_text("daemon\nnobody\n")
    first_boot(instance)
    assert (system_etc / "cron.deny").read_text().split() == [USER]
    assert (system_etc / "at.deny").read_text().split() == ["daemon", "nobody", USER]


def write_state(instance: Instance, idle_for: timedelta) -> None:
    instance.paths.idle_state.write_text(
        json.dumps(
            {
                "boot_id": idle_check.boot_id(),
                "last_active": (datetime.now(UTC) - idle_for).isoformat(),
                "reason": "test",
            }
        )
    )


@pytest.mark.parametrize(
    "plant",
    [
        "os.symlink(sys.argv[2], sys.argv[1])",  # a link to a root-only file saying "just now"
        "os.mkfifo(sys.argv[1])",  # a FIFO: a plain open() would block root forever
        "open(sys.argv[1], 'w').write(sys.argv[3])",  # a time far in the future
    ],
    ids=["symlink-to-root-only-file", "fifo", "future-time"],
)
def test_root_reads_the_users_activity_file_safely(instance, plant: str) -> None:
    first_boot(instance)
    secret = instance.root / "root-only-activity.json"
    now = datetime.now(UTC).isoformat()
    secret.write_text(json.dumps({"last_interaction": now, "reason": "planted"}))
    secret.chmod(0o600)
    future = json.dumps({"last_interaction": "2999-01-01T00:00:00+00:00", "reason": "forever"})
    activity = instance.paths.activity
    activity.unlink(missing_ok=True)
    result = instance.as_user(f"import os, sys\n{plant}", str(activity), str(secret), future)
    assert result.returncode == 0, result.stderr
    write_state(instance, timedelta(minutes=10))
    verdict = instance.idle_check("--dry-run")  # within the subprocess timeout: no hang
    assert 9 * 60 < verdict["idle_seconds"] < 12 * 60, verdict
    assert "planted" not in verdict["reason"] and "forever" not in verdict["reason"]


def test_the_flush_before_a_stop_runs_with_the_users_rights_only(instance) -> None:
    first_boot(instance)
    victim = instance.root / "victim-status"
    victim.write_text("root-only\n")
    victim.chmod(0o644)
    before = fingerprint(victim)
    git_dir = instance.paths.repo / ".git"
    result = instance.as_user(
        "import os, sys; open(sys.argv[1], 'w').write('saved before the stop\\n');"
        " os.symlink(sys.argv[3], sys.argv[2])",
        str(instance.paths.repo / "last.txt"),
        str(instance.paths.repo / "link-to-a-root-file"),
        str(victim),
    )
    assert result.returncode == 0, result.stderr
    write_state(instance, timedelta(hours=2))
    marker = instance.root / "stopped"
    verdict = instance.idle_check("--stop-command", f"touch {marker}")
    assert verdict["action"] == "stop"
    assert marker.exists()
    assert instance.remote.show("last.txt") == "saved before the stop\n"
    assert fingerprint(victim) == before
    owner = {p.stat().st_uid for p in (git_dir / "objects").rglob("*") if p.is_file()}
    assert owner == {pwd.getpwnam(USER).pw_uid}, "root wrote into the user's repository"
