"""What the idle checker observes: kernels, terminals, processes' CPU, GPUs, boot steps, input.

`observe` turns one look at the machine (a Machine: /proc's process table and the time) into an
Observation for idle_decision.decide: what is active now, the latest interactions, what was seen
and did not count, and the records the next run compares with (CPU samples, since when a kernel
or a terminal has been busy), which decide saves in the idle state. Standard library only
(idle_check.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idle_decision import CLOCK_SKEW, UTC, Observation, Options, is_stuck, parse_time
from idle_jupyter import JupyterUnreachable, api, deadline, observe_activity_file
from idle_keep_awake import find_requests, iso, kept_awake_until
from idle_proc import (
    CLOCK_TICKS,
    Proc,
    all_processes,
    ancestors,
    descendants,
    read_proc,
    uptime_seconds,
)

JUPYTER_SERVER = re.compile(r"jupyter[- _](lab|server|notebook)\b|jupyterlab\b")
# cloud-init's stages run the first boot's runcmd, which starts the install.
BOOT_STEP = re.compile(
    r"boot\.py (install|sync|wake|secrets|repo|ready)\b|cloud-init (init|modules)\b"
)

logger = logging.getLogger("jupyter_on_demand.idle")
SCRIPT = re.compile(r"[^\s/]+\.(py|sh|ipynb|R|jl|js)")


def program(cmdline: str) -> str:
    """What a process runs, without its arguments, which may hold secrets (`mysqldump -p…`): the
    reasons reach the instance's tags and the start page. The program's name, and the script it
    runs, if any ("python train.py")."""
    words = cmdline.split()
    if not words:
        return "?"
    name = os.path.basename(words[0])
    for word in words[1:]:
        if word.startswith("-"):  # python -u train.py
            continue
        script = os.path.basename(word)
        return f"{name} {script}" if SCRIPT.fullmatch(script) else name
    return name


@dataclass(frozen=True)
class Machine:
    """One run's look at the machine."""

    procs: dict[int, Proc]
    own: set[int]  # this run and the processes above it: never judged
    now: datetime

    @classmethod
    def scan(cls, now: datetime) -> Machine:
        procs = all_processes()
        return cls(procs, {os.getpid(), *ancestors(procs, os.getpid())}, now)


def user_pids(machine: Machine, options: Options) -> set[int]:
    procs = machine.procs
    if options.process_root is not None:
        pids = descendants(procs, options.process_root) & set(procs)
    else:
        pids = {p.pid for p in procs.values() if p.uid >= options.min_uid}
    return pids - machine.own


def cpu_usage(
    machine: Machine, pids: set[int], state: Mapping[str, Any]
) -> tuple[dict[int, float], dict[str, Any]]:
    """Percent of one core each process used since the last run (or over 1 s), and the sample
    for the next run."""
    previous = {int(pid): tuple(v) for pid, v in state.get("cpu", {}).items()}
    elapsed = time.time() - state.get("cpu_sampled_at", 0)
    if previous and 5 <= elapsed <= 600:
        before, after = previous, {pid: machine.procs.get(pid) for pid in pids}
    else:  # no recent sample (first run, or runs too close): measure over one second
        before = {pid: (machine.procs[pid].start, machine.procs[pid].ticks) for pid in pids}
        time.sleep(1.0)
        elapsed = 1.0
        after = {pid: read_proc(pid) for pid in pids}
    uptime = uptime_seconds()
    usage = {}
    for pid, proc in after.items():
        if proc is None:
            continue
        start, ticks = before.get(pid, (None, 0))
        window = elapsed
        if start != proc.start:  # started since the last sample: its average since it started
            ticks, window = 0, max(uptime - proc.start / CLOCK_TICKS, 1.0)
        usage[pid] = 100.0 * (proc.ticks - ticks) / CLOCK_TICKS / window
    sample = {str(pid): [p.start, p.ticks] for pid, p in after.items() if p is not None}
    return usage, {"cpu": sample, "cpu_sampled_at": time.time()}


def busy_processes(machine: Machine, usage: dict[int, float], options: Options) -> list[str]:
    """The first user process at --cpu-percent or more. Not the Jupyter server itself: its CPU
    follows the open tabs' polling. Its kernels and terminals are processes of their own and do
    count."""
    for pid, percent in sorted(usage.items()):
        cmdline = machine.procs[pid].cmdline
        if percent >= options.cpu_percent and not JUPYTER_SERVER.search(cmdline):
            return [f"process {program(cmdline)} (pid {pid}) at {percent:.0f} % CPU"]
    return []


