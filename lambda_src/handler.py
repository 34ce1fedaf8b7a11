"""The start link: wakes the team's GPU instance and answers with the Jupyter URL.

Runs in AWS Lambda behind an API Gateway REST API (proxy integration, payload v1):

    GET /v1/start?pass=<team password>[&view=page]   wake the instance if it sleeps
    GET /v1/status?pass=<team password>[&view=page]  report, never start anything
    GET /v1/keep-awake?pass=<team password>&hours=<N>[&view=page]
                                                     keep it awake N hours (0 cancels), waking it
                                                     as /start does if it sleeps

Every answer about the instance carries its `idle` object, read from the tags its idle checker
sets (idle.py), and its `month` object (this month's hours and cost, cost.py), read from another
of those tags; both come with the DescribeInstances call made anyway: no extra AWS call. A start
by the link is told to the team through SNS when the admin set up notifications.

Only the standard library and boto3 (shipped in the Lambda Python runtime) are imported, so
Terraform zips this folder as it is: this module (the decisions, AWS and the password), request.py
(reading the event), idle.py (reading the instance's tags), cost.py (the month's hours and cost)
and reply.py (the JSON answer and the HTML page). This module stays bigger than the others (~600
lines) on purpose: the start, the capacity fallback, the keep-awake tag, the team's notification
and the password check are one flow over one EC2 state, and tests/infrastructure/test_contracts.py
reads this file for the environment it reads and the AWS calls it makes. Configuration is read
from the environment in `Config`: INSTANCE_ID, TEAM_PASS_PARAMETER, JUPYTER_PORT, JUPYTER_SCHEME,
IDLE_MINUTES, INSTANCE_TYPE, FALLBACK_INSTANCE_TYPES, MAX_KEEP_AWAKE_HOURS, PRICE_PER_HOUR_USD,
PRICE_NOTE, NOTIFY_TOPIC_ARN (set by infrastructure/lambda.tf) and JUPYTER_HOST (only the local
demo sets it: a host to report instead of the instance's public DNS name).

The team password is cached per container for at most PASSWORD_MAX_AGE_SECONDS, so a rotation in
SSM reaches every warm container within 5 minutes; a wrong password re-reads it sooner (at most
once per PASSWORD_RECHECK_SECONDS), so whoever types the new password is let in at once.
"""

from __future__ import annotations

import contextvars
import functools
import hmac
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config as ClientConfig
from botocore.exceptions import BotoCoreError, ClientError

from cost import Month, parse_price
from idle import KEEP_AWAKE_TAG, UTC, Idle, KeepAwake, iso, read_idle, with_tag
from reply import Reply, respond
from request import (
    NOT_UTF8_MESSAGE,
    BadRequest,
    Request,
    client_ip,
    describe_event,
    has_undecoded_bytes,
    loggable,
    parse_request,
)

# One line per decision, at INFO. The records reach the runtime's handler on the root logger; with
# the function's JSON log format (infrastructure/lambda.tf logging_config) each becomes one JSON
# object, and the fields `add_request_fields` puts on every record (request_id, route) and the
# `extra` of the last line (outcome, status, state) become its keys. Never logged: the password,
# the query string, headers or anything else the caller chose beyond method and path.
logger = logging.getLogger("jupyter_on_demand.start_link")
logger.setLevel(logging.INFO)
# botocore's debug log prints response bodies (the SSM password among them): never below WARNING.
logging.getLogger("botocore").setLevel(logging.WARNING)

# Every AWS action this module calls. The Terraform policy (infrastructure/iam.tf) grants exactly
# these, and tests/lambda_src/test_least_privilege.py runs the handler under moto with only these.
IAM_ACTIONS = (
    "ec2:CreateTags",
    "ec2:DescribeInstances",
    "ec2:ModifyInstanceAttribute",
    "ec2:StartInstances",
    "sns:Publish",
    "ssm:GetParameter",
)

# The instance sets this tag on itself once Jupyter answers (the wake's last step,
# ec2_bootstrap/boot_secrets.py announce_ready), with the UTC time as value. It means "ready" only when it is newer than the instance's last LaunchTime.
READY_TAG = "jupyter-on-demand:ready-at"

