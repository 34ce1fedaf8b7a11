"""What the start link reads from an API Gateway REST (v1) proxy event: the route, the password,
the view and (for /keep-awake) the hours, the status page's address (for the team's
notification), and what of the event may be logged.

Pure functions of the event: no AWS, no configuration. handler.py decides what to do with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from reply import VIEWS

NOT_UTF8_MESSAGE = (
    "The link's query string is not valid UTF-8 text. Copy the start link again, exactly as sent."
)

MAX_PARAMETER_LENGTH = 1024
ROUTES = ("/start", "/status", "/keep-awake")
NOT_FOUND_MESSAGE = "Not found. Use /v1/start, /v1/status or /v1/keep-awake."
PARAMETERS = ("pass", "view", "hours")

# /keep-awake's hours: a plain decimal number (no sign, exponent, inf or nan). The cap is the
# Lambda's configuration (MAX_KEEP_AWAKE_HOURS), so handler.py checks it.
HOURS = re.compile(r"[0-9]+(\.[0-9]+)?")
NEGATIVE_HOURS = re.compile(r"-[0-9]+(\.[0-9]+)?")
MISSING_HOURS_MESSAGE = (
    "Add &hours=<number> to the keep-awake link: how many hours to keep the machine awake, "
    "such as 4 (0 cancels)."
)
MALFORMED_HOURS_MESSAGE = "hours must be a number of hours such as 4 or 1.5 (0 cancels)."
NEGATIVE_HOURS_MESSAGE = "hours can't be negative: use a number of hours such as 4, or 0 to cancel."


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    route: str  # one of ROUTES
    password: str | None
    view: str  # one of reply.VIEWS
    hours: float | None = None  # /keep-awake only: 0 or more
    page: str | None = None  # the status page without the password; None when the event can't say


def parse_request(event: Any) -> Request:
    """The request in an API Gateway v1 proxy event, or raise BadRequest."""
    if not isinstance(event, dict):
        raise BadRequest(400, "Malformed request.")
    method = event.get("httpMethod")
    if method not in ("GET", "HEAD"):
        raise BadRequest(405, "Only GET is supported.")
    route = route_of(event)
    params = query_parameters(event)
    view = params.get("view") or "json"
    if view not in VIEWS:
        raise BadRequest(400, "view must be json or page.")
    hours = parse_hours(params.get("hours")) if route == "/keep-awake" else None
    return Request(route, params.get("pass"), view, hours, page_link(event))


def parse_hours(value: str | None) -> float:
    """0 or more hours, or BadRequest saying what to type."""
    if value is None or not value.strip():
        raise BadRequest(400, MISSING_HOURS_MESSAGE)
    if NEGATIVE_HOURS.fullmatch(value):
        raise BadRequest(400, NEGATIVE_HOURS_MESSAGE)
    if not HOURS.fullmatch(value):
        raise BadRequest(400, MALFORMED_HOURS_MESSAGE)
    return float(value)


def route_of(event: dict[str, Any]) -> str:
    path = event.get("resource") or event.get("path")
    if not isinstance(path, str):
        raise BadRequest(404, NOT_FOUND_MESSAGE)
    path = path.rstrip("/")
    if path.startswith("/v1/"):
        path = path[len("/v1") :]
    if path not in ROUTES:
        raise BadRequest(404, NOT_FOUND_MESSAGE)
    return path


def is_text(value: str) -> bool:
    """False for what no UTF-8 query string decodes to: lone surrogates (which a UTF-8 encode, and
    so the Lambda runtime's log and response writers, refuse) and U+FFFD, which a decoder leaves in
    place of bytes that are not UTF-8."""
    return "\ufffd" not in value and not any("\ud800" <= char <= "\udfff" for char in value)


def check_query_text(multi: Any, single: Any) -> None:
    """Every parameter name and value, repeated values included, must be text."""
    for params in (multi, single):
        if not isinstance(params, dict):
            continue
        for name, values in params.items():
            for item in [name, *(values if isinstance(values, list) else [values])]:
                if isinstance(item, str) and not is_text(item):
                    raise BadRequest(400, NOT_UTF8_MESSAGE)


def query_parameters(event: dict[str, Any]) -> dict[str, str]:
    """Single-valued parameters; API Gateway keeps the last value of a repeated parameter."""
    params: dict[str, Any] = {}
    multi = event.get("multiValueQueryStringParameters")
    single = event.get("queryStringParameters")
    check_query_text(multi, single)
    if isinstance(multi, dict):
        for name, values in multi.items():
            if isinstance(values, list) and values:
                params[name] = values[-1]
            elif values is not None:
                params[name] = values
    elif multi is not None:
        raise BadRequest(400, "Malformed query string.")
    if isinstance(single, dict):
        params.update(single)
    elif single is not None:
        raise BadRequest(400, "Malformed query string.")
    for name in PARAMETERS:
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadRequest(400, f"Parameter {name} must be a string.")
        if len(value) > MAX_PARAMETER_LENGTH:
            raise BadRequest(400, f"Parameter {name} is too long.")
    return {k: v for k, v in params.items() if k in PARAMETERS}


def has_undecoded_bytes(value: str) -> bool:
    """True when the value still holds percent-escapes that are not UTF-8 (`%ff%fe`), as a decoder
    that leaves undecodable escapes in place would deliver them."""
    if "%" not in value:
        return False
    try:
        unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def loggable(value: Any, limit: int) -> str:
    """A value from the request, safe to log: ASCII with escapes, so no lone surrogate (which the
    runtime's UTF-8 log writer would raise on) and no line break (which could forge a log line)."""
    return str(value)[:limit].encode("unicode_escape").decode("ascii")


def describe_event(event: Any) -> str:
    """Method and path for the log; never the query string, which holds the password."""
    if not isinstance(event, dict):
        return "malformed event"
    return f"{loggable(event.get('httpMethod'), 10)} {loggable(event.get('path'), 100)}"


# API Gateway's own domain (<api id>.execute-api.<region>.amazonaws.com, or a custom one) and
# stage name; anything else in the event makes no link.
DOMAIN_NAME = re.compile(r"[A-Za-z0-9.-]{1,253}")
STAGE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def page_link(event: dict[str, Any]) -> str | None:
    """https://<domain>/<stage>/status?view=page, from the event's requestContext: the page a
    notification points to. It carries no password (the page asks for it) and nothing of the
    caller's query."""
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return None
    domain, stage = context.get("domainName"), context.get("stage")
    if not (isinstance(domain, str) and DOMAIN_NAME.fullmatch(domain)):
        return None
    if not (isinstance(stage, str) and STAGE.fullmatch(stage)):
        return None
    return f"https://{domain}/{stage}/status?view=page"


IP_ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}")


def client_ip(event: dict[str, Any]) -> str:
    """The caller's address as API Gateway saw it, for the refusal log line; "unknown" otherwise."""
    context = event.get("requestContext")
    identity = context.get("identity") if isinstance(context, dict) else None
    address = identity.get("sourceIp") if isinstance(identity, dict) else None
    return address if isinstance(address, str) and IP_ADDRESS.fullmatch(address) else "unknown"
