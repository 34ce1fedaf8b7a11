"""The system Python (Debian's /usr/bin/python3), as the instance has it: a wheelhouse of the
instance's requirements for it, and a venv of them that any user may run (this machine's own
Python lives under /root, which other users can't enter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.locks import cache_lock

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
REQUIREMENTS = ROOT / "ec2_bootstrap" / "requirements.txt"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def system_python_version() -> str:
    if not SYSTEM_PYTHON.exists():
        pytest.fail("no /usr/bin/python3: apt-get install python3 python3-venv")
    return subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def wheelhouse(python_version: str) -> Path:
    """Wheels of the instance's requirements for that Python (downloaded once into .cache)."""
    folder = CACHE / "vm" / "wheelhouse"
    marker = folder / ".complete"
    wanted = f"{python_version}\n{REQUIREMENTS.read_text()}"
    with cache_lock("wheelhouse"):
        if marker.exists() and marker.read_text() == wanted:
            return folder
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
             "--python-version", python_version, "-d", str(folder), "-r", str(REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        marker.write_text(wanted)
    return folder


def system_venv() -> Path:
    """A venv of /usr/bin/python3 with the instance's requirements: its python, runnable by
    every user, as /opt/jupyter-on-demand/venv is on the instance."""
    version = system_python_version()
    folder = CACHE / "system-venv"
    marker = folder / ".complete"
    wanted = f"{version}\n{REQUIREMENTS.read_text()}"
    with cache_lock("system-venv"):  # the wheelhouse has a lock of its own name
        if not marker.exists() or marker.read_text() != wanted:
            subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--clear", str(folder)], check=True)
            subprocess.run(
                [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                 "--find-links", str(wheelhouse(version)), "-r", str(REQUIREMENTS)],
                check=True,
            )  # fmt: skip
            marker.write_text(wanted)
    return folder / "bin" / "python"
