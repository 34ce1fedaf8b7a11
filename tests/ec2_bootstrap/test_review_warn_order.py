"""Review: the team's message (SNS, up to the publish timeout of 30 s) goes out before the
user's own `wall` warning, which then comes that much later."""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta

from tests.ec2_bootstrap.test_idle_month import BOOTED, Machine


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
