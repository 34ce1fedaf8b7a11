"""GET /v1/keep-awake?pass=…&hours=N against moto's EC2 and SSM: the tag it writes, the start of a
sleeping instance, the cancel, and every refusal (fault tests first).

The tag is the contract with the instance's idle checker (ec2_bootstrap/idle_keep_awake.py):
jupyter-on-demand:keep-awake-until = "until=<ISO> set=<ISO>", until == set for a cancel.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

import handler
import idle
import request
from tests.lambda_src.conftest import CONFIGURED_TYPE, TEAM_PASS, Stack, call, event
from tests.lambda_src.test_handler import client_error, patch_start_instances, set_moto_state

RUNNING = (
    "Jupyter Lab already running at {url}. "
    "Remember: it will be inactive again when idle for 40 min."
)


def keep_awake(hours: str | None, password: str = TEAM_PASS, **params: str) -> dict:
    query = {"pass": password, **params}
    if hours is not None:
        query["hours"] = hours
    return event("/keep-awake", query)


def keep_awake_tag(stack: Stack) -> idle.KeepAwake | None:
    value = stack.tags().get(idle.KEEP_AWAKE_TAG)
    return idle.KeepAwake.parse(value) if value is not None else None


@pytest.fixture
def untouched(stack: Stack) -> Iterator[None]:
    """Fails the test if the handler tags or starts the instance."""
    ec2 = handler.client("ec2")
    with (
        mock.patch.object(ec2, "create_tags", wraps=ec2.create_tags) as create_tags,
        mock.patch.object(ec2, "start_instances", wraps=ec2.start_instances) as start,
    ):
        yield
        create_tags.assert_not_called()
        start.assert_not_called()
    assert idle.KEEP_AWAKE_TAG not in stack.tags()
    assert stack.state() == "stopped"


# --- Refusals and faults -------------------------------------------------------------------------


def test_a_wrong_password_is_403_as_on_the_other_routes_and_tags_nothing(
    stack: Stack, untouched: None
) -> None:
    status, body = call(keep_awake("4", password=TEAM_PASS + "x"))
    assert (status, body) == (403, {"message": handler.WRONG_PASS_MESSAGE, "state": None})


def test_no_password_is_401_and_tags_nothing(stack: Stack, untouched: None) -> None:
    status, body = call(event("/keep-awake", {"hours": "4"}))
    assert (status, body) == (401, {"message": handler.MISSING_PASS_MESSAGE, "state": None})


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        (None, request.MISSING_HOURS_MESSAGE),
        ("", request.MISSING_HOURS_MESSAGE),
        ("abc", request.MALFORMED_HOURS_MESSAGE),
        ("4h", request.MALFORMED_HOURS_MESSAGE),
        ("1e3", request.MALFORMED_HOURS_MESSAGE),
        ("inf", request.MALFORMED_HOURS_MESSAGE),
        ("nan", request.MALFORMED_HOURS_MESSAGE),
        ("1,5", request.MALFORMED_HOURS_MESSAGE),
        (" 4", request.MALFORMED_HOURS_MESSAGE),
        ("+4", request.MALFORMED_HOURS_MESSAGE),
        (".5", request.MALFORMED_HOURS_MESSAGE),
        ("0x10", request.MALFORMED_HOURS_MESSAGE),
        ("-1", request.NEGATIVE_HOURS_MESSAGE),
        ("-0.5", request.NEGATIVE_HOURS_MESSAGE),
    ],
)
def test_a_missing_malformed_or_negative_hours_is_400_saying_what_to_type(
    stack: Stack, untouched: None, hours: str | None, message: str
) -> None:
    status, body = call(keep_awake(hours))
    assert (status, body) == (400, {"message": message, "state": None})
    assert "such as 4" in body["message"]


@pytest.mark.parametrize("hours", ["12.01", "13", "99999", "9" * 400])
def test_hours_over_the_cap_is_400_saying_the_cap(
    stack: Stack, untouched: None, hours: str
) -> None:
    status, body = call(keep_awake(hours))
    assert status == 400
    assert body["message"] == (
        "hours can be at most 12 (the admin's max_keep_awake_hours): use a number from 0 to 12, "
        "such as 4 (0 cancels)."
    )


def test_the_cap_is_the_lambdas_max_keep_awake_hours(
    stack: Stack, untouched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_KEEP_AWAKE_HOURS", "2.5")
    status, body = call(keep_awake("3"))
    assert status == 400
    assert body["message"].startswith("hours can be at most 2.5 ")


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "inf"])
def test_a_broken_cap_in_the_environment_is_a_misconfiguration_for_the_admin(
    stack: Stack, untouched: None, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MAX_KEEP_AWAKE_HOURS", value)
    status, body = call(keep_awake("1"))
    assert (status, body["message"]) == (500, handler.MISCONFIGURED_MESSAGE)


def test_when_tagging_is_refused_nothing_is_started_and_the_answer_is_503(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """moto does not enforce IAM here: UnauthorizedOperation on CreateTags is injected. The tag
    comes first, so a machine the checker would not keep awake is never started for it."""
    ec2 = handler.client("ec2")
    refused = client_error("UnauthorizedOperation", "CreateTags")
    with mock.patch.object(ec2, "create_tags", side_effect=refused):
        status, body = call(keep_awake("4"))
    assert (status, body) == (503, {"message": handler.AWS_ERROR_MESSAGE, "state": None})
    assert stack.state() == "stopped"
    assert "UnauthorizedOperation" in caplog.text


@pytest.mark.parametrize(("state", "code"), [("terminated", 48), ("shutting-down", 32)])
def test_a_gone_instance_is_500_for_the_admin_and_is_not_tagged(
    stack: Stack, state: str, code: int
) -> None:
    set_moto_state(stack, state, code)
    status, body = call(keep_awake("4"))
    assert (status, body["state"]) == (500, state)
    assert "terraform apply" in body["message"]
    assert idle.KEEP_AWAKE_TAG not in stack.tags()


def test_no_capacity_for_a_sleeping_instance_is_503_and_the_keep_awake_waits_for_its_start(
    stack: Stack,
) -> None:
    """InsufficientInstanceCapacity is injected (moto never lacks capacity)."""
    with patch_start_instances({CONFIGURED_TYPE: "InsufficientInstanceCapacity"}):
        status, body = call(keep_awake("4"))
    assert status == 503
    assert body["message"].endswith(
        handler.NO_CAPACITY_MESSAGE.format(instance_type=CONFIGURED_TYPE)
    )
    assert stack.state() == "stopped"
    # Asked for and written: a start within the 4 h (a retry of the link) stays awake.
    assert body["kept_awake_until"] is not None
    assert keep_awake_tag(stack) is not None


# --- Keeping awake -------------------------------------------------------------------------------


def test_a_running_instance_is_kept_awake_until_now_plus_hours(stack: Stack) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    before = datetime.now(UTC).replace(microsecond=0)
    status, body = call(keep_awake("4"))
    after = datetime.now(UTC)
    assert status == 200, body
    asked = keep_awake_tag(stack)
    assert asked is not None
    assert before <= asked.set_at <= after
    assert asked.until - asked.set_at == timedelta(hours=4)
    until = idle.iso(asked.until)
    assert stack.tags()[idle.KEEP_AWAKE_TAG] == f"until={until} set={idle.iso(asked.set_at)}"
    assert body["kept_awake_until"] == body["idle"]["kept_awake_until"] == until
    assert body["state"] == "running"
    assert stack.state() == "running"
    url = body["url"]
    assert body["message"] == (
        f"Kept awake until {until} (UTC) even if nobody works; then it stops after 40 min "
        "without work. " + RUNNING.format(url=url)
    )


def test_a_sleeping_instance_is_started_and_kept_awake(stack: Stack) -> None:
    status, body = call(keep_awake("1"))
    assert status == 200, body
    assert body["state"] == "pending"
    assert stack.state() == "running"
    asked = keep_awake_tag(stack)
    assert asked is not None and asked.until - asked.set_at == timedelta(hours=1)
    assert body["kept_awake_until"] == idle.iso(asked.until)
    assert body["message"].endswith(" " + handler.STARTING_MESSAGE)


def test_a_sleeping_instance_falls_back_to_another_type_as_start_does(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same capacity logic as /v1/start (InsufficientInstanceCapacity injected)."""
    monkeypatch.setenv("FALLBACK_INSTANCE_TYPES", "g5.4xlarge")
    with patch_start_instances({CONFIGURED_TYPE: "InsufficientInstanceCapacity"}):
        status, body = call(keep_awake("4"))
    assert status == 200
    assert body["message"].endswith(
        f"{handler.STARTING_MESSAGE} AWS had no {CONFIGURED_TYPE} capacity, so it runs as "
        "g5.4xlarge this time."
    )
    assert (stack.instance_type(), stack.state()) == ("g5.4xlarge", "running")
    assert keep_awake_tag(stack) is not None


