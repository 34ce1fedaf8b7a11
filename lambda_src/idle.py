"""What the instance says about its idle stop, read from its tags, and the keep-awake tag the link
writes.

Pure functions of DescribeInstances' answer (which the handler makes anyway, so reading the
verdict costs no AWS call) and of a time: no AWS, no configuration. The tag keys are a contract
with the instance (ec2_bootstrap/layout.py VERDICT_TAGS and KEEP_AWAKE_TAG, written by its idle
checker) and with Terraform (infrastructure/locals.tf verdict_tags and keep_awake_tag: the IAM
policies and ignore_changes); tests/infrastructure/test_contracts.py compares the three.

Which tags count:
- the verdict (awake-because, stops-at, idle-since, verdict-at) only while the instance runs and
  was published since its latest launch: an older one describes a session that is over;
- the stop reason (stop-reason, stopped-at) only while the instance is stopping or stopped and
  it was written after its latest launch: otherwise that stop was not the instance's own (the
  console, AWS) and its reason is unknown;
- the month's hours (month-hours): cost.py reads them, for the `month` object;
- the keep-awake until: the latest of the link's tag and the verdict's "kept awake until <ISO>"
  counts, as the idle checker decides (ec2_bootstrap/idle_keep_awake.py: the latest request
  wins, so the link's hours=0 cancels an earlier click in JupyterLab).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

# timezone.utc, not datetime.UTC: mypy checks lambda_src as Python 3.10 (pyproject.toml).
UTC = timezone.utc  # noqa: UP017

AWAKE_BECAUSE_TAG = "jupyter-on-demand:awake-because"
STOPS_AT_TAG = "jupyter-on-demand:stops-at"
IDLE_SINCE_TAG = "jupyter-on-demand:idle-since"
VERDICT_AT_TAG = "jupyter-on-demand:verdict-at"
STOP_REASON_TAG = "jupyter-on-demand:stop-reason"
STOPPED_AT_TAG = "jupyter-on-demand:stopped-at"
# The instance's running hours this calendar month (UTC): "month=2026-11 hours=37.25 at=<ISO>";
# read by cost.py, which adds the time since `at` (or since the launch) while it runs.
MONTH_HOURS_TAG = "jupyter-on-demand:month-hours"
VERDICT_TAGS = (
    AWAKE_BECAUSE_TAG,
    STOPS_AT_TAG,
    IDLE_SINCE_TAG,
    VERDICT_AT_TAG,
    STOP_REASON_TAG,
    STOPPED_AT_TAG,
    MONTH_HOURS_TAG,
)
# The only tag the start link writes: "until=<ISO> set=<ISO>" (until == set cancels).
KEEP_AWAKE_TAG = "jupyter-on-demand:keep-awake-until"

REASON_SEPARATOR = " | "
KEPT_AWAKE_REASON = re.compile(r"kept awake until (\S+)")
KEEP_AWAKE_VALUE = re.compile(r"until=(\S+) set=(\S+)")


def iso(moment: datetime) -> str:
    """ISO 8601 UTC to the second with a trailing Z, as every tag and JSON time is written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


EARLIEST_YEAR, LATEST_YEAR = 2020, 2200
# How long the link trusts its own keep-awake on a running instance whose checker hasn't told it
# yet (it runs every 30 s and tells every new request: idle_verdict.py).
UNCONFIRMED = timedelta(minutes=2)


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time with a zone (a trailing Z too); None for anything else, naive included."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return None
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):  # 9999-12-31T23:59:59-12:00: past datetime's range
        return None
    # The instance's tags: a notebook can write them. A time outside these years is forged.
    return moment if EARLIEST_YEAR <= moment.year <= LATEST_YEAR else None


def to_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


@dataclass(frozen=True)
class KeepAwake:
    """The link's keep-awake request: awake until `until`, asked at `set_at`."""

    until: datetime
    set_at: datetime

    @classmethod
    def for_hours(cls, now: datetime, hours: float) -> KeepAwake:
        """From now for `hours` (0: a cancel, until == set), to the second."""
        set_at = to_second(now)
        return cls(to_second(set_at + timedelta(hours=hours)), set_at)

    @classmethod
    def parse(cls, value: object) -> KeepAwake | None:
        match = KEEP_AWAKE_VALUE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            return None
        until, set_at = parse_time(match.group(1)), parse_time(match.group(2))
        return cls(until, set_at) if until is not None and set_at is not None else None

    def value(self) -> str:
        return f"until={iso(self.until)} set={iso(self.set_at)}"

    @property
    def cancelled(self) -> bool:
        return self.until <= self.set_at


