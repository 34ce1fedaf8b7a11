"""The handler's log: one JSON object per record in CloudWatch (the function's JSON log format),
with the request id and the decision's fields, and never a secret.

The records are captured twice: as LogRecords (message, args and every extra attribute) and as the
lines the Lambda runtime's JSON formatter makes of them (tests/lambda_src/conftest.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import handler
from tests.lambda_src.conftest import (
    TEAM_PASS,
    LambdaRuntimeLog,
    Stack,
    call,
    event,
    on_the_root_logger,
)

REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
GUESS = "not-the-team-password"
# The attributes every LogRecord has, and the runtime's aws_request_id (its log filter sets it,
# conftest's LambdaRuntimeLog too); the rest are the fields the handler added.
STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "aws_request_id",
}


@dataclass
class LambdaContext:
    """The part of Lambda's context object the handler reads."""

    aws_request_id: str = REQUEST_ID
    function_name: str = "jupyter-on-demand-start-link"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of_handler(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == handler.logger.name]


@pytest.fixture
def records() -> Iterator[Records]:
    """Every LogRecord itself, DEBUG up, beside the runtime's JSON lines (conftest runtime_log)."""
    with on_the_root_logger(Records()) as sink:
        yield sink


def added_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES}


def everything_in(record: logging.LogRecord) -> str:
    """Message, arguments and every attribute (extra fields included) as text."""
    return "\n".join([record.getMessage(), repr(record.args), repr(vars(record))])


CASES = {
    "right-password": (lambda: event("/start", {"pass": TEAM_PASS}), "answered", "/start"),
    "wrong-password": (lambda: event("/status", {"pass": GUESS}), "rejected", "/status"),
    "keep-awake": (
        lambda: event("/keep-awake", {"pass": TEAM_PASS, "hours": "4"}),
        "answered",
        "/keep-awake",
    ),
    "keep-awake-wrong-password": (
        lambda: event("/keep-awake", {"pass": GUESS, "hours": "4"}),
        "rejected",
        "/keep-awake",
    ),
    # Not a proxy event at all, and it carries the password: none of it may reach the log.
    "malformed-event": (lambda: ["GET", f"/v1/start?pass={TEAM_PASS}"], "rejected", None),
}


def run(case: str) -> tuple[dict[str, Any], str, str | None]:
    make_event, outcome, route = CASES[case]
    response = handler.lambda_handler(make_event(), LambdaContext())
    return response, outcome, route


@pytest.mark.parametrize("case", CASES)
def test_every_record_of_a_request_carries_its_request_id(
    stack: Stack, records: Records, case: str
) -> None:
    run(case)
    assert records.of_handler()
    assert all(getattr(r, "request_id", None) == REQUEST_ID for r in records.of_handler())


@pytest.mark.parametrize("case", CASES)
def test_the_last_record_says_route_outcome_and_status(
    stack: Stack, records: Records, case: str
) -> None:
    response, outcome, route = run(case)
    last = records.of_handler()[-1]
    assert added_fields(last) == {
        "request_id": REQUEST_ID,
        "route": route,
        "outcome": outcome,
        "status": response["statusCode"],
        "state": last.state,
    }


@pytest.mark.parametrize("case", CASES)
def test_no_record_holds_the_password_or_the_guess(
    stack: Stack, records: Records, runtime_log: LambdaRuntimeLog, case: str
) -> None:
    run(case)
    assert records.records and runtime_log.lines
    for text in [*map(everything_in, records.records), *runtime_log.lines]:
        assert TEAM_PASS not in text
        assert GUESS not in text
        assert "pass=" not in text


@pytest.mark.parametrize("case", CASES)
def test_the_records_are_json_without_a_fallback(
    stack: Stack, records: Records, runtime_log: LambdaRuntimeLog, case: str
) -> None:
    run(case)
    for record in records.of_handler():
        # No default=: the handler's fields are JSON values, not objects the formatter would str().
        json.dumps({"message": record.getMessage(), **added_fields(record)})
    objects = runtime_log.objects
    assert objects
    mine = [o for o in objects if o["logger"] == handler.logger.name]
    assert all(o["request_id"] == REQUEST_ID for o in mine)
    assert mine[-1]["outcome"] == CASES[case][1]


def test_the_request_id_does_not_outlive_its_request(stack: Stack, records: Records) -> None:
    handler.lambda_handler(event("/status", {"pass": TEAM_PASS}), LambdaContext())
    handler.lambda_handler(
        event("/status", {"pass": TEAM_PASS}), None
    )  # the local demo: no context
    second = [r for r in records.of_handler() if getattr(r, "request_id", None) != REQUEST_ID]
    assert second, "the second request's records lack the first one's id"
    assert all(r.request_id is None for r in second)


def test_a_refusal_is_logged_once_with_the_route_and_not_the_guess(
    stack: Stack, records: Records
) -> None:
    call(event("/start", {"pass": GUESS}))
    refusals = [r for r in records.records if handler.REFUSED_PASSWORD_LOG in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].levelno == logging.WARNING
    assert refusals[0].route == "/start"
