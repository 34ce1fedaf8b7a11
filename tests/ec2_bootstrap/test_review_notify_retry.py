"""Review: a message SNS refuses is tried again at every check, with no backoff: each try is a
publish_verdict.py process (botocore: ~0.5 s CPU, 12 s with SNS unreachable, measured)."""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta

from tests.ec2_bootstrap.test_idle_month import BOOTED, Machine

CHECK = timedelta(seconds=30)


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
    assert len(tries.read_text()) <= 6, f"{len(tries.read_text())} tries in 30 min"
