"""Passwords and malformed events: clear 4xx JSON answers, no EC2 call, no password in logs."""

from __future__ import annotations

import json
import logging
from unittest import mock

import boto3
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import handler
import request
from tests.lambda_src.conftest import (
    PARAMETER,
    TEAM_PASS,
    LambdaRuntimeLog,
    Stack,
    call,
    event,
    marshal_like_the_runtime,
)


@pytest.fixture
def no_ec2():
    """Fails the test if the handler touches EC2 at all."""
    ec2 = handler.client("ec2")
    with (
        mock.patch.object(ec2, "describe_instances") as describe,
        mock.patch.object(ec2, "start_instances") as start,
        mock.patch.object(ec2, "create_tags") as create_tags,
    ):
        yield describe, start
        describe.assert_not_called()
        start.assert_not_called()
        create_tags.assert_not_called()


def test_missing_password_is_401_json_and_says_nothing_of_the_instance(
    stack: Stack, no_ec2
) -> None:
    status, body = call(event("/start", None))
    assert status == 401
    assert body == {"message": handler.MISSING_PASS_MESSAGE, "state": None}


def test_empty_password_is_401(stack: Stack, no_ec2) -> None:
    assert call(event("/start", {"pass": ""}))[0] == 401


@pytest.mark.parametrize("path", ["/start", "/status", "/keep-awake"])
def test_wrong_password_is_403_json_and_says_nothing_of_the_instance(
    stack: Stack, no_ec2, path: str
) -> None:
    status, body = call(event(path, {"pass": TEAM_PASS + "x", "hours": "1"}))
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


# --- Query strings that are not valid UTF-8 -------------------------------------------------------
#
# API Gateway's documentation does not say how a REST (v1) proxy event carries percent-escapes that
# do not decode as UTF-8 (?pass=%ff%fe). A decoder that replaces them gives U+FFFD, one that keeps
# them gives the raw "%ff%fe", and a JSON event may carry lone surrogates ("\udcff", as Python's
# surrogateescape would make, or "\ud800") that json.loads turns into str a UTF-8 encode refuses.
# Every form must get a 400 JSON answer, never an exception (the runtime would make it a 502).

NOT_UTF8 = {
    "replacement-characters": "\ufffd\ufffd",
    "raw-percent-escapes": "%ff%fe",
    "surrogate-escapes": "\udcff\udcfe",
    "lone-surrogate": "\ud800",
    "surrogate-inside-text": "abc\udfffdef",
}


def both_query_forms(params: dict) -> dict:
    return {
        "queryStringParameters": params,
        "multiValueQueryStringParameters": {k: [v] for k, v in params.items()},
    }


@pytest.mark.parametrize("value", NOT_UTF8.values(), ids=NOT_UTF8.keys())
@pytest.mark.parametrize("form", ["both", "single-only", "multi-only"])
def test_a_password_that_is_not_utf8_gets_a_400_json_answer(
    stack: Stack, no_ec2, value: str, form: str
) -> None:
    overrides = both_query_forms({"pass": value})
    if form == "single-only":
        overrides["multiValueQueryStringParameters"] = None
    elif form == "multi-only":
        overrides["queryStringParameters"] = None
    status, body = call(event("/start", None, **overrides))
    assert status == 400
    assert body == {"message": request.NOT_UTF8_MESSAGE, "state": None}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"pass": TEAM_PASS, "view": "\ud800"}, id="view"),
        pytest.param({"pass": TEAM_PASS, "utm_source": "\udcff"}, id="other-value"),
        pytest.param({"pass": TEAM_PASS, "\ud800": "x"}, id="parameter-name"),
        pytest.param({"pass": TEAM_PASS, "x": "\ufffd"}, id="replacement-in-other-value"),
    ],
)
def test_any_query_parameter_that_is_not_utf8_gets_a_400(
    stack: Stack, no_ec2, params: dict
) -> None:
    status, body = call(event("/start", None, **both_query_forms(params)))
    assert (status, body["message"]) == (400, request.NOT_UTF8_MESSAGE)


def test_an_earlier_repeated_value_that_is_not_utf8_gets_a_400(stack: Stack, no_ec2) -> None:
    overrides = {
        "queryStringParameters": {"pass": TEAM_PASS},
        "multiValueQueryStringParameters": {"pass": ["\ud800", TEAM_PASS]},
    }
    assert call(event("/start", None, **overrides))[0] == 400


