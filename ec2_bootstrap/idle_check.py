"""Idle checker: stops the instance after --idle-minutes with nobody working and nothing running.

On the instance, `python3 idle_check.py --instance` runs every 30 s from a systemd timer that
user_data installs first, on the system Python with the standard library only: no failed install,
secret or Jupyter can switch the stop off. Settings come from the instance layout (layout.py).
Each run prints one JSON line {"idle", "idle_seconds", "reason", "action", ...}; action is none,
warn, stop or (--dry-run) would-stop. The rules, as the README's "What keeps the machine awake":
  - active now (resets the clock): a busy or starting kernel (but not one stuck for hours at ~0%
    CPU), a terminal's foreground job, a user process at >= --cpu-percent of a core (not the
    Jupyter server, whose CPU follows the tabs' polling), a busy GPU, a boot step running in the
    first --boot-grace-minutes;
  - the latest interaction: what jupyter_extensions.py records (never a tab's polling; the file is
    the service user's, so it is read without following links, and future times are ignored), tty
    input, and the moment Jupyter became ready (or the boot).
Jupyter unreachable or hanging (--api-deadline in all) counts as no activity; /api/status
last_activity is never used (an open tab moves it). Before stopping: a warning, the autosave
flush, the reason in the log, then --stop-command (the instance's shutdown behaviour is stop).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from layout import Paths, read_config, read_regular, write_file

UTC = timezone.utc

logger = logging.getLogger("jupyter_on_demand.idle")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
JUPYTER_SERVER = re.compile(r"jupyter[- _](lab|server|notebook)\b|jupyterlab\b")
# cloud-init's stages run the first boot's runcmd, which starts the install.
BOOT_STEP = re.compile(
    r"boot\.py (install|sync|wake|secrets|repo|ready)\b|cloud-init (init|modules)\b"
)
WARN_SECONDS = 300.0
DEFAULT_IDLE_MINUTES = 40.0
CLOCK_SKEW = timedelta(seconds=60)
FLUSH_INCOMPLETE = 3  # git_autosave.py flush: pushed, but not everything is on the team's branch


class JupyterUnreachable(Exception):
    """Jupyter did not answer in time, or not with JSON."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from Jupyter's ISO strings ('...Z' or '+00:00'); None otherwise."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # Jupyter's times are UTC; never read them as local time
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# --- /proc --------------------------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    ppid: int
    pgrp: int
    tty: int
    tpgid: int
    uid: int
    ticks: int
    start: int
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except (OSError, ValueError):
        return None
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
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def boot_time() -> datetime:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return datetime.fromtimestamp(int(line.split()[1]), tz=UTC)
    return utcnow()


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(boot_time().timestamp())


# --- The checker --------------------------------------------------------------------------------


@dataclass
class Options:
    jupyter_url: str
    token: str
    idle_seconds: float
    state_file: Path
    activity_file: Path | None = None
    dry_run: bool = False
    stop_command: str = "shutdown -h now"
    flush_command: str | None = None
    insecure: bool = False
    min_uid: int = 1000
    process_root: int | None = None
    cpu_percent: float = 10.0
    gpu_percent: float = 10.0
    stuck_busy_seconds: float = 3 * 3600
    stuck_starting_seconds: float = 600
    warn_seconds: float = WARN_SECONDS
    boot_grace_seconds: float = 30 * 60
    heartbeat_file: Path | None = None
    api_deadline_seconds: float = 30


@dataclass
class Observation:
    active: list[str] = field(default_factory=list)  # reasons the machine is in use right now
    latest: dict[str, datetime] = field(default_factory=dict)  # newest time of each interaction
    notes: list[str] = field(default_factory=list)


