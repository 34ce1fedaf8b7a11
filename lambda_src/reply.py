"""The start link's answer and its two views: JSON for scripts, an HTML page for people.

No AWS and no request here: handler.py decides, this module only renders what it decided. Like
handler.py, it imports only the standard library (Terraform zips the whole lambda_src/ folder).

The page says what keeps the machine awake or why it sleeps in one sentence (`idle_sentence`),
with every time in a <time datetime="<ISO UTC>"> element that reads "14:32 UTC"; the page's
script rewrites each to the viewer's local time ("14:32", "02:00 tomorrow"). Below it, one line
says this month's running hours and their cost (cost.py). The same script
runs the keep-awake buttons: each calls /v1/keep-awake with the password of the page's own
address (it is never written into the page) and reloads the page once that answered.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cost import Month
from idle import UTC, Idle, iso

VIEWS = ("json", "page")

STYLE = """body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}
a.open{display:inline-block;font-size:1.6em;padding:.6em 1.2em;background:#f37726;color:#fff;
border-radius:.3em;text-decoration:none}
#keep-awake button{font-size:1em;padding:.4em .8em;margin:0 .4em .4em 0}"""

# Static: what varies reaches it through the page's data-* attributes and <time> elements.
SCRIPT = """(() => {
  "use strict";
  const pad = (n) => String(n).padStart(2, "0");
  const day = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const local = (when) => {
    const at = new Date(Math.round(when.getTime() / 60000) * 60000);
    const text = pad(at.getHours()) + ":" + pad(at.getMinutes());
    const days = Math.round((day(at) - day(new Date())) / 86400000);
    if (days === 0) return text;
    if (days === 1) return text + " tomorrow";
    if (days === -1) return text + " yesterday";
    return text + " on " + at.toLocaleDateString(undefined, {day: "numeric", month: "short"});
  };
  for (const element of document.querySelectorAll("time[datetime]")) {
    const when = new Date(element.dateTime);
    if (!Number.isNaN(when.getTime())) element.textContent = local(when);
  }
  const link = (route) => {
    const url = new URL(location.href);
    url.pathname = url.pathname.replace(/[^/]*\\/?$/, route);
    const query = new URLSearchParams({pass: url.searchParams.get("pass") || ""});
    if (url.searchParams.get("view")) query.set("view", url.searchParams.get("view"));
    url.search = query.toString();
    return url;
  };
  const page = document.body.dataset;
  if (page.route === "keep-awake") {
    // A reload must not ask again: this page goes on as the status page.
    history.replaceState(null, "", link("status"));
    if (page.waiting) setTimeout(() => location.reload(), Number(page.waiting) * 1000);
  }
  const panel = document.getElementById("keep-awake");
  if (!panel) return;
  const cap = Number(panel.dataset.maxHours);
  const error = document.getElementById("keep-awake-error");
  for (const button of panel.querySelectorAll("button")) {
    if (button.dataset.untilHour) {
      const target = new Date();
      target.setHours(Number(button.dataset.untilHour), 0, 0, 0);
      const hours = Math.ceil((target.getTime() - Date.now()) / 360) / 10000;
      if (hours > 0) button.dataset.hours = String(hours);
    }
    const hours = Number(button.dataset.hours);
    button.hidden = !(button.dataset.hours && hours >= 0 && hours <= cap);
    button.addEventListener("click", async () => {
      for (const each of panel.querySelectorAll("button")) each.disabled = true;
      const url = link("keep-awake");
      url.searchParams.set("hours", button.dataset.hours);
      url.searchParams.delete("view");
      try {
        const answer = await fetch(url, {cache: "no-store", credentials: "omit"});
        const body = await answer.json();
        if (answer.ok) { location.reload(); return; }
        error.textContent = body.message;
      } catch (failure) {
        error.textContent = "The keep-awake request failed: " + failure + ". Retry in a minute.";
      }
      error.hidden = false;
      for (const each of panel.querySelectorAll("button")) each.disabled = false;
    });
  }
  panel.hidden = false;
})();"""


def csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# Only this page's own style and script run (the sentence quotes the instance's tags, notebook
# names among them, escaped: this is the second line of defence); fetch reaches only the API.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {csp_hash(STYLE)}; script-src {csp_hash(SCRIPT)}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
{refresh}<title>Jupyter on demand</title>
<style>{style}</style></head>
<body{body_data}><h1>Jupyter on demand</h1>
<p id="message" data-state="{state}">{message}</p>
{idle}{month}{link}{keep_awake}<script>{script}</script></body></html>
"""
PAGE_REFRESH_SECONDS = 10

# The page's keep-awake buttons: (label, hours); "Until 20:00" is worked out in the browser, in
# the viewer's time zone, and hidden when that is past or beyond the cap.
KEEP_AWAKE_BUTTONS = (("Keep awake 1 h", 1), ("Keep awake 4 h", 4))
UNTIL_HOUR = 20
# States in which keep-awake makes sense (a stopped machine is started and kept awake).
KEEP_AWAKE_STATES = ("running", "pending", "stopping", "stopped")


@dataclass(frozen=True)
class Reply:
    status: int
    message: str
    state: str | None = None
    url: str | None = None
    ready: bool | None = None
    idle: Idle | None = None
    now: datetime | None = None  # when `idle` was read: the sentence's "for 31 min"
    max_keep_awake_hours: float | None = None  # the page's buttons; None: none
    keep_awake: bool = False  # the answer to /keep-awake: says until when at the top level
    month: Month | None = None  # this month's hours and cost; set with `idle`

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "state": self.state}
        if self.url:
            body["url"] = self.url
        if self.ready is not None:
            body["ready"] = self.ready
        if self.idle is not None:
            body["idle"] = self.idle.as_json()
            if self.keep_awake:
                body["kept_awake_until"] = body["idle"]["kept_awake_until"]
        if self.month is not None:
            body["month"] = self.month.as_json()
        return body


# --- The sentence ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """A time in a sentence: the page shows it in the viewer's local time."""

    at: datetime


Part = str | Moment

# The instance's reasons (ec2_bootstrap/idle_signals.py) in plain words; any other as it is.
REASON_WORDS = (
    (re.compile(r"kernel busy: (?P<what>.+)"), "{what} is running"),
    (re.compile(r"kernel starting: (?P<what>.+)"), "{what} is starting"),
    (re.compile(r"terminal job: (?P<what>.+)"), "{what} is running in a terminal"),
    (re.compile(r"(?P<what>GPU \S+) at (?P<load>.+)"), "{what} is in use at {load}"),
    (re.compile(r"process (?P<what>.+) at (?P<load>.+) CPU"), "{what} is using {load} CPU"),
    (re.compile(r"boot step (?P<what>.+) running"), "the boot step {what} is running"),
)
KEPT_AWAKE_PREFIX = "kept awake until "
HALF_MINUTE = timedelta(seconds=30)


def in_plain_words(reason: str) -> str:
    for pattern, words in REASON_WORDS:
        match = pattern.fullmatch(reason)
        if match:
            return words.format(**match.groupdict())
    return reason


def idle_sentence(state: str | None, idle: Idle, now: datetime) -> list[Part]:
    """What keeps the machine awake, or when it stops, or why it sleeps; [] when nothing is known.

    "Busy: train.ipynb is running", "Kept awake until 18:00", "Nobody has worked for 31 min. It
    stops at 14:32 unless someone does", "Asleep since 14:42: nobody worked for 40 min"."""
    if state in ("stopping", "stopped"):
        if idle.last_stop_reason and idle.stopped_at:
            return ["Asleep since ", Moment(idle.stopped_at), f": {idle.last_stop_reason}"]
        return []
    sentences: list[list[Part]] = []
    busy = [in_plain_words(r) for r in idle.awake_because if not r.startswith(KEPT_AWAKE_PREFIX)]
    if busy:
        sentences.append(["Busy: " + "; ".join(busy)])
    if idle.kept_awake_until:
        sentences.append(["Kept awake until ", Moment(idle.kept_awake_until)])
    if not sentences and idle.stops_at:
        minutes = int(idle.minutes_idle(now))
        stops: list[Part] = [f"Nobody has worked for {minutes} min. It stops at "]
        sentences.append([*stops, Moment(idle.stops_at), " unless someone does"])
    parts: list[Part] = []
    for index, sentence in enumerate(sentences):
        parts += ([". "] if index else []) + sentence
    return parts