STARTING_MESSAGE = (
    "Jupyter Lab will start in 1-3 min. Wait and reload this request to get the access URL."
)
RUNNING_MESSAGE = (
    "Jupyter Lab already running at {url}. "
    "Remember: it will be inactive again when idle for {idle_minutes} min."
)
PENDING_MESSAGE = "Jupyter Lab is starting. Wait a minute and reload this request."
STOPPING_MESSAGE = (
    "Jupyter Lab is going to sleep. Reload this request in a minute to wake it again."
)
STOPPED_MESSAGE = "Jupyter Lab is asleep. Open the /start link to wake it."
STOPPING_KEEP_AWAKE_MESSAGE = (
    "Jupyter Lab is going to sleep, so nothing was kept awake. Try again in a minute: the link "
    "then wakes it and keeps it awake."
)
GONE_MESSAGE = (
    "The Jupyter instance does not exist any more ({detail}). Ask the admin to run terraform apply."
)
NO_CAPACITY_MESSAGE = (
    "AWS has no free {instance_type} capacity in this zone right now. Retry in a few minutes."
)
SPOT_NO_CAPACITY_MESSAGE = (
    "AWS's spot market has no free {instance_type} capacity in this zone right now (this machine "
    "is a spot instance). Retry in a few minutes. If it lasts, the admin can set "
    'market = "on-demand" in terraform.tfvars and run terraform apply: that replaces the machine '
    "and its disk (the work is in GitHub), and an on-demand machine can also use "
    "fallback_instance_types."
)
SPOT_REQUEST_BUSY_MESSAGE = (
    "AWS can't start this spot machine right now: either it has just gone to sleep (retry in a "
    "minute), or AWS interrupted it and starts it again by itself once spot capacity is back "
    "(reload this page later)."
)
AWS_ERROR_MESSAGE = (
    "AWS did not answer as expected. Retry in a minute; if it persists, tell the admin."
)
MISCONFIGURED_MESSAGE = "The start link is misconfigured. Ask the admin to run terraform apply."
# /keep-awake's answer starts with one of these, then says the state as /start would.
KEPT_AWAKE_MESSAGE = (
    "Kept awake until {until} (UTC) even if nobody works; then it stops after {idle_minutes} min "
    "without work."
)
CANCELLED_MESSAGE = "Keep-awake cancelled: it stops when idle for {idle_minutes} min."
OVER_CAP_MESSAGE = (
    "hours can be at most {cap:g} (the admin's max_keep_awake_hours): use a number from 0 to "
    "{cap:g}, such as 4 (0 cancels)."
)
MISSING_PASS_MESSAGE = "Add ?pass=<team password> to the link."  # noqa: S105 (a message, not a secret)
WRONG_PASS_MESSAGE = "Wrong password."  # noqa: S105 (a message, not a secret)
# The team's notification when the link starts the machine: one sentence ending with the page link.
START_NOTICE = "Jupyter Lab is starting ({why}): {page}"
START_NOTICE_NO_LINK = "Jupyter Lab is starting ({why})."
NOTIFY_SUBJECT = "jupyter-on-demand"  # as the instance's notifications (publish_verdict.py)

# What StartInstances answers when EC2 can't place the instance now. InsufficientInstanceCapacity
# for both markets; for a stopped spot instance its message reads "You can't start the Spot
# Instance 'i-...' because there is no available Spot capacity" (seen in
# github.com/eformat/sno-for-100/issues/15). The EC2 API's error list
# (docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html, quoted in
# github.com/aws/aws-parallelcluster-node/pull/673, which fails over on the same codes) adds
# UnfulfillableCapacity ("not enough spare capacity to fulfill your request for Spot Instances"),
# InsufficientCapacity and SpotMaxPriceTooLow (the spot price is above the request's maximum):
# all mean "not now, not at this price", never a fault of this stack.
NO_CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "UnfulfillableCapacity",
        "SpotMaxPriceTooLow",
    }
)
# A persistent spot request that is not `disabled` refuses StartInstances: for a short while after
# the instance stopped itself (marked-for-stop -> disabled: github.com/hashicorp/
# terraform-provider-aws/issues/33399), and after an AWS interruption, when "only Amazon EC2 can
# restart an interrupted stopped Spot Instance" (EC2 User Guide, interruption-behavior.html).
SPOT_REQUEST_BUSY_CODE = "IncorrectSpotRequestState"

