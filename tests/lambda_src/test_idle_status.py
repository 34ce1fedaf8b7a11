"""The `idle` object of /v1/status and /v1/start, read from the tags the instance's idle checker
sets (ec2_bootstrap/idle_verdict.py), against moto: busy, idle, kept awake, stopped with a stop
reason, and the tags that must not count (a past session's, malformed ones).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

import handler
import idle
from tests.lambda_src.conftest import TEAM_PASS, Stack, aws_calls, call, event

CONTRACT_KEYS = {
    "stops_at",
    "idle_minutes",
    "awake_because",
    "last_stop_reason",
    "stopped_at",
    "idle_since",
    "kept_awake_until",
    "updated_at",
}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def status(stack: Stack) -> dict:
    code, body = call(event("/status", {"pass": TEAM_PASS}))
    assert code == 200, body
    return body


def running(stack: Stack) -> Stack:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    return stack


def verdict(stack: Stack, **values: str) -> None:
    """The four verdict tags the checker publishes on each material change (idle_verdict.tags)."""
    stack.set_tags(
        {
            idle.AWAKE_BECAUSE_TAG: values.get("awake_because", ""),
            idle.STOPS_AT_TAG: values.get("stops_at", ""),
            idle.IDLE_SINCE_TAG: values.get("idle_since", ""),
            idle.VERDICT_AT_TAG: values.get("verdict_at", iso(now())),
        }
    )


def set_launch_time(stack: Stack, when: datetime) -> None:
    """moto sets LaunchTime once, at RunInstances; AWS moves it at every start."""
    instance = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_instance(stack.instance_id)
    instance.launch_time = when.astimezone(UTC).replace(tzinfo=None)  # moto keeps it naive UTC


def test_the_idle_object_has_exactly_the_contracts_keys_even_with_no_tags(stack: Stack) -> None:
    body = status(running(stack))
    assert set(body["idle"]) == CONTRACT_KEYS
    assert body["idle"] == {
        "stops_at": None,
        "idle_minutes": 40.0,
        "awake_because": [],
        "last_stop_reason": None,
        "stopped_at": None,
        "idle_since": None,
        "kept_awake_until": None,
        "updated_at": None,
    }


def test_busy_lists_what_keeps_it_awake_and_no_stop_time(stack: Stack) -> None:
    at = iso(now())
    verdict(
        running(stack),
        awake_because="kernel busy: train.ipynb | GPU 0 at 87 %",
        verdict_at=at,
    )
    body = status(stack)
    assert body["idle"]["awake_because"] == ["kernel busy: train.ipynb", "GPU 0 at 87 %"]
    assert body["idle"]["stops_at"] is None and body["idle"]["idle_since"] is None
    assert body["idle"]["updated_at"] == at
    # The design note's message, word for word.
    assert body["message"] == (
        f"Jupyter Lab already running at {body['url']}. "
        "Remember: it will be inactive again when idle for 40 min."
    )


def test_idle_says_since_when_and_when_it_stops(stack: Stack) -> None:
    since, stops = now() - timedelta(minutes=31), now() + timedelta(minutes=9)
    verdict(running(stack), idle_since=iso(since), stops_at=iso(stops))
    body = status(stack)
    assert body["idle"]["stops_at"] == iso(stops)
    assert body["idle"]["idle_since"] == iso(since)
    assert body["idle"]["awake_because"] == []
    assert body["idle"]["idle_minutes"] == 40.0  # the configured minutes, as in the message


def test_idle_minutes_is_the_lambdas_idle_minutes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDLE_MINUTES", "15")
    assert status(running(stack))["idle"]["idle_minutes"] == 15.0


def test_kept_awake_from_jupyterlab_shows_in_the_verdict(stack: Stack) -> None:
    """JupyterLab's Keep awake writes no tag (the instance may not); its checker says so."""
    until = now() + timedelta(hours=1)
    verdict(running(stack), awake_because=f"kept awake until {iso(until)}")
    body = status(stack)
    assert body["idle"]["kept_awake_until"] == iso(until)
    assert body["idle"]["awake_because"] == [f"kept awake until {iso(until)}"]


def test_a_keep_awake_that_has_ended_is_not_reported(stack: Stack) -> None:
    verdict(running(stack), awake_because=f"kept awake until {iso(now() - timedelta(minutes=1))}")
    assert status(stack)["idle"]["kept_awake_until"] is None


def test_the_links_keep_awake_set_after_the_verdict_wins_over_it(stack: Stack) -> None:
    """The checker honours the latest request (ec2_bootstrap/idle_keep_awake.py): a cancel from
    the link after JupyterLab's click ends it, before the checker has run again."""
    verdict(
        running(stack),
        awake_because=f"kept awake until {iso(now() + timedelta(hours=1))}",
        verdict_at=iso(now() - timedelta(minutes=1)),
    )
    call(event("/keep-awake", {"pass": TEAM_PASS, "hours": "0"}))
    assert status(stack)["idle"]["kept_awake_until"] is None


