"""Issue 13: this month's running hours and their cost, in the `month` object of every answer
that carries `idle` and in one line of the page.

The hours come from the instance's month-hours tag (ec2_bootstrap/idle_tags.py MONTH_HOURS_TAG)
plus, while it runs, the time since the tag's `at` or the latest launch. The pure function is
tested with the clock injected, on DescribeInstances-shaped descriptions; the handler with moto
(tags, LaunchTime) and the clock injected through handler.utc_now; the line in real Chromium.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from selenium.webdriver.common.by import By

import cost
import handler
import idle
from demo.gateway import serve
from tests.browser.chromium import chromium
from tests.lambda_src.conftest import TEAM_PASS, Stack, aws_calls, call, event

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
TAG = idle.MONTH_HOURS_TAG


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def described(state: str, launched: datetime | None, tag: str | None) -> dict[str, Any]:
    """An instance as DescribeInstances describes it (only what the month reads)."""
    instance: dict[str, Any] = {"State": {"Name": state}, "Tags": []}
    if launched is not None:
        instance["LaunchTime"] = launched
    if tag is not None:
        instance["Tags"].append({"Key": TAG, "Value": tag})
    return instance


def tag(month: str, hours: str, at: datetime) -> str:
    return f"month={month} hours={hours} at={iso(at)}"


# --- The hours, with the clock injected --------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "launched", "value", "now", "hours"),
    [
        # This session counted until 16:30; the link adds 16:30 -> 17:00.
        ("running", NOW - timedelta(hours=3), tag("2026-11", "37.25", NOW - timedelta(minutes=30)),
         NOW, 37.75),
        # The tag is from an earlier session (at < LaunchTime): all of this one is added.
        ("running", NOW - timedelta(hours=1), tag("2026-11", "37.25", NOW - timedelta(days=1)),
         NOW, 38.25),
        # Pending is billed as running is.
        ("pending", NOW - timedelta(minutes=6), tag("2026-11", "10.00", NOW - timedelta(days=2)),
         NOW, 10.1),
        # Stopped or stopping: the tag's hours, nothing added.
        ("stopped", NOW - timedelta(hours=1), tag("2026-11", "37.25", NOW - timedelta(hours=2)),
         NOW, 37.25),
        ("stopping", NOW - timedelta(hours=1), tag("2026-11", "37.25", NOW - timedelta(minutes=5)),
         NOW, 37.25),
        # An older month's tag counts 0 h; the running time counts from the month's start.
        ("running", datetime(2026, 10, 31, 22, 0, tzinfo=UTC),
         tag("2026-10", "200.00", datetime(2026, 10, 31, 23, 50, tzinfo=UTC)),
         datetime(2026, 11, 1, 1, 30, tzinfo=UTC), 1.5),
        ("stopped", datetime(2026, 10, 31, 22, 0, tzinfo=UTC),
         tag("2026-10", "200.00", datetime(2026, 10, 31, 23, 50, tzinfo=UTC)),
         datetime(2026, 11, 1, 1, 30, tzinfo=UTC), 0.0),
        # The boundary itself: counted up to the last check of November, asked 30 min into December.
        ("running", datetime(2026, 11, 30, 20, 0, tzinfo=UTC),
         tag("2026-11", "300.00", datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC)),
         datetime(2026, 12, 1, 0, 30, tzinfo=UTC), 0.5),
        # No tag yet (a first session): the running time only, within this month.
        ("running", NOW - timedelta(hours=2), None, NOW, 2.0),
        ("running", datetime(2026, 10, 30, tzinfo=UTC), None,
         datetime(2026, 11, 1, 3, 0, tzinfo=UTC), 3.0),
        ("stopped", NOW - timedelta(hours=2), None, NOW, 0.0),
        # Running without a LaunchTime (EC2 always gives one): nothing is guessed.
        ("running", None, tag("2026-11", "5.00", NOW - timedelta(hours=1)), NOW, 5.0),
    ],
    ids=[
        "running-tag-of-this-session",
        "running-tag-of-a-past-session",
        "pending",
        "stopped",
        "stopping",
        "older-month-running",
        "older-month-stopped",
        "month-boundary",
        "no-tag-running",
        "no-tag-launched-last-month",
        "no-tag-stopped",
        "no-launch-time",
    ],
)  # fmt: skip
def test_month_hours(
    state: str, launched: datetime | None, value: str | None, now: datetime, hours: float
) -> None:
    assert cost.month_hours(described(state, launched, value), now) == pytest.approx(hours)


def test_a_tag_a_little_ahead_of_the_lambdas_clock_still_counts() -> None:
    """Two NTP clocks differ by a little: the tag's hours count, and nothing negative is added."""
    ahead = tag("2026-11", "12.50", NOW + timedelta(minutes=2))
    instance = described("running", NOW - timedelta(hours=1), ahead)
    assert cost.month_hours(instance, NOW) == pytest.approx(12.5)