@dataclass(frozen=True)
class Idle:
    """The `idle` object of the link's JSON (README "The start link"); times are aware UTC."""

    idle_minutes: float  # the configured minutes without work after which it stops
    stops_at: datetime | None = None
    awake_because: tuple[str, ...] = ()
    last_stop_reason: str | None = None
    stopped_at: datetime | None = None
    idle_since: datetime | None = None
    kept_awake_until: datetime | None = None
    updated_at: datetime | None = None

    def minutes_idle(self, now: datetime) -> float:
        """How long nobody has worked, by the verdict's idle-since; 0 while something works."""
        if self.idle_since is None:
            return 0.0
        return max(0.0, (now - self.idle_since).total_seconds() / 60)

    def as_json(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return iso(moment) if moment is not None else None

        return {
            "stops_at": when(self.stops_at),
            "idle_minutes": self.idle_minutes,
            "awake_because": list(self.awake_because),
            "last_stop_reason": self.last_stop_reason,
            "stopped_at": when(self.stopped_at),
            "idle_since": when(self.idle_since),
            "kept_awake_until": when(self.kept_awake_until),
            "updated_at": when(self.updated_at),
        }


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {
        tag["Key"]: tag["Value"]
        for tag in instance.get("Tags", [])
        if isinstance(tag.get("Key"), str) and isinstance(tag.get("Value"), str)
    }


def with_tag(instance: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """The description as it is once `key` is set to `value` (no second DescribeInstances)."""
    others = [tag for tag in instance.get("Tags", []) if tag.get("Key") != key]
    return {**instance, "Tags": [*others, {"Key": key, "Value": value}]}


def launched_at(instance: dict[str, Any]) -> datetime | None:
    """The latest launch (start), to the second like the tags; None when EC2 gave none."""
    launched = instance.get("LaunchTime")
    if isinstance(launched, datetime) and launched.tzinfo is not None:
        return to_second(launched)
    return None


def since_launch(moment: datetime | None, launched: datetime | None) -> bool:
    return moment is not None and launched is not None and moment >= launched


def reasons(value: str | None) -> tuple[str, ...]:
    return tuple(r for r in (value or "").split(REASON_SEPARATOR) if r.strip())


def kept_awake_in(awake_because: tuple[str, ...]) -> datetime | None:
    """The latest "kept awake until <ISO>" among the verdict's reasons."""
    found = [
        parse_time(match.group(1))
        for match in map(KEPT_AWAKE_REASON.fullmatch, awake_because)
        if match is not None
    ]
    return max((moment for moment in found if moment is not None), default=None)


def read_idle(instance: dict[str, Any], now: datetime, idle_minutes: float) -> Idle:
    """The idle object for the instance as DescribeInstances (or with_tag) describes it."""
    tags = tags_of(instance)
    state = instance.get("State", {}).get("Name")
    launched = launched_at(instance)
    verdict_at = parse_time(tags.get(VERDICT_AT_TAG))
    fresh = state == "running" and since_launch(verdict_at, launched)
    awake_because = reasons(tags.get(AWAKE_BECAUSE_TAG)) if fresh else ()

    stop_reason = (tags.get(STOP_REASON_TAG) or "").strip() or None
    stopped_at = parse_time(tags.get(STOPPED_AT_TAG))
    if state not in ("stopping", "stopped") or not since_launch(stopped_at, launched):
        stop_reason = stopped_at = None
    if stop_reason is None:
        stopped_at = None

    request = KeepAwake.parse(tags.get(KEEP_AWAKE_TAG))
    asked = request.until if request is not None and not request.cancelled else None
    until = asked
    if fresh and verdict_at is not None and (request is None or request.set_at < verdict_at):
        # The checker published after the link's request (or there is none): it has weighed
        # that request against JupyterLab's (the latest wins), so its word counts.
        until = kept_awake_in(awake_because)
    elif state == "running" and request is not None and now - request.set_at > UNCONFIRMED:
        # A running checker tells a new request at its next run; silence this long means it
        # can't read it (no metadata, over its own cap): the page must not promise it.
        until = None

    return Idle(
        idle_minutes=idle_minutes,
        stops_at=parse_time(tags.get(STOPS_AT_TAG)) if fresh else None,
        awake_because=awake_because,
        last_stop_reason=stop_reason,
        stopped_at=stopped_at,
        idle_since=parse_time(tags.get(IDLE_SINCE_TAG)) if fresh else None,
        kept_awake_until=until if until is not None and until > now else None,
        updated_at=verdict_at if fresh else None,
    )
