"""The idle checker's verdict, told: awake because of what, or idle since when and stopping when.

Each run writes it to Options.verdict_file (root's, world-readable: JupyterLab's status item reads
it through jupyter_idle_api.py), and, when it changed materially, tags the instance with it
(idle_tags.VERDICT_TAGS, through Options.publish_command: publish_verdict.py in the venv), which the
start link reads for free with the DescribeInstances it makes anyway. "Materially": the kind of
state, the reasons (their figures aside: a GPU at 87 % then 91 % is the same reason), the
keep-awake time, or a stop time moved by PUBLISH_SLACK or more; so a teammate saving every minute
costs one CreateTags call per PUBLISH_SLACK, and the published stop time is never later than the
real one. Before the machine stops itself, the stop reason is tagged too (stop_tags), with the
month's hours (idle_month.py): the session's final figure. The same command carries the team's
messages (idle_notify.py). Standard library only (idle_check.py).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
from datetime import timedelta
from typing import Any

from idle_decision import Options, Verdict, parse_time
from idle_keep_awake import iso
from idle_tags import (
    AWAKE_BECAUSE_TAG,
    IDLE_SINCE_TAG,
    MONTH_HOURS_TAG,
    STOP_REASON_TAG,
    STOPPED_AT_TAG,
    STOPS_AT_TAG,
    VERDICT_AT_TAG,
)

logger = logging.getLogger("jupyter_on_demand.idle")

PUBLISH_SLACK = timedelta(minutes=5)
KINDS = ("state", "reasons", "kept_awake_until", "keep_awake_requested_at")  # any change: told
TAG_VALUE_CHARS = 256  # EC2's limit
KEPT_AWAKE = "kept awake until "
FIGURES = re.compile(r"\d+(\.\d+)? ?%")


def view(verdict: Verdict, options: Options) -> dict[str, Any]:
    """What the status item, the start page and the tags say; times ISO 8601 UTC."""
    stops_at = verdict.stops_at
    busy = [reason for reason in verdict.active if not reason.startswith(KEPT_AWAKE)]
    state = "busy" if busy else "kept-awake" if verdict.active else "idle"
    if verdict.action == "stop":
        state = "stopping"
    warn_at = None
    if stops_at is not None and options.warn_seconds > 0:  # warn_minutes = 0: no warning
        warn_at = stops_at - timedelta(seconds=min(options.warn_seconds, options.idle_seconds / 4))
    return {
        "state": state,
        "stops_at": iso(stops_at) if stops_at else None,
        "warn_at": iso(warn_at) if warn_at else None,
        "idle_since": iso(verdict.last_active) if stops_at else None,
        "idle_minutes": options.idle_seconds / 60,
        "warn_minutes": options.warn_seconds / 60,
        "awake_because": list(verdict.active),
        "kept_awake_until": iso(verdict.kept_awake_until) if verdict.kept_awake_until else None,
        "keep_awake_requested_at": (
            iso(verdict.keep_awake_requested) if verdict.keep_awake_requested else None
        ),
        "updated_at": iso(verdict.time),
        "max_keep_awake_hours": options.max_keep_awake_seconds / 3600,
    }


def tags(told: dict[str, Any]) -> dict[str, str]:
    """A keep-awake first (it must survive the cut at EC2's limit), and no reason can fake the
    separator (a notebook named "a | kept awake until 2099-…")."""
    reasons = sorted(told["awake_because"], key=lambda reason: not reason.startswith(KEPT_AWAKE))
    return {
        AWAKE_BECAUSE_TAG: " | ".join(r.replace("|", "/") for r in reasons)[:TAG_VALUE_CHARS],
        STOPS_AT_TAG: told["stops_at"] or "",
        IDLE_SINCE_TAG: told["idle_since"] or "",
        VERDICT_AT_TAG: told["updated_at"],
    }


def stop_tags(told: dict[str, Any], reason: str, month_hours: str | None) -> dict[str, str]:
    """The tags set just before the machine stops itself: the next start page says why, and the
    month's hours as counted at the stop (idle_month.tag_value; None: not known, not told)."""
    values = {
        **tags(told),
        AWAKE_BECAUSE_TAG: "",
        STOPS_AT_TAG: "",
        STOP_REASON_TAG: reason[:TAG_VALUE_CHARS],
        STOPPED_AT_TAG: told["updated_at"],
    }
    if month_hours is not None:
        values[MONTH_HOURS_TAG] = month_hours
    return values


def summary(told: dict[str, Any]) -> dict[str, Any]:
    """What a material change is judged on (kept in the idle state as `published`)."""
    return {
        "state": told["state"],
        "reasons": [FIGURES.sub("%", reason) for reason in told["awake_because"]],
        "stops_at": told["stops_at"],
        "kept_awake_until": told["kept_awake_until"],
        "keep_awake_requested_at": told["keep_awake_requested_at"],
    }


def changed(published: object, told: dict[str, Any]) -> bool:
    if not isinstance(published, dict):
        return True
    now = summary(told)
    if any(published.get(key) != now[key] for key in KINDS):
        return True
    before, after = parse_time(published.get("stops_at")), parse_time(now["stops_at"])
    if before is None or after is None:
        return before != after
    return abs(after - before) >= PUBLISH_SLACK


def publish(
    options: Options,
    values: dict[str, str],
    timeout: float = 30,
    what: str = "tag the instance with the verdict",
) -> bool:
    """Tag the instance and/or tell the team with the checker's publish command (run_publish);
    False when there is none or it failed, which is retried at a later run."""
    if not options.publish_command:
        return False
    return run_publish(options.publish_command, values, timeout, what)


def run_publish(command: str, values: dict[str, str], timeout: float, what: str) -> bool:
    """Run `command` (publish_verdict.py: the tags and the message as JSON on its stdin); False
    when it failed, which is logged (`what` failed). Never raises: a stop comes after it. The
    idle checker's and the spot watcher's one way to reach AWS."""
    try:
        result = subprocess.run(
            shlex.split(command),
            input=json.dumps(values),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except Exception as error:  # OSError, a timeout, a broken command line: said, not raised
        logger.error("could not %s: %s", what, error)
        return False
    if result.returncode != 0:
        logger.error(
            "could not %s (%s): %s",
            what,
            result.returncode,
            result.stderr.strip()[-500:],
        )
        return False
    return True