@pytest.mark.parametrize(("hours", "minutes"), [("1.5", 90), ("0.25", 15), ("12", 720)])
def test_decimal_hours_up_to_the_cap_are_accepted(stack: Stack, hours: str, minutes: int) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    status, _ = call(keep_awake(hours))
    asked = keep_awake_tag(stack)
    assert status == 200 and asked is not None
    assert asked.until - asked.set_at == timedelta(minutes=minutes)


def test_hours_0_cancels_with_until_equal_to_set(stack: Stack) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    call(keep_awake("4"))
    status, body = call(keep_awake("0"))
    assert status == 200
    asked = keep_awake_tag(stack)
    assert asked is not None and asked.until == asked.set_at and asked.cancelled
    assert body["kept_awake_until"] is None
    assert body["idle"]["kept_awake_until"] is None
    assert body["message"].startswith("Keep-awake cancelled: it stops when idle for 40 min. ")
    _, status_body = call(event("/status", {"pass": TEAM_PASS}))
    assert status_body["idle"]["kept_awake_until"] is None


def test_hours_0_never_starts_a_sleeping_instance(stack: Stack) -> None:
    """A cancel asks for less GPU time, never for 40 minutes of it."""
    status, body = call(keep_awake("0"))
    assert (status, body["state"], stack.state()) == (200, "stopped", "stopped")
    assert body["kept_awake_until"] is None
    asked = keep_awake_tag(stack)
    assert asked is not None and asked.cancelled  # a keep-awake asked earlier is cancelled


