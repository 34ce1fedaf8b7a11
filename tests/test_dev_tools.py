"""The everyday tools agree: `make lint`, the pre-commit hooks and pyproject.toml's pins.

The hooks are not run here (installing them needs GitHub); their configuration is read, and
validated with `pre-commit validate-config`, which works offline.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"
RUFF_REPO = "https://github.com/astral-sh/ruff-pre-commit"
HOOKS_REPO = "https://github.com/pre-commit/pre-commit-hooks"

# What each command of `make lint` is called as a pre-commit hook.
HOOK_OF_LINT_COMMAND = {
    ("ruff", "check"): "ruff",
    ("ruff", "format"): "ruff-format",
    ("mypy",): "mypy",
    ("terraform", "fmt"): "terraform-fmt",
    ("shellcheck",): "shellcheck",
}
BASIC_CHECKS = {
    "trailing-whitespace",
    "end-of-file-fixer",
    "check-yaml",
    "check-toml",
    "check-merge-conflict",
    "check-added-large-files",
}


def dev_pins() -> dict[str, str]:
    """Package name => exact version, for the dev dependencies pinned with `==`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["optional-dependencies"]["dev"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^,;\s]+)", requirement)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def pre_commit() -> dict[str, Any]:
    loaded = yaml.safe_load(PRE_COMMIT_CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def repo(url: str) -> dict[str, Any]:
    found = [r for r in pre_commit()["repos"] if r["repo"] == url]
    assert len(found) == 1, f"{PRE_COMMIT_CONFIG.name} should list {url} once"
    return found[0]


def hooks() -> dict[str, dict[str, Any]]:
    return {hook["id"]: hook for r in pre_commit()["repos"] for hook in r["hooks"]}


def lint_commands() -> list[list[str]]:
    """The commands of the Makefile's `lint` recipe, as argument lists, `$(VENV)/bin/` dropped."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("lint:"))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        command = line.strip().removeprefix("@")
        if command.startswith("$(NEED_"):
            continue  # a check that the tool is installed, not a tool
        words = shlex.split(command.replace("$(VENV)/bin/", ""))
        commands.append(words)
    return commands


def test_ruff_and_mypy_are_pinned_exactly() -> None:
    pins = dev_pins()
    assert "ruff" in pins and "mypy" in pins, "pin ruff and mypy with == in pyproject.toml"


def test_pre_commit_runs_the_pinned_ruff() -> None:
    assert repo(RUFF_REPO)["rev"] == "v" + dev_pins()["ruff"]


def test_pre_commit_runs_the_venvs_mypy_which_pyproject_pins() -> None:
    hook = hooks()["mypy"]
    assert hook["language"] == "system"
    assert shlex.split(hook["entry"])[0] == ".venv/bin/mypy"
    assert hook["pass_filenames"] is False  # the configured folders, strict, as `make lint`


def test_the_venv_has_the_pinned_lint_tools() -> None:
    bin_dir = Path(sys.executable).parent
    for tool in ("ruff", "mypy"):
        executable = bin_dir / tool
        assert executable.exists(), f"{tool} is missing from the venv: run make setup"
        out = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert re.search(rf"\b{re.escape(dev_pins()[tool])}\b", out), (tool, out)


def test_every_tool_make_lint_runs_has_a_hook() -> None:
    commands = lint_commands()
    assert commands, "the Makefile has a lint recipe"
    expected = set()
    for words in commands:
        key = next((k for k in HOOK_OF_LINT_COMMAND if tuple(words[: len(k)]) == k), None)
        assert key is not None, f"`make lint` runs {words}: add its hook and a line above"
        expected.add(HOOK_OF_LINT_COMMAND[key])
    assert expected == set(HOOK_OF_LINT_COMMAND.values()), "make lint runs every tool"
    assert expected <= set(hooks())


def test_make_lint_checks_rather_than_fixes() -> None:
    commands = [" ".join(words) for words in lint_commands()]
    assert "ruff format --check ." in commands
    assert "terraform fmt -check -recursive infrastructure" in commands
    assert not any("--fix" in command for command in commands)


def test_pre_commit_has_the_basic_checks() -> None:
    ids = {hook["id"] for hook in repo(HOOKS_REPO)["hooks"]}
    assert BASIC_CHECKS <= ids


def test_local_hooks_need_no_network() -> None:
    local = [r for r in pre_commit()["repos"] if r["repo"] == "local"]
    assert local
    for hook in (h for r in local for h in r["hooks"]):
        assert hook["language"] == "system", hook["id"]


def test_pre_commit_config_is_valid() -> None:
    executable = Path(sys.executable).parent / "pre-commit"
    if not executable.exists():
        pytest.fail("pre-commit is missing from the venv: run make setup (it is a dev dependency)")
    result = subprocess.run(
        [str(executable), "validate-config", str(PRE_COMMIT_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
