"""Password rotation: a new password in SSM reaches a warm Lambda container, and the old one stops.

moto's SSM holds the parameter; the password cache's clock is a fake the test moves (conftest
`clock`), so "five minutes later" takes no time. SSM read failures are injected where the test says.
"""

from __future__ import annotations

from unittest import mock

import boto3
import pytest

import handler
from tests.lambda_src.conftest import PARAMETER, TEAM_PASS, FakeClock, Stack, call, event

NEW_PASS = "a brand new team password"


def status(password: str) -> int:
    return call(event("/status", {"pass": password}))[0]


def rotate(value: str = NEW_PASS) -> None:
    boto3.client("ssm").put_parameter(
        Name=PARAMETER, Value=value, Type="SecureString", Overwrite=True
    )


@pytest.fixture
def ssm_reads():
    """Counts the handler's SSM reads (it still reaches moto)."""
    ssm = handler.client("ssm")
    with mock.patch.object(ssm, "get_parameter", wraps=ssm.get_parameter) as get_parameter:
        yield get_parameter


def test_a_warm_container_reads_the_password_once_while_it_is_fresh(
    stack: Stack, clock: FakeClock, ssm_reads
) -> None:
    for _ in range(3):
        assert status(TEAM_PASS) == 200
        clock.advance(60)
    assert ssm_reads.call_count == 1


def test_the_password_cache_lasts_at_most_five_minutes() -> None:
    assert handler.PASSWORD_MAX_AGE_SECONDS <= 300


@pytest.mark.parametrize(
    ("seconds_later", "answers"),
    [
        # The cache is stale: re-read, the old password stops and the new one works.
        (handler.PASSWORD_MAX_AGE_SECONDS, [(TEAM_PASS, 403), (NEW_PASS, 200)]),
        # Documents the window: without anyone typing the new password, the old one lasts < 5 min.
        (handler.PASSWORD_MAX_AGE_SECONDS - 1, [(TEAM_PASS, 200)]),
        # The new password is a wrong one for the cache: re-read, and it is right; from then on
        # the old one is refused.
        (handler.PASSWORD_RECHECK_SECONDS, [(NEW_PASS, 200), (TEAM_PASS, 403)]),
    ],
    ids=[
        "the-old-password-stops-once-the-cache-is-stale",
        "the-old-password-keeps-working-until-the-cache-is-stale",
        "the-new-password-works-at-once-past-the-recheck-interval",
    ],
)
def test_after_a_rotation(
    stack: Stack, clock: FakeClock, seconds_later: float, answers: list[tuple[str, int]]
) -> None:
    assert status(TEAM_PASS) == 200  # warm: the old password is cached
    rotate()
    clock.advance(seconds_later)
    assert [(password, status(password)) for password, _ in answers] == answers


def test_a_wrong_password_flood_reads_ssm_at_most_once_per_recheck_interval(
    stack: Stack, clock: FakeClock, ssm_reads
) -> None:
    assert status(TEAM_PASS) == 200
    for second in range(3 * handler.PASSWORD_RECHECK_SECONDS):
        clock.advance(1)
        assert status(f"guess {second}") == 403
    # One read warming up, then one per recheck interval however many wrong passwords arrive.
    assert ssm_reads.call_count == 1 + 3
    assert status(TEAM_PASS) == 200


def test_a_wrong_password_flood_never_locks_the_team_out(stack: Stack, clock: FakeClock) -> None:
    for second in range(500):
        assert status(f"guess {second}") == 403
        clock.advance(0.5)
    assert status(TEAM_PASS) == 200
    assert call(event("/start", {"pass": TEAM_PASS}))[0] == 200
    assert stack.state() == "running"


def test_a_stale_password_is_never_served_when_ssm_fails(stack: Stack, clock: FakeClock) -> None:
    """Fail closed: after a rotation, an SSM outage must not keep the old password working."""
    assert status(TEAM_PASS) == 200
    rotate()
    clock.advance(handler.PASSWORD_MAX_AGE_SECONDS)
    boto3.client("ssm").delete_parameter(Name=PARAMETER)  # moto answers ParameterNotFound
    got, body = call(event("/status", {"pass": TEAM_PASS}))
    assert got == 503
    assert body["message"] == handler.AWS_ERROR_MESSAGE


def test_a_failed_recheck_answers_503_and_is_not_retried_before_the_interval(
    stack: Stack, clock: FakeClock, ssm_reads
) -> None:
    assert status(TEAM_PASS) == 200
    clock.advance(handler.PASSWORD_RECHECK_SECONDS)
    boto3.client("ssm").delete_parameter(Name=PARAMETER)
    assert status("a wrong password") == 503  # the re-read failed: say so, don't guess
    assert status("another wrong one") == 403  # no second SSM call within the interval
    assert status(TEAM_PASS) == 200  # the cached password, still fresh, keeps working
    assert ssm_reads.call_count == 2
