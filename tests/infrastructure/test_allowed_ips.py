"""allowed_ips (issue 10, point 8): AWS refuses a CIDR block with host bits set, such as
198.51.100.7/24, only at apply time, after half the stack exists. The variable's validation refuses
it at plan time and tells the admin what to type instead.

The validation runs in the real `terraform console`, in a scratch module holding the variable block
exactly as variables.tf declares it (no provider needed).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.infrastructure.terraform import console_with_variable, one_line

VARIABLE = "allowed_ips"


def console_with(tmp_path: Path, value: list[str]) -> subprocess.CompletedProcess[str]:
    """`terraform console` in a module holding only the variable, set to `value`."""
    return console_with_variable(tmp_path, VARIABLE, f"{VARIABLE} = {json.dumps(value)}\n")


@pytest.mark.parametrize(
    "value",
    [
        ["203.0.113.10/32"],
        ["198.51.100.0/24", "203.0.113.10/32"],
        ["0.0.0.0/0"],
        ["10.0.0.0/8"],
    ],
)
def test_network_addresses_are_accepted(tmp_path: Path, value: list[str]) -> None:
    result = console_with(tmp_path, value)
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr
    assert json.loads(json.loads(result.stdout)) == value


def test_a_block_with_host_bits_set_is_refused_with_what_to_type_instead(tmp_path: Path) -> None:
    result = console_with(tmp_path, ["203.0.113.10/32", "198.51.100.7/24"])
    # terraform console reports an invalid variable but still exits 0: the message is the verdict.
    assert "Invalid value for variable" in result.stderr
    message = one_line(result.stderr)
    assert "allowed_ips entries must be network addresses" in message
    assert 'for 198.51.100.7/24 type "198.51.100.0/24" (the whole block)' in message
    assert 'or "198.51.100.7/32" (that one address)' in message
    assert "203.0.113.10" not in message.split("network addresses", 1)[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], "must list at least one IPv4 CIDR block"),
        (["203.0.113.10"], "must list at least one IPv4 CIDR block"),
        (["not-an-address/32"], "must list at least one IPv4 CIDR block"),
    ],
)
def test_what_is_no_cidr_block_at_all_gets_the_first_message_only(
    tmp_path: Path, value: list[str], expected: str
) -> None:
    result = console_with(tmp_path, value)
    # terraform console reports an invalid variable but still exits 0: the message is the verdict.
    assert "Invalid value for variable" in result.stderr
    message = one_line(result.stderr)
    assert expected in message
    assert "network addresses" not in message
