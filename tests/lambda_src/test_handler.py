"""The start link's answers, state by state, against moto's EC2 and SSM."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

import handler
from tests.lambda_src.conftest import CONFIGURED_TYPE, PARAMETER, TEAM_PASS, Stack, call, event

STARTING = "Jupyter Lab will start in 1-3 min. Wait and reload this request to get the access URL."


def set_moto_state(stack: Stack, name: str, code: int) -> None:
    """moto moves instances straight to running/stopped; set the transitional states by hand."""
    instance = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_instance(stack.instance_id)
    instance._state.name = name
    instance._state.code = code


def public_dns(stack: Stack) -> str:
    reservations = stack.ec2.describe_instances(InstanceIds=[stack.instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["PublicDnsName"]


def start_event() -> dict:
    return event("/start", {"pass": TEAM_PASS})


def test_stopped_instance_is_started_with_the_exact_design_message(stack: Stack) -> None:
    status, body = call(start_event())
    assert status == 200
    assert body["message"] == STARTING
    assert body["state"] == "pending"
    assert "url" not in body
    assert stack.state() == "running"


def test_running_instance_answers_with_the_exact_url_message(stack: Stack) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    status, body = call(start_event())
    url = f"https://{public_dns(stack)}:8443/lab"
    assert status == 200
    assert body["message"] == (
        f"Jupyter Lab already running at {url}. "
        "Remember: it will be inactive again when idle for 40 min."
    )
    assert body["url"] == url
    assert body["state"] == "running"


def test_scheme_port_and_idle_minutes_come_from_the_environment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_SCHEME", "http")
    monkeypatch.setenv("JUPYTER_PORT", "9999")
    monkeypatch.setenv("IDLE_MINUTES", "15")
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    _, body = call(start_event())
    assert body["url"] == f"http://{public_dns(stack)}:9999/lab"
    assert body["message"].endswith("when idle for 15 min.")


def test_pending_instance_asks_to_reload_and_starts_nothing(stack: Stack) -> None:
    set_moto_state(stack, "pending", 0)
    with mock.patch.object(handler, "start") as start:
        status, body = call(start_event())
    assert status == 200
    assert body["state"] == "pending"
    assert "starting" in body["message"] and "reload" in body["message"]
    start.assert_not_called()


def test_stopping_instance_asks_to_reload_in_a_minute(stack: Stack) -> None:
    set_moto_state(stack, "stopping", 64)
    status, body = call(start_event())
    assert status == 200
    assert body["state"] == "stopping"
    assert body["message"] == handler.STOPPING_MESSAGE
    assert stack.state() == "stopping"


def test_a_reload_after_stopping_finished_starts_it(stack: Stack) -> None:
    set_moto_state(stack, "stopping", 64)
    call(start_event())
    set_moto_state(stack, "stopped", 80)
    status, body = call(start_event())
    assert (status, body["message"]) == (200, STARTING)
    assert stack.state() == "running"


@pytest.mark.parametrize(("state", "code"), [("terminated", 48), ("shutting-down", 32)])
def test_gone_instance_asks_for_terraform_apply_and_logs(
    stack: Stack, state: str, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    set_moto_state(stack, state, code)
    status, body = call(start_event())
    assert status == 500
    assert body["state"] == state
    assert "terraform apply" in body["message"]
    assert any(
        "terraform apply" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


def test_unknown_instance_id_asks_for_terraform_apply(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTANCE_ID", "i-0123456789abcdef0")
    status, body = call(start_event())
    assert status == 500
    assert body["state"] == "unknown"
    assert "terraform apply" in body["message"]


def test_status_never_starts_a_stopped_instance(stack: Stack) -> None:
    status, body = call(event("/status", {"pass": TEAM_PASS}))
    assert status == 200
    assert body["state"] == "stopped"
    assert "asleep" in body["message"]
    assert stack.state() == "stopped"


def test_status_reports_the_url_when_running(stack: Stack) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    status, body = call(event("/status", {"pass": TEAM_PASS}))
    assert status == 200
    assert body["url"] == f"https://{public_dns(stack)}:8443/lab"


def test_ready_flag_follows_the_tag_the_instance_sets_after_its_launch(stack: Stack) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    _, body = call(start_event())
    assert body["ready"] is False
    stale = datetime(2000, 1, 1, tzinfo=UTC).isoformat()
    stack.ec2.create_tags(
        Resources=[stack.instance_id], Tags=[{"Key": handler.READY_TAG, "Value": stale}]
    )
    assert call(start_event())[1]["ready"] is False
    fresh = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    stack.ec2.create_tags(
        Resources=[stack.instance_id], Tags=[{"Key": handler.READY_TAG, "Value": fresh}]
    )
    assert call(start_event())[1]["ready"] is True


# --- Errors moto never raises: injected by patching the client, as each test says ----------------


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)


def patch_start_instances(errors_by_type: dict[str, str]):
    """Make StartInstances fail with the given code for the given instance types (moto can't)."""
    real_client = handler.client("ec2")
    real_start = real_client.start_instances

    def start_instances(**kwargs):
        instance_id = kwargs["InstanceIds"][0]
        reservations = real_client.describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance_type = reservations[0]["Instances"][0]["InstanceType"]
        if instance_type in errors_by_type:
            raise client_error(errors_by_type[instance_type], "StartInstances")
        return real_start(**kwargs)

    return mock.patch.object(real_client, "start_instances", side_effect=start_instances)


def test_insufficient_capacity_without_fallbacks_answers_503_retry(stack: Stack) -> None:
    with patch_start_instances({"g4dn.4xlarge": "InsufficientInstanceCapacity"}):
        status, body = call(start_event())
    assert status == 503
    assert "Retry in a few minutes" in body["message"]
    assert stack.state() == "stopped"


@pytest.mark.parametrize(
    ("fallbacks", "status", "said", "runs_as", "state"),
    [
        ("g5.4xlarge, g6.4xlarge", 200, "runs as g6.4xlarge", "g6.4xlarge", "running"),
        ("g5.4xlarge", 503, "g4dn.4xlarge or g5.4xlarge", None, "stopped"),
    ],
    ids=["switches-to-the-next-fallback-type", "none-left-answers-503"],
)
def test_insufficient_capacity_for_the_first_two_types(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    fallbacks: str,
    status: int,
    said: str,
    runs_as: str | None,
    state: str,
) -> None:
    monkeypatch.setenv("FALLBACK_INSTANCE_TYPES", fallbacks)
    no_capacity = "InsufficientInstanceCapacity"
    with patch_start_instances({"g4dn.4xlarge": no_capacity, "g5.4xlarge": no_capacity}):
        got, body = call(start_event())
    assert got == status
    assert said in body["message"]
    if status == 200:
        assert body["message"].startswith(STARTING)
        assert stack.instance_type() == runs_as
    assert stack.state() == state


def start_a_fallback_session_then_stop(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """First start: no capacity for the configured type (injected), so it runs as g5; then it stops."""
    monkeypatch.setenv("FALLBACK_INSTANCE_TYPES", "g5.4xlarge")
    with patch_start_instances({CONFIGURED_TYPE: "InsufficientInstanceCapacity"}):
        status, body = call(start_event())
    assert (status, stack.instance_type(), stack.state()) == (200, "g5.4xlarge", "running")
    assert "runs as g5.4xlarge this time" in body["message"]
    stack.ec2.stop_instances(InstanceIds=[stack.instance_id])


def test_the_next_start_after_a_fallback_session_runs_the_configured_type_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_a_fallback_session_then_stop(stack, monkeypatch)
    status, body = call(start_event())
    assert (status, body["message"]) == (200, STARTING)
    assert stack.instance_type() == CONFIGURED_TYPE
    assert stack.state() == "running"


def test_the_next_start_falls_back_again_while_the_configured_type_has_no_capacity(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_a_fallback_session_then_stop(stack, monkeypatch)
    with patch_start_instances({CONFIGURED_TYPE: "InsufficientInstanceCapacity"}) as start:
        status, body = call(start_event())
    assert status == 200
    assert f"AWS had no {CONFIGURED_TYPE} capacity, so it runs as g5.4xlarge" in body["message"]
    assert (stack.instance_type(), stack.state()) == ("g5.4xlarge", "running")
    assert start.call_count == 2  # the configured type was tried first


def test_when_switching_back_is_refused_it_still_starts_as_the_fallback_type(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """moto does not enforce IAM here: UnauthorizedOperation on ModifyInstanceAttribute is injected."""
    start_a_fallback_session_then_stop(stack, monkeypatch)
    ec2 = handler.client("ec2")
    refused = client_error("UnauthorizedOperation", "ModifyInstanceAttribute")
    with mock.patch.object(ec2, "modify_instance_attribute", side_effect=refused):
        status, body = call(start_event())
    assert (status, body["state"]) == (200, "pending")
    assert (stack.instance_type(), stack.state()) == ("g5.4xlarge", "running")
    assert any(
        "could not switch back" in r.getMessage() and r.levelno == logging.ERROR
        for r in caplog.records
    )


def test_incorrect_instance_state_while_starting_asks_to_reload(stack: Stack) -> None:
    with patch_start_instances({"g4dn.4xlarge": "IncorrectInstanceState"}):
        status, body = call(start_event())
    assert status == 200
    assert body["state"] == "stopping"
    assert body["message"] == handler.STOPPING_MESSAGE


@pytest.mark.parametrize("code", ["Throttling", "RequestLimitExceeded", "InternalError"])
def test_aws_errors_answer_503_json_without_a_stack_trace(
    stack: Stack, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    real_client = handler.client("ec2")
    with mock.patch.object(
        real_client, "describe_instances", side_effect=client_error(code, "DescribeInstances")
    ):
        status, body = call(start_event())
    assert status == 503
    assert body == {"message": handler.AWS_ERROR_MESSAGE, "state": None}
    assert "Traceback" not in str(body)
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert code in logged


def test_ssm_error_answers_503(stack: Stack) -> None:
    boto3.client("ssm").delete_parameter(Name=PARAMETER)
    status, body = call(start_event())
    assert status == 503
    assert body["message"] == handler.AWS_ERROR_MESSAGE
    assert stack.state() == "stopped"


def test_missing_configuration_answers_500_for_the_admin(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INSTANCE_ID")
    status, body = call(start_event())
    assert status == 500
    assert "terraform apply" in body["message"]


def test_page_view_returns_html_with_the_message(stack: Stack) -> None:
    response = handler.lambda_handler(event("/start", {"pass": TEAM_PASS, "view": "page"}), None)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("text/html")
    assert STARTING in response["body"]
    assert 'http-equiv="refresh"' in response["body"]
    assert 'name="referrer" content="no-referrer"' in response["body"]
