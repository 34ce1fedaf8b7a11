"""Issue 13: the start link tells a spot capacity shortage apart from an on-demand one.

The instance is a real moto spot instance (RunInstances with InstanceMarketOptions: moto then
describes it with InstanceLifecycle "spot", as EC2 does). moto never lacks capacity: the
StartInstances errors are injected by patching the handler's client, as each test says.
"""

from __future__ import annotations

from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError

import handler
from tests.lambda_src.conftest import CONFIGURED_TYPE, MOTO_AMI, TEAM_PASS, Stack, call, event

SPOT_OPTIONS = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
}


@pytest.fixture
def spot(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A stopped spot instance of the configured type, as `market = "spot"` makes it."""
    ec2 = boto3.client("ec2")
    instance_id = ec2.run_instances(
        ImageId=MOTO_AMI,
        InstanceType=CONFIGURED_TYPE,
        MinCount=1,
        MaxCount=1,
        InstanceMarketOptions=SPOT_OPTIONS,
    )["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance_id])
    monkeypatch.setenv("INSTANCE_ID", instance_id)
    return Stack(instance_id)


def failing_start(code: str) -> mock._patch:
    error = ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, "StartInstances")
    return mock.patch.object(handler.client("ec2"), "start_instances", side_effect=error)


def start() -> tuple[int, dict]:
    code, body = call(event("/start", {"pass": TEAM_PASS}))
    assert isinstance(body, dict)
    return code, body


def test_moto_describes_the_fixture_as_a_spot_instance(spot: Stack) -> None:
    described = spot.ec2.describe_instances(InstanceIds=[spot.instance_id])
    assert described["Reservations"][0]["Instances"][0]["InstanceLifecycle"] == "spot"


@pytest.mark.parametrize("code", sorted(handler.NO_CAPACITY_CODES))
def test_no_spot_capacity_says_it_is_the_spot_market_and_what_the_admin_can_do(
    spot: Stack, code: str
) -> None:
    with failing_start(code):
        status, body = start()
    assert status == 503
    assert body["message"] == handler.SPOT_NO_CAPACITY_MESSAGE.format(instance_type=CONFIGURED_TYPE)
    assert body["message"].startswith("AWS's spot market has no free g4dn.4xlarge capacity")
    for advice in ("Retry in a few minutes", 'market = "on-demand"', "terraform apply", "GitHub"):
        assert advice in body["message"]
    assert body["state"] == "stopped" and spot.state() == "stopped"


def test_a_spot_instance_never_tries_fallback_types(
    spot: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 refuses a new type for a stopped spot instance: no ModifyInstanceAttribute is sent."""
    monkeypatch.setenv("FALLBACK_INSTANCE_TYPES", "g5.4xlarge")
    ec2 = handler.client("ec2")
    with (
        failing_start("InsufficientInstanceCapacity") as started,
        mock.patch.object(ec2, "modify_instance_attribute") as modify,
    ):
        status, body = start()
    assert status == 503
    assert body["message"] == handler.SPOT_NO_CAPACITY_MESSAGE.format(instance_type=CONFIGURED_TYPE)
    assert started.call_count == 1
    modify.assert_not_called()
    assert spot.instance_type() == CONFIGURED_TYPE


def test_a_spot_instance_starts_as_it_is(spot: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_TYPE", "g5.4xlarge")  # as if var.instance_type changed since
    with mock.patch.object(handler.client("ec2"), "modify_instance_attribute") as modify:
        status, body = start()
    assert (status, body["message"], body["state"]) == (200, handler.STARTING_MESSAGE, "pending")
    modify.assert_not_called()
    assert (spot.state(), spot.instance_type()) == ("running", CONFIGURED_TYPE)


def test_a_spot_request_that_refuses_a_start_says_why(spot: Stack) -> None:
    """IncorrectSpotRequestState: just stopped (the request isn't disabled yet), or interrupted
    by AWS, which then restarts the instance itself."""
    with failing_start("IncorrectSpotRequestState"):
        status, body = start()
    assert (status, body["message"], body["state"]) == (
        503,
        handler.SPOT_REQUEST_BUSY_MESSAGE,
        "stopped",
    )


@pytest.mark.parametrize("code", sorted(handler.NO_CAPACITY_CODES))
def test_on_demand_keeps_its_own_message(stack: Stack, code: str) -> None:
    with failing_start(code):
        status, body = start()
    assert status == 503
    assert body["message"] == handler.NO_CAPACITY_MESSAGE.format(instance_type=CONFIGURED_TYPE)
    assert "spot" not in body["message"]


def test_on_demand_treats_a_spot_request_error_as_an_aws_error(stack: Stack) -> None:
    with failing_start("IncorrectSpotRequestState"):
        status, body = start()
    assert (status, body["message"]) == (503, handler.AWS_ERROR_MESSAGE)