# One WARNING line per refused password, never the password itself. The CloudWatch metric filter
# of infrastructure/monitoring.tf counts lines holding this exact phrase; keep both in step
# (tests/infrastructure/test_monitoring.py runs the handler and checks the filter against its log).
REFUSED_PASSWORD_LOG = "refused a wrong password"  # noqa: S105 (a log phrase, not a secret)

# A rotated password reaches a warm container within this many seconds (the issue promises 5 min).
PASSWORD_MAX_AGE_SECONDS = 300
# A wrong password re-reads SSM when the cached one is at least this old, and a flood of wrong
# passwords causes at most one SSM read per this many seconds and container.
PASSWORD_RECHECK_SECONDS = 30


@dataclass(frozen=True)
class Config:
    instance_id: str
    team_pass_parameter: str
    jupyter_port: int = 8443
    jupyter_scheme: str = "https"
    idle_minutes: str = "40"
    # var.instance_type: what every start tries first, even after a session on a fallback type.
    # Empty (the local demo and the benchmarks): the instance's current type.
    instance_type: str = ""
    fallback_instance_types: tuple[str, ...] = ()
    jupyter_host: str = ""
    max_keep_awake_hours: float = 12.0
    price_per_hour_usd: float | None = None  # None: unknown, the answer shows hours only
    price_note: str = ""  # "list price" (Terraform's table) or "admin's price"
    notify_topic_arn: str = ""  # "": notifications are off

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        missing = [name for name in ("INSTANCE_ID", "TEAM_PASS_PARAMETER") if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        fallbacks = env.get("FALLBACK_INSTANCE_TYPES", "")
        try:
            port = int(env.get("JUPYTER_PORT") or "8443")
        except ValueError as error:
            raise ConfigError(f"JUPYTER_PORT is not a number: {error}") from error
        try:
            max_hours = float(env.get("MAX_KEEP_AWAKE_HOURS") or "12")
        except ValueError as error:
            raise ConfigError(f"MAX_KEEP_AWAKE_HOURS is not a number: {error}") from error
        if not 0 <= max_hours < math.inf:  # nan too
            raise ConfigError(f"MAX_KEEP_AWAKE_HOURS is {max_hours}, not a number of hours")
        price_text = env.get("PRICE_PER_HOUR_USD", "")
        try:
            price = parse_price(price_text)
        except ValueError:
            # The price only informs: a bad one must not break the start link. Said each request.
            logger.warning(
                "PRICE_PER_HOUR_USD is %s, not a price in USD per hour: answering without a cost "
                "(set price_per_hour_usd in terraform.tfvars and run terraform apply)",
                loggable(repr(price_text), 40),
            )
            price = None
        return cls(
            instance_id=env["INSTANCE_ID"],
            team_pass_parameter=env["TEAM_PASS_PARAMETER"],
            jupyter_port=port,
            jupyter_scheme=env.get("JUPYTER_SCHEME", "https"),
            idle_minutes=env.get("IDLE_MINUTES", "40"),
            instance_type=env.get("INSTANCE_TYPE", "").strip(),
            fallback_instance_types=tuple(t.strip() for t in fallbacks.split(",") if t.strip()),
            jupyter_host=env.get("JUPYTER_HOST", ""),
            max_keep_awake_hours=max_hours,
            price_per_hour_usd=price,
            price_note=env.get("PRICE_NOTE", ""),
            notify_topic_arn=env.get("NOTIFY_TOPIC_ARN", "").strip(),
        )

    @property
    def idle_minutes_number(self) -> float:
        try:
            return float(self.idle_minutes)
        except ValueError:
            return 0.0


class ConfigError(Exception):
    """The Lambda's environment is incomplete: a deploy problem, not a user one."""


# --- AWS clients and the cached password -------------------------------------------------------


# A notification is a courtesy told after the start has happened: a slow or failing SNS may cost
# the answer at most ~6 s (2 tries of 1 s to connect and 2 s to read), within the function's 15 s.
CLIENT_CONFIGS = {
    "sns": ClientConfig(
        connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}
    ),
}


