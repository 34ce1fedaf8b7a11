"""The handler works with exactly the IAM actions Terraform grants, under moto's IAM enforcement.

moto checks actions but denies statements scoped to resource ARNs and ignores conditions, so the
policy here has the same action list with Resource "*". The ARN scoping of the real policy is
checked statically in tests/infrastructure.
"""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID, set_initial_no_auth_action_count
from moto.sns.models import sns_backends

import handler
import idle
from tests.lambda_src.conftest import PARAMETER, TEAM_PASS, call, create_stack, event


def user_with_actions(actions: list[str]) -> dict[str, str]:
    iam = boto3.client("iam")
    iam.create_user(UserName="start-link")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    iam.put_user_policy(UserName="start-link", PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="start-link")["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def run_as(
    actions: list[str], monkeypatch: pytest.MonkeyPatch, evt: dict | None = None
) -> tuple[str, tuple[int, dict]]:
    """(the instance's state after, the answer) for `evt` (/start by default) under `actions`."""
    state, _, result = run_and_read_tags(actions, monkeypatch, evt)
    return state, result


def run_and_read_tags(
    actions: list[str], monkeypatch: pytest.MonkeyPatch, evt: dict | None = None
) -> tuple[str, dict[str, str], tuple[int, dict]]:
    """run_as, and the instance's tags after."""

    # The first 6 calls (stack and user set-up) run unauthenticated; everything after is enforced.
    @set_initial_no_auth_action_count(6)
    def scenario():
        stack = create_stack()
        credentials = user_with_actions(actions)
        for name, value in credentials.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        monkeypatch.setenv("INSTANCE_ID", stack.instance_id)
        monkeypatch.setenv("TEAM_PASS_PARAMETER", PARAMETER)
        boto3.DEFAULT_SESSION = None  # it caches the credentials it resolved first
        handler.client.cache_clear()
        return stack, call(evt or event("/start", {"pass": TEAM_PASS}))

    with mock_aws():
        stack, result = scenario()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        boto3.DEFAULT_SESSION = None
        return stack.state(), stack.tags(), result


KEEP_AWAKE = event("/keep-awake", {"pass": TEAM_PASS, "hours": "4"})


def test_handler_starts_the_instance_with_exactly_the_granted_actions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, (status, body) = run_as(list(handler.IAM_ACTIONS), monkeypatch)
    assert status == 200, body
    assert body["state"] == "pending"
    assert state == "running"


def test_without_start_instances_it_fails_cleanly_with_a_5xx_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    actions = [a for a in handler.IAM_ACTIONS if a != "ec2:StartInstances"]
    state, (status, body) = run_as(actions, monkeypatch)
    assert status == 503
    assert body == {"message": handler.AWS_ERROR_MESSAGE, "state": None}
    assert state == "stopped"


def test_keep_awake_tags_and_starts_the_instance_with_exactly_the_granted_actions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, tags, (status, body) = run_and_read_tags(
        list(handler.IAM_ACTIONS), monkeypatch, KEEP_AWAKE
    )
    assert status == 200, body
    assert state == "running"
    assert tags[idle.KEEP_AWAKE_TAG].startswith(f"until={body['kept_awake_until']} set=")


def test_without_create_tags_keep_awake_fails_cleanly_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    actions = [a for a in handler.IAM_ACTIONS if a != "ec2:CreateTags"]
    state, tags, (status, body) = run_and_read_tags(actions, monkeypatch, KEEP_AWAKE)
    assert status == 503
    assert body == {"message": handler.AWS_ERROR_MESSAGE, "state": None}
    assert state == "stopped"
    assert idle.KEEP_AWAKE_TAG not in tags


def test_status_and_start_need_no_create_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    actions = [a for a in handler.IAM_ACTIONS if a != "ec2:CreateTags"]
    state, (status, body) = run_as(actions, monkeypatch)
    assert (status, state) == (200, "running"), body
    assert "idle" in body


# --- Issue 13: the start's notification, under the same enforcement -----------------------------


def run_with_topic(
    actions: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[str], tuple[int, dict]]:
    """(the instance's state after, the topic's messages, the answer) for /start under `actions`,
    with NOTIFY_TOPIC_ARN set."""

    # The first 7 calls (stack, topic and user set-up) run unauthenticated.
    @set_initial_no_auth_action_count(7)
    def scenario():
        stack = create_stack()
        arn = boto3.client("sns").create_topic(Name="notify")["TopicArn"]
        credentials = user_with_actions(actions)
        for name, value in credentials.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        monkeypatch.setenv("INSTANCE_ID", stack.instance_id)
        monkeypatch.setenv("TEAM_PASS_PARAMETER", PARAMETER)
        monkeypatch.setenv("NOTIFY_TOPIC_ARN", arn)
        boto3.DEFAULT_SESSION = None
        handler.client.cache_clear()
        return stack, arn, call(event("/start", {"pass": TEAM_PASS}))

    with mock_aws():
        stack, arn, result = scenario()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        boto3.DEFAULT_SESSION = None
        sent = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[arn].sent_notifications
        return stack.state(), [message for _, message, _, _, _ in sent], result


def test_the_granted_actions_let_it_tell_the_team(monkeypatch: pytest.MonkeyPatch) -> None:
    state, messages, (status, body) = run_with_topic(list(handler.IAM_ACTIONS), monkeypatch)
    assert (status, state) == (200, "running"), body
    assert messages == ["Jupyter Lab is starting (someone opened the start link)."]


def test_without_publish_it_still_starts_and_answers_200(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    actions = [a for a in handler.IAM_ACTIONS if a != "sns:Publish"]
    state, messages, (status, body) = run_with_topic(actions, monkeypatch)
    assert (status, body["state"], state) == (200, "pending", "running")
    assert messages == []
    assert any(
        "could not tell the team" in r.getMessage() and r.levelno == logging.ERROR
        for r in caplog.records
    )
