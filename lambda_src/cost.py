"""The `month` object of the link's JSON and the page's line: this calendar month's running hours
(UTC) and what they cost at the admin's price.

Pure functions of DescribeInstances' answer (the instance's MONTH_HOURS_TAG and LaunchTime, which
the handler reads anyway: no AWS call), a time and the price: no AWS, no environment.

The instance counts its own hours and publishes them in MONTH_HOURS_TAG at each check
("month=2026-11 hours=37.25 at=2026-11-29T16:00:00Z"; ec2_bootstrap/idle_tags.py). Between two
checks, and after a stop it could not count, the link adds what the tag can't know yet: while the
instance runs (or pends), the time since max(at, the latest launch), within this month only. A
tag of an earlier month counts as 0 h. A notebook can write the tag (the instance role's
credentials), so a tag that is malformed, dated in the future, or holds more hours than its month
had by then counts as absent, and the total never exceeds the hours this month has had so far.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from idle import EARLIEST_YEAR, MONTH_HOURS_TAG, UTC, launched_at, parse_time, tags_of

MONTH_HOURS_VALUE = re.compile(
    r"month=(?P<year>[0-9]{4})-(?P<month>[0-9]{2}) "
    r"hours=(?P<hours>[0-9]{1,6}(?:\.[0-9]{1,6})?) at=(?P<at>\S+)"
)
# The instance's clock and the Lambda's both follow NTP; a tag this far ahead is still honest.
CLOCK_SKEW = timedelta(minutes=5)
# The instance rounds its hours to 2 decimals and may count a check interval twice at a stop.
HOURS_SLACK = 0.1
# The states in which the machine's hours grow past its last count (pending: just launched).
STATES_THAT_COUNT = ("running", "pending")


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


def hours_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() / 3600)


@dataclass(frozen=True)
class MonthTag:
    """The instance's count: `hours` in the month starting at `month`, counted until `at`."""

    month: datetime
    hours: float
    at: datetime

    @classmethod
    def parse(cls, value: object, now: datetime) -> MonthTag | None:
        """The tag's count, or None when it is malformed, in the future or impossible."""
        match = MONTH_HOURS_VALUE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or not 1 <= int(match["month"]) <= 12:
            return None
        if int(match["year"]) < EARLIEST_YEAR:  # before this product; year 0 is no date at all
            return None
        at = parse_time(match["at"])
        if at is None:
            return None
        month = datetime(int(match["year"]), int(match["month"]), 1, tzinfo=UTC)
        hours = float(match["hours"])
        if month > month_start(now) or at > now + CLOCK_SKEW:
            return None  # counted in the future
        if not month <= at <= next_month(month) + CLOCK_SKEW:
            return None  # counted outside its own month
        if hours > hours_between(month, min(at, next_month(month))) + HOURS_SLACK:
            return None  # more hours than its month had by then
        return cls(month, hours, at)


def month_hours(instance: dict[str, Any], now: datetime) -> float:
    """This month's running hours (UTC), unrounded, for the instance as DescribeInstances says."""
    start = month_start(now)
    tag = MonthTag.parse(tags_of(instance).get(MONTH_HOURS_TAG), now)
    hours, counted_until = 0.0, start
    if tag is not None and tag.month == start:
        hours, counted_until = tag.hours, max(start, tag.at)
    launched = launched_at(instance)
    if instance.get("State", {}).get("Name") in STATES_THAT_COUNT and launched is not None:
        # At < LaunchTime: the tag is from an earlier session, this one has not counted yet.
        hours += hours_between(max(counted_until, launched), now)
    return min(hours, hours_between(start, now))


def parse_price(text: str) -> float | None:
    """USD per hour: None for "" (unknown); ValueError for anything but a finite number >= 0."""
    if not text.strip():
        return None
    price = float(text)
    if not 0 <= price < math.inf:  # nan too
        raise ValueError(f"{text!r} is not a price in USD per hour")
    return price


def rounded(value: Decimal, places: str) -> float:
    """Half up, in decimal (no binary-float surprise at .x5): the page's text and the JSON's
    number are then the same figure."""
    return float(value.quantize(Decimal(places), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Month:
    """The `month` object: the cost is the shown hours (0.1 h) times the price, to the cent."""

    month: str  # "2026-11"
    hours: float  # to 0.1 h
    price_per_hour_usd: float | None = None  # None: unknown (no cost shown)
    price_note: str | None = None  # "list price", "admin's price"

    @classmethod
    def of(
        cls,
        instance: dict[str, Any],
        now: datetime,
        price_per_hour_usd: float | None,
        price_note: str,
    ) -> Month:
        known = price_per_hour_usd is not None
        return cls(
            month=f"{month_start(now):%Y-%m}",
            hours=rounded(Decimal(repr(month_hours(instance, now))), "0.1"),
            price_per_hour_usd=price_per_hour_usd,
            price_note=(price_note.strip() or None) if known else None,
        )

    @property
    def estimated_cost_usd(self) -> float | None:
        if self.price_per_hour_usd is None:
            return None
        return rounded(Decimal(repr(self.hours)) * Decimal(repr(self.price_per_hour_usd)), "0.01")

    def as_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "hours": self.hours,
            "estimated_cost_usd": self.estimated_cost_usd,
            "price_per_hour_usd": self.price_per_hour_usd,
            "price_note": self.price_note,
        }

    def line(self) -> str:
        """The page's line: 'This month: 37.2 h running ≈ $44.79 (list price).', or without the
        cost when the price is unknown."""
        text = f"This month: {self.hours:.1f} h running"
        cost = self.estimated_cost_usd
        if cost is not None:
            text += f" ≈ ${cost:.2f}" + (f" ({self.price_note})" if self.price_note else "")
        return text + "."
