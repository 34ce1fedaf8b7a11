"""The idle checker's view of /proc: the process table, the boot, and the uptime.

Reads only; no judgement (idle_signals.py decides what a process means). Standard library only:
the idle checker runs on the system Python (idle_check.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

UTC = timezone.utc
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    """The fields of /proc/<pid>/stat and status the checker uses."""

    pid: int
    ppid: int
    pgrp: int
    tty: int  # the controlling terminal's device number; 0 for none
    tpgid: int  # the terminal's foreground process group
    uid: int
    ticks: int  # user + system CPU time, in CLOCK_TICKS
    start: int  # start time after boot, in CLOCK_TICKS: with the pid, it names one process
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    """One process, or None when it is gone (or /proc says something unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except (OSError, ValueError):
        return None
    # The command name in parentheses may hold spaces and parentheses: the fields follow the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        tty=int(fields[4]),
        tpgid=int(fields[5]),
        uid=uid,
        ticks=int(fields[11]) + int(fields[12]),
        start=int(fields[19]),
        cmdline=cmdline.strip(),
    )


def all_processes() -> dict[int, Proc]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_proc(int(entry))
            if proc is not None:
                procs[proc.pid] = proc
    return procs


def descendants(procs: dict[int, Proc], root: int) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def ancestors(procs: dict[int, Proc], pid: int) -> set[int]:
    """`pid` and the processes above it, init excluded."""
    found: set[int] = set()
    while pid in procs and pid not in found and pid > 1:
        found.add(pid)
        pid = procs[pid].ppid
    return found


def uptime_seconds() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def boot_time() -> datetime:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return datetime.fromtimestamp(int(line.split()[1]), tz=UTC)
    return datetime.now(UTC)


def boot_id() -> str:
    """This boot's id: a saved idle state from another boot is stale."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(boot_time().timestamp())
