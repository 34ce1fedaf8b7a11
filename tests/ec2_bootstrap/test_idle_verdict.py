"""The verdict the idle checker tells (idle_verdict.py) and the keep-awake requests it honours
(idle_keep_awake.py): the rules row by row, the instance metadata's tag through a real HTTP
server on loopback, and the publish command as a real process."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import idle_keep_awake
from idle_decision import Observation, Options, clock_state, decide
from idle_keep_awake import Request, find_requests, kept_awake_until, parse_tag, tag_value
from idle_verdict import changed, publish, stop_tags, summary, tags, view
from layout import VERDICT_TAGS
from tests.support.imds import FakeIMDS

BOOT = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
NOW = BOOT + timedelta(hours=2)
OPTIONS = Options(jupyter_url="http://127.0.0.1:1", token="", state_file=Path("unused"))


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def told(seen: Observation, minutes_ago: float = 0, **options: object) -> dict:
    state = clock_state("boot", ago(minutes_ago), "Jupyter ready")
    opts = Options(**{**OPTIONS.__dict__, **options})  # type: ignore[arg-type]
    _, verdict = decide(state, seen, opts, NOW)
    return view(verdict, opts)


def test_busy_names_what_keeps_it_awake_and_no_stop_time() -> None:
    result = told(Observation(BOOT, active=["kernel busy: train.ipynb", "GPU 0 at 87 %"]), 10)
    assert result["state"] == "busy"
    assert result["awake_because"] == ["kernel busy: train.ipynb", "GPU 0 at 87 %"]
    assert result["stops_at"] is None and result["warn_at"] is None
    assert result["idle_since"] is None
    assert result["updated_at"] == "2026-11-28T10:00:00Z"


def test_idle_says_since_when_and_when_it_stops_and_warns() -> None:
    result = told(Observation(BOOT), minutes_ago=31)
    assert result["state"] == "idle"
    assert result["awake_because"] == []
    assert result["idle_since"] == "2026-11-28T09:29:00Z"
    assert result["stops_at"] == "2026-11-28T10:09:00Z"  # 40 min after the last activity
    assert result["warn_at"] == "2026-11-28T10:04:00Z"  # warn_minutes (5) before
    assert result["idle_minutes"] == 40 and result["warn_minutes"] == 5


def test_kept_awake_alone_is_its_own_state() -> None:
    until = NOW + timedelta(hours=1)
    seen = Observation(BOOT, active=[f"kept awake until {idle_keep_awake.iso(until)}"])
    seen.kept_awake_until = until
    result = told(seen, 50)
    assert result["state"] == "kept-awake"
    assert result["kept_awake_until"] == "2026-11-28T11:00:00Z"
    assert result["stops_at"] is None


def test_the_stop_is_told_with_its_reason() -> None:
    result = told(Observation(BOOT), minutes_ago=41)
    assert result["state"] == "stopping"
    values = stop_tags(result, "nobody worked for 40 min")
    assert set(values) == set(VERDICT_TAGS)
    assert values["jupyter-on-demand:stop-reason"] == "nobody worked for 40 min"
    assert values["jupyter-on-demand:stopped-at"] == "2026-11-28T10:00:00Z"
    assert values["jupyter-on-demand:stops-at"] == ""


def test_tags_fit_ec2s_limit() -> None:
    result = told(Observation(BOOT, active=[f"terminal job: {'x' * 300}"] * 3))
    assert all(len(value) <= 256 for value in tags(result).values())
    assert set(tags(result)) <= set(VERDICT_TAGS)


# (published before, now) -> published again?
def summary_at(minutes_ago: float, active: list[str] | None = None) -> dict:
    return summary(told(Observation(BOOT, active=active or []), minutes_ago))


CHANGES = {
    "nothing published yet": (None, summary_at(1), True),
    "the same idle clock": (summary_at(1), summary_at(1), False),
    "the stop time moved 4 min (someone saved)": (summary_at(5), summary_at(1), False),
    "the stop time moved 5 min": (summary_at(6), summary_at(1), True),
    "idle, then busy": (summary_at(1), summary_at(0, ["kernel busy: a.ipynb"]), True),
    "a GPU's figure changed": (
        summary_at(0, ["GPU 0 at 87 %"]),
        summary_at(0, ["GPU 0 at 91 %"]),
        False,
    ),
    "another notebook busy": (
        summary_at(0, ["kernel busy: a.ipynb"]),
        summary_at(0, ["kernel busy: b.ipynb"]),
        True,
    ),
}


@pytest.mark.parametrize(("before", "now", "again"), CHANGES.values(), ids=CHANGES.keys())
def test_only_a_material_change_is_published(before: dict | None, now: dict, again: bool) -> None:
    result = {**now, "awake_because": now["reasons"]}
    assert changed(before, result) is again


# --- Keep-awake requests --------------------------------------------------------------------

HOUR = timedelta(hours=1)
KEEP = {
    "none": ([], None),
    "one from the link, in force": ([Request(NOW + HOUR, ago(1), "start link")], NOW + HOUR),
    "ended (the clock starts from its end)": ([Request(ago(1), ago(61), "start link")], ago(1)),
    "set in the future (forged)": ([Request(NOW + 3 * HOUR, NOW + HOUR, "JupyterLab")], None),
    "longer than the cap (12 h)": ([Request(NOW + 13 * HOUR, ago(1), "JupyterLab")], None),
    "the latest wins: a cancel after a click": (
        [Request(NOW + 4 * HOUR, ago(10), "JupyterLab"), Request(ago(1), ago(1), "start link")],
        None,
    ),
    "the latest wins: a click after a cancel": (
        [Request(ago(10), ago(10), "start link"), Request(NOW + HOUR, ago(1), "JupyterLab")],
        NOW + HOUR,
    ),
}


@pytest.mark.parametrize(("found", "until"), KEEP.values(), ids=KEEP.keys())
def test_keep_awake_rules(found: list[Request], until: datetime | None) -> None:
    assert kept_awake_until(found, NOW, max_hours=12) == until


def test_the_tag_value_round_trips_and_junk_is_refused() -> None:
    value = tag_value(NOW + HOUR, NOW)
    assert value == "until=2026-11-28T11:00:00Z set=2026-11-28T10:00:00Z"
    assert parse_tag(value) == Request(NOW + HOUR, NOW, "start link")
    for junk in ("", "tomorrow", "until=x set=y", "until=2026-11-28T11:00:00Z"):
        assert parse_tag(junk) is None


def test_the_links_request_is_read_from_the_instance_metadata(imds: str, tmp_path: Path) -> None:
    FakeIMDS.tag = tag_value(NOW + HOUR, ago(1))
    assert find_requests(imds, None) == [Request(NOW + HOUR, ago(1), "start link")]


def test_no_tag_no_metadata_or_a_broken_tag_is_no_request(imds: str, tmp_path: Path) -> None:
    assert find_requests(imds, None) == []  # 404: no tag (or tags not in the metadata)
    FakeIMDS.tag = "keep it on please"
    assert find_requests(imds, None) == []
    assert find_requests("http://127.0.0.1:9", None) == []  # nothing listens: no metadata


def test_jupyterlabs_request_is_read_from_its_file_never_through_a_link(tmp_path: Path) -> None:
    request = {"until": "2026-11-28T11:00:00Z", "set_at": "2026-11-28T09:59:00Z"}
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(request))
    link = tmp_path / "keep-awake.json"
    link.symlink_to(target)
    assert find_requests(None, link) == []
    real = tmp_path / "real.json"
    real.write_text(json.dumps(request))
    assert find_requests(None, real) == [Request(NOW + HOUR, ago(1), "JupyterLab")]
    real.write_text("[1, 2]")
    assert find_requests(None, real) == []


def test_publish_hands_the_tags_to_the_command_and_says_when_it_failed(tmp_path: Path) -> None:
    out = tmp_path / "tags.json"
    script = tmp_path / "publish.py"
    script.write_text(
        f"import sys, pathlib\npathlib.Path({str(out)!r}).write_text(sys.stdin.read())\n"
    )
    command = shlex.join([sys.executable, str(script)])
    result = told(Observation(BOOT), minutes_ago=3)
    assert publish(Options(**{**OPTIONS.__dict__, "publish_command": command}), tags(result))
    assert json.loads(out.read_text()) == tags(result)
    failing = f"{sys.executable} -c 'raise SystemExit(1)'"
    assert not publish(Options(**{**OPTIONS.__dict__, "publish_command": failing}), tags(result))
    assert not publish(OPTIONS, tags(result))  # no command: nothing published
