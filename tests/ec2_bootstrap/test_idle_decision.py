"""The idle table: idle_decision.decide, a pure function, row by row.

The real-process tests (test_idle_check.py) show that each signal is seen: a busy kernel, a
terminal's job, a GPU, an edit. Here each row is one situation as the decision receives it, and
what it must do. An open browser tab with nobody there has no row: it never reaches the
Observation (jupyter_activity counts none of its polling, /api/status is never read),
which test_idle_check.py shows with a real tab in Chromium.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from idle_decision import Observation, Options, Verdict, clock_state, decide, is_stuck

BOOT = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
NOW = BOOT + timedelta(hours=2)
OPTIONS = Options(jupyter_url="http://127.0.0.1:1", token="", state_file=Path("unused"))
LIMIT_MINUTES = OPTIONS.idle_seconds / 60  # 40: the warning comes at 35


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def state(minutes_ago: float, reason: str = "Jupyter ready", **extra: Any) -> dict[str, Any]:
    return {**clock_state("this-boot", ago(minutes_ago), reason), **extra}


# (state, what was seen, options changed) -> (action, idle minutes, the clock's reason, in the verdict)
ROWS = {
    "a busy kernel restarts the clock": (
        state(60),
        Observation(BOOT, active=["kernel busy: train.ipynb"]),
        {},
        ("none", 0, "kernel busy: train.ipynb", "active: kernel busy: train.ipynb"),
    ),
    "a terminal's job restarts the clock": (
        state(60),
        Observation(BOOT, active=["terminal job: sleep 300 (pid 42)"]),
        {},
        ("none", 0, "terminal job: sleep 300 (pid 42)", "active: terminal job: sleep 300"),
    ),
    "the first active reason is the clock's, every one is said": (
        state(60),
        Observation(BOOT, active=["boot step install running", "GPU 2 at 97%"]),
        {},
        ("none", 0, "boot step install running", "active: boot step install running, GPU 2"),
    ),
    "an interaction counts from its own time": (
        state(60),
        Observation(BOOT, latest={"interaction in Jupyter (PUT /api/contents/a.md)": ago(10)}),
        {},
        ("none", 10, "interaction in Jupyter (PUT /api/contents/a.md)", "10.0 min ago"),
    ),
    "the newest of several interactions wins": (
        state(60),
        Observation(BOOT, latest={"terminal input": ago(3), "interaction in Jupyter (x)": ago(20)}),
        {},
        ("none", 3, "terminal input", "3.0 min ago: terminal input"),
    ),
    "an interaction older than the clock's start changes nothing": (
        state(5, "kernel busy: train.ipynb"),
        Observation(BOOT, latest={"terminal input": ago(30)}),
        {},
        ("none", 5, "kernel busy: train.ipynb", "5.0 min ago: kernel busy: train.ipynb"),
    ),
    "an interaction recorded ahead of the clock counts as now": (
        state(60),
        Observation(BOOT, latest={"terminal input": NOW + timedelta(seconds=30)}),
        {},
        ("none", 0, "terminal input", "0.0 min ago"),
    ),
    "idle just under the warning time: nothing to do": (
        state(LIMIT_MINUTES - 5.1),
        Observation(BOOT),
        {},
        ("none", LIMIT_MINUTES - 5.1, "Jupyter ready", "34.9 min ago: Jupyter ready"),
    ),
    "idle five minutes before the limit: a warning": (
        state(LIMIT_MINUTES - 5),
        Observation(BOOT),
        {},
        ("warn", LIMIT_MINUTES - 5, "Jupyter ready", "35.0 min ago"),
    ),
    "warned since the last activity: no second warning": (
        state(LIMIT_MINUTES - 3, warned_at=ago(1).isoformat()),
        Observation(BOOT),
        {},
        ("none", LIMIT_MINUTES - 3, "Jupyter ready", "37.0 min ago"),
    ),
    "warned before the last activity: a new warning": (
        state(LIMIT_MINUTES - 4, warned_at=ago(50).isoformat()),
        Observation(BOOT),
        {},
        ("warn", LIMIT_MINUTES - 4, "Jupyter ready", "36.0 min ago"),
    ),
    "a short limit warns at three quarters of it": (
        state(4.5),
        Observation(BOOT),
        {"idle_seconds": 6 * 60},
        ("warn", 4.5, "Jupyter ready", "4.5 min ago"),
    ),
    "a short limit: no warning before three quarters of it": (
        state(4.4),
        Observation(BOOT),
        {"idle_seconds": 6 * 60},
        ("none", 4.4, "Jupyter ready", "4.4 min ago"),
    ),
    "idle for the limit: stop": (
        state(LIMIT_MINUTES),
        Observation(BOOT),
        {},
        ("stop", LIMIT_MINUTES, "Jupyter ready", "40.0 min ago: Jupyter ready"),
    ),
    "idle for the limit in a dry run: would-stop": (
        state(LIMIT_MINUTES + 1),
        Observation(BOOT),
        {"dry_run": True},
        ("would-stop", LIMIT_MINUTES + 1, "Jupyter ready", "41.0 min ago"),
    ),
    "what was seen and ignored does not restart the clock, and is said": (
        state(LIMIT_MINUTES + 1),
        Observation(
            BOOT,
            notes=[
                "kernel 1234abcd busy for 200 min at 0% CPU: ignored as stuck",
                "Jupyter unreachable (URLError)",
            ],
        ),
        {},
        (
            "stop",
            LIMIT_MINUTES + 1,
            "Jupyter ready",
            "[kernel 1234abcd busy for 200 min at 0% CPU: ignored as stuck; Jupyter unreachable (URLError)]",
        ),
    ),
    "a fresh boot: the clock runs from the boot": (
        clock_state("this-boot", BOOT, "boot"),
        Observation(BOOT),
        {"idle_seconds": 3 * 3600},
        ("none", 120, "boot", "120.0 min ago: boot"),
    ),
    "a state with no time: the clock runs from the boot": (
        {"boot_id": "this-boot"},
        Observation(BOOT),
        {},
        ("stop", 120, "boot", "120.0 min ago: boot"),
    ),
    "a state with a broken time: the clock runs from the boot": (
        state(0, last_active="yesterday"),
        Observation(BOOT),
        {},
        ("stop", 120, "Jupyter ready", "120.0 min ago: Jupyter ready"),
    ),
    "the clock went back behind the last activity: idle 0, never negative": (
        state(-10),
        Observation(BOOT),
        {},
        ("none", 0, "Jupyter ready", "0.0 min ago"),
    ),
}


@pytest.mark.parametrize(("before", "seen", "changed", "expected"), ROWS.values(), ids=ROWS.keys())
def test_the_idle_table(
    before: dict[str, Any],
    seen: Observation,
    changed: dict[str, Any],
    expected: tuple[str, float, str, str],
) -> None:
    action, idle_minutes, clock_reason, said = expected
    options = replace(OPTIONS, **changed)
    after, verdict = decide(before, seen, options, NOW)
    assert verdict.action == action
    assert verdict.idle_seconds == pytest.approx(idle_minutes * 60)
    assert verdict.idle is (action in ("stop", "would-stop"))
    assert said in verdict.reason
    assert after["reason"] == clock_reason
    assert after["boot_id"] == "this-boot"
    assert ("warned_at" in after and after["warned_at"] == NOW.isoformat()) is (action == "warn")


def test_activity_now_moves_the_clock_to_now() -> None:
    after, _ = decide(state(60), Observation(BOOT, active=["GPU 0 at 99%"]), OPTIONS, NOW)
    assert after["last_active"] == NOW.isoformat()


def test_an_interaction_moves_the_clock_to_its_time() -> None:
    seen = Observation(BOOT, latest={"terminal input": ago(7)})
    after, _ = decide(state(60), seen, OPTIONS, NOW)
    assert after["last_active"] == ago(7).isoformat()


def test_an_interaction_ahead_of_the_clock_moves_it_to_now_not_later() -> None:
    seen = Observation(BOOT, latest={"terminal input": NOW + timedelta(seconds=30)})
    after, _ = decide(state(60), seen, OPTIONS, NOW)
    assert after["last_active"] == NOW.isoformat()


def test_the_signals_records_are_saved_and_the_rest_of_the_state_kept() -> None:
    before = state(
        1, stopped_at=ago(600).isoformat(), cpu={"7": [1, 2]}, busy_since={"k:busy": "x"}
    )
    seen = Observation(BOOT, memory={"cpu": {"8": [3, 4]}, "cpu_sampled_at": 1.5})
    after, _ = decide(before, seen, OPTIONS, NOW)
    assert after["cpu"] == {"8": [3, 4]} and after["cpu_sampled_at"] == 1.5
    assert after["busy_since"] == {"k:busy": "x"}  # not observed this run: kept
    assert after["stopped_at"] == before["stopped_at"]


def test_deciding_changes_neither_the_state_nor_the_observation() -> None:
    before = state(LIMIT_MINUTES - 5)
    copy = dict(before)
    seen = Observation(BOOT, latest={"terminal input": ago(50)})
    decide(before, seen, OPTIONS, NOW)
    assert before == copy
    assert seen == Observation(BOOT, latest={"terminal input": ago(50)})


def test_the_record_is_the_json_line_each_run_prints() -> None:
    verdict = Verdict(NOW, "warn", "why", 2100.04, 2400.0, ["x"], ago(35))
    assert verdict.record() == {
        "time": NOW.isoformat(),
        "idle": False,
        "idle_seconds": 2100.0,
        "idle_limit_seconds": 2400.0,
        "reason": "why",
        "action": "warn",
        "active": ["x"],
    }


# (how long busy, the cap, the CPU it used) -> ignored as stuck
STUCK = {
    "busy just under the cap at 0% CPU: counts": (3 * 3600 - 1, 3 * 3600, 0.0, False),
    "busy for the cap at 0% CPU: stuck": (3 * 3600, 3 * 3600, 0.0, True),
    "busy for days in a training loop: counts": (72 * 3600, 3 * 3600, 95.0, False),
    "CPU exactly at --cpu-percent: counts": (4 * 3600, 3 * 3600, OPTIONS.cpu_percent, False),
    "starting for the cap at 0% CPU: stuck": (600, 600, 0.0, True),
}


@pytest.mark.parametrize(("age", "cap", "cpu", "stuck"), STUCK.values(), ids=STUCK.keys())
def test_what_is_stuck(age: float, cap: float, cpu: float, stuck: bool) -> None:
    assert is_stuck(age, cap, cpu, OPTIONS) is stuck
