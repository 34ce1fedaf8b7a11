"""Review: a state that can't be saved (disk full) must not make the team's message go out at
every check (issue 13: the long-run nag fires once, then daily, never every check)."""

from __future__ import annotations

import errno
from datetime import timedelta

import idle_check
from tests.ec2_bootstrap.test_idle_month import BOOTED, Machine, calls, recording_publisher

CHECK = timedelta(seconds=30)


def test_a_full_disk_does_not_repeat_the_long_run_message_every_check(
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
    assert len(messages) == 1, f"{len(messages)} messages in 5 min: {messages[:2]}"
