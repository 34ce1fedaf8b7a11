"""The instance's running hours this calendar month (UTC), for the cost line on the start page.

Kept in the idle state (idle_check.py), which the checker writes at every run anyway: counting
costs no file write of its own, and the record survives stops and reboots with the state file
(idle_check.load_state carries it to a new boot). `count` is a pure function, the clock injected:
  - the same boot: the time since the last count is added (nothing when the clock went back);
  - a new boot: the time since the boot is added (the machine ran since then); the gap between
    boots is not counted, and the previous boot's last moments, after its last check, are lost:
    at most one check interval (30 s);
  - a new month: only the part inside it counts; the month before is kept as `previous`;
  - a record that is broken, hostile or ahead of the clock is dropped: the month starts again
    from this boot, and the check goes on.
The record, under MONTH_KEY in the state:
  {"month": "2026-11", "hours": 37.251389, "at": "2026-11-29T16:00:00+00:00",
   "boot_id": "<this boot>", "previous": {"month": "2026-10", "hours": 12.5}}
It is published as idle_tags.MONTH_HOURS_TAG ("month=2026-11 hours=37.25 at=2026-11-29T16:00:00Z")
with the verdict's tags, when the published hours fall PUBLISH_BEHIND_HOURS behind, and in the
stop tags; the start link adds the time since `at` while the machine runs.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from idle_decision import UTC, parse_time

logger = logging.getLogger("jupyter_on_demand.idle")

MONTH_KEY = "month_hours"  # the record, in the idle state
PUBLISHED_KEY = "month_hours_published"  # what the tag says: {"month", "hours"}
PUBLISH_BEHIND_HOURS = 0.25  # at most one CreateTags per 15 min for the hours alone
# How far a clock may be set back (NTP) and the record still be trusted: its `at` ahead of the
# clock by up to this, its hours over the month's time up to its `at` by up to this.
CLOCK_SLACK = timedelta(hours=1)
MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_of(when: datetime) -> str:
    return f"{when.year:04d}-{when.month:02d}"


def month_start(month: str) -> datetime | None:
    """The first instant of a "YYYY-MM" month, UTC; None for anything else."""
    match = MONTH.fullmatch(month)
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        return None
    return datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)


def month_end(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


def hours_within(since: datetime, until: datetime, start: datetime, end: datetime) -> float:
    """The hours of [since, until] that fall inside [start, end); 0 when none (or until < since)."""
    overlap = (min(until, end) - max(since, start)).total_seconds()
    return max(overlap, 0.0) / 3600


def is_hours(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def checked(record: object, now: datetime) -> dict[str, Any] | None:
    """The record as `count` left it, or None when it is not one: a wrong type or shape,
    negative or impossible hours (more than the month had up to its `at`), an `at` outside its
    month or more than CLOCK_SLACK ahead of the clock (forged, or a clock set back further than
    NTP ever does: then the month's hours so far are lost, which is the lesser harm)."""
    if not isinstance(record, Mapping):
        return None
    month, hours, at = record.get("month"), record.get("hours"), parse_time(record.get("at"))
    start = month_start(month) if isinstance(month, str) else None
    if start is None or at is None or not is_hours(hours) or start > now:
        return None
    assert isinstance(month, str) and isinstance(hours, (int, float))
    if not start <= at < month_end(start) or at > now + CLOCK_SLACK:
        return None
    if hours * 3600 > (at - start + CLOCK_SLACK).total_seconds():
        return None
    boot_id = record.get("boot_id")
    previous = record.get("previous")
    ok_previous = (
        isinstance(previous, Mapping)
        and isinstance(previous.get("month"), str)
        and month_start(previous["month"]) is not None
        and is_hours(previous.get("hours"))
    )
    return {
        "month": month,
        "hours": float(hours),
        "at": at,
        "boot_id": boot_id if isinstance(boot_id, str) else None,
        "previous": {"month": previous["month"], "hours": float(previous["hours"])}
        if ok_previous and isinstance(previous, Mapping)
        else None,
    }


def count(record: object, now: datetime, boot_id: str, booted_at: datetime) -> dict[str, Any]:
    """The month's record after a check at `now` (see the module's docstring)."""
    old = checked(record, now)
    if old is None and record is not None:
        logger.warning("the month's hours in the idle state are broken; counting from this boot")
    this_month = month_of(now)
    start = month_start(this_month)
    assert start is not None
    previous = None
    hours = 0.0
    if old is None:
        since = booted_at
    else:
        # The same boot: since the last count. A new boot: since the boot, never before the
        # last count (a clock that disagrees must not count a time twice).
        since = old["at"] if old["boot_id"] == boot_id else max(booted_at, old["at"])
        if old["month"] == this_month:
            hours, previous = old["hours"], old["previous"]
        else:  # a new month: the old one gets its part of this interval, then is put aside
            old_start = month_start(old["month"])
            assert old_start is not None
            old_hours = old["hours"] + hours_within(since, now, old_start, month_end(old_start))
            previous = {"month": old["month"], "hours": old_hours}
    hours += hours_within(since, now, start, month_end(start))
    # Never more than the month has had: a clock that ran ahead and was set back would otherwise
    # keep a figure the start link refuses (lambda_src/cost.py) for the rest of the month.
    hours = min(hours, hours_within(start, now, start, month_end(start)))
    return {
        "month": this_month,
        "hours": hours,  # unrounded: 90,000 checks a month must not add up rounding errors
        "at": now.isoformat(),
        "boot_id": boot_id,
        "previous": previous,
    }


def tag_value(record: Mapping[str, Any]) -> str:
    """MONTH_HOURS_TAG's value, of a record `count` made."""
    at = parse_time(record["at"])
    assert at is not None
    return f"month={record['month']} hours={record['hours']:.2f} at={at:%Y-%m-%dT%H:%M:%SZ}"


def published(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the state remembers of a published record (PUBLISHED_KEY)."""
    return {"month": record["month"], "hours": record["hours"]}


def behind(last: object, record: Mapping[str, Any]) -> bool:
    """Whether the tag should be set again by itself: never published at this boot, another
    month, or PUBLISH_BEHIND_HOURS behind (or ahead: a record started afresh)."""
    if not isinstance(last, Mapping) or last.get("month") != record["month"]:
        return True
    hours = last.get("hours")
    if not is_hours(hours):
        return True
    assert isinstance(hours, (int, float))
    return not 0 <= record["hours"] - hours < PUBLISH_BEHIND_HOURS
