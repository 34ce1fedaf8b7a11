"""Idle checker: stops the instance after --idle-minutes with nobody working and nothing running.

On the instance, `python3 idle_check.py --instance` runs every 30 s from a systemd timer that
user_data installs first, on the system Python with the standard library only: no failed install,
secret or Jupyter can switch the stop off. Settings come from the instance layout (layout.py).
Each run prints one JSON line {"idle", "idle_seconds", "reason", "action", ...}; action is none,
warn, stop or (--dry-run) would-stop. Before stopping: a warning, the autosave flush, the reason
in the log, then --stop-command (the instance's shutdown behaviour is stop). --dry-run neither
stops, nor warns by `wall`, nor sends the team a message (it logs it).

This module is the command line and the run: load the state, count the month's hours, observe,
decide, tell (tags, messages), save, act.
  - idle_proc.py: reading /proc (processes, the boot);
  - idle_jupyter.py: Jupyter's API and the activity recorder's file;
  - idle_signals.py: what counts as activity (kernels, terminals, CPU, GPUs, boot steps, input);
  - idle_decision.py: the rule, a pure function, and the Options;
  - idle_verdict.py: the verdict told (the status item's file, the tags);
  - idle_month.py: the month's running hours, kept in the state this module writes anyway;
  - idle_notify.py: the messages to the team.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import MISSING, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import idle_month
import idle_notify
from idle_decision import UTC, Observation, Options, Verdict, clock_state, decide, parse_time
from idle_proc import boot_id, boot_time, read_proc
from idle_signals import BOOT_STEP, JUPYTER_SERVER, Machine, observe
from idle_tags import MONTH_HOURS_TAG, long_run_hours, max_keep_awake_hours, warn_minutes
from idle_verdict import changed, publish, stop_tags, summary, tags, view
from imds import IMDS_URL
from layout import Paths, idle_minutes, jupyter_url, read_config
from rootfs import read_regular, write_file

# What other modules and tests use from here (the names they had before the split).
__all__ = [
    "BOOT_STEP",
    "JUPYTER_SERVER",
    "boot_id",
    "boot_time",
    "instance_defaults",
    "main",
    "parse_args",
    "parse_time",
    "read_proc",
    "restart_clock",
    "utcnow",
]

logger = logging.getLogger("jupyter_on_demand.idle")

FLUSH_INCOMPLETE = 3  # git_autosave.py flush: pushed, but not everything is on the team's branch
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Options) if f.default is not MISSING}
# Each limit: its flag's dest (minutes), its Options field (seconds), and what it does.
LIMITS = {
    "idle_minutes": ("idle_seconds", "stop after this long with nobody working"),
    "stuck_busy_minutes": (
        "stuck_busy_seconds",
        "ignore a kernel busy, or a terminal running jobs, this long at ~0%% CPU with nobody typing",
    ),
    "stuck_starting_minutes": (
        "stuck_starting_seconds",
        "ignore a kernel starting this long at ~0%% CPU",
    ),
    "boot_grace_minutes": (
        "boot_grace_seconds",
        "boot steps count as activity this long after the boot",
    ),
    "warn_minutes": ("warn_seconds", "warn this long before the stop (at most a quarter of it)"),
}
# The stop reason's tag waits at most this long before the stop (the unit's TimeoutStartSec is
# 300 s: Jupyter 30 + metadata 4 + nvidia-smi 20 + flush 180 + this).
STOP_PUBLISH_TIMEOUT = 15


def utcnow() -> datetime:
    return datetime.now(UTC)


def load_state(path: Path, this_boot: str, booted_at: datetime) -> dict[str, Any]:
    """The last run's state; at a new boot (or when the file is missing or broken), a clock that
    starts at the boot, with the month's hours carried over. The file is never read through a
    symlink."""
    try:
        state = json.loads(read_regular(path) or b"{}")
    except (ValueError, RecursionError):
        state = {}
    if isinstance(state, dict) and state.get("boot_id") == this_boot:
        return state
    logger.info("new boot: the idle clock starts at boot")
    return {**clock_state(this_boot, booted_at, "boot"), **carried(state)}


def carried(state: object) -> dict[str, Any]:
    """What of a state outlives its idle clock: the month's hours (idle_month.py checks them)."""
    if isinstance(state, dict) and idle_month.MONTH_KEY in state:
        return {idle_month.MONTH_KEY: state[idle_month.MONTH_KEY]}
    return {}


def restart_clock(path: Path, this_boot: str, since: datetime, reason: str) -> None:
    """A new idle clock at `since` (boot_ready.py: Jupyter answers) that keeps the month's hours;
    raises OSError when the state can't be written."""
    before = load_state(path, this_boot, since)
    write_file(
        path, json.dumps({**clock_state(this_boot, since, reason), **carried(before)}), 0o644
    )