def test_a_verdict_published_after_the_links_keep_awake_has_the_last_word(stack: Stack) -> None:
    running(stack)
    set_at = now() - timedelta(minutes=10)
    stack.set_tags(
        {idle.KEEP_AWAKE_TAG: f"until={iso(set_at + timedelta(hours=4))} set={iso(set_at)}"}
    )
    later = now() + timedelta(minutes=30)  # JupyterLab's 1 h click, 5 min ago, wins
    verdict(stack, awake_because=f"kept awake until {iso(later)}", verdict_at=iso(now()))
    assert status(stack)["idle"]["kept_awake_until"] == iso(later)


def test_the_stop_reason_set_before_the_stop_shows_at_the_next_status(stack: Stack) -> None:
    running(stack)
    verdict(stack, idle_since=iso(now() - timedelta(minutes=40)), stops_at=iso(now()))
    stopped_at = iso(now())
    # What the checker sets just before `shutdown` (idle_verdict.stop_tags), then the stop.
    stack.set_tags(
        {
            idle.AWAKE_BECAUSE_TAG: "",
            idle.STOPS_AT_TAG: "",
            idle.STOP_REASON_TAG: "nobody worked for 40 min",
            idle.STOPPED_AT_TAG: stopped_at,
            idle.VERDICT_AT_TAG: stopped_at,
        }
    )
    stack.ec2.stop_instances(InstanceIds=[stack.instance_id])
    body = status(stack)
    assert body["state"] == "stopped"
    assert body["message"] == handler.STOPPED_MESSAGE
    assert body["idle"]["last_stop_reason"] == "nobody worked for 40 min"
    assert body["idle"]["stopped_at"] == stopped_at
    assert body["idle"]["stops_at"] is None and body["idle"]["awake_because"] == []


def test_the_start_that_wakes_it_says_why_it_slept_then_running_it_is_forgotten(
    stack: Stack,
) -> None:
    stack.set_tags(
        {idle.STOP_REASON_TAG: "nobody worked for 40 min", idle.STOPPED_AT_TAG: iso(now())}
    )
    _, started = call(event("/start", {"pass": TEAM_PASS}))
    assert started["message"] == handler.STARTING_MESSAGE
    assert started["idle"]["last_stop_reason"] == "nobody worked for 40 min"
    assert status(stack)["idle"]["last_stop_reason"] is None


@pytest.mark.parametrize(
    ("launched_ago", "counts"), [(timedelta(hours=2), True), (timedelta(minutes=30), False)]
)
def test_a_stop_reason_counts_only_when_written_after_the_latest_launch(
    stack: Stack, launched_ago: timedelta, counts: bool
) -> None:
    """Written an hour ago: the stop of a session launched 2 h ago, or, launched 30 min ago, a
    later session's stop (from the console, say) that the instance never explained."""
    stopped_at = iso(now() - timedelta(hours=1))
    stack.set_tags(
        {idle.STOP_REASON_TAG: "nobody worked for 40 min", idle.STOPPED_AT_TAG: stopped_at}
    )
    set_launch_time(stack, now() - launched_ago)
    body = status(stack)
    assert body["idle"]["last_stop_reason"] == ("nobody worked for 40 min" if counts else None)
    assert body["idle"]["stopped_at"] == (stopped_at if counts else None)


@pytest.mark.parametrize(
    ("launched_ago", "counts"), [(timedelta(hours=4), True), (timedelta(minutes=2), False)]
)
def test_a_verdict_counts_only_when_published_after_the_latest_launch(
    stack: Stack, launched_ago: timedelta, counts: bool
) -> None:
    """Published 3 h ago: this session's verdict if launched 4 h ago; a past session's if
    launched 2 min ago (its checker has not published yet)."""
    stops_at = iso(now() + timedelta(minutes=5))
    verdict(
        running(stack),
        awake_because="kernel busy: old.ipynb",
        stops_at=stops_at,
        verdict_at=iso(now() - timedelta(hours=3)),
    )
    set_launch_time(stack, now() - launched_ago)
    body = status(stack)
    assert body["idle"]["awake_because"] == (["kernel busy: old.ipynb"] if counts else [])
    assert body["idle"]["stops_at"] == (stops_at if counts else None)
    assert (body["idle"]["updated_at"] is not None) == counts


