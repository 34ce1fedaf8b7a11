from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import pytest
from moto import mock_aws

import handler

TEAM_PASS = "correct horse battery"
PARAMETER = "/jupyter-on-demand/team-pass"
MOTO_AMI = "ami-03cf127a"  # one of the AMIs moto ships
CONFIGURED_TYPE = "g4dn.4xlarge"  # var.instance_type, which reaches the Lambda as INSTANCE_TYPE


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

    def tags(self) -> dict[str, str]:
        reservations = self.ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"]
        return {t["Key"]: t["Value"] for t in reservations[0]["Instances"][0].get("Tags", [])}

    def set_tags(self, tags: dict[str, str]) -> None:
        """As the instance's idle checker does (ec2_bootstrap/publish_verdict.py): one CreateTags."""
        self.ec2.create_tags(
            Resources=[self.instance_id],
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
        )


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


def marshal_like_the_runtime(response: Any) -> bytes:
    """What the Lambda Python runtime does with the handler's return value (awslambdaric
    lambda_runtime_marshaller + post_invocation_result): JSON-encode it, then UTF-8-encode it. The
    python3.12 runtime encodes with ensure_ascii=False, the strictest variant, used here: a string
    with a lone surrogate fails there, the invocation errors, and API Gateway answers 502."""
    return json.dumps(response, ensure_ascii=False).encode("utf-8")


def call(evt: Any) -> tuple[int, dict | str]:
    response = handler.lambda_handler(evt, None)
    marshal_like_the_runtime(response)
    body = response["body"]
    if response["headers"]["Content-Type"] == "application/json":
        body = json.loads(body)
    return response["statusCode"], body


class LambdaRuntimeLog(logging.Handler):
    """The Lambda Python runtime's log handler with the function's JSON log format
    (infrastructure/lambda.tf logging_config): awslambdaric's LambdaLoggerFilter puts the request
    id on the record, its JsonFormatter (lambda_runtime_log_utils.py) makes one JSON object of it
    (timestamp, level, message, logger, requestId, the exception fields when there is one, and
    every further attribute of the record, such as the handler's `extra` fields; None values are
    dropped), dumped with ensure_ascii=False and default=str. The sink (FramedTelemetryLogSink)
    then encodes it to UTF-8 with no error handling, so a line that can't be encoded raises out of
    the logging call, out of the handler, and API Gateway answers 502. `lines` are exactly what
    CloudWatch receives; `objects` are the same lines parsed."""

    REQUEST_ID = "8f5c1a2e-0d3b-4c7a-9e61-2b4f7d9c0a11"
    DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
    RESERVED = frozenset(
        {
            "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
            "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
            "relativeCreated", "thread", "threadName", "processName", "process",
            "aws_request_id", "_frame_type",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.formatter = logging.Formatter(datefmt=self.DATETIME_FORMAT)
        self.formatter.converter = time.gmtime
        self.lines: list[str] = []

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def as_json(self, record: logging.LogRecord) -> str:
        exc_info = record.exc_info
        result: dict[str, Any] = {
            "timestamp": self.formatter.formatTime(record, self.DATETIME_FORMAT),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc_info[2]) if exc_info else None,
            "errorType": exc_info[0].__name__ if exc_info and exc_info[0] else None,
            "errorMessage": str(exc_info[1]) if exc_info else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}",
        }
        result.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in self.RESERVED and key not in result
        )
        result = {key: value for key, value in result.items() if value is not None}
        return json.dumps(result, default=str, ensure_ascii=False) + "\n"

    def emit(self, record: logging.LogRecord) -> None:
        record.aws_request_id = self.REQUEST_ID
        line = self.as_json(record)
        line.encode("utf8")
        self.lines.append(line)


Sink = TypeVar("Sink", bound=logging.Handler)


@contextmanager
def on_the_root_logger(sink: Sink) -> Iterator[Sink]:
    """`sink` receives every record that reaches the root logger, until the block ends."""
    root = logging.getLogger()
    root.addHandler(sink)
    try:
        yield sink
    finally:
        root.removeHandler(sink)


@contextmanager
def aws_calls() -> Iterator[list[str]]:
    """The "service:Operation" of each call the handler's EC2 and SSM clients make in the block."""
    clients = {"ec2": handler.client("ec2"), "ssm": handler.client("ssm")}
    calls: list[str] = []
    for service, client in clients.items():
        real = client._make_api_call

        def counting(operation, params, real=real, service=service):
            calls.append(f"{service}:{operation}")
            return real(operation, params)

        client._make_api_call = counting
    try:
        yield calls
    finally:
        for client in clients.values():
            del client._make_api_call


@pytest.fixture(autouse=True)
def runtime_log() -> Iterator[LambdaRuntimeLog]:
    """Every handler test logs through the runtime's strict handler, as in AWS."""
    with on_the_root_logger(LambdaRuntimeLog()) as sink:
        yield sink


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    handler.client.cache_clear()
    handler.PASSWORDS.clear()
    yield
    handler.client.cache_clear()
    handler.PASSWORDS.clear()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The password cache's clock, moved by the test instead of waiting minutes."""
    fake = FakeClock()
    monkeypatch.setattr(handler.PASSWORDS, "clock", fake)
    return fake


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def create_stack(fallbacks: str = "") -> Stack:
    ec2 = boto3.client("ec2")
    instance_id = ec2.run_instances(
        ImageId=MOTO_AMI, InstanceType=CONFIGURED_TYPE, MinCount=1, MaxCount=1
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
    monkeypatch.setenv("INSTANCE_TYPE", CONFIGURED_TYPE)
    monkeypatch.delenv("FALLBACK_INSTANCE_TYPES", raising=False)
    monkeypatch.setenv("MAX_KEEP_AWAKE_HOURS", "12")
    return created