@functools.cache
def client(service: str) -> Any:
    """One boto3 client per service and container, created on first use (after moto starts).

    Any: boto3 ships no types (pyproject.toml's mypy section)."""
    return boto3.client(service, config=CLIENT_CONFIGS.get(service))


@dataclass(frozen=True)
class CachedPassword:
    value: bytes
    read_at: float  # when SSM last answered with it
    checked_at: float  # when SSM was last asked (answered or not)


class PasswordCache:
    """The team password from SSM, per parameter name, re-read when stale or possibly rotated.

    - Older than `max_age`: read again before any comparison, so the old password stops working
      within `max_age` of a rotation. If that read fails, the request fails (503): a stale
      password is never trusted.
    - A wrong password while the cached one is at least `recheck` old (since SSM was last asked):
      read once more and compare again, so the new password works at once after a rotation. A
      flood of wrong passwords therefore costs at most one SSM read per `recheck` seconds.
    Nothing here counts failures or locks anyone out. `clock` is monotonic seconds (intervals
    only, never a time of day); tests replace it.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = PASSWORD_MAX_AGE_SECONDS,
        recheck: float = PASSWORD_RECHECK_SECONDS,
    ) -> None:
        self.clock = clock
        self.max_age = max_age
        self.recheck = recheck
        self._cached: dict[str, CachedPassword] = {}

    def clear(self) -> None:
        self._cached.clear()

    def matches(self, parameter_name: str, given: bytes) -> bool:
        """Constant-time comparison of `given` with the team password (UTF-8 bytes)."""
        now = self.clock()
        cached = self._cached.get(parameter_name)
        if cached is None or now - cached.read_at >= self.max_age:
            cached = self._read(parameter_name, now)
        if hmac.compare_digest(given, cached.value):
            return True
        if now - cached.checked_at < self.recheck:
            return False
        logger.info(
            "wrong password while the cached one is %.0f s old: re-reading it in case it was rotated",
            now - cached.read_at,
        )
        self._cached[parameter_name] = CachedPassword(cached.value, cached.read_at, now)
        cached = self._read(parameter_name, now)
        return hmac.compare_digest(given, cached.value)

    def _read(self, parameter_name: str, now: float) -> CachedPassword:
        response = client("ssm").get_parameter(Name=parameter_name, WithDecryption=True)
        cached = CachedPassword(response["Parameter"]["Value"].encode(), now, now)
        self._cached[parameter_name] = cached
        return cached


PASSWORDS = PasswordCache()


def check_password(given: str | None, config: Config, route: str, client_ip: str) -> None:
    """Pass, or raise BadRequest: 401 without a password, 403 for a wrong one (logged once)."""
    if not given:
        raise BadRequest(401, MISSING_PASS_MESSAGE)
    if PASSWORDS.matches(config.team_pass_parameter, given.encode()):
        return
    # Checked only now, so a real password that happens to contain "%ff" still works.
    if has_undecoded_bytes(given):
        raise BadRequest(400, NOT_UTF8_MESSAGE)
    logger.warning("%s on %s from %s", REFUSED_PASSWORD_LOG, route, client_ip)
    raise BadRequest(403, WRONG_PASS_MESSAGE)


# --- The decisions -----------------------------------------------------------------------------


def describe(instance_id: str) -> dict[str, Any] | None:
    """The instance's description, or None when EC2 does not know the id."""
    try:
        response = client("ec2").describe_instances(InstanceIds=[instance_id])
    except ClientError as error:
        if error.response["Error"]["Code"].startswith("InvalidInstanceID"):
            return None
        raise
    instances: list[dict[str, Any]] = [
        instance
        for reservation in response.get("Reservations", [])
        for instance in reservation.get("Instances", [])
    ]
    return instances[0] if instances else None


