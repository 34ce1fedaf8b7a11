from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

import handler

TEAM_PASS = "correct horse battery"
PARAMETER = "/jupyter-on-demand/team-pass"
MOTO_AMI = "ami-03cf127a"  # one of the AMIs moto ships


@dataclass
class Stack:
    instance_id: str

    @property
    def ec2(self):
        return boto3.client("ec2")

    def state(self) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"]

    def instance_type(self) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["InstanceType"]


def event(route: str = "/start", params: dict[str, Any] | None = None, **overrides: Any) -> dict:
    """An API Gateway REST (v1) proxy event, as API Gateway sends it for GET /v1/<path>."""
    base = {
        "resource": route,
        "path": route,
        "httpMethod": "GET",
        "headers": {"Accept": "*/*"},
        "multiValueHeaders": {"Accept": ["*/*"]},
        "queryStringParameters": params,
        "multiValueQueryStringParameters": (
            {k: [v] for k, v in params.items()} if params is not None else None
        ),
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"stage": "v1", "path": f"/v1{route}", "httpMethod": "GET"},
        "body": None,
        "isBase64Encoded": False,
    }
    base.update(overrides)
    return base


def call(evt: Any) -> tuple[int, dict | str]:
    response = handler.lambda_handler(evt, None)
    body = response["body"]
    if response["headers"]["Content-Type"] == "application/json":
        body = json.loads(body)
    return response["statusCode"], body


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    handler.client.cache_clear()
    handler.team_password.cache_clear()
    yield
    handler.client.cache_clear()
    handler.team_password.cache_clear()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def create_stack(fallbacks: str = "") -> Stack:
    ec2 = boto3.client("ec2")
    instance_id = ec2.run_instances(
        ImageId=MOTO_AMI, InstanceType="g4dn.4xlarge", MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance_id])
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=TEAM_PASS, Type="SecureString")
    return Stack(instance_id)


@pytest.fixture
def stack(aws: None, monkeypatch: pytest.MonkeyPatch) -> Stack:
    created = create_stack()
    monkeypatch.setenv("INSTANCE_ID", created.instance_id)
    monkeypatch.setenv("TEAM_PASS_PARAMETER", PARAMETER)
    monkeypatch.setenv("JUPYTER_PORT", "8443")
    monkeypatch.setenv("JUPYTER_SCHEME", "https")
    monkeypatch.setenv("IDLE_MINUTES", "40")
    monkeypatch.delenv("FALLBACK_INSTANCE_TYPES", raising=False)
    return created