def count_hours(state: dict[str, Any], now: datetime, this_boot: str, booted_at: datetime) -> None:
    """The month's hours, counted into the state. A bug here must never stop the check nor the
    stop: the record is then left as it was (logged), and month_tag says nothing."""
    try:
        state[idle_month.MONTH_KEY] = idle_month.count(
            state.get(idle_month.MONTH_KEY), now, this_boot, booted_at
        )
    except Exception:
        logger.exception("counting the month's hours failed; the record stays as it was")


def month_tag(state: dict[str, Any], alone: bool = False) -> dict[str, str]:
    """{MONTH_HOURS_TAG: value} of the state's record; with `alone`, only when the published
    figure is behind. Empty when there is nothing to tell, or on any bug (logged)."""
    try:
        record = state[idle_month.MONTH_KEY]
        if alone and not idle_month.behind(state.get(idle_month.PUBLISHED_KEY), record):
            return {}
        return {MONTH_HOURS_TAG: idle_month.tag_value(record)}
    except Exception:
        logger.exception("the month's hours can't be told; the verdict goes without them")
        return {}


def save_state(path: Path, state: dict[str, Any]) -> bool:
    """Atomically, never through a symlink; a full disk is logged and never stops the stop."""
    try:
        write_file(path, json.dumps(state, indent=1), 0o644)
    except OSError:
        logger.exception("could not save the idle state in %s", path)
        return False
    return True


def look(
    state: dict[str, Any], options: Options, now: datetime, booted_at: datetime
) -> Observation:
    try:
        return observe(state, options, Machine.scan(now), booted_at)
    except Exception:  # a bug or an odd /proc must never switch the stop off: nothing seen
        logger.exception("the observation failed; judged on what is known")
        return Observation(booted_at=booted_at, notes=["observation failed"])


def act(
    verdict: Verdict,
    state: dict[str, Any],
    options: Options,
    told: dict[str, Any],
    boot: tuple[str, datetime],
) -> None:
    if verdict.action == "warn":
        minutes = (options.idle_seconds - verdict.idle_seconds) / 60
        message = (
            f"jupyter-on-demand: nobody has used this machine for {verdict.idle_seconds / 60:.0f} min; "
            f"it stops in about {minutes:.0f} min. Run code or type anything to keep it."
        )
        logger.warning(message)
        if not options.dry_run and shutil.which("wall"):
            subprocess.run(["wall", message], check=False, timeout=10, capture_output=True)
    elif verdict.action == "stop":
        if options.flush_command:
            # A failed flush never blocks the stop: commits stay on the disk, pushed next boot.
            code = run_command(options.flush_command, timeout=180)
            if code == FLUSH_INCOMPLETE:
                logger.error(
                    "autosave flush: pushed, but the team's branch does not have everything "
                    "(a side branch, or files left out: the flush log names them)"
                )
            elif code != 0:
                logger.error(
                    "autosave flush failed (%s); the work stays committed on the disk", code
                )
        logger.warning("stopping the machine: %s", verdict.reason)
        reason = f"nobody worked for {options.idle_seconds / 60:g} min"
        state = {**state, "stopped_at": verdict.time.isoformat()}
        count_hours(state, utcnow(), *boot)  # the flush took a while: the session's last figure
        values = stop_tags(told, reason, month_tag(state).get(MONTH_HOURS_TAG))
        if options.notify:  # one call: the message never delays the stop past the timeout
            values[idle_notify.NOTIFY] = idle_notify.stopped_message(reason, options)
        if not publish(options, values, timeout=STOP_PUBLISH_TIMEOUT):
            logger.error("the stop reason is not tagged: the start page won't say why it stopped")
        save_state(options.state_file, state)
        code = run_command(options.stop_command, timeout=120)
        if code != 0:
            logger.error("the stop command failed (%s): %s", code, options.stop_command)


def run_command(command: str, timeout: float) -> int | str:
    """Exit code of a command line, or why it could not run."""
    try:
        return subprocess.run(shlex.split(command), check=False, timeout=timeout).returncode
    except (OSError, subprocess.SubprocessError) as error:
        return f"{type(error).__name__}: {error}"