def test_the_hours_never_exceed_the_hours_the_month_has_had() -> None:
    now = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    # 2.05 h counted at 01:59 is within the instance's rounding slack, then a minute more runs.
    counted = tag("2026-11", "2.05", datetime(2026, 11, 1, 1, 59, tzinfo=UTC))
    instance = described("running", datetime(2026, 11, 1, 0, 0, tzinfo=UTC), counted)
    assert cost.month_hours(instance, now) == pytest.approx(2.0)


# A notebook can write the tag with the instance role's credentials: whatever it writes, a bad
# tag counts as no tag (the running time since the launch, 1 h here), never an error.
FORGED = {
    "not-the-format": "37 hours",
    "hours-not-a-number": f"month=2026-11 hours=abc at={iso(NOW)}",
    "negative-hours": f"month=2026-11 hours=-5 at={iso(NOW)}",
    "exponent": f"month=2026-11 hours=1e9 at={iso(NOW)}",
    "nan": f"month=2026-11 hours=nan at={iso(NOW)}",
    "month-13": f"month=2026-13 hours=1.00 at={iso(NOW)}",
    "a-future-month": "month=2026-12 hours=1.00 at=2026-12-01T10:00:00Z",
    "counted-in-the-future": tag("2026-11", "30.00", NOW + timedelta(hours=1)),
    "more-than-the-month-had": tag("2026-11", "700.00", NOW - timedelta(hours=1)),
    "huge": tag("2026-11", "999999", NOW - timedelta(hours=1)),
    "at-outside-its-month": "month=2026-11 hours=1.00 at=2026-10-15T10:00:00Z",
    "naive-at": "month=2026-11 hours=1.00 at=2026-11-29T16:00:00",
    "at-past-the-range": "month=2026-11 hours=1.00 at=9999-12-31T23:59:59-12:00",
    "year-9999": "month=9999-12 hours=1.00 at=9999-12-31T10:00:00Z",
    "year-0000": "month=0000-01 hours=1.00 at=2026-11-29T10:00:00Z",
    "year-0000-at-0001": "month=0000-01 hours=1.00 at=0001-01-01T10:00:00Z",
    "trailing-garbage": tag("2026-11", "3.00", NOW - timedelta(hours=2)) + " x=1",
}


@pytest.mark.parametrize("value", FORGED.values(), ids=FORGED.keys())
def test_a_malformed_future_or_absurd_tag_counts_as_absent(value: str) -> None:
    instance = described("running", NOW - timedelta(hours=1), value)
    assert cost.month_hours(instance, NOW) == pytest.approx(1.0)
    assert cost.MonthTag.parse(value, NOW) is None


# --- The object and the line -------------------------------------------------------------------


def month_of(hours: str, price: float | None, note: str = "list price") -> cost.Month:
    instance = described("stopped", NOW - timedelta(hours=5), tag("2026-11", hours, NOW))
    return cost.Month.of(instance, NOW, price, note)


def test_the_contracts_example_37_2_h_at_1_204_usd() -> None:
    month = month_of("37.20", 1.204)
    assert month.as_json() == {
        "month": "2026-11",
        "hours": 37.2,
        "estimated_cost_usd": 44.79,
        "price_per_hour_usd": 1.204,
        "price_note": "list price",
    }
    assert month.line() == "This month: 37.2 h running ≈ $44.79 (list price)."