def kernel_cpu(machine: Machine, kernel_id: str, usage: dict[int, float]) -> float:
    procs = machine.procs
    roots = [p.pid for p in procs.values() if f"kernel-{kernel_id}.json" in p.cmdline]
    tree: set[int] = set().union(*(descendants(procs, root) for root in roots))
    return sum(usage.get(pid, 0.0) for pid in tree)


def observe_kernels(
    seen: Observation,
    machine: Machine,
    usage: dict[int, float],
    state: Mapping[str, Any],
    options: Options,
) -> None:
    """Busy and starting kernels count, unless stuck (idle_decision.is_stuck)."""
    kernels = api(options, "/api/kernels")
    names: dict[str, str] = {}
    if any(kernel.get("execution_state") in ("busy", "starting") for kernel in kernels):
        try:
            names = notebook_names(options)
        except JupyterUnreachable:  # only the names are lost: the kernels count all the same
            logger.warning("Jupyter's sessions are unreadable: kernels named by their ids")
    busy_since = state.get("busy_since", {})
    current = {}
    for kernel in kernels:
        kid, status = kernel.get("id", ""), kernel.get("execution_state")
        if status not in ("busy", "starting"):
            continue
        since = parse_time(busy_since.get(f"{kid}:{status}")) or machine.now
        current[f"{kid}:{status}"] = since.isoformat()
        age = (machine.now - since).total_seconds()
        cap = options.stuck_busy_seconds if status == "busy" else options.stuck_starting_seconds
        cpu = kernel_cpu(machine, kid, usage)
        if is_stuck(age, cap, cpu, options):
            seen.notes.append(
                f"kernel {kid[:8]} {status} for {age / 60:.0f} min at {cpu:.0f}% CPU: ignored as stuck"
            )
            continue
        seen.active.append(f"kernel {status}: {names.get(kid, kid[:8])}")
    seen.memory["busy_since"] = current


def notebook_names(options: Options) -> dict[str, str]:
    """Each kernel's notebook (or console) name, from Jupyter's sessions: what the start page
    and the status bar name ("kernel busy: train.ipynb"). The id's start when there is none."""
    names = {}
    for session in api(options, "/api/sessions"):
        kernel = session.get("kernel") if isinstance(session, dict) else None
        path = session.get("path") if isinstance(session, dict) else None
        if isinstance(kernel, dict) and isinstance(path, str) and path:
            names[str(kernel.get("id"))] = path.rsplit("/", 1)[-1][:60]
    return names


def terminal_jobs(procs: dict[int, Proc], pids: set[int]) -> list[tuple[Proc, Proc]]:
    """(shell, job): terminals whose foreground group isn't their shell's."""
    jobs = []
    for pid in pids:
        proc = procs.get(pid)
        if proc is None or proc.tty == 0 or proc.pid != proc.pgrp or proc.tpgid <= 0:
            continue
        parent = procs.get(proc.ppid)
        is_session_shell = parent is None or parent.tty != proc.tty
        if is_session_shell and proc.tpgid != proc.pgrp:
            job = next((p for p in procs.values() if p.pgrp == proc.tpgid), None)
            if job is not None:
                jobs.append((proc, job))
    return sorted(jobs, key=lambda pair: pair[0].pid)


def observe_terminal_jobs(
    seen: Observation,
    machine: Machine,
    pids: set[int],
    usage: dict[int, float],
    state: Mapping[str, Any],
    options: Options,
) -> None:
    """A terminal's job counts, but not once its terminal has run jobs for
    --stuck-busy-minutes at ~0% CPU with nobody typing: a REPL, an editor or a `while
    sleep` loop left in a forgotten terminal must not bill a GPU forever (kernels get the same
    rule). The age belongs to the terminal's shell, since a loop starts a new job each time."""
    terminal_since = state.get("terminal_since", {})
    current = {}
    now = machine.now
    for shell, job in terminal_jobs(machine.procs, pids):
        label = f"{program(job.cmdline)} (pid {job.pid})"
        key = f"{shell.pid}:{shell.start}"
        since = parse_time(terminal_since.get(key)) or now
        typed = tty_atime(shell.pid, now)
        if typed is not None and typed > since:
            since = min(typed, now)  # someone typed: the terminal is in use
        current[key] = since.isoformat()
        age = (now - since).total_seconds()
        cpu = sum(usage.get(p.pid, 0.0) for p in machine.procs.values() if p.tty == shell.tty)
        if is_stuck(age, options.stuck_busy_seconds, cpu, options):
            seen.notes.append(
                f"terminal job {label}: nobody typed for {age / 3600:.1f} h, {cpu:.0f}% CPU: ignored"
            )
            continue
        seen.active.append(f"terminal job: {label}")
    seen.memory["terminal_since"] = current


