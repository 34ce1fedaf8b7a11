from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from demo.git_remote import GitRemote


@pytest.fixture(autouse=True)
def _environment_of_the_test_only():
    """boot.main() puts the instance's files into os.environ, as the steps pass them on to what
    they run (an endpoint from local.env, PIP_*): none of it outlives the test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def remote(tmp_path):
    server = GitRemote(tmp_path / "remote")
    yield server
    server.stop()


# The idle checker's flag for no boot grace. The machine's uptime is the host's: another test's
# root `boot.py` must not count as a boot step of the instance a test plays when the host booted
# less than 30 min ago (test_idle_check.py tests the grace itself).
NO_BOOT_GRACE = ("--boot-grace-minutes", "0")


def recording_publisher(tmp_path: Path) -> tuple[str, Path]:
    """A publish command (the idle checker's `--publish-command`) that appends each JSON object
    of tags it gets to a file, one per line; the command and the file."""
    out = tmp_path / "published.jsonl"
    script = tmp_path / "publish.py"
    script.write_text(
        "import sys\n"
        f"with open({str(out)!r}, 'a') as f: f.write(sys.stdin.read().strip() + '\\n')\n"
    )
    return shlex.join([sys.executable, str(script)]), out
