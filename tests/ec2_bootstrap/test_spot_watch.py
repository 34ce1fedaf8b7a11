"""The spot interruption watcher (ec2_bootstrap/spot_watch.py), as its unit runs it: a real process
on the system Python against a fake instance metadata service (IMDSv2) on loopback.

A notice sets off, once: the notice file for JupyterLab, the warning by `wall` and in the log,
the autosave flush, and the stop reason through the publish command. Fakes stand in for the
commands where the test is about the watcher (they record what they got); one test runs the
instance's own commands: the real git autosave flush to a real smart-HTTP remote, and the real
publish_verdict.py against moto (the tags on the instance, the team's message in moto's SNS).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

import layout
from demo import units
from demo.git_remote import GitRemote
from idle_tags import MONTH_HOURS_TAG, STOP_REASON_TAG, STOPPED_AT_TAG
from layout import SYSTEM_PYTHON, env_file
from spot_watch import Notice, parse_notice
from tests.ec2_bootstrap.autosave_support import instance_clone, wait_for
from tests.support.imds import FakeIMDS, serving_imds
from tests.support.jupyter import running_jupyter
from tests.support.ssm import REGION, moto_ssm_server

BOOTSTRAP = Path(__file__).resolve().parents[2] / "ec2_bootstrap"
WATCHER = BOOTSTRAP / "spot_watch.py"
PAGE_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/v1"
INTERVAL = "0.2"  # seconds between polls here (5 on the instance)
MOTO_AMI = "ami-03cf127a"
MOTO_ACCOUNT = "123456789012"
MALFORMED = "ignored a malformed spot interruption notice"


def notice_at(minutes: int = 2, action: str = "stop") -> tuple[str, datetime]:
    """A notice's body as AWS serves it, and its time."""
    when = (datetime.now(UTC) + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    return json.dumps({"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}), when


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def warning(when: datetime) -> str:
    return (
        f"AWS reclaims this spot machine at {when:%H:%M} UTC: your work is being saved to GitHub."
    )


@dataclass
class Fakes:
    """A fake `wall` on PATH, a fake flush and a fake publish command, each recording its calls."""

    bin: Path
    wall_log: Path
    flush_log: Path
    publish_log: Path

    @classmethod
    def make(cls, folder: Path) -> Fakes:
        folder.mkdir()
        fakes = cls(folder, folder / "wall.log", folder / "flush.log", folder / "publish.log")
        script(folder / "wall", f'printf "%s\\n" "$*" >> {fakes.wall_log}')
        script(folder / "flush", f'printf "%s\\n" "$*" >> {fakes.flush_log}')
        # One JSON object a line: what publish_verdict.py would have read on its stdin.
        script(folder / "publish", f"cat >> {fakes.publish_log}; echo >> {fakes.publish_log}")
        return fakes

    def args(self) -> list[str]:
        return ["--flush-command", f"{self.bin / 'flush'} --repo /work",
                "--publish-command", str(self.bin / "publish")]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def lines(self, log: Path) -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    def published(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in self.lines(self.publish_log)]


def script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@dataclass
class Watcher:
    process: subprocess.Popen[str]
    log: Path

    def logs(self) -> str:
        return self.log.read_text()

    def says(self, text: str, timeout: float = 30) -> None:
        """Wait until its log holds `text`; fail with the log otherwise."""
        try:
            wait_for(lambda: text in self.logs(), timeout=timeout)
        except AssertionError:
            pytest.fail(f"the watcher never said {text!r}:\n{self.logs()}")


@contextmanager
def watching(args: list[str], env: dict[str, str], log: Path) -> Iterator[Watcher]:
    """spot_watch.py on the system Python, as its unit starts it; stopped on the way out."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [SYSTEM_PYTHON, str(WATCHER), *args], stdout=out, stderr=subprocess.STDOUT,
            env=env, text=True,
        )  # fmt: skip
    try:
        yield Watcher(process, log)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


def polls_after(count: int) -> None:
    """Wait for `count` more polls of the notice."""
    target = FakeIMDS.spot_polls + count
    wait_for(lambda: FakeIMDS.spot_polls >= target, timeout=30, interval=0.05)


def spot_args(imds: str, fakes: Fakes, notice_file: Path) -> list[str]:
    return ["--market", "spot", "--imds-url", imds, "--interval", INTERVAL,
            "--notice-file", str(notice_file), "--page-url", PAGE_URL, *fakes.args()]  # fmt: skip


# --- What a notice sets off ---------------------------------------------------------------------


def test_a_notice_flushes_warns_writes_the_notice_and_records_the_stop_reason(
    imds: str, tmp_path: Path
) -> None:
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"  # no run folder yet
    body, when = notice_at()
    FakeIMDS.spot_notice = body
    with watching(spot_args(imds, fakes, notice_file), fakes.env(), tmp_path / "w.log") as w:
        w.says("stop reason tagged")
        w.says("autosave flushed")
        polls_after(3)
        assert w.process.poll() is None, w.logs()  # it watches on: AWS stops the machine
    assert "Traceback" not in w.logs() and "ERROR" not in w.logs(), w.logs()
    assert fakes.lines(fakes.flush_log) == ["--repo /work"]
    assert fakes.lines(fakes.wall_log) == [warning(when)]
    assert warning(when) in w.logs()  # the journal has it too
    assert fakes.published() == [
        {
            STOP_REASON_TAG: "stopped by AWS spot interruption",
            STOPPED_AT_TAG: iso(when),
            "notify": f"Jupyter Lab stops at {when:%H:%M} UTC: AWS reclaims its spot capacity. "
            "The work is saved to GitHub; AWS starts it again when it has capacity, and the "
            f"page says so: {PAGE_URL}/status?view=page",
        }
    ]
    record = json.loads(notice_file.read_text())
    assert record["action"] == "stop" and record["time"] == iso(when)
    noticed = datetime.fromisoformat(record["noticed_at"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - noticed) < timedelta(minutes=1)
    # Root's, world-readable (Jupyter's user reads it), in a folder only its owner writes.
    info = notice_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o644 and info.st_uid == os.geteuid()
    assert stat.S_IMODE(notice_file.parent.stat().st_mode) & 0o022 == 0


def test_a_failed_flush_and_a_failed_publish_are_logged_and_skip_nothing_else(
    imds: str, tmp_path: Path
) -> None:
    fakes = Fakes.make(tmp_path / "bin")
    script(fakes.bin / "flush", f'echo "$@" >> {fakes.flush_log}; exit 1')
    script(fakes.bin / "publish", f"cat >> {fakes.publish_log}; echo no credentials >&2; exit 1")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    FakeIMDS.spot_notice, when = notice_at()
    with watching(spot_args(imds, fakes, notice_file), fakes.env(), tmp_path / "w.log") as w:
        w.says("could not tag the stop reason (1): no credentials")
        w.says("autosave flush failed (1); the work stays committed on the disk")
        polls_after(3)
        assert w.process.poll() is None, w.logs()
    assert fakes.lines(fakes.wall_log) == [warning(when)]
    assert len(fakes.published()) == 1 and len(fakes.lines(fakes.flush_log)) == 1
    assert json.loads(notice_file.read_text())["time"] == iso(when)


def test_the_same_notice_is_handled_once_and_a_later_one_again(imds: str, tmp_path: Path) -> None:
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    FakeIMDS.spot_notice, first = notice_at(2)
    with watching(spot_args(imds, fakes, notice_file), fakes.env(), tmp_path / "w.log") as w:
        wait_for(lambda: fakes.published(), timeout=30)
        polls_after(5)  # the same notice, served at every poll
        assert len(fakes.lines(fakes.flush_log)) == 1
        assert len(fakes.published()) == 1 and len(fakes.lines(fakes.wall_log)) == 1
        FakeIMDS.spot_notice, second = notice_at(3)  # AWS moved the time: a new notice
        wait_for(lambda: len(fakes.published()) == 2, timeout=30)
        polls_after(5)
        assert w.process.poll() is None, w.logs()
    assert len(fakes.lines(fakes.flush_log)) == 2
    assert fakes.lines(fakes.wall_log) == [warning(first), warning(second)]
    assert [p[STOPPED_AT_TAG] for p in fakes.published()] == [iso(first), iso(second)]
    assert json.loads(notice_file.read_text())["time"] == iso(second)


def test_a_restarted_watcher_does_not_handle_the_same_notice_again(
    imds: str, tmp_path: Path
) -> None:
    """systemd restarts it on a failure: the notice file says which notice was handled."""
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    FakeIMDS.spot_notice, _ = notice_at()
    args = spot_args(imds, fakes, notice_file)
    with watching(args, fakes.env(), tmp_path / "first.log"):
        wait_for(lambda: fakes.published(), timeout=30)
    with watching(args, fakes.env(), tmp_path / "second.log") as w:
        polls_after(5)
        assert w.process.poll() is None, w.logs()
    assert len(fakes.lines(fakes.flush_log)) == 1 and len(fakes.published()) == 1


def test_no_notice_404_does_nothing_over_several_polls(imds: str, tmp_path: Path) -> None:
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    with watching(spot_args(imds, fakes, notice_file), fakes.env(), tmp_path / "w.log") as w:
        polls_after(10)
        assert w.process.poll() is None, w.logs()
    assert not notice_file.exists()
    assert not fakes.flush_log.exists() and not fakes.wall_log.exists()
    assert not fakes.publish_log.exists()
    assert "AWS reclaims" not in w.logs()
    assert FakeIMDS.tokens == 1  # one token for all those polls: renewed only near its end


@pytest.mark.parametrize(
    "body",
    [
        "<html>Service Unavailable</html>",
        "[]",
        '{"action": "stop"}',
        '{"action": "explode", "time": "2026-11-29T17:02:00Z"}',
        '{"action": "stop", "time": "in two minutes"}',
        '{"action": "stop", "time": "2026-13-45T17:02:00Z"}',
        '{"action": ["stop"], "time": "2026-11-29T17:02:00Z"}',
        "[" * 100_000,
    ],
    ids=[
        "html",
        "list",
        "no-time",
        "unknown-action",
        "time-text",
        "impossible-date",
        "action-list",
        "deep-nesting",
    ],
)
def test_a_malformed_notice_is_logged_once_and_ignored_and_the_watch_goes_on(
    imds: str, tmp_path: Path, body: str
) -> None:
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    FakeIMDS.spot_notice = body
    with watching(spot_args(imds, fakes, notice_file), fakes.env(), tmp_path / "w.log") as w:
        polls_after(5)
        assert w.logs().count(MALFORMED) == 1, w.logs()
        assert not notice_file.exists() and not fakes.flush_log.exists()
        assert not fakes.publish_log.exists() and not fakes.wall_log.exists()
        FakeIMDS.spot_notice, when = notice_at()  # then a real one: still watched for
        wait_for(lambda: fakes.published(), timeout=30)
    assert fakes.lines(fakes.wall_log) == [warning(when)]


@pytest.mark.parametrize(
    ("body", "notice"),
    [
        ('{"action": "stop", "time": "2026-11-29T17:02:00Z"}',
         Notice("stop", datetime(2026, 11, 29, 17, 2, tzinfo=UTC))),
        ('{"action": "terminate", "time": "2026-11-29T17:02:00Z"}',
         Notice("terminate", datetime(2026, 11, 29, 17, 2, tzinfo=UTC))),
        ('{"action": "hibernate", "time": "2026-11-29T17:02:00Z", "extra": 1}',
         Notice("hibernate", datetime(2026, 11, 29, 17, 2, tzinfo=UTC))),
        ('{"action": "stop", "time": "2026-11-29T17:02:00+00:00"}', None),  # not AWS's form
        ('{"action": "stop", "time": "2026-11-29T17:02:00"}', None),
        ('{"action": "stop", "time": 1796000000}', None),
        ("null", None),
        ("\xff\xfe", None),
    ],
)  # fmt: skip
def test_a_notice_is_aws_s_json_with_a_known_action_and_a_utc_time(
    body: str, notice: Notice | None
) -> None:
    assert parse_notice(body.encode("latin-1")) == notice


# --- Faults: no metadata service, an expired token ----------------------------------------------


def test_an_unreachable_metadata_service_is_logged_and_the_watch_goes_on(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on, until the metadata service comes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    args = spot_args(f"http://127.0.0.1:{port}", fakes, notice_file)
    with watching(args, fakes.env(), tmp_path / "w.log") as w:
        w.says("cannot read the instance metadata")
        time.sleep(1)  # five more failed polls: said once, not at each
        assert w.logs().count("cannot read the instance metadata") == 1
        assert w.process.poll() is None, w.logs()
        FakeIMDS.spot_notice, when = notice_at()
        with serving_imds(port):
            wait_for(lambda: fakes.published(), timeout=30)
            assert "the instance metadata answers again" in w.logs()
    assert fakes.lines(fakes.wall_log) == [warning(when)]
    assert json.loads(notice_file.read_text())["time"] == iso(when)


def test_a_token_refused_with_404_is_no_notice_but_a_metadata_fault(
    imds: str, tmp_path: Path
) -> None:
    """A 404 means "no notice" only for the notice itself: a 404 to the token's PUT (a wrong
    IMDS endpoint, say) is said like any fault, or the watch would poll blind in silence."""
    FakeIMDS.token_status = 404
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    with watching(spot_args(imds, fakes, notice_file), fakes.env(), tmp_path / "w.log") as w:
        w.says("cannot read the instance metadata")
        assert FakeIMDS.spot_polls == 0
        FakeIMDS.token_status = 200
        FakeIMDS.spot_notice, when = notice_at()
        wait_for(lambda: fakes.published(), timeout=30)
        assert "the instance metadata answers again" in w.logs()
    assert fakes.lines(fakes.wall_log) == [warning(when)]


def test_a_rejected_token_is_replaced_and_the_notice_still_seen(imds: str, tmp_path: Path) -> None:
    """A token that stops working before its time (IMDS restarted, the clock jumped): 401, then
    a new token at the next poll."""
    fakes = Fakes.make(tmp_path / "bin")
    notice_file = tmp_path / "run" / "spot-interruption.json"
    with watching(spot_args(imds, fakes, notice_file), fakes.env(), tmp_path / "w.log"):
        polls_after(3)
        assert FakeIMDS.tokens == 1
        FakeIMDS.token = "n3w-t0ken"
        FakeIMDS.spot_notice, when = notice_at()
        wait_for(lambda: fakes.published(), timeout=30)
    assert FakeIMDS.tokens == 2
    assert fakes.lines(fakes.wall_log) == [warning(when)]


# --- On the instance: the settings' MARKET, the unit, root's notice file -------------------------


def instance_layout(tmp_path: Path, config: dict[str, str], **moved: str) -> dict[str, str]:
    """JOD_* variables of a layout in tmp_path with this config.env; the app folder holds the
    bundle's Python files and a venv Python (this test run's, with botocore)."""
    app = tmp_path / "app"
    (app / "venv" / "bin").mkdir(parents=True)
    for source in BOOTSTRAP.glob("*.py"):
        shutil.copy(source, app / source.name)
    script(app / "venv" / "bin" / "python", f'exec {sys.executable} "$@"')
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.env").write_text(env_file(config))
    return {
        "JOD_ETC_DIR": str(tmp_path / "etc"),
        "JOD_APP_DIR": str(app),
        "JOD_RUN_DIR": str(tmp_path / "run"),
        "JOD_STATE_DIR": str(tmp_path / "state"),
        "JOD_HOME": str(tmp_path / "home"),
        **moved,
    }


def test_an_on_demand_instance_exits_0_at_once_without_polling(imds: str, tmp_path: Path) -> None:
    """Exit 0: its unit restarts it only on a failure, so it stays stopped until the next boot."""
    layout_env = instance_layout(tmp_path, {"MARKET": "on-demand", "IMDS_ENDPOINT": imds})
    result = subprocess.run(
        [SYSTEM_PYTHON, str(WATCHER), "--instance", "--interval", INTERVAL],
        env={**os.environ, **layout_env}, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "on-demand instance" in result.stderr
    assert FakeIMDS.spot_polls == 0 and FakeIMDS.tokens == 0
    assert not (tmp_path / "run").exists()


def test_on_the_instance_the_real_flush_pushes_and_publish_verdict_tags_and_tells_the_team(
    imds: str, tmp_path: Path, remote: GitRemote
) -> None:
    """--instance, as the unit runs it: the idle checker's flush command (git_autosave.py flush
    as the service user, here root) pushes the unsaved work to the remote; publish_verdict.py in
    the venv tags the instance in moto and publishes the team's sentence to the settings' topic."""
    repo, home = instance_clone(remote, tmp_path)
    (repo / "notes.md").write_text("written just before AWS took the machine\n")
    fakes = Fakes.make(tmp_path / "bin")  # only its `wall`: the flush and publish are real
    with moto_ssm_server() as (endpoint, _):
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        instance = ec2.run_instances(ImageId=MOTO_AMI, MinCount=1, MaxCount=1)["Instances"][0]
        sns = boto3.client("sns", region_name=REGION, endpoint_url=endpoint)
        topic = sns.create_topic(Name="jupyter-on-demand")["TopicArn"]
        config = {
            "AWS_REGION": REGION, "INSTANCE_ID": instance["InstanceId"], "MARKET": "spot",
            "IMDS_ENDPOINT": imds, "PAGE_URL": PAGE_URL, "NOTIFY_TOPIC_ARN": topic,
        }  # fmt: skip
        layout_env = instance_layout(
            tmp_path, config, JOD_USER="root", JOD_HOME=str(home), JOD_REPO_DIR=str(repo)
        )
        env = {**fakes.env(), **layout_env, "AWS_ENDPOINT_URL": endpoint}
        FakeIMDS.spot_notice, when = notice_at()
        args = ["--instance", "--interval", INTERVAL]
        with watching(args, env, tmp_path / "w.log") as w:
            w.says("stop reason tagged", timeout=120)
            w.says("autosave flushed", timeout=120)
        assert "Traceback" not in w.logs() and "ERROR" not in w.logs(), w.logs()
        assert remote.show("notes.md", "main") == "written just before AWS took the machine\n"
        tags = {t["Key"]: t["Value"] for t in ec2.describe_tags(
            Filters=[{"Name": "resource-id", "Values": [instance["InstanceId"]]}])["Tags"]}  # fmt: skip
        assert tags[STOP_REASON_TAG] == "stopped by AWS spot interruption"
        assert tags[STOPPED_AT_TAG] == iso(when)
        # The month's hours, counted on to AWS's stop time from the boot (no idle state yet).
        assert tags[MONTH_HOURS_TAG].startswith(f"month={when:%Y-%m} hours=")
        from moto.sns.models import sns_backends

        sent = sns_backends[MOTO_ACCOUNT][REGION].topics[topic].sent_notifications
        assert [(message, subject) for _, message, subject, _, _ in sent] == [
            (f"Jupyter Lab stops at {when:%H:%M} UTC: AWS reclaims its spot capacity. The work "
             "is saved to GitHub; AWS starts it again when it has capacity, and the page says "
             f"so: {PAGE_URL}/status?view=page", "jupyter-on-demand")
        ]  # fmt: skip
    assert fakes.lines(fakes.wall_log) == [warning(when)]
    assert json.loads((tmp_path / "run" / "spot-interruption.json").read_text())["time"] == iso(
        when
    )


def test_the_notice_file_cannot_be_redirected_by_a_planted_symlink(imds: str) -> None:
    """The run folder is root's: the notebook user can plant nothing there; a symlink found there
    anyway (an older layout) is replaced, never followed: its target keeps its bytes."""
    if os.geteuid() != 0:
        pytest.fail("this test runs a command as `nobody` and the watcher as root: run it as root")
    base = Path(tempfile.mkdtemp(prefix="jod-spot-"))  # not under /tmp/pytest-of-root (0700)
    try:
        base.chmod(0o755)
        run = base / "run"
        run.mkdir(mode=0o755)  # as the wake makes it (wake_marker.py: root's 0755)
        target = base / "root-only"
        target.write_text("root's own\n")
        target.chmod(0o600)
        notice_file = run / "spot-interruption.json"
        planted = subprocess.run(
            ["runuser", "-u", "nobody", "--", "ln", "-s", str(target), str(notice_file)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert planted.returncode != 0 and "Permission denied" in planted.stderr, planted
        notice_file.symlink_to(target)  # what only root could leave there
        fakes = Fakes.make(base / "bin")
        FakeIMDS.spot_notice, when = notice_at()
        with watching(spot_args(imds, fakes, notice_file), fakes.env(), base / "w.log"):
            wait_for(lambda: fakes.published(), timeout=30)
        assert target.read_text() == "root's own\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
        assert not notice_file.is_symlink()
        assert json.loads(notice_file.read_text())["time"] == iso(when)
    finally:
        shutil.rmtree(base)


def test_the_unit_runs_the_watcher_as_root_on_the_system_python_at_every_boot() -> None:
    unit = (BOOTSTRAP / layout.SPOT_UNIT).read_text()
    defaults = layout.Paths.from_env({})
    assert units.command(unit) == [SYSTEM_PYTHON, str(defaults.app / "spot_watch.py"), "--instance"]
    directives = units.directives(unit)
    assert not any(key == "User" for key, _ in directives)  # root: it writes root's run folder
    # Restarted on a failure only: the exit 0 of an on-demand instance ends it for this boot.
    assert ("Restart", "on-failure") in directives
    assert ("WantedBy", "multi-user.target") in directives
    assert ("After", "network-online.target") in directives
    assert layout.SPOT_UNIT in layout.ENABLED and layout.SPOT_UNIT not in layout.USER_DATA_UNITS
    assert layout.UNITS[-1] == layout.SPOT_UNIT


# --- JupyterLab's endpoint -----------------------------------------------------------------------


def test_the_idle_endpoint_serves_the_notice_and_null_without_a_good_one(tmp_path: Path) -> None:
    notice_file = tmp_path / "spot-interruption.json"
    env = {"JUPYTER_SPOT_NOTICE_FILE": str(notice_file)}
    with running_jupyter(tmp_path / "root", tmp_path / "work", env=env) as jupyter:

        def served() -> object:
            response = jupyter.api("GET", "/jupyter-on-demand/idle")
            assert response.status_code == 200, response.text
            return response.json()["spot_notice"]

        assert served() is None  # no notice
        record = {"action": "stop", "time": "2026-11-29T17:02:00Z",
                  "noticed_at": "2026-11-29T17:00:01Z"}  # fmt: skip
        notice_file.write_text(json.dumps(record))
        assert served() == record
        notice_file.write_text('{"action": "stop"}')  # not the watcher's: ignored
        assert served() is None
        notice_file.unlink()
        notice_file.symlink_to(tmp_path / "elsewhere.json")  # never read through a link
        (tmp_path / "elsewhere.json").write_text(json.dumps(record))
        assert served() is None
