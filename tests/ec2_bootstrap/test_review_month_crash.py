"""Review: a bug in the month counting must never stop the check (idle_check.count_hours says
so); its fallback calls the same code unguarded."""

from __future__ import annotations

from datetime import timedelta

import idle_month
from tests.ec2_bootstrap.test_idle_month import BOOTED, Machine


def test_a_crash_in_the_month_counting_never_stops_the_check(tmp_path, monkeypatch) -> None:
    machine = Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    machine.run()

    def broken(*args: object) -> float:
        raise ZeroDivisionError("a bug in the month counting")

    monkeypatch.setattr(idle_month, "hours_within", broken)
    decision = machine.run(after=timedelta(minutes=40))  # idle 45 min: must stop
    assert decision["action"] == "stop" and machine.stopped


def test_a_crash_in_the_month_counting_at_the_stop_never_blocks_the_stop(
    tmp_path, monkeypatch
) -> None:
    machine = Machine(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    machine.run()
    real = idle_month.count
    calls = []

    def second_call_fails(*args: object):
        calls.append(1)
        if len(calls) > 1:  # the recount in act (the stop) fails
            raise ValueError("a bug in the month counting")
        return real(*args)

    monkeypatch.setattr(idle_month, "count", second_call_fails)
    machine.run(after=timedelta(minutes=40))
    assert machine.stopped
