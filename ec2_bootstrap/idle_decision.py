"""The idle checker's rule, with no I/O: from what a run saw to stop, warn or nothing.

`decide(state, seen, options, now)` is a pure function: the saved state of the last run, this
run's Observation (idle_signals.py), the Options (idle_check.py's command line) and the time in,
the state to save and the Verdict out. The rule, as the README's "What keeps the machine awake":
  - something active now (a busy kernel, a terminal's job, a busy process or GPU, a boot step)
    restarts the clock;
  - so does an interaction newer than the clock's start (what jupyter_activity.py records, tty
    input), taken at its own time, never later than now;
  - a warning once, min(warn_seconds, a quarter of the limit) before the limit, unless something
    is active; again only after new activity;
  - idle for the limit: stop (would-stop in a dry run).
Times are aware UTC: Jupyter's times are UTC, and a naive one is never read as local time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from idle_tags import DEFAULT_LONG_RUN_HOURS
from layout import DEFAULT_IDLE_MINUTES

UTC = timezone.utc
# How far ahead of this clock a recorded time may be before it is taken as forged or broken.
CLOCK_SKEW = timedelta(seconds=60)

Action = Literal["none", "warn", "stop", "would-stop"]


@dataclass(frozen=True)
class Options:
    """What the checker is told; every duration in seconds (the command line takes minutes)."""

    jupyter_url: str
    token: str
    state_file: Path
    idle_seconds: float = DEFAULT_IDLE_MINUTES * 60
    activity_file: Path | None = None
    dry_run: bool = False
    stop_command: str = "shutdown -h now"
    flush_command: str | None = None
    insecure: bool = False
    min_uid: int = 1000
    process_root: int | None = None
    cpu_percent: float = 10.0
    gpu_percent: float = 10.0
    stuck_busy_seconds: float = 3 * 3600
    stuck_starting_seconds: float = 10 * 60
    warn_seconds: float = 5 * 60
    boot_grace_seconds: float = 30 * 60
    heartbeat_file: Path | None = None
    api_deadline_seconds: float = 30
    # Keep-awake requests (idle_keep_awake.py): the metadata service whose tags hold the start
    # link's, the file that holds JupyterLab's, and how long one may be.
    imds_url: str | None = None
    keep_awake_file: Path | None = None
    max_keep_awake_seconds: float = 12 * 3600
    # Where the verdict goes: a file Jupyter's status item reads, and the command that tags the
    # instance with it (idle_verdict.py).
    verdict_file: Path | None = None
    publish_command: str | None = None
    # Messages to the team (idle_notify.py), sent through publish_command: on when the settings
    # have a NOTIFY_TOPIC_ARN; each ends with the start page's link (PAGE_URL); a session longer
    # than long_run_seconds since the boot is told, then once a day.
    notify: bool = False
    page_url: str = ""
    long_run_seconds: float = DEFAULT_LONG_RUN_HOURS * 3600


@dataclass
class Observation:
    """What one run saw."""

    booted_at: datetime  # where the clock starts when the state holds no time
    active: list[str] = field(default_factory=list)  # reasons the machine is in use right now
    latest: dict[str, datetime] = field(default_factory=dict)  # newest time of each interaction
    notes: list[str] = field(default_factory=list)  # what was seen and did not count, and why
    memory: dict[str, Any] = field(default_factory=dict)  # the signals' records for the next run
    kept_awake_until: datetime | None = None  # a keep-awake request in force (also in `active`)
    keep_awake_requested: datetime | None = (
        None  # when the latest request was made, honoured or not
    )


@dataclass(frozen=True)
class Verdict:
    """What to do, and why; `record()` is the JSON line each run prints."""

    time: datetime
    action: Action
    reason: str
    idle_seconds: float
    idle_limit_seconds: float
    active: list[str]
    last_active: datetime  # where the idle clock starts
    kept_awake_until: datetime | None = None
    keep_awake_requested: datetime | None = None

    @property
    def stops_at(self) -> datetime | None:
        """When the machine stops unless someone works; None while something keeps it awake."""
        if self.active:
            return None
        return self.last_active + timedelta(seconds=self.idle_limit_seconds)

    @property
    def idle(self) -> bool:
        return self.idle_seconds >= self.idle_limit_seconds

    def record(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "idle": self.idle,
            "idle_seconds": round(self.idle_seconds, 1),
            "idle_limit_seconds": self.idle_limit_seconds,
            "reason": self.reason,
            "action": self.action,
            "active": self.active,
        }


def parse_time(value: object) -> datetime | None:
    """An aware UTC datetime from Jupyter's ISO strings ('...Z' or '+00:00'); None otherwise."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:  # Jupyter's times are UTC; never read them as local time
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # 9999-12-31T23:59:59-12:00 is past datetime's range in UTC
        return None


def clock_state(boot_id: str, since: datetime, reason: str) -> dict[str, Any]:
    """A state whose idle clock starts at `since`: at a new boot, or when Jupyter is ready."""
    return {"boot_id": boot_id, "last_active": since.isoformat(), "reason": reason}


def is_stuck(age_seconds: float, cap_seconds: float, cpu_percent: float, options: Options) -> bool:
    """A kernel busy (or a terminal running jobs) for `cap_seconds` at ~0% CPU with nobody
    typing is stuck, or forgotten: it must not bill a GPU forever. A training loop stays busy."""
    return age_seconds >= cap_seconds and cpu_percent < options.cpu_percent


def decide(
    state: Mapping[str, Any], seen: Observation, options: Options, now: datetime
) -> tuple[dict[str, Any], Verdict]:
    """The state to save and what to do; see the module's docstring for the rule."""
    new_state = {**state, **seen.memory}
    last_active = parse_time(state.get("last_active")) or seen.booted_at
    reason = str(state.get("reason", "boot"))
    if seen.active:
        last_active, reason = now, seen.active[0]
    for what, when in seen.latest.items():
        if when > last_active:
            last_active, reason = min(when, now), what
    new_state["last_active"] = last_active.isoformat()
    new_state["reason"] = reason
    # A clock set back (or a start recorded ahead of it) counts as no idle time, never negative.
    idle_seconds = max((now - last_active).total_seconds(), 0.0)
    warn_at = options.idle_seconds - min(options.warn_seconds, options.idle_seconds / 4)
    if seen.active:
        explanation = f"active: {', '.join(seen.active)}"
    else:
        explanation = f"last activity {idle_seconds / 60:.1f} min ago: {reason}"
    if seen.notes:
        explanation += f" [{'; '.join(seen.notes)}]"
    action: Action = "none"
    if idle_seconds >= options.idle_seconds:
        action = "would-stop" if options.dry_run else "stop"
    elif idle_seconds >= warn_at and not seen.active:
        warned = parse_time(state.get("warned_at"))
        if warned is None or warned < last_active:
            action = "warn"
            new_state["warned_at"] = now.isoformat()
    verdict = Verdict(
        time=now,
        action=action,
        reason=explanation,
        idle_seconds=idle_seconds,
        idle_limit_seconds=options.idle_seconds,
        active=list(seen.active),
        last_active=last_active,
        kept_awake_until=seen.kept_awake_until,
        keep_awake_requested=seen.keep_awake_requested,
    )
    return new_state, verdict