def test_a_stopping_instance_is_409_and_nothing_is_kept_awake(stack: Stack) -> None:
    """It can't be woken yet: an answer saying "kept awake" would be false until a later start."""
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    set_moto_state(stack, "stopping", 64)
    status, body = call(keep_awake("4"))
    assert status == 409
    assert body["message"] == handler.STOPPING_KEEP_AWAKE_MESSAGE
    assert idle.KEEP_AWAKE_TAG not in stack.tags()


def test_status_then_says_until_when_before_the_instance_has_seen_it(stack: Stack) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    _, kept = call(keep_awake("4"))
    _, body = call(event("/status", {"pass": TEAM_PASS}))
    assert body["idle"]["kept_awake_until"] == kept["kept_awake_until"]
    assert "kept_awake_until" not in body  # only /keep-awake's answer has it at the top


def test_start_and_status_never_write_a_tag(stack: Stack) -> None:
    ec2 = handler.client("ec2")
    with mock.patch.object(ec2, "create_tags", wraps=ec2.create_tags) as create_tags:
        call(event("/status", {"pass": TEAM_PASS}))
        call(event("/start", {"pass": TEAM_PASS}))
        call(event("/status", {"pass": TEAM_PASS}))
    create_tags.assert_not_called()


def test_the_page_view_of_keep_awake_never_reloads_itself_into_asking_again(stack: Stack) -> None:
    response = handler.lambda_handler(keep_awake("1", view="page"), None)
    assert response["statusCode"] == 200
    assert 'http-equiv="refresh"' not in response["body"]
    assert 'data-route="keep-awake" data-waiting="10"' in response["body"]