def render_parts(parts: list[Part]) -> str:
    """HTML; each time reads HH:MM UTC (to the nearest minute, as the script shows it locally)."""
    return "".join(
        html.escape(part)
        if isinstance(part, str)
        else f'<time datetime="{iso(part.at)}">{part.at.astimezone(UTC) + HALF_MINUTE:%H:%M} UTC</time>'
        for part in parts
    )


# --- The page ----------------------------------------------------------------------------------


def keep_awake_panel(reply: Reply) -> str:
    """The buttons, hidden until the script has checked them against the cap."""
    if reply.max_keep_awake_hours is None or reply.state not in KEEP_AWAKE_STATES:
        return ""
    buttons = [
        f'<button type="button" data-hours="{hours}">{label}</button>'
        for label, hours in KEEP_AWAKE_BUTTONS
    ]
    buttons.append(
        f'<button type="button" id="until-tonight" data-until-hour="{UNTIL_HOUR}">'
        f"Until {UNTIL_HOUR}:00</button>"
    )
    if (
        reply.idle is not None
        and reply.idle.kept_awake_until is not None
        and reply.state != "stopped"  # a cancel never starts a machine; a stopped one needs none
    ):
        buttons.append(
            '<button type="button" id="cancel" data-hours="0">Cancel keep-awake</button>'
        )
    return (
        f'<p id="keep-awake" data-max-hours="{reply.max_keep_awake_hours:g}" hidden>'
        + "".join(buttons)
        + '</p>\n<p id="keep-awake-error" role="alert" hidden></p>\n'
    )


def render_page(reply: Reply) -> str:
    waiting = reply.status < 400 and not (reply.url and reply.ready)
    # /keep-awake's page must not reload itself (each reload would ask again): its script turns
    # it into the status page, and reloads that.
    meta_refresh = waiting and not reply.keep_awake
    refresh = (
        f'<meta http-equiv="refresh" content="{PAGE_REFRESH_SECONDS}">\n' if meta_refresh else ""
    )
    body_data = ""
    if reply.keep_awake:
        body_data = ' data-route="keep-awake"' + (
            f' data-waiting="{PAGE_REFRESH_SECONDS}"' if waiting else ""
        )
    link = ""
    if reply.url:
        note = "" if reply.ready else "<p>Jupyter is still booting; this page reloads itself.</p>"
        link = f'<p><a class="open" id="open" href="{html.escape(reply.url)}">Open Jupyter Lab</a></p>{note}'
    elif waiting:
        link = f"<p>This page reloads itself every {PAGE_REFRESH_SECONDS} s.</p>"
    idle = ""
    if reply.idle is not None and reply.now is not None:
        sentence = render_parts(idle_sentence(reply.state, reply.idle, reply.now))
        idle = f'<p id="idle">{sentence}</p>\n' if sentence else ""
    month = f'<p id="month">{html.escape(reply.month.line())}</p>\n' if reply.month else ""
    return PAGE.format(
        refresh=refresh,
        style=STYLE,
        body_data=body_data,
        state=html.escape(reply.state or ""),
        message=html.escape(reply.message),
        idle=idle,
        month=month,
        keep_awake=keep_awake_panel(reply),
        link=link,
        script=SCRIPT,
    )


def respond(reply: Reply, view: str) -> dict[str, Any]:
    """The API Gateway proxy response for `reply`, as JSON or (view=page) as the HTML page."""
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    if view == "page":
        headers["Content-Type"] = "text/html; charset=utf-8"
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        body = render_page(reply)
    else:
        headers["Content-Type"] = "application/json"
        body = json.dumps(reply.body())
    return {"statusCode": reply.status, "headers": headers, "body": body}