def jupyter_url(instance: dict[str, Any], config: Config) -> str | None:
    host = config.jupyter_host or instance.get("PublicDnsName") or instance.get("PublicIpAddress")
    if not host:
        return None
    return f"{config.jupyter_scheme}://{host}:{config.jupyter_port}/lab"


def is_ready(instance: dict[str, Any]) -> bool:
    """True once the instance tagged itself ready after its latest launch."""
    tags = {t.get("Key"): t.get("Value") for t in instance.get("Tags", [])}
    launched = instance.get("LaunchTime")
    try:
        ready_at = datetime.fromisoformat(tags[READY_TAG])
    except (KeyError, TypeError, ValueError):
        return False
    return isinstance(launched, datetime) and ready_at.tzinfo is not None and ready_at >= launched


def status_reply(instance: dict[str, Any], config: Config) -> Reply | None:
    """The answer for every state but `stopped`; None when the instance is stopped."""
    state = instance["State"]["Name"]
    if state == "running":
        url = jupyter_url(instance, config)
        if url is None:
            logger.info("instance running but has no public address yet")
            return Reply(200, PENDING_MESSAGE, "pending", ready=False)
        message = RUNNING_MESSAGE.format(url=url, idle_minutes=config.idle_minutes)
        return Reply(200, message, state, url=url, ready=is_ready(instance))
    if state == "pending":
        return Reply(200, PENDING_MESSAGE, state, ready=False)
    if state == "stopping":
        return Reply(200, STOPPING_MESSAGE, state, ready=False)
    if state == "stopped":
        return None
    logger.error("instance %s is %s: the stack needs terraform apply", config.instance_id, state)
    return Reply(500, GONE_MESSAGE.format(detail=state), state)


def set_instance_type(instance_type: str, config: Config) -> None:
    client("ec2").modify_instance_attribute(
        InstanceId=config.instance_id, InstanceType={"Value": instance_type}
    )


def return_to_configured_type(current_type: str, config: Config) -> str:
    """The type the instance has after this: the configured one, unless switching back failed.

    A fallback type lasts one session: the start after it tries the configured type again. If the
    switch is refused (an IAM policy without ModifyInstanceAttribute, say), the instance still
    starts, as it is, and the log says why.
    """
    configured = config.instance_type
    if not configured or current_type == configured:
        return current_type
    try:
        set_instance_type(configured, config)
    except ClientError:
        logger.exception(
            "could not switch back from %s to the configured type %s; starting as %s",
            current_type,
            configured,
            current_type,
        )
        return current_type
    logger.info("switched back from %s to the configured type %s", current_type, configured)
    return configured


def is_spot(instance: dict[str, Any]) -> bool:
    return instance.get("InstanceLifecycle") == "spot"


def start(instance: dict[str, Any], config: Config) -> Reply:
    """Start a stopped instance on its configured type, or on a fallback type for lack of capacity.

    A spot instance starts as it is: "While a Spot Instance is stopped, you can modify some of
    its instance attributes, but not the instance type" (EC2 User Guide,
    interruption-behavior.html), so no fallback type can help it; its answer says what the admin
    can do instead."""
    spot = is_spot(instance)
    if spot:
        current_type = configured = instance.get("InstanceType", "")
        candidates = [current_type]
    else:
        current_type = return_to_configured_type(instance.get("InstanceType", ""), config)
        configured = config.instance_type or current_type
        candidates = list(
            dict.fromkeys([current_type, configured, *config.fallback_instance_types])
        )
    no_capacity: list[str] = []
    for index, instance_type in enumerate(candidates):
        if index > 0:
            logger.warning(
                "no capacity for %s; switching to %s", candidates[index - 1], instance_type
            )
            set_instance_type(instance_type, config)
        try:
            client("ec2").start_instances(InstanceIds=[config.instance_id])
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in NO_CAPACITY_CODES:
                logger.warning("%s for %s", code, instance_type)
                no_capacity.append(instance_type)
                continue
            if code == "IncorrectInstanceState":
                logger.info("instance changed state while starting: %s", code)
                return Reply(200, STOPPING_MESSAGE, "stopping", ready=False)
            if spot and code == SPOT_REQUEST_BUSY_CODE:
                logger.warning("the spot request refuses a start now (%s)", code)
                return Reply(503, SPOT_REQUEST_BUSY_MESSAGE, "stopped")
            raise
        logger.info("started instance %s as %s", config.instance_id, instance_type)
        message = STARTING_MESSAGE
        if no_capacity:
            message += (
                f" AWS had no {' or '.join(no_capacity)} capacity,"
                f" so it runs as {instance_type} this time."
            )
        elif instance_type != configured:
            message += f" It runs as {instance_type} this time."
        return Reply(200, message, "pending", ready=False)
    logger.warning("no %scapacity for any of %s", "spot " if spot else "", ", ".join(candidates))
    message = SPOT_NO_CAPACITY_MESSAGE if spot else NO_CAPACITY_MESSAGE
    return Reply(503, message.format(instance_type=" or ".join(candidates)), "stopped")


