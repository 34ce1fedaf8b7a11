"""Faults around the month's hours and the team's messages (issue 13), as the adversarial review
found them: a bug in the counting, a full disk, SNS refusing a message, a slow SNS. Each is a
real run of the checker (tests/ec2_bootstrap/test_idle_month.Machine)."""

from __future__ import annotations

import errno
import shlex
import sys
from datetime import timedelta

import idle_check
import idle_month
import idle_notify
from tests.ec2_bootstrap.test_idle_month import BOOTED, Machine, calls, recording_publisher

CHECK = timedelta(seconds=30)


def test_a_crash_in_the_month_counting_never_stops_the_check(tmp_path, monkeypatch) -> None:
    machine = Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    machine.run()

    def broken(*args: object) -> float:
        raise ZeroDivisionError("a bug in the month counting")

    monkeypatch.setattr(idle_month, "hours_within", broken)
    decision = machine.run(after=timedelta(minutes=40))  # idle 45 min: must stop
    assert decision["action"] == "stop" and machine.stopped


def test_a_crash_in_the_month_counting_at_the_stop_never_blocks_the_stop(
    tmp_path, monkeypatch
) -> None:
    machine = Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    machine.run()
    real = idle_month.count
    calls = []

    def second_call_fails(*args: object):
        calls.append(1)
        if len(calls) > 1:  # the recount in act (the stop) fails
            raise ValueError("a bug in the month counting")
        return real(*args)

    monkeypatch.setattr(idle_month, "count", second_call_fails)
    machine.run(after=timedelta(minutes=40))
    assert machine.stopped


def test_a_full_disk_never_repeats_the_long_run_message_at_every_check(
    tmp_path, monkeypatch
) -> None:
    machine = Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    command, out = recording_publisher(tmp_path)
    args = ("--publish-command", command, "--notify", "--page-url", "https://x.example/v1")
    machine.seen = ["GPU 0 at 97 %"]
    machine.run(*args)

    def full(*a: object, **k: object) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(idle_check, "write_file", full)
    machine.run(*args, after=timedelta(hours=8))
    for _ in range(10):  # five minutes of checks
        machine.run(*args, after=CHECK)
    messages = [c["notify"] for c in calls(out) if "notify" in c]
    # A message goes out only once the state says it went: with the disk full, none does (the
    # log says why), rather than one at every check.
    assert messages == [], f"{len(messages)} messages in 5 min: {messages[:2]}"


def test_a_refused_message_is_not_retried_at_every_check(tmp_path, monkeypatch) -> None:
    machine = Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    tries = tmp_path / "tries"
    script = tmp_path / "publish.py"
    script.write_text(
        "import json, sys\n"
        "values = json.load(sys.stdin)\n"
        f"if 'notify' in values: open({str(tries)!r}, 'a').write('x'); sys.exit(1)\n"
    )
    args = ("--publish-command", shlex.join([sys.executable, str(script)]), "--notify")
    machine.seen = ["GPU 0 at 97 %"]
    machine.run(*args, after=timedelta(hours=8))
    for _ in range(60):  # half an hour of checks
        machine.run(*args, after=CHECK)
    most = timedelta(minutes=30) / idle_notify.RETRY_AFTER + 1
    assert 2 <= len(tries.read_text()) <= most, f"{len(tries.read_text())} tries in 30 min"


def test_the_users_wall_warning_never_waits_for_the_teams_message(tmp_path, monkeypatch) -> None:
    machine = Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    log = tmp_path / "order"
    (tmp_path / "no-bin").mkdir()
    wall = tmp_path / "no-bin" / "wall"
    wall.write_text(f"#!/bin/sh\necho wall >> {log}\n")
    wall.chmod(0o755)
    script = tmp_path / "publish.py"
    script.write_text(
        "import json, sys, time\n"
        "values = json.load(sys.stdin)\n"
        f"if 'notify' in values: time.sleep(1); open({str(log)!r}, 'a').write('sns\\n')\n"
    )
    args = ("--publish-command", shlex.join([sys.executable, str(script)]), "--notify")
    machine.run(*args)
    assert machine.run(*args, after=timedelta(minutes=31))["action"] == "warn"
    assert log.read_text().split() == ["wall", "sns"]
