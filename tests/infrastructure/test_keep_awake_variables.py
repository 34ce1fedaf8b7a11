"""Issue 12's variables: warn_minutes (JupyterLab's warning before an idle stop) and
max_keep_awake_hours (the longest keep-awake), and the tag keys the instance's metadata can show.

Each validation runs in the real `terraform console`, in a scratch module holding the variable
blocks exactly as variables.tf declares them (no provider needed). warn_minutes is not
compared with idle_minutes: the instance warns at most a quarter of the idle time ahead, so a
short idle_minutes works with the default warning.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.infrastructure.terraform import (
    accepted,
    console_in_module,
    console_with_variable,
    refusal,
    tfvars_example,
    unwrap,
    variable_block,
    variables,
)


def console_with_warn_minutes(folder: Path, tfvars: str) -> subprocess.CompletedProcess[str]:
    """`terraform console` printing var.warn_minutes, in a module holding it and idle_minutes."""
    module = variable_block("idle_minutes") + variable_block("warn_minutes")
    return console_in_module(folder, module, tfvars, "jsonencode(var.warn_minutes)")


def test_the_defaults_are_the_issues_and_the_example_shows_them() -> None:
    assert unwrap(variables()["warn_minutes"]["default"]) == 5
    assert unwrap(variables()["max_keep_awake_hours"]["default"]) == 12
    assert tfvars_example()["warn_minutes"] == 5
    assert tfvars_example()["max_keep_awake_hours"] == 12


@pytest.mark.parametrize(
    ("tfvars", "expected"),
    [
        ("", 5),
        ("warn_minutes = 0\n", 0),
        ("warn_minutes = 2.5\n", 2.5),
        ("idle_minutes = 10\nwarn_minutes = 9\n", 9),
        ("idle_minutes = 1\n", 5),
        ("idle_minutes = 10\nwarn_minutes = 40\n", 40),
    ],
    ids=[
        "default",
        "no-warning",
        "fraction",
        "just-under-idle-minutes",
        "idle-minutes-under-the-default-warning",
        "over-idle-minutes",
    ],
)
def test_warn_minutes_from_zero_up_is_accepted_whatever_idle_minutes(
    tmp_path: Path, tfvars: str, expected: float
) -> None:
    """The instance cuts a warning to a quarter of the idle time (idle_verdict.view)."""
    assert accepted(console_with_warn_minutes(tmp_path, tfvars)) == expected


def test_negative_warn_minutes_is_refused_saying_what_to_write(tmp_path: Path) -> None:
    message = refusal(console_with_warn_minutes(tmp_path, "warn_minutes = -1\n"))
    assert "warn_minutes must be 0 (no warning) or more, such as 5." in message


@pytest.mark.parametrize("value", [1, 4, 12, 1.5, 72])
def test_max_keep_awake_hours_from_1_to_72_is_accepted(tmp_path: Path, value: float) -> None:
    result = console_with_variable(
        tmp_path, "max_keep_awake_hours", f"max_keep_awake_hours = {value}\n"
    )
    assert accepted(result) == value


@pytest.mark.parametrize("value", [0, 0.5, -4, 73, 1000])
def test_max_keep_awake_hours_outside_1_to_72_is_refused(tmp_path: Path, value: float) -> None:
    result = console_with_variable(
        tmp_path, "max_keep_awake_hours", f"max_keep_awake_hours = {value}\n"
    )
    message = refusal(result)
    assert "max_keep_awake_hours must be a number of hours from 1 to 72, such as 12" in message


@pytest.mark.parametrize(
    "tags",
    [{}, {"team": "ml", "cost-center": "42", "owner:email": "a@example.com", "x+y=z.v_w": "1"}],
)
def test_tag_keys_the_instance_metadata_can_show_are_accepted(tmp_path: Path, tags: dict) -> None:
    result = console_with_variable(tmp_path, "tags", f"tags = {json.dumps(tags)}\n")
    assert accepted(result) == tags


@pytest.mark.parametrize("key", ["cost center", "team/ml", "..", "_index", "día"])
def test_tag_keys_the_instance_metadata_refuses_are_refused_by_name(
    tmp_path: Path, key: str
) -> None:
    """AWS refuses to launch (or to show tags on) an instance with such a key once its tags are
    in its metadata (ec2.tf instance_metadata_tags)."""
    tags = {"team": "ml", key: "x"}
    message = refusal(console_with_variable(tmp_path, "tags", f"tags = {json.dumps(tags)}\n"))
    assert "tags keys may hold only letters, digits and + - = . _ : @" in message
    assert f"Rename: {key}." in message  # that key only, not "team"