def tell_the_team(sentence: str, config: Config) -> None:
    """Publish one sentence to the admin's SNS topic, if there is one. A failure is logged and
    the answer goes on: the start it tells about has happened."""
    if not config.notify_topic_arn:
        return
    try:
        client("sns").publish(
            TopicArn=config.notify_topic_arn, Subject=NOTIFY_SUBJECT, Message=sentence
        )
    except (ClientError, BotoCoreError):
        logger.exception("could not tell the team through SNS; answering without it")
        return
    logger.info("told the team: %s", sentence)


def start_notice(request: Request) -> str:
    """The sentence for a start by the link, with the status page (never the password)."""
    if request.route == "/keep-awake" and request.hours is not None:
        why = f"someone asked to keep it awake for {request.hours:g} h"
    else:
        why = "someone opened the start link"
    if request.page is None:
        return START_NOTICE_NO_LINK.format(why=why)
    return START_NOTICE.format(why=why, page=request.page)


def check_hours(request: Request, config: Config) -> None:
    """/keep-awake's hours within the admin's cap, or BadRequest (400) saying the range."""
    if request.hours is not None and request.hours > config.max_keep_awake_hours:
        raise BadRequest(400, OVER_CAP_MESSAGE.format(cap=config.max_keep_awake_hours))


def tag_keep_awake(asked: KeepAwake, config: Config) -> str:
    """Tag the instance KEEP_AWAKE_TAG with the request (the idle checker reads it through the
    instance metadata); the answer's first sentence."""
    client("ec2").create_tags(
        Resources=[config.instance_id], Tags=[{"Key": KEEP_AWAKE_TAG, "Value": asked.value()}]
    )
    if asked.cancelled:
        logger.info("keep-awake cancelled: the idle clock runs again")
        return CANCELLED_MESSAGE.format(idle_minutes=config.idle_minutes)
    logger.info("kept awake until %s, as asked", iso(asked.until))
    return KEPT_AWAKE_MESSAGE.format(until=iso(asked.until), idle_minutes=config.idle_minutes)


def idle_of(instance: dict[str, Any], now: datetime, config: Config) -> Idle:
    """The idle object; its tags are the instance's (a notebook can write them, with the
    instance role's credentials): whatever they hold, the answer never fails for it."""
    try:
        return read_idle(instance, now, config.idle_minutes_number)
    except Exception:
        logger.exception("the instance's idle tags could not be read; answering without them")
        return Idle(idle_minutes=config.idle_minutes_number)


def month_of(instance: dict[str, Any], now: datetime, config: Config) -> Month | None:
    """The month object, from a tag a notebook can write: whatever it holds, the answer never
    fails for it (the object is left out, and the log says why)."""
    try:
        return Month.of(instance, now, config.price_per_hour_usd, config.price_note)
    except Exception:
        logger.exception("the instance's month-hours tag could not be read; answering without it")
        return None


def utc_now() -> datetime:
    """The time of day every answer is computed at (tests replace it to test a month's end)."""
    return datetime.now(UTC)


