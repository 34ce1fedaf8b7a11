"""The password-guessing alarm (infrastructure/monitoring.tf) against the handler's real log lines.

The handler runs under moto with the Lambda runtime's strict log handler (tests/lambda_src/conftest),
so the lines are exactly what CloudWatch receives. moto's FilterLogEvents evaluates a filter pattern
made of one quoted term the way CloudWatch does (an exact, case-sensitive phrase match); the test
first checks the pattern has that form, then asks moto which lines it matches.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

import handler
from tests.infrastructure.terraform import evaluate_for_each, resource, unwrap, variables
from tests.lambda_src.conftest import (
    PARAMETER,
    TEAM_PASS,
    LambdaRuntimeLog,
    call,
    create_stack,
    event,
)

THRESHOLD_VARIABLE = "refused_password_alarm_threshold"


def metric_filter() -> dict[str, Any]:
    return resource("aws_cloudwatch_log_metric_filter", "refused_passwords")


def filter_pattern() -> str:
    """The pattern as Terraform sends it: the HCL string literal with its escapes undone."""
    return json.loads(f'"{unwrap(metric_filter()["pattern"])}"')


@pytest.fixture
def lambda_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaRuntimeLog]:
    with mock_aws():
        stack = create_stack()
        monkeypatch.setenv("INSTANCE_ID", stack.instance_id)
        monkeypatch.setenv("TEAM_PASS_PARAMETER", PARAMETER)
        handler.client.cache_clear()
        handler.PASSWORDS.clear()
        sink = LambdaRuntimeLog()
        logging.getLogger().addHandler(sink)
        try:
            yield sink
        finally:
            logging.getLogger().removeHandler(sink)
            handler.client.cache_clear()
            handler.PASSWORDS.clear()


def lines_of(sink: LambdaRuntimeLog, params: dict | None, route: str = "/start") -> list[str]:
    before = len(sink.lines)
    call(event(route, params))
    return sink.lines[before:]


def matched_by_cloudwatch(lines: list[str]) -> list[str]:
    logs = boto3.client("logs")
    group = "/aws/lambda/jupyter-on-demand-start-link"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now_ms = int(time.time() * 1000)  # CloudWatch (and moto) drop events older than 14 days
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now_ms + i, "message": m} for i, m in enumerate(lines)],
    )
    found = logs.filter_log_events(logGroupName=group, filterPattern=filter_pattern())
    return [e["message"] for e in found["events"]]


def test_the_pattern_is_one_quoted_phrase_the_handler_writes() -> None:
    pattern = filter_pattern()
    assert re.fullmatch(r'"[^"]+"', pattern), pattern
    assert pattern.strip('"') == handler.REFUSED_PASSWORD_LOG


def test_the_metric_filter_counts_each_wrong_password_and_nothing_else(
    lambda_log: LambdaRuntimeLog,
) -> None:
    wrong = lines_of(lambda_log, {"pass": "guess-1"}) + lines_of(
        lambda_log, {"pass": "guess-2"}, "/status"
    )
    other = (
        lines_of(lambda_log, {"pass": TEAM_PASS})
        + lines_of(lambda_log, {"pass": TEAM_PASS}, "/status")
        + lines_of(lambda_log, None)
        + lines_of(lambda_log, {"pass": "%ff%fe"})
        + lines_of(lambda_log, {"pass": TEAM_PASS, "view": "xml"})
    )
    assert wrong and other
    refusals = [line for line in wrong if handler.REFUSED_PASSWORD_LOG in line]
    assert len(refusals) == 2  # one line per refused password
    assert matched_by_cloudwatch(wrong + other) == refusals


def test_the_metric_filter_reads_the_lambda_log_group() -> None:
    assert unwrap(metric_filter()["log_group_name"]) == "${aws_cloudwatch_log_group.lambda.name}"
    transformation = unwrap(metric_filter()["metric_transformation"])
    assert unwrap(transformation["value"]) == "1"


def test_the_alarm_fires_on_a_burst_of_refusals_and_is_quiet_without_data() -> None:
    alarm = resource("aws_cloudwatch_metric_alarm", "password_guessing")
    source = "aws_cloudwatch_log_metric_filter.refused_passwords.metric_transformation[0]"
    assert unwrap(alarm["namespace"]) == f"${{{source}.namespace}}"
    assert unwrap(alarm["metric_name"]) == f"${{{source}.name}}"
    assert unwrap(alarm["statistic"]) == "Sum"
    assert unwrap(alarm["period"]) == 300
    assert unwrap(alarm["evaluation_periods"]) == 1
    assert unwrap(alarm["comparison_operator"]) == "GreaterThanOrEqualToThreshold"
    assert unwrap(alarm["threshold"]) == f"${{var.{THRESHOLD_VARIABLE}}}"
    assert unwrap(alarm["treat_missing_data"]) == "notBreaching"
    assert unwrap(variables()[THRESHOLD_VARIABLE]["default"]) == 20


def test_the_threshold_variable_accepts_whole_positive_numbers_only() -> None:
    """The variable's own validation condition, evaluated by the real `terraform console`."""
    body = variables()[THRESHOLD_VARIABLE]
    validation = unwrap(body["validation"])
    assert len(unwrap(validation["error_message"])) > 20
    accepted = evaluate_for_each(
        unwrap(validation["condition"]), THRESHOLD_VARIABLE, [1, 20, 100000, 0, -5, 2.5]
    )
    assert accepted == [True, True, True, False, False, False]
