"""The instance's hours this month (idle_month.py): counted across stops, reboots and a month's
end with the clock injected; kept in the idle state the checker writes anyway (across a new
boot, while the idle clock restarts); published as a tag with the verdict, when it falls 15 min
behind, and with the stop, never at every check: the real checker's main() in this process,
its clock, its boot and what it sees injected, its publish command a real process."""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import idle_check
import idle_month
from idle_decision import Observation, clock_state
from idle_month import count, tag_value
from idle_tags import MONTH_HOURS_TAG, STOP_REASON_TAG, VERDICT_TAGS
from tests.ec2_bootstrap.conftest import recording_publisher

CHECK = timedelta(seconds=30)  # jupyter-on-demand-idle.timer
BOOT1 = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)


def checks(record: object, boot_id: str, booted_at: datetime, first: datetime, last: datetime):
    """The record after a check every 30 s from `first` to `last` (both included) of one boot."""
    now = first
    while now < last:
        record = count(record, now, boot_id, booted_at)
        now += CHECK
    return count(record, last, boot_id, booted_at)


def hours(record: dict[str, Any]) -> float:
    return record["hours"]


# --- Counting: idle_month.count ------------------------------------------------------------


def test_one_boot_counts_from_its_boot_to_its_last_check() -> None:
    record = checks(None, "b1", BOOT1, BOOT1 + timedelta(seconds=40), BOOT1 + timedelta(hours=2))
    assert hours(record) == pytest.approx(2.0)
    assert record["month"] == "2026-11" and record["boot_id"] == "b1"
    assert record["at"] == (BOOT1 + timedelta(hours=2)).isoformat()


def test_stops_count_each_session_and_never_the_time_between() -> None:
    record = checks(None, "b1", BOOT1, BOOT1 + CHECK, BOOT1 + timedelta(hours=3))
    boot2 = BOOT1 + timedelta(days=2)  # stopped for two days
    record = checks(record, "b2", boot2, boot2 + timedelta(seconds=45), boot2 + timedelta(hours=1))
    boot3 = boot2 + timedelta(hours=5)
    record = checks(record, "b3", boot3, boot3 + CHECK, boot3 + timedelta(minutes=30))
    assert hours(record) == pytest.approx(3 + 1 + 0.5)


def test_a_reboot_counts_the_time_since_the_new_boot() -> None:
    record = checks(None, "b1", BOOT1, BOOT1 + CHECK, BOOT1 + timedelta(hours=1))
    reboot = BOOT1 + timedelta(hours=1, seconds=20)  # 20 s after the last check
    record = count(record, reboot + timedelta(minutes=2), "b2", reboot)  # first check: 2 min on
    assert hours(record) == pytest.approx(1 + 2 / 60)


@pytest.mark.parametrize("lost_seconds", [1, 15, 29.9])
def test_an_abrupt_stop_loses_at_most_one_check_interval(lost_seconds: float) -> None:
    """Power gone between two checks: the time after the last one is all that is missing."""
    last = BOOT1 + timedelta(hours=1)
    record = checks(None, "b1", BOOT1, BOOT1 + CHECK, last)
    really_ran = (last - BOOT1).total_seconds() + lost_seconds
    boot2 = BOOT1 + timedelta(hours=4)
    record = count(record, boot2 + timedelta(minutes=10), "b2", boot2)
    really_ran += 600
    missing = really_ran - hours(record) * 3600
    assert 0 <= missing <= CHECK.total_seconds()


def test_a_month_boundary_counts_only_the_new_months_part_and_keeps_the_old_month() -> None:
    boot = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    record = checks(None, "b1", boot, boot + CHECK, datetime(2026, 11, 30, 23, 59, 45, tzinfo=UTC))
    record = count(record, datetime(2026, 12, 1, 0, 0, 15, tzinfo=UTC), "b1", boot)
    assert record["month"] == "2026-12"
    assert hours(record) == pytest.approx(15 / 3600)
    assert record["previous"]["month"] == "2026-11"
    assert record["previous"]["hours"] == pytest.approx(2.0)
    record = count(record, datetime(2026, 12, 1, 1, 0, 15, tzinfo=UTC), "b1", boot)
    assert hours(record) == pytest.approx(1 + 15 / 3600)
    assert record["previous"]["hours"] == pytest.approx(2.0)  # kept as it was


