"""Issue 13: a start by the link is told to the team through the admin's SNS topic
(NOTIFY_TOPIC_ARN): one short sentence ending with the status page's link, never the password.

The messages are read from moto's SNS, which keeps every message a topic published
(Topic.sent_notifications). Nothing is published when notifications are off, when nothing was
started, and a failing publish never fails the answer.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

import handler
from tests.lambda_src.conftest import TEAM_PASS, LambdaRuntimeLog, Stack, call, event

DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
PAGE = f"https://{DOMAIN}/v1/status?view=page"
STARTED = f"Jupyter Lab is starting (someone opened the start link): {PAGE}"


def gateway_event(route: str, params: dict[str, str]) -> dict[str, Any]:
    """As API Gateway sends it: requestContext names the API's domain and stage."""
    return event(
        route,
        params,
        requestContext={
            "stage": "v1",
            "path": f"/v1{route}",
            "httpMethod": "GET",
            "domainName": DOMAIN,
            "domainPrefix": DOMAIN.split(".")[0],
            "identity": {"sourceIp": "198.51.100.7"},
        },
    )


@pytest.fixture
def topic(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    arn = boto3.client("sns").create_topic(Name="jupyter-on-demand-notify")["TopicArn"]
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", arn)
    return arn


def published(arn: str) -> list[tuple[str, str | None]]:
    """(message, subject) of every message the topic published, from moto's SNS backend."""
    sent = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[arn].sent_notifications
    return [(message, subject) for _, message, subject, _, _ in sent]


def test_a_start_by_the_link_tells_the_team_once_with_the_page_link(
    stack: Stack, topic: str
) -> None:
    code, body = call(gateway_event("/start", {"pass": TEAM_PASS}))
    assert (code, body["state"]) == (200, "pending")
    assert published(topic) == [(STARTED, "jupyter-on-demand")]
    message = published(topic)[0][0]
    assert TEAM_PASS not in message and "pass=" not in message
    assert message.endswith(PAGE)


def test_the_page_link_carries_nothing_of_the_callers_query(stack: Stack, topic: str) -> None:
    call(gateway_event("/start", {"pass": TEAM_PASS, "view": "page"}))
    assert published(topic) == [(STARTED, "jupyter-on-demand")]


def test_a_keep_awake_that_starts_the_machine_says_so(stack: Stack, topic: str) -> None:
    code, _ = call(gateway_event("/keep-awake", {"pass": TEAM_PASS, "hours": "4"}))
    assert code == 200
    assert published(topic) == [
        (
            f"Jupyter Lab is starting (someone asked to keep it awake for 4 h): {PAGE}",
            "jupyter-on-demand",
        )
    ]


@pytest.mark.parametrize(
    ("running", "route", "params"),
    [
        (False, "/status", {"pass": TEAM_PASS}),
        (True, "/start", {"pass": TEAM_PASS}),
        (True, "/keep-awake", {"pass": TEAM_PASS, "hours": "4"}),
        (False, "/keep-awake", {"pass": TEAM_PASS, "hours": "0"}),  # a cancel starts nothing
        (False, "/start", {"pass": "not-the-team-password"}),
    ],
    ids=["status", "already-running", "keep-awake-running", "cancel", "wrong-password"],
)
def test_nothing_is_published_when_the_link_started_nothing(
    stack: Stack, topic: str, running: bool, route: str, params: dict[str, str]
) -> None:
    if running:
        stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    call(gateway_event(route, params))
    assert published(topic) == []


def test_nothing_is_published_when_notifications_are_off(
    stack: Stack, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", "")
    with mock.patch.object(handler.client("sns"), "publish") as publish:
        code, _ = call(gateway_event("/start", {"pass": TEAM_PASS}))
    assert code == 200 and stack.state() == "running"
    publish.assert_not_called()
    assert published(topic) == []


def test_a_failed_start_is_not_told(stack: Stack, topic: str) -> None:
    """No capacity (injected: moto never lacks it): the instance stays stopped, nobody is told."""
    ec2 = handler.client("ec2")
    error = handler.ClientError(
        {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "injected"}},
        "StartInstances",
    )
    with mock.patch.object(ec2, "start_instances", side_effect=error):
        code, _ = call(gateway_event("/start", {"pass": TEAM_PASS}))
    assert code == 503
    assert published(topic) == []


def test_without_the_gateways_domain_the_sentence_has_no_link(stack: Stack, topic: str) -> None:
    """The local demo's gateway sends no domainName: the sentence says what happened, no URL."""
    call(event("/start", {"pass": TEAM_PASS}))
    assert published(topic) == [
        ("Jupyter Lab is starting (someone opened the start link).", "jupyter-on-demand")
    ]


def test_a_deleted_topic_still_answers_200_and_logs_why(
    stack: Stack, topic: str, runtime_log: LambdaRuntimeLog
) -> None:
    boto3.client("sns").delete_topic(TopicArn=topic)
    code, body = call(gateway_event("/start", {"pass": TEAM_PASS}))
    assert (code, body["state"]) == (200, "pending")
    assert stack.state() == "running"
    failures = [o for o in runtime_log.objects if o["level"] == "ERROR"]
    assert len(failures) == 1
    assert failures[0]["message"] == "could not tell the team through SNS; answering without it"
    assert failures[0]["errorType"] == "NotFoundException"
    assert all(TEAM_PASS not in line for line in runtime_log.lines)


def test_an_unreachable_sns_still_answers_200(
    stack: Stack, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """EndpointConnectionError (a BotoCoreError) injected: moto's SNS is always reachable."""
    unreachable = EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com/")
    with mock.patch.object(handler.client("sns"), "publish", side_effect=unreachable):
        code, body = call(gateway_event("/start", {"pass": TEAM_PASS}))
    assert (code, body["state"]) == (200, "pending")
    assert any(
        r.levelno == logging.ERROR and "could not tell the team" in r.getMessage()
        for r in caplog.records
    )


@pytest.fixture
def silent_sns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """A loopback server that accepts connections and never answers, as SNS's endpoint."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", f"http://127.0.0.1:{server.getsockname()[1]}")
    handler.client.cache_clear()
    yield accepted
    server.close()
    for connection in accepted:
        connection.close()


def test_an_sns_that_never_answers_is_given_up_after_two_short_tries(
    stack: Stack, topic: str, silent_sns: list[socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    """The client's short timeouts and retries (handler.CLIENT_CONFIGS): the publish times out
    twice and the answer goes on; botocore's defaults would wait 60 s, five times."""
    code, body = call(gateway_event("/start", {"pass": TEAM_PASS}))
    assert (code, body["state"]) == (200, "pending")
    assert stack.state() == "running"
    assert len(silent_sns) == 2
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "could not tell the team through SNS; answering without it"
    ]
    assert failures[0].exc_info is not None
    assert type(failures[0].exc_info[1]).__name__ == "ReadTimeoutError"
