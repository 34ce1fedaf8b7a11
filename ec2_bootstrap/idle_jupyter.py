"""What the idle checker reads from Jupyter: its REST API, and the activity recorder's file.

Jupyter unreachable or hanging (a deadline in all) is JupyterUnreachable, which the checker takes
as no activity. Every request says no_track_activity=1 and /api/status's last_activity is never
read: an open browser tab moves it. Standard library only (idle_check.py).
"""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from idle_decision import CLOCK_SKEW, Observation, Options, parse_time
from rootfs import read_regular


class JupyterUnreachable(Exception):
    """Jupyter did not answer in time, or not with JSON."""


def api(options: Options, path: str) -> Any:
    """The JSON Jupyter answers at `path` (Any: it is Jupyter's to shape; callers check it)."""
    request = urllib.request.Request(  # noqa: S310  (our own http(s) URL to Jupyter)
        f"{options.jupyter_url.rstrip('/')}{path}?no_track_activity=1",
        headers={"Authorization": f"token {options.token}"},
    )
    context = None
    if options.insecure:  # loopback, Jupyter's own self-signed certificate
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return json.loads(response.read(1 << 22))
    except (OSError, ValueError, http.client.HTTPException) as error:
        raise JupyterUnreachable(type(error).__name__) from error


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """JupyterUnreachable after `seconds` in all: a server that trickles bytes can't stall the
    checker (socket timeouts only bound each read). Main thread only; elsewhere no limit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise JupyterUnreachable(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def observe_activity_file(seen: Observation, path: Path, now: datetime) -> None:
    """The last interaction jupyter_activity.py recorded. The file is the service user's: no
    symlink, FIFO or device is followed; future times and anything that isn't the recorder's
    JSON are ignored."""
    try:
        record = json.loads(read_regular(path, 4096) or b"{}")
    except (ValueError, RecursionError):  # [[[[…]]]]: the service user's file
        record = {}
    if not isinstance(record, dict):
        return
    when = parse_time(record.get("last_interaction"))
    if when is None:
        return
    if when > now + CLOCK_SKEW:
        seen.notes.append("activity file ignored: its time is in the future")
        return
    seen.latest[f"interaction in Jupyter ({str(record.get('reason', '?'))[:80]})"] = when
