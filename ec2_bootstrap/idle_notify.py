"""The idle checker's messages to the team: one short sentence each, ending with the start page's
link, sent through publish_verdict.py's NOTIFY key to the settings' NOTIFY_TOPIC_ARN (SNS; the
admin's notify_emails). Options.notify is on only when that topic is set. No I/O here: what is
due, from the state, the verdict and the time; idle_check.py sends it and marks it sent.
  - the warning, once per idle period (the one idle_decision gives), retried RETRY_AFTER later
    while the warning stands: not after new activity, never after the stop;
  - the stop, with its reason, in the same publish call as the stop tags (idle_check.act);
  - a long session: past Options.long_run_seconds since the boot, then every LONG_RUN_EVERY,
    saying what keeps the machine awake; retried RETRY_AFTER later when it could not be sent.
Never the password, never a command line: the reasons name programs without their arguments
(idle_signals.program), as the tags do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from idle_decision import CLOCK_SKEW, Options, Verdict, parse_time

NOTIFY = "notify"  # publish_verdict.py's key for the message (not a tag)
WARNING_TOLD_KEY = "warning_told"  # in the idle state: the idle period (its start) told about
LONG_RUN_TOLD_KEY = "long_run_told_at"  # in the idle state, per boot: the last long-run message
# In the idle state: when a message last failed to go out; the next try waits RETRY_AFTER, so a
# refused or unreachable SNS costs one publish_verdict.py run (~0.5 s CPU) per RETRY_AFTER, not
# per check, while a failed warning still gets a second try within the warning's 5 minutes.
FAILED_KEY = "notify_failed_at"
RETRY_AFTER = timedelta(minutes=2)
LONG_RUN_EVERY = timedelta(days=1)
SHOWN_REASONS = 3
REASON_CHARS = 80
PID = re.compile(r" \(pid \d+\)")


def link(options: Options) -> str:
    """The start page: it shows the state and asks for the password itself."""
    return f"{options.page_url.rstrip('/')}/status?view=page" if options.page_url else ""


def with_link(text: str, options: Options, joint: str) -> str:
    page = link(options)
    return f"{text}{joint}{page}" if page else f"{text}."


def clock(when: datetime) -> str:
    return f"{when:%H:%M} UTC"


def warning(state: Mapping[str, Any], verdict: Verdict) -> str | None:
    """The idle period whose warning is still to be told, as the key to mark it; None when none.
    Due from the run that warned (idle_decision's `warned_at`) while that warning stands: idle
    past the warning time, before the limit, nothing active since."""
    warned = parse_time(state.get("warned_at"))
    since = verdict.last_active.isoformat()
    if verdict.action not in ("warn", "none") or verdict.active or verdict.idle:
        return None
    if warned is None or warned < verdict.last_active or state.get(WARNING_TOLD_KEY) == since:
        return None
    return since


def warning_message(verdict: Verdict, options: Options) -> str:
    stops_at = verdict.stops_at
    assert stops_at is not None  # nothing active: a warning has a stop time
    return with_link(
        f"Jupyter Lab stops at {clock(stops_at)} because nobody is working", options, ": "
    )


def stopped_message(reason: str, options: Options) -> str:
    return with_link(f"Jupyter Lab stopped: {reason}", options, ". ")


def long_run_due(
    state: Mapping[str, Any], options: Options, now: datetime, booted_at: datetime
) -> bool:
    """Past long_run_seconds since the boot, and never told at this boot or LONG_RUN_EVERY ago.
    A time told ahead of the clock (forged, or a clock set back) is no time told."""
    if (now - booted_at).total_seconds() < options.long_run_seconds:
        return False
    told = parse_time(state.get(LONG_RUN_TOLD_KEY))
    return told is None or told > now + CLOCK_SKEW or now - told >= LONG_RUN_EVERY


def hours(seconds: float) -> str:
    return f"{round(seconds / 3600, 1):g} h"


def long_run_message(verdict: Verdict, options: Options, now: datetime, booted_at: datetime) -> str:
    running = (
        f"Jupyter Lab has been running for {hours((now - booted_at).total_seconds())} "
        f"(since {booted_at:%d %b %H:%M} UTC)"
    )
    reasons = [PID.sub("", reason)[:REASON_CHARS] for reason in verdict.active]
    if reasons:
        shown = ", ".join(reasons[:SHOWN_REASONS])
        more = len(reasons) - SHOWN_REASONS
        awake = f", awake because of {shown}" + (f" and {more} more" if more > 0 else "")
    else:
        stops_at = verdict.stops_at
        awake = "; nobody is working now" + (
            f", it stops at {clock(stops_at)}" if stops_at is not None else ""
        )
    return with_link(running + awake, options, ". ")


def due(
    state: Mapping[str, Any],
    verdict: Verdict,
    options: Options,
    now: datetime,
    booted_at: datetime,
) -> tuple[str, dict[str, str]] | None:
    """The message due at this run (not a stop's), and what to record in the state once it is
    sent; None when none is. The warning first: a long-run message waits for the next run."""
    if not options.notify:
        return None
    failed = parse_time(state.get(FAILED_KEY))
    if failed is not None and failed <= now + CLOCK_SKEW and now - failed < RETRY_AFTER:
        return None
    period = warning(state, verdict)
    if period is not None:
        return warning_message(verdict, options), {WARNING_TOLD_KEY: period}
    if long_run_due(state, options, now, booted_at):
        message = long_run_message(verdict, options, now, booted_at)
        return message, {LONG_RUN_TOLD_KEY: now.isoformat()}
    return None