def test_a_boot_in_the_old_month_first_counted_in_the_new_one_splits_its_time() -> None:
    record = checks(None, "b1", BOOT1, BOOT1 + CHECK, BOOT1 + timedelta(hours=5))
    boot = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    record = count(record, datetime(2026, 12, 1, 0, 45, tzinfo=UTC), "b2", boot)
    assert (record["month"], hours(record)) == ("2026-12", pytest.approx(0.75))
    assert record["previous"] == {"month": "2026-11", "hours": pytest.approx(5.5)}


def test_a_clock_set_back_adds_nothing_and_counting_goes_on_from_there() -> None:
    record = checks(None, "b1", BOOT1, BOOT1 + CHECK, BOOT1 + timedelta(hours=1))
    back = BOOT1 + timedelta(minutes=50)  # NTP set the clock back 10 min
    record = count(record, back, "b1", BOOT1)
    assert hours(record) == pytest.approx(1.0)
    record = count(record, back + CHECK, "b1", BOOT1)
    assert hours(record) == pytest.approx(1.0 + 30 / 3600)


def test_hours_never_exceed_the_months_time_so_a_clock_set_back_keeps_a_figure_the_link_takes() -> (
    None
):
    """An always-on machine whose clock ran 10 min ahead, then was set back: the record keeps
    what the month has had by the corrected clock (lambda_src/cost.py refuses more)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    ahead = start + timedelta(days=3, minutes=10)  # the clock 10 min ahead
    record = count(None, ahead, "b1", start)
    assert hours(record) == pytest.approx(72 + 10 / 60)
    corrected = start + timedelta(days=3, seconds=30)
    record = count(record, corrected, "b1", start)
    assert hours(record) <= (corrected - start).total_seconds() / 3600


NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
GOOD = {"month": "2026-11", "hours": 10.0, "at": "2026-11-20T11:59:30+00:00", "boot_id": "b1"}
BROKEN = {
    "a string": "37 hours",
    "a list": [1, 2],
    "negative hours": {**GOOD, "hours": -5},
    "hours as text": {**GOOD, "hours": "10"},
    "hours not a number": {**GOOD, "hours": math.nan},
    "hours true": {**GOOD, "hours": True},
    "more hours than the month had": {**GOOD, "hours": 500.0},
    "an `at` in the future": {**GOOD, "at": "2099-11-20T12:00:00+00:00"},
    "an `at` hours ahead in this month": {**GOOD, "at": "2026-11-29T12:00:00+00:00"},
    "an `at` outside its month": {**GOOD, "at": "2026-10-20T12:00:00+00:00"},
    "an `at` that is no time": {**GOOD, "at": "yesterday"},
    "a month ahead of the clock": {**GOOD, "month": "2027-01", "at": "2027-01-02T00:00:00+00:00"},
    "month 13": {**GOOD, "month": "2026-13"},
    "no month": {key: value for key, value in GOOD.items() if key != "month"},
}


@pytest.mark.parametrize("record", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_or_hostile_record_starts_the_month_afresh_from_this_boot(record: object) -> None:
    booted = NOW - timedelta(hours=2)
    fresh = count(None, NOW, "b1", booted)
    assert hours(fresh) == pytest.approx(2.0)
    assert count(record, NOW, "b1", booted) == fresh


def test_a_broken_previous_month_is_dropped_the_month_kept() -> None:
    record = count({**GOOD, "previous": {"month": "x", "hours": -1}}, NOW, "b1", NOW)
    assert hours(record) == pytest.approx(10 + 30 / 3600) and record["previous"] is None


def test_the_tag_says_month_hours_and_when_they_were_counted() -> None:
    record = count({**GOOD, "hours": 37.25 - 1 / 120}, NOW, "b1", NOW)
    assert tag_value(record) == "month=2026-11 hours=37.25 at=2026-11-20T12:00:00Z"


@pytest.mark.parametrize(
    ("last", "due"),
    [
        (None, True),
        ({"month": "2026-11", "hours": 9.76}, False),  # 0.24 h behind
        ({"month": "2026-11", "hours": 9.75}, True),  # 0.25 h behind
        ({"month": "2026-10", "hours": 10.0}, True),
        ({"month": "2026-11", "hours": 12.0}, True),  # ahead: the record started afresh
        ({"month": "2026-11", "hours": "9"}, True),
    ],
)
def test_the_tag_goes_alone_only_a_quarter_hour_behind(last: object, due: bool) -> None:
    assert idle_month.behind(last, {"month": "2026-11", "hours": 10.0}) is due


# --- Kept in the idle state across boots ------------------------------------------------------

BOOTED = datetime(2026, 11, 28, 8, tzinfo=UTC)


def test_the_month_survives_a_new_boot_while_the_idle_clock_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    record = count(None, BOOTED + timedelta(hours=3), "old", BOOTED)
    old = {**clock_state("old", BOOTED + timedelta(hours=2), "a save"), "warned_at": "x"}
    path.write_text(json.dumps({**old, idle_month.MONTH_KEY: record}))
    new_boot = BOOTED + timedelta(hours=9)
    state = idle_check.load_state(path, "new", new_boot)
    assert state == {**clock_state("new", new_boot, "boot"), idle_month.MONTH_KEY: record}


def test_restarting_the_clock_when_jupyter_answers_keeps_the_month(tmp_path: Path) -> None:
    """boot_ready.py restarts the idle clock at the end of the wake (see the report: it must
    call idle_check.restart_clock so the month is not lost)."""
    path = tmp_path / "state.json"
    record = count(None, BOOTED + timedelta(hours=3), "old", BOOTED)
    path.write_text(json.dumps({**clock_state("old", BOOTED, "boot"), "month_hours": record}))
    ready = BOOTED + timedelta(hours=9)
    idle_check.restart_clock(path, "new", ready, "Jupyter ready")
    saved = json.loads(path.read_text())
    assert saved == {**clock_state("new", ready, "Jupyter ready"), idle_month.MONTH_KEY: record}


# --- Through the checker: main() with its clock, boot and observation injected ---------------


@dataclass
class Machine:
    """The checker's world for in-process runs of idle_check.main: the time, the boot, what it
    sees; the publish command and stop command are real processes."""

    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    now: datetime
    boot_id: str = "boot-1"
    booted_at: datetime = BOOTED
    seen: list[str] = field(default_factory=list)  # what is active
    latest: dict[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.monkeypatch.setattr(idle_check, "utcnow", lambda: self.now)
        self.monkeypatch.setattr(idle_check, "boot_id", lambda: self.boot_id)
        self.monkeypatch.setattr(idle_check, "boot_time", lambda: self.booted_at)
        self.monkeypatch.setattr(idle_check, "look", lambda *args: self.observation())
        self.monkeypatch.setenv("PATH", str(self.tmp_path / "no-bin"))  # no `wall`, no nvidia-smi

    def observation(self) -> Observation:
        return Observation(self.booted_at, active=list(self.seen), latest=dict(self.latest))

    @property
    def state_file(self) -> Path:
        return self.tmp_path / "state.json"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def run(self, *args: str, after: timedelta = timedelta(0)) -> dict[str, Any]:
        """One check, `after` the last; its JSON line."""
        self.now += after
        stop = shlex.join([sys.executable, "-c", f"open({str(self.tmp_path / 'stopped')!r}, 'w')"])
        argv = ["--jupyter-url", "http://127.0.0.1:9", "--state-file", str(self.state_file),
                "--stop-command", stop, "--idle-minutes", "40", *args]  # fmt: skip
        out = self.tmp_path / "stdout"
        with out.open("w") as stdout:
            self.monkeypatch.setattr(sys, "stdout", stdout)
            assert idle_check.main(argv) == 0
        self.monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        return json.loads(out.read_text())

    @property
    def stopped(self) -> bool:
        return (self.tmp_path / "stopped").exists()


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    yield Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))


def calls(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_the_checker_counts_the_month_across_a_reboot_in_its_state(machine: Machine) -> None:
    machine.seen = ["kernel busy: train.ipynb"]
    machine.run()  # 5 min after the boot
    machine.run(after=timedelta(hours=1))
    assert machine.state()[idle_month.MONTH_KEY]["hours"] == pytest.approx(65 / 60)
    machine.boot_id, machine.booted_at = "boot-2", machine.now + timedelta(hours=10)
    machine.now = machine.booted_at
    machine.run(after=timedelta(minutes=3))
    state = machine.state()
    assert state["boot_id"] == "boot-2" and state["reason"] == "kernel busy: train.ipynb"
    assert state[idle_month.MONTH_KEY]["hours"] == pytest.approx(68 / 60)


def test_a_broken_month_in_the_state_never_stops_the_check(machine: Machine) -> None:
    machine.run()
    machine.state_file.write_text(json.dumps({**machine.state(), "month_hours": "lots"}))
    decision = machine.run(after=CHECK)
    assert decision["action"] == "none"
    assert machine.state()[idle_month.MONTH_KEY]["hours"] == pytest.approx((5 * 60 + 30) / 3600)


def test_the_month_goes_with_the_verdicts_tags_then_alone_each_quarter_hour(
    machine: Machine,
) -> None:
    command, out = recording_publisher(machine.tmp_path)
    machine.seen = ["kernel busy: train.ipynb"]
    machine.run("--publish-command", command)
    first = calls(out)
    assert len(first) == 1 and set(first[0]) == set(VERDICT_TAGS) - {
        STOP_REASON_TAG,
        "jupyter-on-demand:stopped-at",
    }
    assert first[0][MONTH_HOURS_TAG] == "month=2026-11 hours=0.08 at=2026-11-28T08:05:00Z"
    for _ in range(29):  # 14.5 min of checks, the same verdict: nothing more
        machine.run("--publish-command", command, after=CHECK)
    assert len(calls(out)) == 1
    machine.run("--publish-command", command, after=CHECK)  # 15 min behind: the hours alone
    assert calls(out)[1:] == [{MONTH_HOURS_TAG: "month=2026-11 hours=0.33 at=2026-11-28T08:20:00Z"}]
    machine.seen = []  # the run ended: the verdict changes, the hours go with it
    machine.run("--publish-command", command, after=CHECK)
    last = calls(out)[-1]
    assert last["jupyter-on-demand:stops-at"] == "2026-11-28T09:00:00Z"
    assert last[MONTH_HOURS_TAG] == "month=2026-11 hours=0.34 at=2026-11-28T08:20:30Z"


def test_the_stop_tags_carry_the_sessions_final_hours(machine: Machine) -> None:
    command, out = recording_publisher(machine.tmp_path)
    machine.run("--publish-command", command)
    machine.run("--publish-command", command, after=timedelta(minutes=40))  # 45 min since boot
    assert machine.stopped
    stop = calls(out)[-1]
    assert stop[STOP_REASON_TAG] == "nobody worked for 40 min"
    assert stop[MONTH_HOURS_TAG] == "month=2026-11 hours=0.75 at=2026-11-28T08:45:00Z"
    assert machine.state()[idle_month.MONTH_KEY]["hours"] == pytest.approx(0.75)
