"""The instance code runs on the Pythons of the AMIs people choose: Ubuntu 22.04's 3.10 and up
(README: `ami`). This machine has no Python 3.10 to run it on, so two real checkers stand in:
vermin, which knows the version each syntax feature, module and member of the standard library
appeared in, over every ec2_bootstrap/*.py (all of it runs on the system Python or in the venv
made from it); and pip's resolver, which reads each requirement's Requires-Python from PyPI.
pip evaluates environment markers for the Python it runs on, not for --python-version: so
requirements.txt pins one version of each package for every Python, without markers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[2] / "ec2_bootstrap"
OLDEST = "3.10"


def vermin(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        import vermin as _  # noqa: F401
    except ImportError:
        pytest.fail("vermin is not installed: .venv/bin/pip install -e '.[dev]' (or make test)")
    return subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
         f"-t={OLDEST}-", "--violations", "--no-tips", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_instance_code_needs_no_python_newer_than_3_10() -> None:
    files = sorted(str(path) for path in BOOTSTRAP.glob("*.py"))
    assert len(files) >= 10
    result = vermin(*files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "code",
    [
        "from datetime import UTC\n",
        "import datetime\nnow = datetime.datetime.now(datetime.UTC)\n",
        "import tomllib\n",
        "from enum import StrEnum\n",
        "from typing import Self\n",
        "try:\n    pass\nexcept* ValueError:\n    pass\n",
        "import hashlib\nhashlib.file_digest\n",
    ],
    ids=["UTC", "datetime.UTC", "tomllib", "StrEnum", "Self", "except*", "file_digest"],
)
def test_the_checker_catches_what_python_3_10_cannot_run(tmp_path, code: str) -> None:
    """The check above would fail on any of these (it passes for the right reason)."""
    path = tmp_path / "newer.py"
    path.write_text(f"from __future__ import annotations\n\n{code}")
    result = vermin(str(path))
    assert result.returncode != 0, result.stdout
    assert "requires !2, 3.11" in result.stdout


@pytest.mark.parametrize("python", [OLDEST, "3.11", "3.12"])
def test_the_instance_requirements_install_on_the_amis_pythons(tmp_path, python: str) -> None:
    """What `boot.py install` runs with the AMI's python3 (3.10: Ubuntu 22.04; 3.11: Debian 12;
    3.12: Ubuntu 24.04, the Deep Learning AMI's), resolved by pip against PyPI for that Python."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
         "--only-binary=:all:", "--python-version", python, "--target", str(tmp_path / "t"),
         "-r", str(BOOTSTRAP / "requirements.txt")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    errors = "\n".join(line for line in result.stderr.splitlines() if "WARNING" not in line)
    if result.returncode != 0 and "requires a different Python" not in errors:
        pytest.fail(f"pip could not reach PyPI to resolve the requirements: {errors}")
    assert result.returncode == 0, errors