def test_without_a_price_the_cost_is_null_and_the_line_says_hours_only() -> None:
    month = month_of("37.20", None)
    assert month.as_json() == {
        "month": "2026-11",
        "hours": 37.2,
        "estimated_cost_usd": None,
        "price_per_hour_usd": None,
        "price_note": None,
    }
    assert month.line() == "This month: 37.2 h running."


@pytest.mark.parametrize(
    ("hours", "price", "shown_hours", "shown_cost"),
    [
        # 0.25 h shows as 0.3 h (half up, where float round() gives 0.2); 0.3 x 0.05 = 0.015.
        ("0.25", 0.05, "0.3", "0.02"),
        # 2.5 x 1.07 = 2.675 exactly: half up to 2.68 (float arithmetic would give 2.67).
        ("2.50", 1.07, "2.5", "2.68"),
        # The cost is the shown hours times the price: 37.24 h shows 37.2 h, costs 37.2 x 1.204.
        ("37.24", 1.204, "37.2", "44.79"),
        ("0.00", 0.526, "0.0", "0.00"),
    ],
)
def test_the_line_and_the_json_show_the_same_rounded_figures(
    hours: str, price: float, shown_hours: str, shown_cost: str
) -> None:
    month = month_of(hours, price)
    body = month.as_json()
    assert (body["hours"], body["estimated_cost_usd"]) == (float(shown_hours), float(shown_cost))
    assert month.line() == f"This month: {shown_hours} h running ≈ ${shown_cost} (list price)."


def test_a_price_without_a_note_has_no_parenthesis() -> None:
    assert month_of("1.00", 0.526, note="").line() == "This month: 1.0 h running ≈ $0.53."


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "1,2"])
def test_a_malformed_price_is_refused_by_parse_price(text: str) -> None:
    with pytest.raises(ValueError):
        cost.parse_price(text)