def tty_atime(pid: int, now: datetime) -> datetime | None:
    """The last input on a process's terminal (its tty's access time, as `w` shows it); a
    time in the future (`touch -a -d 2099-…` on one's own tty) is ignored."""
    try:
        tty = os.readlink(f"/proc/{pid}/fd/0")
        if not tty.startswith(("/dev/pts/", "/dev/tty")):
            return None
        atime = datetime.fromtimestamp(os.stat(tty).st_atime, tz=UTC)
    except OSError:
        return None
    return atime if atime <= now + CLOCK_SKEW else None


def tty_input(pids: set[int], now: datetime) -> datetime | None:
    """Last input on the terminals of user processes."""
    times = [t for t in (tty_atime(pid, now) for pid in pids) if t is not None]
    return max(times, default=None)


def gpus_busy(options: Options) -> list[str]:
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        out = subprocess.run(
            [nvidia_smi, "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        # A broken driver must not keep the machine awake, nor stop the check.
        logger.warning("nvidia-smi failed: %s", error)
        return []
    busy = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if (
            len(parts) == 2
            and parts[1].replace(".", "", 1).isdigit()
            and float(parts[1]) >= options.gpu_percent
        ):
            busy.append(f"GPU {parts[0]} at {parts[1]} %")
    return busy


def boot_steps(machine: Machine, options: Options) -> list[str]:
    """Boot steps still running early in the boot (a first install takes minutes)."""
    if uptime_seconds() >= options.boot_grace_seconds:
        return []
    steps = {
        match.group(1) or "cloud-init"
        for proc in machine.procs.values()
        if proc.uid == 0 and (match := BOOT_STEP.search(proc.cmdline))
    }
    return [f"boot step {step} running" for step in sorted(steps)]


def observe(
    state: Mapping[str, Any], options: Options, machine: Machine, booted_at: datetime
) -> Observation:
    """Every signal, in the order their reasons are reported (the first active one is the
    clock's reason)."""
    seen = Observation(booted_at=booted_at)
    pids = user_pids(machine, options)
    usage, sample = cpu_usage(machine, pids, state)
    seen.memory.update(sample)
    try:
        with deadline(options.api_deadline_seconds):
            observe_kernels(seen, machine, usage, state, options)
            api(options, "/api/terminals")  # reachable check; terminals are judged from /proc
    except JupyterUnreachable as error:
        seen.notes.append(f"Jupyter unreachable ({error})")
    seen.active += boot_steps(machine, options)
    seen.active += busy_processes(machine, usage, options)
    observe_terminal_jobs(seen, machine, pids, usage, state, options)
    seen.active += gpus_busy(options)
    try:
        found = find_requests(options.imds_url, options.keep_awake_file)
        until = kept_awake_until(found, machine.now, options.max_keep_awake_seconds / 3600)
    except Exception:  # the user's file, the metadata: never at the cost of the other signals
        logger.exception("the keep-awake requests could not be read; none counts")
        found, until = [], None
    # The latest request seen, honoured or not: a new one is told even when it changes nothing
    # (over this machine's cap, say), so the start link never shows one the checker ignores.
    seen.keep_awake_requested = max((r.set_at for r in found), default=None)
    if until is not None and until > machine.now:
        seen.active.append(f"kept awake until {iso(until)}")
        seen.kept_awake_until = until
    elif until is not None:  # ended: the idle clock starts from its end, not from the last check
        seen.latest[f"kept awake until {iso(until)}"] = until
    if options.activity_file is not None:
        observe_activity_file(seen, options.activity_file, machine.now)
    typed = tty_input(pids, machine.now)
    if typed:
        seen.latest["terminal input"] = typed
    return seen