def instance_defaults(paths: Paths) -> dict[str, Any]:
    """The instance's settings, read as the boot steps read them (layout.py), as parse_args
    defaults. Every file may be missing or broken, the secrets above all (a failed secrets step):
    the checker then runs with the defaults, never not at all."""
    config: dict[str, str] = {}
    token = ""
    try:
        config = read_config(paths.config)
    except (OSError, ValueError):
        logger.exception("cannot read %s; idle stop with the defaults", paths.config)
    try:
        token = read_config(paths.jupyter_env).get("JUPYTER_TOKEN", "")
    except (OSError, ValueError):
        logger.warning("no Jupyter token in %s: Jupyter is judged from /proc only", paths.secrets)
    flush = None
    if paths.venv_python.exists() and (paths.app / "git_autosave.py").exists():
        flush = shlex.join(
            ["runuser", "-u", paths.user, "--", "env", f"HOME={paths.home}", str(paths.venv_python),
             str(paths.app / "git_autosave.py"), "flush", "--repo", str(paths.repo), "--timeout", "60"]
        )  # fmt: skip
    return {
        "jupyter_url": jupyter_url(config),
        "token": token,
        "idle_minutes": idle_minutes(config),
        "state_file": paths.idle_state,
        "activity_file": paths.activity,
        "heartbeat_file": paths.idle_heartbeat,
        "flush_command": flush,
        "insecure": True,
        "warn_minutes": warn_minutes(config),
        "max_keep_awake_hours": max_keep_awake_hours(config),
        "imds_url": config.get("IMDS_ENDPOINT", IMDS_URL),
        "keep_awake_file": paths.keep_awake,
        "verdict_file": paths.idle_verdict,
        "publish_command": publish_command(paths),
        "notify": bool(config.get("NOTIFY_TOPIC_ARN")),
        "page_url": config.get("PAGE_URL", ""),
        "long_run_hours": long_run_hours(config),
    }


def publish_command(paths: Paths) -> str | None:
    """publish_verdict.py in the venv (botocore), once the install made them."""
    script = paths.app / "publish_verdict.py"
    if not (paths.venv_python.exists() and script.exists()):
        return None
    return shlex.join([str(paths.venv_python), str(script)])


