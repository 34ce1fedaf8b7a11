"""The optional per-client rate limit (infrastructure/waf.tf): off by default, and when on, one
rate-based rule that blocks a single IP address on the stage of the start link.

The variable's validation runs in the real `terraform console` (a scratch module holding the
variable block exactly as variables.tf declares it); the rest reads the parsed HCL offline.
`terraform validate` against a real AWS provider needs `terraform init`, which can't download
providers here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure.terraform import (
    INFRA,
    blocks,
    console_with_variable,
    evaluate_for_each,
    resource,
    tfvars_example,
    unwrap,
    variables,
)

VARIABLE = "waf_rate_limit_per_ip"
ERROR_START = f"{VARIABLE} must be null"


def web_acl() -> dict[str, Any]:
    return resource("aws_wafv2_web_acl", "start_link")


def association() -> dict[str, Any]:
    return resource("aws_wafv2_web_acl_association", "start_link")


def only_rule() -> dict[str, Any]:
    rules = web_acl()["rule"]
    assert len(rules) == 1, rules
    return rules[0]


def console_with(tmp_path: Path, value: str) -> subprocess.CompletedProcess[str]:
    """`terraform console` in a module holding only the variable, set to `value` (HCL)."""
    return console_with_variable(tmp_path, VARIABLE, f"{VARIABLE} = {value}\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("null", None),
        ("10", 10),
        ("100", 100),
        ("2000000000", 2000000000),
    ],
)
def test_terraform_accepts_no_waf_or_a_whole_limit_in_wafs_range(
    tmp_path: Path, value: str, expected: int | None
) -> None:
    result = console_with(tmp_path, value)
    assert ERROR_START not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert json.loads(json.loads(result.stdout.strip())) == expected


@pytest.mark.parametrize("value", ["9", "0", "-100", "100.5", "2000000001"])
def test_terraform_refuses_a_limit_waf_would_refuse_and_says_what_to_type(
    tmp_path: Path, value: str
) -> None:
    result = console_with(tmp_path, value)
    assert "Invalid value for variable" in result.stderr, result.stderr
    message = " ".join(result.stderr.split())  # Terraform wraps the message at 80 columns
    assert unwrap(variables()[VARIABLE]["validation"][0]["error_message"]) in message


def test_the_waf_is_off_by_default_and_in_the_example() -> None:
    assert unwrap(variables()[VARIABLE]["default"]) is None
    assert tfvars_example()[VARIABLE] is None
    example = (INFRA.parent / "terraform.tfvars.example").read_text()
    assert re.search(rf"^# {VARIABLE} = \d+$", example, re.M), "no commented example value"


@pytest.mark.parametrize("type_name", ["aws_wafv2_web_acl", "aws_wafv2_web_acl_association"])
def test_each_waf_resource_exists_only_when_the_limit_is_set(type_name: str) -> None:
    """The count expression, evaluated by the real `terraform console` for null and two limits."""
    count = unwrap(resource(type_name, "start_link")["count"])
    assert f"var.{VARIABLE}" in count
    assert evaluate_for_each(count, VARIABLE, [None, 10, 100]) == [0, 1, 1]


def test_the_web_acl_is_regional_and_lets_through_what_no_rule_blocks() -> None:
    acl = web_acl()
    assert unwrap(acl["scope"]) == "REGIONAL"  # API Gateway REST stages take REGIONAL ACLs
    assert unwrap(acl["default_action"]) == {"allow": [{}]}


def test_the_one_rule_blocks_each_client_ip_over_the_limit() -> None:
    rule = only_rule()
    assert unwrap(rule["action"]) == {"block": [{}]}
    statement = unwrap(unwrap(rule["statement"])["rate_based_statement"])
    assert unwrap(statement["aggregate_key_type"]) == "IP"
    assert unwrap(statement["limit"]) == f"${{var.{VARIABLE}}}"
    # The variable's description promises a 5-minute window: AWS's default, so not overridden.
    assert "evaluation_window_sec" not in statement
    assert "5 minutes" in unwrap(variables()[VARIABLE]["description"])


def test_the_acl_and_its_rule_publish_cloudwatch_metrics_under_the_name_prefix() -> None:
    configs = [unwrap(web_acl()["visibility_config"]), unwrap(only_rule()["visibility_config"])]
    for config in configs:
        assert unwrap(config["cloudwatch_metrics_enabled"]) is True
        assert unwrap(config["metric_name"]).startswith("${var.name_prefix}-")
    assert len({unwrap(c["metric_name"]) for c in configs}) == 2
    assert unwrap(web_acl()["name"]).startswith("${var.name_prefix}-")
    assert unwrap(only_rule()["name"]).startswith("${var.name_prefix}-")


def test_the_acl_keeps_no_request_samples_that_could_hold_the_password() -> None:
    configs = [unwrap(web_acl()["visibility_config"]), unwrap(only_rule()["visibility_config"])]
    assert [unwrap(c["sampled_requests_enabled"]) for c in configs] == [False, False]


def test_the_acl_is_attached_to_the_stage_of_the_start_link() -> None:
    attached = association()
    assert unwrap(attached["resource_arn"]) == "${aws_api_gateway_stage.v1.arn}"
    assert unwrap(attached["web_acl_arn"]) == "${aws_wafv2_web_acl.start_link[0].arn}"
    # [0] is safe only while both resources exist under the same condition.
    assert unwrap(attached["count"]) == unwrap(web_acl()["count"])
    assert any(t == "aws_api_gateway_stage" and n == "v1" for t, n, _ in blocks("resource"))