class Checker:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.now = utcnow()
        self.state = self.load_state()
        self.procs = all_processes()
        self.own = {os.getpid(), *self._ancestors(os.getpid())}

    # --- state ---

    def load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(read_regular(self.o.state_file) or b"{}")
        except ValueError:
            state = {}
        if not isinstance(state, dict):
            state = {}
        if state.get("boot_id") != boot_id():
            logger.info("new boot: the idle clock starts at boot")
            state = {"boot_id": boot_id(), "last_active": boot_time().isoformat(), "reason": "boot"}
        return state

    def save_state(self) -> None:
        """Atomically, never through a symlink; a full disk is logged and never stops the stop."""
        try:
            write_file(self.o.state_file, json.dumps(self.state, indent=1), 0o644)
        except OSError:
            logger.exception("could not save the idle state in %s", self.o.state_file)

    def _ancestors(self, pid: int) -> set[int]:
        found = set()
        while pid in self.procs and pid not in found and pid > 1:
            found.add(pid)
            pid = self.procs[pid].ppid
        return found

    # --- processes ---

    def user_pids(self) -> set[int]:
        if self.o.process_root is not None:
            pids = descendants(self.procs, self.o.process_root) & set(self.procs)
        else:
            pids = {p.pid for p in self.procs.values() if p.uid >= self.o.min_uid}
        return pids - self.own

    def cpu_usage(self) -> dict[int, float]:
        """Percent of one core each user process used since the last run (or over 1 s)."""
        previous = {int(pid): tuple(v) for pid, v in self.state.get("cpu", {}).items()}
        elapsed = time.time() - self.state.get("cpu_sampled_at", 0)
        pids = self.user_pids()
        if previous and 5 <= elapsed <= 600:
            before, after = previous, {pid: self.procs.get(pid) for pid in pids}
        else:  # no recent sample (first run, or runs too close): measure over one second
            before = {pid: (self.procs[pid].start, self.procs[pid].ticks) for pid in pids}
            time.sleep(1.0)
            elapsed = 1.0
            after = {pid: read_proc(pid) for pid in pids}
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        usage = {}
        for pid, proc in after.items():
            if proc is None:
                continue
            start, ticks = before.get(pid, (None, 0))
            window = elapsed
            if start != proc.start:  # started since the last sample: its average since it started
                ticks, window = 0, max(uptime - proc.start / CLOCK_TICKS, 1.0)
            usage[pid] = 100.0 * (proc.ticks - ticks) / CLOCK_TICKS / window
        self.state["cpu"] = {
            str(pid): [p.start, p.ticks] for pid, p in after.items() if p is not None
        }
        self.state["cpu_sampled_at"] = time.time()
        return usage

    def kernel_cpu(self, kernel_id: str, usage: dict[int, float]) -> float:
        roots = [p.pid for p in self.procs.values() if f"kernel-{kernel_id}.json" in p.cmdline]
        tree = set().union(*(descendants(self.procs, root) for root in roots)) if roots else set()
        return sum(usage.get(pid, 0.0) for pid in tree)

    def terminal_jobs(self, pids: set[int]) -> list[tuple[Proc, Proc]]:
        """(shell, job): terminals whose foreground group isn't their shell's."""
        jobs = []
        for pid in pids:
            proc = self.procs.get(pid)
            if proc is None or proc.tty == 0 or proc.pid != proc.pgrp or proc.tpgid <= 0:
                continue
            is_session_shell = (
                self.procs.get(proc.ppid) is None or self.procs[proc.ppid].tty != proc.tty
            )
            if is_session_shell and proc.tpgid != proc.pgrp:
                job = next((p for p in self.procs.values() if p.pgrp == proc.tpgid), None)
                if job is not None:
                    jobs.append((proc, job))
        return sorted(jobs, key=lambda pair: pair[0].pid)

    def observe_terminal_jobs(
        self, seen: Observation, pids: set[int], usage: dict[int, float]
    ) -> None:
        """A terminal's job counts, but not once its terminal has run jobs for
        --stuck-busy-minutes at ~0% CPU with nobody typing: a REPL, an editor or a `while
        sleep` loop left in a forgotten terminal must not bill a GPU forever (kernels get the same
        rule). The age belongs to the terminal's shell, since a loop starts a new job each time."""
        terminal_since = self.state.get("terminal_since", {})
        current = {}
        for shell, job in self.terminal_jobs(pids):
            label = f"{job.cmdline[:60]} (pid {job.pid})"
            key = f"{shell.pid}:{shell.start}"
            since = parse_time(terminal_since.get(key)) or self.now
            typed = self.tty_atime(shell.pid)
            if typed is not None and typed > since:
                since = min(typed, self.now)  # someone typed: the terminal is in use
            current[key] = since.isoformat()
            age = (self.now - since).total_seconds()
            cpu = sum(usage.get(p.pid, 0.0) for p in self.procs.values() if p.tty == shell.tty)
            if age >= self.o.stuck_busy_seconds and cpu < self.o.cpu_percent:
                seen.notes.append(
                    f"terminal job {label}: nobody typed for {age / 3600:.1f} h, {cpu:.0f}% CPU: ignored"
                )
                continue
            seen.active.append(f"terminal job {label}")
        self.state["terminal_since"] = current

    def tty_atime(self, pid: int) -> datetime | None:
        """The last input on a process's terminal (its tty's access time, as `w` shows it); a
        time in the future (`touch -a -d 2099-…` on one's own tty) is ignored."""
        try:
            tty = os.readlink(f"/proc/{pid}/fd/0")
            if not tty.startswith(("/dev/pts/", "/dev/tty")):
                return None
            atime = datetime.fromtimestamp(os.stat(tty).st_atime, tz=UTC)
        except OSError:
            return None
        return atime if atime <= self.now + CLOCK_SKEW else None

    def tty_input(self, pids: set[int]) -> datetime | None:
        """Last input on the terminals of user processes."""
        times = [t for t in (self.tty_atime(pid) for pid in pids) if t is not None]
        return max(times, default=None)

    def gpus_busy(self) -> list[str]:
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
            logger.warning("nvidia-smi failed: %s", error)
            return []
        busy = []
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if (
                len(parts) == 2
                and parts[1].replace(".", "", 1).isdigit()
                and float(parts[1]) >= self.o.gpu_percent
            ):
                busy.append(f"GPU {parts[0]} at {parts[1]}%")
        return busy

    # --- Jupyter ---

    def api(self, path: str) -> Any:
        request = urllib.request.Request(  # noqa: S310  (our own http(s) URL to Jupyter)
            f"{self.o.jupyter_url.rstrip('/')}{path}?no_track_activity=1",
            headers={"Authorization": f"token {self.o.token}"},
        )
        context = None
        if self.o.insecure:  # loopback, Jupyter's own self-signed certificate
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
                return json.loads(response.read(1 << 22))
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise JupyterUnreachable(type(error).__name__) from error

    def observe_kernels(self, seen: Observation, usage: dict[int, float]) -> None:
        kernels = self.api("/api/kernels")
        busy_since = self.state.get("busy_since", {})
        current = {}
        for kernel in kernels:
            kid, state = kernel.get("id", ""), kernel.get("execution_state")
            if state not in ("busy", "starting"):
                continue
            since = parse_time(busy_since.get(f"{kid}:{state}")) or self.now
            current[f"{kid}:{state}"] = since.isoformat()
            age = (self.now - since).total_seconds()
            cap = self.o.stuck_busy_seconds if state == "busy" else self.o.stuck_starting_seconds
            cpu = self.kernel_cpu(kid, usage)
            if age >= cap and cpu < self.o.cpu_percent:
                seen.notes.append(
                    f"kernel {kid[:8]} {state} for {age / 60:.0f} min at {cpu:.0f}% CPU: ignored as stuck"
                )
                continue
            seen.active.append(f"kernel {kid[:8]} {state}")
        self.state["busy_since"] = current

    def boot_steps(self) -> list[str]:
        """Boot steps still running early in the boot (a first install takes minutes)."""
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        if uptime >= self.o.boot_grace_seconds:
            return []
        steps = {
            match.group(1) or "cloud-init"
            for proc in self.procs.values()
            if proc.uid == 0 and (match := BOOT_STEP.search(proc.cmdline))
        }
        return [f"boot step {step} running" for step in sorted(steps)]

    def observe(self) -> Observation:
        seen = Observation()
        usage = self.cpu_usage()
        pids = self.user_pids()
        try:
            with deadline(self.o.api_deadline_seconds):
                self.observe_kernels(seen, usage)
                self.api("/api/terminals")  # reachable check; terminals are judged from /proc
        except JupyterUnreachable as error:
            seen.notes.append(f"Jupyter unreachable ({error})")
        seen.active += self.boot_steps()
        for pid, percent in sorted(usage.items()):
            # Not the Jupyter server itself: its CPU follows the open tabs' polling. Its kernels
            # and terminals are processes of their own and do count.
            if percent >= self.o.cpu_percent and not JUPYTER_SERVER.search(self.procs[pid].cmdline):
                seen.active.append(
                    f"process {self.procs[pid].cmdline[:60]} (pid {pid}) at {percent:.0f}% CPU"
                )
                break
        self.observe_terminal_jobs(seen, pids, usage)
        seen.active += self.gpus_busy()
        if self.o.activity_file is not None:
            self.observe_activity_file(seen, self.o.activity_file)
        tty = self.tty_input(pids)
        if tty:
            seen.latest["terminal input"] = tty
        return seen

    def observe_activity_file(self, seen: Observation, path: Path) -> None:
        """The service user's file: no symlink, FIFO or device is followed; future times and
        anything that isn't the recorder's JSON are ignored."""
        try:
            record = json.loads(read_regular(path, 4096) or b"{}")
        except ValueError:
            record = {}
        if not isinstance(record, dict):
            return
        when = parse_time(record.get("last_interaction"))
        if when is None:
            return
        if when > self.now + CLOCK_SKEW:
            seen.notes.append("activity file ignored: its time is in the future")
            return
        seen.latest[f"interaction in Jupyter ({str(record.get('reason', '?'))[:80]})"] = when

    # --- decision ---

    def decide(self) -> dict[str, Any]:
        try:
            seen = self.observe()
        except Exception:  # a bug or an odd /proc must never switch the stop off: nothing seen
            logger.exception("the observation failed; judged on what is known")
            seen = Observation(notes=["observation failed"])
        last_active = parse_time(self.state.get("last_active")) or boot_time()
        reason = self.state.get("reason", "boot")
        if seen.active:
            last_active, reason = self.now, seen.active[0]
        for what, when in seen.latest.items():
            if when > last_active:
                last_active, reason = min(when, self.now), what
        self.state["last_active"] = last_active.isoformat()
        self.state["reason"] = reason
        idle_seconds = max((self.now - last_active).total_seconds(), 0.0)
        warn_at = self.o.idle_seconds - min(self.o.warn_seconds, self.o.idle_seconds / 4)
        action = "none"
        if seen.active:
            explanation = f"active: {', '.join(seen.active)}"
        else:
            explanation = f"last activity {idle_seconds / 60:.1f} min ago: {reason}"
        if seen.notes:
            explanation += f" [{'; '.join(seen.notes)}]"
        if idle_seconds >= self.o.idle_seconds:
            action = "would-stop" if self.o.dry_run else "stop"
        elif idle_seconds >= warn_at and not seen.active:
            warned = parse_time(self.state.get("warned_at"))
            if warned is None or warned < last_active:
                action = "warn"
                self.state["warned_at"] = self.now.isoformat()
        return {
            "time": self.now.isoformat(),
            "idle": idle_seconds >= self.o.idle_seconds,
            "idle_seconds": round(idle_seconds, 1),
            "idle_limit_seconds": self.o.idle_seconds,
            "reason": explanation,
            "action": action,
            "active": seen.active,
        }

    def act(self, result: dict[str, Any]) -> None:
        action = result["action"]
        if action == "warn":
            minutes = (self.o.idle_seconds - result["idle_seconds"]) / 60
            message = (
                f"jupyter-on-demand: nobody has used this machine for {result['idle_seconds'] / 60:.0f} min; "
                f"it stops in about {minutes:.0f} min. Run code or type anything to keep it."
            )
            logger.warning(message)
            if not self.o.dry_run and shutil.which("wall"):
                subprocess.run(["wall", message], check=False, timeout=10, capture_output=True)
        elif action == "stop":
            if self.o.flush_command:
                # A failed flush never blocks the stop: commits stay on the disk, pushed next boot.
                code = run_command(self.o.flush_command, timeout=180)
                if code == FLUSH_INCOMPLETE:
                    logger.error(
                        "autosave flush: pushed, but the team's branch does not have everything "
                        "(a side branch, or files left out: the flush log names them)"
                    )
                elif code != 0:
                    logger.error(
                        "autosave flush failed (%s); the work stays committed on the disk", code
                    )
            logger.warning("stopping the machine: %s", result["reason"])
            self.state["stopped_at"] = self.now.isoformat()
            self.save_state()
            code = run_command(self.o.stop_command, timeout=120)
            if code != 0:
                logger.error("the stop command failed (%s): %s", code, self.o.stop_command)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """JupyterUnreachable after `seconds` in all: a server that trickles bytes can't stall the
    checker (socket timeouts only bound each read). Main thread only; elsewhere no limit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise JupyterUnreachable(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_command(command: str, timeout: float) -> int | str:
    """Exit code of a command line, or why it could not run."""
    try:
        return subprocess.run(shlex.split(command), check=False, timeout=timeout).returncode
    except (OSError, subprocess.SubprocessError) as error:
        return f"{type(error).__name__}: {error}"


def instance_defaults(paths: Paths) -> dict[str, Any]:
    """The instance's settings (layout.py). Every file may be missing or broken, the secrets
    above all (a failed secrets step): the checker then runs with the defaults, never not at all."""
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
    try:
        idle_minutes = float(config.get("IDLE_MINUTES", DEFAULT_IDLE_MINUTES))
    except ValueError:
        idle_minutes = DEFAULT_IDLE_MINUTES
    if not idle_minutes > 0:
        idle_minutes = DEFAULT_IDLE_MINUTES
    scheme = "http" if config.get("JUPYTER_TLS") == "0" else "https"
    flush = None
    if paths.venv_python.exists() and (paths.app / "git_autosave.py").exists():
        flush = shlex.join(
            ["runuser", "-u", paths.user, "--", "env", f"HOME={paths.home}", str(paths.venv_python),
             str(paths.app / "git_autosave.py"), "flush", "--repo", str(paths.repo), "--timeout", "60"]
        )  # fmt: skip
    return {
        "jupyter_url": f"{scheme}://127.0.0.1:{config.get('JUPYTER_PORT', '8443')}",
        "token": token,
        "idle_minutes": idle_minutes,
        "state_file": paths.idle_state,
        "activity_file": paths.activity,
        "heartbeat_file": paths.idle_heartbeat,
        "flush_command": flush,
        "insecure": True,
    }


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description="Stop the instance when nobody uses it.")
    parser.add_argument(
        "--instance", action="store_true", help="the instance's settings (layout.py) as defaults"
    )
    parser.add_argument("--jupyter-url", default=None)
    parser.add_argument("--token", default=None, help="API token (default: $JUPYTER_TOKEN)")
    parser.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES)
    parser.add_argument(
        "--state-file", type=Path, default=Path("/var/lib/jupyter-on-demand/idle-state.json")
    )
    parser.add_argument("--activity-file", type=Path, default=None)
    parser.add_argument(
        "--heartbeat-file", type=Path, default=None, help="touched after each run (the fail-safe)"
    )
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--stop-command", default="shutdown -h now")
    parser.add_argument(
        "--flush-command", default=None, help="run before stopping (git autosave flush)"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="accept Jupyter's self-signed certificate"
    )
    parser.add_argument(
        "--min-uid", type=int, default=1000, help="processes of uids from here are users'"
    )
    parser.add_argument(
        "--process-root", type=int, default=None, help="only judge this process tree"
    )
    parser.add_argument("--cpu-percent", type=float, default=10.0)
    parser.add_argument("--gpu-percent", type=float, default=10.0)
    parser.add_argument("--stuck-busy-minutes", type=float, default=180.0)
    parser.add_argument("--stuck-starting-minutes", type=float, default=10.0)
    parser.add_argument("--boot-grace-minutes", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.instance:
        parser.set_defaults(**instance_defaults(Paths.from_env()))
        args = parser.parse_args(argv)
    if not args.jupyter_url:
        parser.error("--jupyter-url is required (or --instance)")
    if args.idle_minutes <= 0:
        parser.error("--idle-minutes must be > 0")
    token = args.token if args.token is not None else os.environ.get("JUPYTER_TOKEN", "")
    return Options(
        jupyter_url=args.jupyter_url,
        token=token,
        idle_seconds=args.idle_minutes * 60,
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
        stuck_busy_seconds=args.stuck_busy_minutes * 60,
        stuck_starting_seconds=args.stuck_starting_minutes * 60,
        boot_grace_seconds=args.boot_grace_minutes * 60,
        heartbeat_file=args.heartbeat_file,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s idle-check %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = parse_args(argv)
    checker = Checker(options)
    result = checker.decide()
    logger.info("%s: %s", result["action"], result["reason"])
    checker.save_state()
    print(json.dumps(result), flush=True)
    if options.heartbeat_file is not None:  # this run completed: the fail-safe stands down
        try:
            write_file(options.heartbeat_file, result["time"], 0o644)
        except OSError:
            logger.exception("could not touch %s", options.heartbeat_file)
    checker.act(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