@pytest.mark.parametrize(
    "tags",
    [
        {idle.VERDICT_AT_TAG: "yesterday", idle.AWAKE_BECAUSE_TAG: "kernel busy: x.ipynb"},
        {idle.VERDICT_AT_TAG: "2026-11-29T14:00:00", idle.STOPS_AT_TAG: "2026-11-29T14:30:00Z"},
        {idle.KEEP_AWAKE_TAG: "until=soon set=now"},
        {idle.KEEP_AWAKE_TAG: "2099-01-01T00:00:00Z"},
        {idle.STOPPED_AT_TAG: "not a time", idle.STOP_REASON_TAG: "nobody worked for 40 min"},
        # A notebook can write the verdict tags (the instance role's credentials): times past
        # datetime's range once in UTC, or in no plausible year.
        {
            idle.VERDICT_AT_TAG: "9999-12-31T23:59:59-12:00",
            idle.STOPS_AT_TAG: "9999-12-31T23:59:59-12:00",
        },
        {idle.VERDICT_AT_TAG: "0001-01-01T00:00:00+14:00"},
        {idle.KEEP_AWAKE_TAG: "until=9999-12-31T23:59:59-12:00 set=2026-11-29T10:00:00Z"},
    ],
    ids=[
        "unparsable-verdict-time",
        "naive-verdict-time",
        "keep-awake-not-times",
        "keep-awake-bare",
        "stop-time",
        "past-the-range",
        "before-the-range",
        "keep-awake-past-the-range",
    ],
)
def test_malformed_tags_count_as_absent_never_as_an_error(stack: Stack, tags: dict) -> None:
    running(stack).set_tags(tags)
    nothing = {key: None for key in CONTRACT_KEYS} | {"awake_because": [], "idle_minutes": 40.0}
    assert status(stack)["idle"] == nothing


def test_reading_the_verdict_costs_no_aws_call_beyond_describe_instances(stack: Stack) -> None:
    verdict(running(stack), awake_because="kernel busy: train.ipynb")
    status(stack)  # the password is now cached
    with aws_calls() as calls:
        body = status(stack)
    assert body["idle"]["awake_because"] == ["kernel busy: train.ipynb"]
    assert calls == ["ec2:DescribeInstances"]


def test_the_page_view_without_script_shows_the_times_in_utc(stack: Stack) -> None:
    stops = now().replace(second=0) + timedelta(minutes=9)
    verdict(running(stack), idle_since=iso(now() - timedelta(minutes=31)), stops_at=iso(stops))
    response = handler.lambda_handler(event("/status", {"pass": TEAM_PASS, "view": "page"}), None)
    assert (
        f'<p id="idle">Nobody has worked for 31 min. It stops at <time datetime="{iso(stops)}">'
        f"{stops:%H:%M} UTC</time> unless someone does</p>"
    ) in response["body"]


def test_a_forged_stop_time_past_the_range_never_breaks_a_stopped_instances_page(
    stack: Stack,
) -> None:
    stack.set_tags({idle.STOPPED_AT_TAG: "9999-12-31T23:59:59-12:00", idle.STOP_REASON_TAG: "x"})
    for route in ("/status", "/start"):
        for view in ({}, {"view": "page"}):
            code, _ = call(event(route, {"pass": TEAM_PASS, **view}))
            assert code == 200, route


def test_the_links_keep_awake_the_checker_never_told_is_not_promised_after_2_minutes(
    stack: Stack,
) -> None:
    """A running checker tells every new request at its next run (30 s); silence means it can't
    read it (no metadata) or won't (over its own cap): the page says when it stops instead."""
    set_launch_time(running(stack), now() - timedelta(hours=1))
    stops = now() + timedelta(minutes=9)
    verdict(stack, stops_at=iso(stops), idle_since=iso(now() - timedelta(minutes=31)),
            verdict_at=iso(now() - timedelta(minutes=5)))  # fmt: skip
    asked = idle.KeepAwake(now() + timedelta(hours=4), now() - timedelta(seconds=30))
    stack.set_tags({idle.KEEP_AWAKE_TAG: asked.value()})
    assert status(stack)["idle"]["kept_awake_until"] == iso(asked.until)  # not told yet: trusted
    asked = idle.KeepAwake(now() + timedelta(hours=4), now() - timedelta(minutes=3))
    stack.set_tags({idle.KEEP_AWAKE_TAG: asked.value()})
    told = status(stack)["idle"]
    assert told["kept_awake_until"] is None and told["stops_at"] == iso(stops)


def test_a_sleeping_instances_page_offers_no_cancel(stack: Stack) -> None:
    """A click there would only cost a start: a stopped machine is kept awake by nothing."""
    asked = idle.KeepAwake(now() + timedelta(hours=4), now() - timedelta(minutes=1))
    stack.set_tags({idle.KEEP_AWAKE_TAG: asked.value()})
    _, page = call(event("/status", {"pass": TEAM_PASS, "view": "page"}))
    assert "Keep awake 1 h" in page and "Cancel keep-awake" not in page
    running(stack)
    _, page = call(event("/status", {"pass": TEAM_PASS, "view": "page"}))
    assert "Cancel keep-awake" in page
