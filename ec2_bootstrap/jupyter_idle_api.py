"""The idle stop, seen and postponed from JupyterLab: two endpoints of our server extension, which
the status item and the warning of the labextension (labextension/src/index.ts) call.

- GET  {base_url}jupyter-on-demand/idle: the idle checker's last verdict (idle_verdict.view,
  in root's verdict file), the poll interval, and "unknown" when there is none yet; and
  `spot_notice`, AWS's spot interruption notice {"action", "time", "noticed_at"} as the spot
  watcher wrote it (spot_watch.py, root's notice file), null while there is none.
- POST {base_url}jupyter-on-demand/keep-awake {"hours": N}: "keep it awake until now + N h", as the
  start link's /v1/keep-awake; written to the service user's keep-awake file, which the checker
  reads (idle_keep_awake.py) and caps at MAX_KEEP_AWAKE_HOURS itself.

Neither counts as activity: they emit none of the events jupyter_activity.py records, they leave
Jupyter's own last_activity alone (_track_activity), and the checker reads neither anyway. Both
are Jupyter's authenticated API (token, or the login cookie with _xsrf for the POST).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from idle_keep_awake import iso
from idle_tags import max_keep_awake_hours, warn_minutes
from rootfs import read_regular

POLL_SECONDS = 30.0  # the status item's refresh: the issue asks for at least every 30 s


def settings() -> dict[str, Any]:
    """Where the files are and the limits, from the environment the wake gave Jupyter."""
    environ = dict(os.environ)
    return {
        "verdict_file": Path(environ.get("JUPYTER_IDLE_VERDICT_FILE", "/nonexistent")),
        "keep_awake_file": Path(environ.get("JUPYTER_KEEP_AWAKE_FILE", "/nonexistent")),
        "spot_notice_file": Path(environ.get("JUPYTER_SPOT_NOTICE_FILE", "/nonexistent")),
        "max_hours": max_keep_awake_hours(environ),
        "warn_minutes": warn_minutes(environ),
        "poll_seconds": poll_seconds(environ.get("JOD_STATUS_POLL_SECONDS", "")),
    }


def poll_seconds(value: str) -> float:
    """JOD_STATUS_POLL_SECONDS (tests and the demo poll faster), at most POLL_SECONDS."""
    try:
        seconds = float(value)
    except ValueError:
        return POLL_SECONDS
    return min(seconds, POLL_SECONDS) if seconds > 0 else POLL_SECONDS


class IdleApiHandler(APIHandler):
    """Both endpoints: Jupyter's last_activity left alone, and the limits of settings()."""

    _track_activity = False

    def initialize(self, limits: dict[str, Any]) -> None:
        self.limits = limits


class IdleHandler(IdleApiHandler):
    @web.authenticated
    def get(self) -> None:
        told: object = None
        try:
            told = json.loads(read_regular(self.limits["verdict_file"], 1 << 16) or b"null")
        except (OSError, ValueError):
            told = None
        if not isinstance(told, dict):
            told = {"state": "unknown", "stops_at": None, "warn_at": None, "awake_because": []}
        told.setdefault("max_keep_awake_hours", self.limits["max_hours"])
        told.setdefault("warn_minutes", self.limits["warn_minutes"])
        told["poll_seconds"] = self.limits["poll_seconds"]
        notice = spot_notice(self.limits["spot_notice_file"])
        self.finish(json.dumps({**told, "spot_notice": notice}))


def spot_notice(path: Path) -> dict[str, str] | None:
    """The spot watcher's notice: its three fields, strings, or None."""
    try:
        notice = json.loads(read_regular(path, 4096) or b"null")
    except (OSError, ValueError):
        return None
    keys = ("action", "time", "noticed_at")
    if not isinstance(notice, dict) or not all(isinstance(notice.get(k), str) for k in keys):
        return None
    return {key: notice[key] for key in keys}


class KeepAwakeHandler(IdleApiHandler):
    @web.authenticated
    def post(self) -> None:
        cap = self.limits["max_hours"]
        try:
            hours = json.loads(self.request.body or b"{}").get("hours")
        except (ValueError, AttributeError):
            hours = None
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 < hours <= cap:
            self.set_status(400)
            self.finish(
                json.dumps({"message": f"hours must be a number above 0 and at most {cap:g}"})
            )
            return
        now = datetime.now(timezone.utc).replace(microsecond=0)
        until = now + timedelta(hours=hours)
        record = {"until": iso(until), "set_at": iso(now), "hours": hours}
        path: Path = self.limits["keep_awake_file"]
        try:
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(json.dumps(record))
            os.replace(partial, path)
        except OSError as error:
            self.log.error("jupyter-on-demand: could not keep awake: %s", error)
            self.set_status(500)
            self.finish(
                json.dumps({"message": f"could not keep the machine awake: {error.strerror}"})
            )
            return
        who = getattr(self.current_user, "username", "?")
        self.log.info("jupyter-on-demand: kept awake until %s by %s", record["until"], who)
        self.finish(json.dumps({"kept_awake_until": record["until"]}))


def add_handlers(serverapp: Any) -> None:
    config = settings()
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "jupyter-on-demand/idle"), IdleHandler, {"limits": config}),
            (
                url_path_join(base, "jupyter-on-demand/keep-awake"),
                KeepAwakeHandler,
                {"limits": config},
            ),
        ],
    )
