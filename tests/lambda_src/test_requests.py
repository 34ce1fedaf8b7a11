"""Passwords and malformed events: clear 4xx JSON answers, no EC2 call, no password in logs."""

from __future__ import annotations

import json
import logging
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import handler
from tests.lambda_src.conftest import TEAM_PASS, Stack, call, event


@pytest.fixture
def no_ec2():
    """Fails the test if the handler touches EC2 at all."""
    ec2 = handler.client("ec2")
    with (
        mock.patch.object(ec2, "describe_instances") as describe,
        mock.patch.object(ec2, "start_instances") as start,
    ):
        yield describe, start
        describe.assert_not_called()
        start.assert_not_called()


def test_missing_password_is_401_json_and_says_nothing_of_the_instance(
    stack: Stack, no_ec2
) -> None:
    status, body = call(event("/start", None))
    assert status == 401
    assert body == {"message": handler.MISSING_PASS_MESSAGE, "state": None}


def test_empty_password_is_401(stack: Stack, no_ec2) -> None:
    assert call(event("/start", {"pass": ""}))[0] == 401


@pytest.mark.parametrize("path", ["/start", "/status"])
def test_wrong_password_is_403_json_and_says_nothing_of_the_instance(
    stack: Stack, no_ec2, path: str
) -> None:
    status, body = call(event(path, {"pass": TEAM_PASS + "x"}))
    assert status == 403
    assert body == {"message": handler.WRONG_PASS_MESSAGE, "state": None}


def test_password_is_compared_with_compare_digest(stack: Stack) -> None:
    with mock.patch.object(handler.hmac, "compare_digest", return_value=False) as compare:
        status, _ = call(event("/start", {"pass": TEAM_PASS}))
    assert status == 403
    compare.assert_called_once()


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        pytest.param(
            {"queryStringParameters": None, "multiValueQueryStringParameters": None},
            401,
            id="no-query",
        ),
        pytest.param({"queryStringParameters": None}, 200, id="only-multi-value"),
        pytest.param({"queryStringParameters": {"pass": 123}}, 400, id="non-string"),
        pytest.param({"queryStringParameters": {"pass": ["a"]}}, 400, id="list-value"),
        pytest.param({"queryStringParameters": {"pass": "x" * 10_000}}, 400, id="10kB-value"),
        pytest.param({"queryStringParameters": "pass=x"}, 400, id="query-not-a-dict"),
        pytest.param(
            {"multiValueQueryStringParameters": 7, "queryStringParameters": None},
            400,
            id="multi-not-a-dict",
        ),
        pytest.param({"httpMethod": "POST"}, 405, id="post"),
        pytest.param({"httpMethod": None}, 405, id="no-method"),
        pytest.param({"resource": "/admin", "path": "/admin"}, 404, id="other-path"),
        pytest.param({"resource": None, "path": None}, 404, id="no-path"),
        pytest.param(
            {"queryStringParameters": {"pass": TEAM_PASS, "view": "xml"}}, 400, id="bad-view"
        ),
    ],
)
def test_malformed_events_get_a_clear_json_answer(
    stack: Stack, overrides: dict, status: int
) -> None:
    got, body = call(event("/start", {"pass": TEAM_PASS}, **overrides))
    assert got == status
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize("evt", [None, [], "GET /start", 42])
def test_events_that_are_not_objects_get_400(stack: Stack, evt) -> None:
    assert call(evt)[0] == 400


def test_the_stage_prefixed_path_is_accepted(stack: Stack) -> None:
    status, _ = call(event("/start", {"pass": TEAM_PASS}, resource=None, path="/v1/start"))
    assert status == 200


def test_logs_never_contain_the_password(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for params in (
        {"pass": TEAM_PASS},
        {"pass": TEAM_PASS + "wrong"},
        {"pass": TEAM_PASS, "view": "page"},
    ):
        call(event("/start", params))
        call(event("/status", params))
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the handler logs each request"
    assert TEAM_PASS not in text


# --- Property-based: random events never get a 5xx and never start without the password -------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
query = st.none() | st.dictionaries(
    st.sampled_from(["pass", "view", "x", ""]),
    st.just(TEAM_PASS)
    | st.text(max_size=40)
    | st.integers()
    | st.none()
    | st.lists(st.text(max_size=5), max_size=2),
    max_size=3,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "httpMethod": st.sampled_from(["GET", "POST", "HEAD", "", None]) | st.text(max_size=5),
        "resource": st.sampled_from(["/start", "/status", "/v1/start", "/", None])
        | st.text(max_size=10),
        "path": st.sampled_from(["/start", "/status", "/v1/status"]) | json_values,
        "queryStringParameters": query | json_values,
        "multiValueQueryStringParameters": query | json_values,
        "headers": json_values,
        "requestContext": json_values,
    },
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(evt=events | json_values)
def test_fuzzed_events_never_5xx_and_never_start_without_the_password(stack: Stack, evt) -> None:
    ec2 = handler.client("ec2")
    with mock.patch.object(ec2, "start_instances", wraps=ec2.start_instances) as start:
        response = handler.lambda_handler(evt, None)
    assert response["statusCode"] < 500, response["body"]
    json.loads(response["body"]) if response["headers"][
        "Content-Type"
    ] == "application/json" else None
    if start.called:
        params = handler.query_parameters(evt)
        assert params.get("pass") == TEAM_PASS
        stack.ec2.stop_instances(InstanceIds=[stack.instance_id])