# --- Through the handler, against moto ---------------------------------------------------------


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The handler's time of day: NOW (moto's LaunchTime is set by set_launch_time)."""
    monkeypatch.setattr(handler, "utc_now", lambda: NOW)
    return NOW


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICE_PER_HOUR_USD", "1.204")
    monkeypatch.setenv("PRICE_NOTE", "list price")


def set_launch_time(stack: Stack, when: datetime) -> None:
    """moto sets LaunchTime once, at RunInstances; AWS moves it at every start."""
    instance = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_instance(stack.instance_id)
    instance.launch_time = when.astimezone(UTC).replace(tzinfo=None)  # moto keeps it naive UTC


def answer(route: str = "/status", **params: str) -> dict:
    code, body = call(event(route, {"pass": TEAM_PASS, **params}))
    assert code == 200, body
    assert isinstance(body, dict)
    return body


def test_status_of_a_running_instance_adds_the_time_since_the_tag(
    stack: Stack, fixed_now: datetime, priced: None
) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    set_launch_time(stack, fixed_now - timedelta(hours=3))
    stack.set_tags({TAG: tag("2026-11", "36.70", fixed_now - timedelta(minutes=30))})
    assert answer()["month"] == {
        "month": "2026-11",
        "hours": 37.2,
        "estimated_cost_usd": 44.79,
        "price_per_hour_usd": 1.204,
        "price_note": "list price",
    }


@pytest.mark.parametrize(
    ("route", "params"),
    [("/status", {}), ("/start", {}), ("/keep-awake", {"hours": "2"})],
)
def test_every_answer_that_carries_idle_carries_month(
    stack: Stack, fixed_now: datetime, priced: None, route: str, params: dict[str, str]
) -> None:
    stack.set_tags({TAG: tag("2026-11", "37.20", fixed_now - timedelta(hours=1))})
    body = answer(route, **params)
    assert "idle" in body
    assert body["month"]["hours"] == 37.2  # stopped when described: nothing added
    assert body["month"]["estimated_cost_usd"] == 44.79


def test_an_answer_without_idle_has_no_month(stack: Stack) -> None:
    code, body = call(event("/status", {"pass": "wrong"}))
    assert code == 403
    assert "month" not in body and "idle" not in body


def test_the_price_note_reaches_the_json_and_the_page(
    stack: Stack, fixed_now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRICE_PER_HOUR_USD", "0.9")
    monkeypatch.setenv("PRICE_NOTE", "admin's price")
    stack.set_tags({TAG: tag("2026-11", "10.00", fixed_now - timedelta(hours=1))})
    assert answer()["month"]["price_note"] == "admin's price"
    _, page = call(event("/status", {"pass": TEAM_PASS, "view": "page"}))
    assert '<p id="month">This month: 10.0 h running ≈ $9.00 (admin&#x27;s price).</p>' in page


@pytest.mark.parametrize("price", ["", "  "])
def test_an_unknown_price_shows_hours_only(
    stack: Stack, fixed_now: datetime, monkeypatch: pytest.MonkeyPatch, price: str
) -> None:
    monkeypatch.setenv("PRICE_PER_HOUR_USD", price)
    monkeypatch.setenv("PRICE_NOTE", "")
    stack.set_tags({TAG: tag("2026-11", "37.20", fixed_now - timedelta(hours=1))})
    month = answer()["month"]
    assert (month["hours"], month["estimated_cost_usd"], month["price_per_hour_usd"]) == (
        37.2,
        None,
        None,
    )
    _, page = call(event("/status", {"pass": TEAM_PASS, "view": "page"}))
    assert '<p id="month">This month: 37.2 h running.</p>' in page


def test_a_malformed_price_never_breaks_the_start_link_and_is_logged(
    stack: Stack,
    fixed_now: datetime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PRICE_PER_HOUR_USD", "1.2 USD")
    monkeypatch.setenv("PRICE_NOTE", "list price")
    code, body = call(event("/start", {"pass": TEAM_PASS}))
    assert (code, body["state"]) == (200, "pending")
    assert body["month"]["estimated_cost_usd"] is None
    assert body["month"]["price_note"] is None
    assert any(
        "PRICE_PER_HOUR_USD" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )


def test_a_forged_month_tag_never_breaks_an_answer(stack: Stack, fixed_now: datetime) -> None:
    stack.set_tags({TAG: "month=9999-12 hours=99999999 at=9999-12-31T23:59:59-12:00"})
    for route in ("/status", "/start"):
        for view in ({}, {"view": "page"}):
            code, _ = call(event(route, {"pass": TEAM_PASS, **view}))
            assert code == 200, route
    set_launch_time(stack, fixed_now - timedelta(hours=2))
    assert answer()["month"]["hours"] == 2.0  # as if there were no tag: the 2 h since the launch


def test_if_the_month_cant_be_computed_the_answer_goes_on_without_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug, not a tag: injected by making Month.of raise."""

    def broken(*args: object) -> cost.Month:
        raise ArithmeticError("injected")

    monkeypatch.setattr(handler.Month, "of", broken)
    body = answer()
    assert "month" not in body and "idle" in body
    assert any(
        "month-hours" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    )


def test_the_month_costs_no_aws_call_beyond_describe_instances(stack: Stack) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    stack.set_tags({TAG: tag(f"{datetime.now(UTC):%Y-%m}", "0.00", datetime.now(UTC))})
    answer()  # the password is now cached
    with aws_calls() as calls:
        body = answer()
    assert "month" in body
    assert calls == ["ec2:DescribeInstances"]


# --- The line in real Chromium -----------------------------------------------------------------


@pytest.fixture
def gateway(stack: Stack):
    server = serve(port=0)
    yield server
    server.shutdown()


def test_the_page_shows_the_month_line_in_chromium(
    stack: Stack, gateway, fixed_now: datetime, priced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.set_tags({TAG: tag("2026-11", "37.20", fixed_now - timedelta(hours=1))})
    query = urlencode({"pass": TEAM_PASS, "view": "page"})
    with chromium() as browser:
        browser.get(f"http://127.0.0.1:{gateway.server_port}/v1/status?{query}")
        assert (
            browser.find_element(By.ID, "month").text
            == "This month: 37.2 h running ≈ $44.79 (list price)."
        )
        monkeypatch.setenv("PRICE_PER_HOUR_USD", "")  # Terraform's table lacks the type
        browser.refresh()
        assert browser.find_element(By.ID, "month").text == "This month: 37.2 h running."