def test_the_right_password_with_a_literal_percent_sequence_still_works(stack: Stack) -> None:
    """Only a wrong password is classified as undecodable: a real one containing "%ff" must work."""
    boto3.client("ssm").put_parameter(
        Name=PARAMETER, Value="pass%ffword", Type="SecureString", Overwrite=True
    )
    assert call(event("/status", {"pass": "pass%ffword"}))[0] == 200


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"path": "/start\ud800", "resource": "/start\ud800"}, id="path"),
        pytest.param({"path": "/start\n[WARNING] forged", "resource": None}, id="path-newline"),
        pytest.param({"httpMethod": "GET\udcff"}, id="method"),
        pytest.param(
            {"headers": {"X-Forwarded-For": "\ud800"}, "multiValueHeaders": {"X": ["\ud800"]}},
            id="headers",
        ),
        pytest.param(
            {"requestContext": {"identity": {"sourceIp": "1.2.3.4\ud800"}}}, id="source-ip"
        ),
    ],
)
def test_lone_surrogates_elsewhere_in_the_event_never_break_the_answer_or_the_log(
    stack: Stack, runtime_log: LambdaRuntimeLog, overrides: dict
) -> None:
    for password in (TEAM_PASS, "wrong"):
        response = handler.lambda_handler(event("/status", {"pass": password}, **overrides), None)
        marshal_like_the_runtime(response)
        assert response["statusCode"] < 500
        assert json.loads(response["body"])["message"]
    assert runtime_log.lines
    assert all("\n[WARNING] forged" not in line for line in runtime_log.lines)


def test_a_wrong_password_logs_exactly_one_refusal_line_without_the_password(
    stack: Stack, runtime_log: LambdaRuntimeLog
) -> None:
    guess = "not-the-team-password"
    call(event("/start", {"pass": guess}, requestContext={"identity": {"sourceIp": "203.0.113.9"}}))
    refusals = [line for line in runtime_log.lines if handler.REFUSED_PASSWORD_LOG in line]
    assert len(refusals) == 1
    assert "/start" in refusals[0] and "203.0.113.9" in refusals[0]
    assert all(guess not in line and TEAM_PASS not in line for line in runtime_log.lines)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"pass": TEAM_PASS}, id="right-password"),
        pytest.param(None, id="no-password"),
        pytest.param({"pass": "\ud800"}, id="not-utf8"),
        pytest.param({"pass": TEAM_PASS, "view": "xml"}, id="bad-view"),
    ],
)
def test_only_a_wrong_password_logs_a_refusal(
    stack: Stack, runtime_log: LambdaRuntimeLog, params: dict | None
) -> None:
    call(event("/start", params))
    assert runtime_log.lines
    assert not any(handler.REFUSED_PASSWORD_LOG in line for line in runtime_log.lines)


def test_logs_never_contain_the_password(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for params in (
        {"pass": TEAM_PASS},
        {"pass": TEAM_PASS + "wrong"},
        {"pass": TEAM_PASS, "view": "page"},
    ):
        call(event("/start", params))
        call(event("/status", params))
        for hours in ("2", "0", "13", "x"):
            call(event("/keep-awake", params | {"hours": hours}))
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the handler logs each request"
    assert TEAM_PASS not in text


# --- Property-based: random events never get a 5xx and never start without the password -------

# Any text, including what a UTF-8 encode refuses (lone surrogates) and what decoders leave behind.
# (st.text drops surrogates from a mixed alphabet, so the characters are joined by hand.)
texts = st.lists(
    st.characters() | st.characters(categories=["Cs"]) | st.sampled_from("\ufffd%"), max_size=20
).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
query = st.none() | st.dictionaries(
    st.sampled_from(["pass", "view", "hours", "x", ""]),
    st.just(TEAM_PASS)
    | st.sampled_from(["0", "4", "1.5", "12", "13", "-1"])
    | texts
    | st.integers()
    | st.none()
    | st.lists(texts, max_size=2),
    max_size=3,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "httpMethod": st.sampled_from(["GET", "POST", "HEAD", "", None]) | st.text(max_size=5),
        "resource": st.sampled_from(["/start", "/status", "/keep-awake", "/v1/start", "/", None])
        | texts,
        "path": st.sampled_from(["/start", "/status", "/keep-awake", "/v1/status"]) | json_values,
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
    """Runs under the runtime's strict log handler (conftest) and marshals like the runtime;
    neither starts nor tags without the password (nor, tagging, with hours over the cap)."""
    ec2 = handler.client("ec2")
    with (
        mock.patch.object(ec2, "start_instances", wraps=ec2.start_instances) as start,
        mock.patch.object(ec2, "create_tags", wraps=ec2.create_tags) as create_tags,
    ):
        response = handler.lambda_handler(evt, None)
    marshal_like_the_runtime(response)
    assert response["statusCode"] < 500, response["body"]
    json.loads(response["body"]) if response["headers"][
        "Content-Type"
    ] == "application/json" else None
    if start.called or create_tags.called:
        params = request.query_parameters(evt)
        assert params.get("pass") == TEAM_PASS
    if create_tags.called:
        assert 0 <= float(request.query_parameters(evt)["hours"]) <= 12
    if start.called:
        stack.ec2.stop_instances(InstanceIds=[stack.instance_id])
