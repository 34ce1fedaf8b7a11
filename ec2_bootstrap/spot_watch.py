"""Spot interruption watcher: when AWS is about to reclaim this spot machine, save the work and say so.

On the instance, `python3 spot_watch.py --instance` runs as root from
jupyter-on-demand-spot-watch.service, on the system Python with the standard library only. When
the settings' MARKET is "on-demand" it exits 0 at once (there is nothing to watch, and the unit
restarts it only on failure). Otherwise it polls the instance metadata's interruption notice
(IMDSv2 GET /latest/meta-data/spot/instance-action, 404 while there is none) every 5 s, as AWS
advises: the notice comes two minutes before AWS stops the machine. Once per notice it
  - writes the notice for JupyterLab (layout.Paths.spot_notice, root's, world-readable;
    jupyter_idle_api.py serves it, the labextension shows it);
  - warns by `wall` and in the log (journald);
  - flushes the autosave at once (the idle checker's flush command, as the service user);
  - meanwhile tags the stop reason, and tells the team when the admin set notify_emails
    (publish_verdict.py in the venv, one call).
It never stops the machine itself (AWS does), and it keeps watching after a notice: a later,
different notice is handled again, the same one never (not even after a restart: the notice
file says which one was handled). A failed poll (no metadata service, a timeout) or a malformed
notice is logged and the next poll tries again; nothing here ends the watch but a bug.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from idle_check import (
    count_hours,
    instance_defaults,
    load_state,
    month_tag,
    publish_command,
    run_command,
)
from idle_decision import UTC, parse_time
from idle_keep_awake import iso
from idle_proc import boot_id, boot_time
from idle_tags import STOP_REASON_TAG, STOPPED_AT_TAG
from idle_verdict import run_publish
from imds import IMDS_URL, Metadata
from layout import Paths, read_config
from rootfs import read_regular, write_file

logger = logging.getLogger("jupyter_on_demand.spot")

NOTICE_PATH = "/latest/meta-data/spot/instance-action"
POLL_SECONDS = 5.0  # AWS's advice: check for the notice every 5 s
TOKEN_TTL = 300  # seconds an IMDSv2 token lives; a new one is taken a minute before it expires
FLUSH_TIMEOUT = 90  # AWS stops the machine two minutes after the notice
PUBLISH_TIMEOUT = 20  # the tags and the message go out while the flush runs
ACTIONS = ("stop", "terminate", "hibernate")  # what a notice may say AWS does
NOTICE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # "2026-11-29T17:02:00Z"
STOP_REASON = "stopped by AWS spot interruption"
NOTIFY = "notify"  # publish_verdict.py's key for the team's message (not a tag)


@dataclass(frozen=True)
class Notice:
    action: str
    time: datetime

    def record(self, noticed_at: datetime) -> dict[str, str]:
        return {"action": self.action, "time": iso(self.time), "noticed_at": iso(noticed_at)}


@dataclass(frozen=True)
class Options:
    imds_url: str
    interval: float
    notice_file: Path | None
    page_url: str
    flush_command: str | None
    publish_command: str | None
    instance: Paths | None  # --instance: the commands are looked up again at each notice


def parse_notice(body: bytes) -> Notice | None:
    """A notice as AWS serves it ({"action": "stop", "time": "2026-11-29T17:02:00Z"}); None for
    anything else."""
    try:
        record = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(record, dict):
        return None
    action, when = record.get("action"), record.get("time")
    if not (isinstance(action, str) and action in ACTIONS):
        return None
    if not (isinstance(when, str) and NOTICE_TIME.fullmatch(when)):
        return None
    parsed = parse_time(when)
    return Notice(action, parsed) if parsed is not None else None


def handled_notice(path: Path | None) -> Notice | None:
    """The notice this boot already handled, from the notice file (a restarted watcher)."""
    raw = read_regular(path, 4096) if path is not None else None
    return parse_notice(raw) if raw else None


def warning(notice: Notice) -> str:
    at = notice.time.strftime("%H:%M")
    return f"AWS reclaims this spot machine at {at} UTC: your work is being saved to GitHub."


def team_message(notice: Notice, page_url: str) -> str:
    link = f": {page_url}/status?view=page" if page_url else "."
    return (
        f"Jupyter Lab stops at {notice.time.strftime('%H:%M')} UTC: AWS reclaims its spot "
        "capacity. The work is saved to GitHub; AWS starts it again when it has capacity, and "
        f"the page says so{link}"
    )


def handle(notice: Notice, options: Options, now: datetime) -> None:
    """Everything a notice sets off, each step on its own: one failing skips none of the rest."""
    if options.notice_file is not None:
        try:  # root's folder; the rename replaces a planted link, never follows it
            write_file(options.notice_file, json.dumps(notice.record(now)), 0o644)
        except OSError:
            logger.exception("could not write the notice for JupyterLab to %s", options.notice_file)
    message = warning(notice)
    logger.warning("%s (AWS's notice: %s at %s)", message, notice.action, iso(notice.time))
    wall(message)
    flush, publish = commands(options)
    values = {
        STOP_REASON_TAG: STOP_REASON,
        STOPPED_AT_TAG: iso(notice.time),
        **month_hours_at(options.instance, notice.time),
        NOTIFY: team_message(notice, options.page_url),
    }
    publisher = threading.Thread(target=publish_stop, args=(publish, values), daemon=True)
    publisher.start()
    if flush:
        code = run_command(flush, timeout=FLUSH_TIMEOUT)
        if code == 0:
            logger.info("autosave flushed: the work is on GitHub")
        else:
            logger.error("autosave flush failed (%s); the work stays committed on the disk", code)
    else:
        logger.error("no autosave flush (no venv or git_autosave.py yet): nothing pushed")
    publisher.join()


def month_hours_at(paths: Paths | None, when: datetime) -> dict[str, str]:
    """The month's hours tag as the idle checker keeps them, counted on to AWS's stop time (the
    checker won't run again this session); read only: the checker alone writes its state."""
    if paths is None:
        return {}
    try:
        this_boot, booted_at = boot_id(), boot_time()
        state = load_state(paths.idle_state, this_boot, booted_at)
        count_hours(state, max(when, datetime.now(UTC)), this_boot, booted_at)
        return month_tag(state)
    except Exception:  # the stop reason and the flush matter more
        logger.exception("the month's hours are not tagged")
        return {}


def commands(options: Options) -> tuple[str | None, str | None]:
    """The flush and publish commands; on the instance, as the idle checker builds them now (the
    venv may have come after this watcher started)."""
    flush, publish = options.flush_command, options.publish_command
    if options.instance is not None:
        flush = flush or instance_defaults(options.instance)["flush_command"]
        publish = publish or publish_command(options.instance)
    return flush, publish


def wall(message: str) -> None:
    if not shutil.which("wall"):
        logger.warning("no `wall` on this machine: the warning is in the log only")
        return
    try:
        subprocess.run(["wall", message], check=False, timeout=10, capture_output=True)
    except (OSError, subprocess.SubprocessError) as error:
        logger.error("wall failed: %s", error)


def publish_stop(command: str | None, values: dict[str, str]) -> None:
    """publish_verdict.py with the values on its stdin (in a thread, while the flush runs); what
    went wrong is logged."""
    if not command:
        logger.error("could not tag the stop reason: no publish command (no venv yet)")
    elif run_publish(command, values, PUBLISH_TIMEOUT, "tag the stop reason"):
        logger.info("stop reason tagged: %s", STOP_REASON)


def watch(options: Options) -> None:
    """Poll until the process is stopped (systemd, or AWS's stop)."""
    metadata = Metadata(options.imds_url, token_ttl=TOKEN_TTL)
    handled = handled_notice(options.notice_file)
    failing = False
    rejected: bytes | None = None
    logger.info("watching %s%s every %g s", options.imds_url, NOTICE_PATH, options.interval)
    while True:
        try:
            body = metadata.get(NOTICE_PATH)  # None while there is no notice
        except (OSError, ValueError, http.client.HTTPException) as error:
            if not failing:  # once per outage, not every 5 s
                logger.warning("cannot read the instance metadata (%s); trying again every %g s",
                               error, options.interval)  # fmt: skip
            failing = True
            body = None
        else:
            if failing:
                logger.info("the instance metadata answers again")
            failing = False
        notice = parse_notice(body) if body is not None else None
        if body is not None and notice is None and body != rejected:
            logger.error("ignored a malformed spot interruption notice: %r", body[:200])
            rejected = body
        if notice is not None and notice != handled:
            handled = notice
            try:
                handle(notice, options, datetime.now(UTC))
            except Exception:  # a bug must not end the watch: a later notice is handled again
                logger.exception("handling the notice failed")
        time.sleep(options.interval)


def parse_args(argv: list[str] | None) -> tuple[Options, str]:
    """The options and the market ("on-demand", "spot", or "" when the settings don't say)."""
    parser = argparse.ArgumentParser(
        description="Save the work and tag the stop reason when AWS interrupts this spot machine."
    )
    parser.add_argument(
        "--instance", action="store_true", help="the instance's settings (layout.py) as defaults"
    )
    parser.add_argument("--market", choices=("on-demand", "spot"), default=None)
    parser.add_argument("--imds-url", default=None)
    parser.add_argument(
        "--interval", type=float, default=POLL_SECONDS, help="seconds between polls"
    )
    parser.add_argument("--notice-file", type=Path, default=None, help="the notice for JupyterLab")
    parser.add_argument("--page-url", default=None, help="the start link's base URL")
    parser.add_argument("--flush-command", default=None, help="git autosave flush")
    parser.add_argument("--publish-command", default=None, help="publish_verdict.py (JSON stdin)")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    paths = Paths.from_env() if args.instance else None
    config: dict[str, str] = {}
    if paths is not None:
        try:
            config = read_config(paths.config)
        except (OSError, ValueError) as error:
            logger.warning("cannot read %s (%s): watching anyway", paths.config, error)
    options = Options(
        imds_url=args.imds_url or config.get("IMDS_ENDPOINT", IMDS_URL),
        interval=args.interval,
        notice_file=args.notice_file or (paths.spot_notice if paths else None),
        page_url=(args.page_url or config.get("PAGE_URL", "")).rstrip("/"),
        flush_command=args.flush_command,
        publish_command=args.publish_command,
        instance=paths,
    )
    return options, args.market or config.get("MARKET", "")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s spot-watch %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options, market = parse_args(argv)
    if market == "on-demand":
        logger.info("an on-demand instance (MARKET): no spot interruption to watch for")
        return 0
    if market != "spot":  # an older config.env: the watch costs a 404 every few seconds
        logger.warning("the settings name no MARKET: watching for a spot interruption anyway")
    watch(options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
