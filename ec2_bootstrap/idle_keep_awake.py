"""Keep-awake requests: "keep the machine awake until <time>", which count as activity until then.

Two places ask, and the latest request wins (so a link's `hours=0` cancels an earlier click):
  - the start link's /v1/keep-awake writes the instance tag idle_tags.KEEP_AWAKE_TAG,
    "until=<ISO> set=<ISO>", which the checker reads through the instance metadata's tags
    (IMDSv2; no AWS API call, no credentials);
  - JupyterLab's "Keep awake" buttons: jupyter_idle_api.py, as the service user, writes
    layout.Paths.keep_awake {"until", "set_at"}, read here never through a symlink.
A request counts only when it was set no later than now (plus CLOCK_SKEW), ends after now, and
spans at most max_keep_awake_hours: the service user writes its file, and a longer one would
keep a GPU billed; a user who rewrites it forever is running code, which keeps it awake anyway.
Standard library only (idle_check.py).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import urllib.error
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from idle_decision import CLOCK_SKEW, parse_time
from idle_tags import KEEP_AWAKE_TAG
from imds import Metadata
from rootfs import read_regular

logger = logging.getLogger("jupyter_on_demand.idle")

TAG_VALUE = re.compile(r"until=(\S+) set=(\S+)")


@dataclass(frozen=True)
class Request:
    until: datetime
    set_at: datetime
    source: str  # "start link" or "JupyterLab"


def tag_value(until: datetime, set_at: datetime) -> str:
    """The tag's value as the start link writes it."""
    return f"until={iso(until)} set={iso(set_at)}"


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_tag(value: str) -> Request | None:
    match = TAG_VALUE.fullmatch(value.strip())
    if match is None:
        return None
    until, set_at = parse_time(match.group(1)), parse_time(match.group(2))
    if until is None or set_at is None:
        return None
    return Request(until, set_at, "start link")


def parse_file(raw: bytes | None) -> Request | None:
    try:
        record = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # [[[[…]]]]: the user's file
        return None
    if not isinstance(record, dict):
        return None
    until, set_at = parse_time(record.get("until")), parse_time(record.get("set_at"))
    if until is None or set_at is None:
        return None
    return Request(until, set_at, "JupyterLab")


def read_tag(imds_url: str) -> str | None:
    """The keep-awake tag through IMDSv2; None when there is none, tags aren't enabled in the
    metadata, or there is no metadata service (a laptop, the VM test): never an error."""
    try:
        found = Metadata(imds_url).get(f"/latest/meta-data/tags/instance/{KEEP_AWAKE_TAG}")
        return None if found is None else found.decode()
    except urllib.error.HTTPError as error:
        if error.code != 404:  # a 404 here is the token's (a wrong endpoint): quiet, as no tag
            logger.warning("instance metadata: HTTP %s reading the keep-awake tag", error.code)
        return None
    except (OSError, ValueError, UnicodeDecodeError, http.client.HTTPException):
        return None


def find_requests(imds_url: str | None, file: Path | None) -> list[Request]:
    found = []
    if imds_url:
        value = read_tag(imds_url)
        request = parse_tag(value) if value is not None else None
        if value is not None and request is None:
            logger.warning(
                "the keep-awake tag %r is not until=<ISO> set=<ISO>: ignored", value[:80]
            )
        if request is not None:
            found.append(request)
    if file is not None:
        request = parse_file(read_regular(file, 4096))
        if request is not None:
            found.append(request)
    return found


def kept_awake_until(found: list[Request], now: datetime, max_hours: float) -> datetime | None:
    """The end of the latest request, which may have passed (the idle clock then starts from it);
    None when there is none, or it was cancelled (until == set), set in the future, or longer
    than max_hours."""
    valid = [r for r in found if r.set_at <= now + CLOCK_SKEW]
    if not valid:
        return None
    latest = max(valid, key=lambda r: r.set_at)
    if latest.until - latest.set_at > timedelta(hours=max_hours) + CLOCK_SKEW:
        logger.warning("a keep-awake request from %s over %g h ignored", latest.source, max_hours)
        return None
    return latest.until if latest.until > latest.set_at else None