def handle(request: Request, config: Config, now: datetime | None = None) -> Reply:
    now = now or utc_now()
    instance = describe(config.instance_id)
    if instance is None:
        logger.error("instance %s not found: the stack needs terraform apply", config.instance_id)
        return Reply(500, GONE_MESSAGE.format(detail="unknown instance id"), "unknown")
    reply = status_reply(instance, config)
    if reply is not None and reply.status >= 500:
        return reply
    said = ""
    cancel = False
    if request.route == "/keep-awake" and request.hours is not None:
        if reply is not None and reply.state == "stopping":
            # A stopping machine can't be woken yet; a request now would keep the next session
            # awake while this answer said nothing had happened.
            return Reply(409, STOPPING_KEEP_AWAKE_MESSAGE, "stopping", ready=False)
        asked = KeepAwake.for_hours(now, request.hours)
        cancel = asked.cancelled
        said = tag_keep_awake(asked, config) + " "
        instance = with_tag(instance, KEEP_AWAKE_TAG, asked.value())
    if reply is None:  # stopped
        if request.route == "/status" or cancel:  # a cancel never starts the machine
            reply = Reply(200, STOPPED_MESSAGE, "stopped", ready=False)
        else:
            reply = start(instance, config)
            if reply.state == "pending":  # this request started it
                tell_the_team(start_notice(request), config)
    return replace(
        reply,
        message=said + reply.message,
        idle=idle_of(instance, now, config),
        now=now,
        max_keep_awake_hours=config.max_keep_awake_hours,
        keep_awake=request.route == "/keep-awake",
        month=month_of(instance, now, config),
    )


# --- Logging -----------------------------------------------------------------------------------

# The fields of the request being answered, which `add_request_fields` puts on every record.
REQUEST_FIELDS: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "request_fields", default=None
)


def add_request_fields(record: logging.LogRecord) -> bool:
    """A filter of this module's logger: request_id and route on each record (never overwritten)."""
    for name, value in (REQUEST_FIELDS.get() or {}).items():
        if not hasattr(record, name):
            setattr(record, name, value)
    return True


logger.addFilter(add_request_fields)


@contextmanager
def request_fields(context: Any) -> Iterator[None]:
    """The request id (Lambda's `context.aws_request_id`) on every record logged inside."""
    request_id = getattr(context, "aws_request_id", None)
    fields: dict[str, str | None] = {
        "request_id": loggable(request_id, 64) if isinstance(request_id, str) else None,
        "route": None,
    }
    token = REQUEST_FIELDS.set(fields)
    try:
        yield
    finally:
        REQUEST_FIELDS.reset(token)


def note_route(route: str) -> None:
    """Add the parsed route (one of ROUTES, never the raw path) to the request's log fields."""
    fields = REQUEST_FIELDS.get()
    if fields is not None:
        REQUEST_FIELDS.set({**fields, "route": route})


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    with request_fields(context):
        view, reply, outcome = answer(event)
        # The one line per request: its `outcome` is "answered" (the instance's `state` says what
        # happened), "rejected" (a 4xx: no or a wrong password, a malformed request),
        # "misconfigured" or "aws_error".
        logger.info(
            "%s -> %s %s",
            describe_event(event),
            reply.status,
            reply.state,
            extra={"outcome": outcome, "status": reply.status, "state": reply.state},
        )
    return respond(reply, view)


def answer(event: Any) -> tuple[str, Reply, str]:
    """(view, reply, outcome) for one event; every failure becomes a reply."""
    view = "json"
    try:
        request = parse_request(event)
        view = request.view
        note_route(request.route)
        config = Config.from_env()
        check_password(request.password, config, request.route, client_ip(event))
        check_hours(request, config)
        return view, handle(request, config), "answered"
    except BadRequest as error:
        return view, Reply(error.status, error.message), "rejected"
    except ConfigError:
        logger.exception("the Lambda is misconfigured")
        return view, Reply(500, MISCONFIGURED_MESSAGE), "misconfigured"
    except (ClientError, BotoCoreError):
        logger.exception("AWS call failed")
        return view, Reply(503, AWS_ERROR_MESSAGE), "aws_error"