def parse_args(argv: list[str] | None) -> Options:
    """Options from the command line; every default is Options' own (durations in minutes)."""
    parser = argparse.ArgumentParser(
        description="Stop the instance when nobody uses it. Every duration is in minutes."
    )
    parser.add_argument(
        "--instance", action="store_true", help="the instance's settings (layout.py) as defaults"
    )
    parser.add_argument("--jupyter-url", default=None)
    parser.add_argument("--token", default=None, help="API token (default: $JUPYTER_TOKEN)")
    for dest, (name, help_text) in LIMITS.items():
        parser.add_argument(
            f"--{dest.replace('_', '-')}",
            type=float,
            default=DEFAULTS[name] / 60,
            help=f"{help_text} (minutes; default: %(default)g)",
        )
    parser.add_argument("--state-file", type=Path, default=Paths.from_env().idle_state)
    parser.add_argument("--activity-file", type=Path, default=None)
    parser.add_argument(
        "--heartbeat-file", type=Path, default=None, help="touched after each run (the fail-safe)"
    )
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--stop-command", default=DEFAULTS["stop_command"])
    parser.add_argument(
        "--flush-command", default=None, help="run before stopping (git autosave flush)"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="accept Jupyter's self-signed certificate"
    )
    parser.add_argument(
        "--min-uid",
        type=int,
        default=DEFAULTS["min_uid"],
        help="processes of uids from here are users'",
    )
    parser.add_argument(
        "--process-root", type=int, default=None, help="only judge this process tree"
    )
    parser.add_argument(
        "--max-keep-awake-hours", type=float, default=DEFAULTS["max_keep_awake_seconds"] / 3600
    )
    parser.add_argument(
        "--imds-url", default=None, help="the instance metadata, for the start link's keep-awake"
    )
    parser.add_argument(
        "--keep-awake-file", type=Path, default=None, help="JupyterLab's keep-awake request"
    )
    parser.add_argument(
        "--verdict-file", type=Path, default=None, help="where JupyterLab reads the verdict"
    )
    parser.add_argument(
        "--publish-command", default=None, help="tags the instance with the verdict (JSON stdin)"
    )
    parser.add_argument(
        "--notify",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS["notify"],
        help="tell the team (through --publish-command) when it warns, stops, or runs long",
    )
    parser.add_argument(
        "--page-url", default=DEFAULTS["page_url"], help="the start link's base, for the messages"
    )
    parser.add_argument(
        "--long-run-hours",
        type=float,
        default=DEFAULTS["long_run_seconds"] / 3600,
        help="tell the team once a session runs this long, then daily (default: %(default)g)",
    )
    parser.add_argument("--cpu-percent", type=float, default=DEFAULTS["cpu_percent"])
    parser.add_argument("--gpu-percent", type=float, default=DEFAULTS["gpu_percent"])
    args = parser.parse_args(argv)
    if args.instance:
        parser.set_defaults(**instance_defaults(Paths.from_env()))
        args = parser.parse_args(argv)
    if not args.jupyter_url:
        parser.error("--jupyter-url is required (or --instance)")
    if args.idle_minutes <= 0:
        parser.error("--idle-minutes must be > 0")
    if not args.long_run_hours > 0:
        parser.error("--long-run-hours must be > 0")
    token = args.token if args.token is not None else os.environ.get("JUPYTER_TOKEN", "")
    limits = {name: getattr(args, dest) * 60 for dest, (name, _) in LIMITS.items()}
    return Options(
        jupyter_url=args.jupyter_url,
        token=token,
        state_file=args.state_file,
        activity_file=args.activity_file,
        dry_run=args.dry_run,
        stop_command=args.stop_command,
        flush_command=args.flush_command,
        insecure=args.insecure,
        min_uid=args.min_uid,
        process_root=args.process_root,
        cpu_percent=args.cpu_percent,
        gpu_percent=args.gpu_percent,
        heartbeat_file=args.heartbeat_file,
        max_keep_awake_seconds=args.max_keep_awake_hours * 3600,
        imds_url=args.imds_url or None,
        keep_awake_file=args.keep_awake_file,
        verdict_file=args.verdict_file,
        publish_command=args.publish_command or None,
        notify=args.notify,
        page_url=args.page_url,
        long_run_seconds=args.long_run_hours * 3600,
        **limits,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s idle-check %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = parse_args(argv)
    now = utcnow()
    this_boot, booted_at = boot_id(), boot_time()
    state = load_state(options.state_file, this_boot, booted_at)
    count_hours(state, now, this_boot, booted_at)
    state, verdict = decide(state, look(state, options, now, booted_at), options, now)
    logger.info("%s: %s", verdict.action, verdict.reason)
    told = view(verdict, options)
    if options.verdict_file is not None:
        try:
            write_file(options.verdict_file, json.dumps(told), 0o644)
        except OSError:
            logger.exception("could not write the verdict to %s", options.verdict_file)
    message = None
    if verdict.action != "stop":
        publish_verdict(state, options, told)
        message = due_message(state, verdict, options, booted_at)
    saved = save_state(options.state_file, state)  # with the message marked sent, if one is due
    print(json.dumps(verdict.record()), flush=True)
    if options.heartbeat_file is not None:  # this run completed: the fail-safe stands down
        try:
            write_file(options.heartbeat_file, verdict.time.isoformat(), 0o644)
        except OSError:
            logger.exception("could not touch %s", options.heartbeat_file)
    act(verdict, state, options, told, (this_boot, booted_at))  # `wall` before the team's message
    if message is not None:
        tell_the_team(message, saved, state, options, verdict.time)
    return 0


def publish_verdict(state: dict[str, Any], options: Options, told: dict[str, Any]) -> None:
    """Tags when the verdict changed materially, with the month's hours, which also go alone
    when the published ones fall behind. What failed is tried again at the next run."""
    verdict_due = changed(state.get("published"), told)
    values = {**tags(told), **month_tag(state)} if verdict_due else month_tag(state, alone=True)
    if values and publish(options, values):
        if verdict_due:
            state["published"] = summary(told)
        if MONTH_HOURS_TAG in values:
            state[idle_month.PUBLISHED_KEY] = idle_month.published(state[idle_month.MONTH_KEY])


def due_message(
    state: dict[str, Any], verdict: Verdict, options: Options, booted_at: datetime
) -> tuple[str, dict[str, Any]] | None:
    """The team's message due at this run, marked sent in the state before it goes (a state that
    can't be saved then sends nothing: a full disk must not mean a message at every check), and
    what the marks were before."""
    if not options.publish_command:
        return None
    try:
        due = idle_notify.due(state, verdict, options, verdict.time, booted_at)
    except Exception:  # a bug here must never stop the check
        logger.exception("the team's message could not be worked out")
        return None
    if due is None:
        return None
    text, sent = due
    # Notebook names are the user's: no control character reaches SNS (which may refuse it).
    text = "".join(char if char.isprintable() else " " for char in text)
    before = {key: state.get(key) for key in sent}
    state.update(sent)
    return text, before


def tell_the_team(
    message: tuple[str, dict[str, Any]],
    saved: bool,
    state: dict[str, Any],
    options: Options,
    now: datetime,
) -> None:
    """Send the message marked sent in the saved state; when it fails, the marks are undone and
    the next try waits idle_notify.RETRY_AFTER."""
    text, before = message
    if not saved:
        logger.error("the idle state could not be saved, so the team is not told: %s", text)
    elif options.dry_run:
        logger.info("dry run: the team is not told: %s", text)
    elif publish(options, {idle_notify.NOTIFY: text}, what="send the team a message"):
        logger.info("told the team: %s", text)
    else:
        for key, value in before.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        state[idle_notify.FAILED_KEY] = now.isoformat()
        save_state(options.state_file, state)


if __name__ == "__main__":
    raise SystemExit(main())
