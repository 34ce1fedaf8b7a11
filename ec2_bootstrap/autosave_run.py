"""Running one git command of autosave under a deadline, stopping it the way git wants, and
what a failed git means (GitError; PushRefused for a push that retrying can't get through).

`subprocess.run(timeout=...)` kills with SIGKILL, and a git killed that way leaves its lock files
(`.git/index.lock`, `refs/heads/main.lock`) behind: every later git command then fails until a
person removes them. git removes its own lock files on SIGTERM, so a git that runs too long gets
SIGTERM first (its whole process group: hooks and helpers it started too), STOP_GRACE seconds to
exit, and only then SIGKILL.

After a SIGKILL, autosave removes the lock files that this git held open when it was killed and
nothing else. git creates a lock file with O_CREAT|O_EXCL and, in the commands autosave runs,
keeps it open until it renames it, so a lock open in the killed git was made by it; a lock file a
person's git holds, or left behind, is never open in autosave's git and stays (autosave then
waits and says how to remove it). Lock files are found through /proc (Linux, where the instance
runs); elsewhere none is removed, nor one left by a git killed between closing and renaming it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from pathlib import Path

logger = logging.getLogger("jupyter_on_demand.autosave")

STOP_SIGNAL = signal.SIGTERM  # what a git that ran too long gets first
STOP_GRACE = 5.0  # seconds it gets to remove its lock files and exit before SIGKILL
CREDENTIALS_IN_URL = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")
REJECTED = re.compile(r"\[rejected\]|non-fast-forward|fetch first")  # the remote moved ahead
# A refusal that comes back however often the push is retried (GitHub: GH001, the 2 GB pack limit,
# a protected branch), unless a [remote rejected] line only says the ref was busy.
REFUSED = re.compile(
    r"GH001|Large files detected|exceeds maximum allowed size|pre-receive hook declined|"
    r"protected branch hook declined"
)
REMOTE_REJECTED = re.compile(r"\[remote rejected\][^\n]*")
REJECTED_FOR_NOW = re.compile(
    r"cannot lock ref|failed to lock|Internal Server Error", re.IGNORECASE
)


class GitError(Exception):
    pass


class PushRefused(GitError):
    """The remote refused a push for a reason that retrying does not change."""


def redact(text: str) -> str:
    return CREDENTIALS_IN_URL.sub(r"\1***@", text)


def push_failed(result: subprocess.CompletedProcess[str], remote: str, branch: str) -> None:
    """For a failed push: returns when the remote moved ahead (fetch, merge, push again).
    Raises PushRefused when the remote refuses for good, GitError for anything else (the
    network, a 5xx, a wrong token: retried later)."""
    said = result.stderr
    rejected = REMOTE_REJECTED.findall(said)
    if REFUSED.search(said) or any(not REJECTED_FOR_NOW.search(line) for line in rejected):
        lines = "; ".join(line.strip() for line in said.splitlines() if line.strip())
        raise PushRefused(
            redact(
                f"{remote} refused the push of {branch}, and will refuse it however often "
                f"autosave retries ({lines}). Nothing is lost: the work stays committed on this "
                f"machine. What to do: `git log --stat {remote}/{branch}..{branch}` in a terminal "
                f"lists the commits not pushed yet. A file too large for GitHub (GH001) in one of "
                f"them, committed in a terminal, must come out of them: `git reset --soft "
                f"{remote}/{branch}`, `git restore --staged FILE`, `git commit`. A protected "
                f"branch: set JUPYTER_AUTOSAVE_BRANCH to a branch autosave may push to. "
                f"Otherwise, see what the remote said."
            )
        )
    if not REJECTED.search(said):
        raise GitError(redact(f"git push: {said.strip()}"))


def run_git(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    git_dir: Path,
    stdin_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`git *args`; on timeout the git is stopped (see the module) and TimeoutExpired raised."""
    command = ["git", *args]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a stop reaches its hooks and helpers
    )
    try:
        stdout, stderr = process.communicate(stdin_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process, git_dir)
        raise subprocess.TimeoutExpired(command, timeout) from None
    except BaseException:  # KeyboardInterrupt, SystemExit: stop git the same careful way
        stop(process, git_dir)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def stop(process: subprocess.Popen[str], git_dir: Path) -> None:
    """SIGTERM (git removes its lock files), then SIGKILL and remove the locks it held open."""
    signal_group(process, STOP_SIGNAL)
    try:
        process.communicate(timeout=STOP_GRACE)
        return
    except subprocess.TimeoutExpired:
        pass
    held = locks_held(process.pid, git_dir)
    signal_group(process, signal.SIGKILL)
    process.communicate()
    for path, inode in held:
        try:
            if os.lstat(path).st_ino == inode:  # still the file that git made, not a newer one
                os.unlink(path)
                logger.warning(
                    "autosave killed its own git (it did not stop on SIGTERM within %.0f s) and "
                    "removed the lock file that git had created: %s",
                    STOP_GRACE,
                    path,
                )
        except OSError:
            continue  # gone already


def signal_group(process: subprocess.Popen[str], number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except (ProcessLookupError, PermissionError):
        pass  # exited already (its group is gone)


def locks_held(group: int, git_dir: Path) -> list[tuple[str, int]]:
    """(path, inode) of every `*.lock` file in git_dir open in a process of the group."""
    held = []
    prefix = f"{Path(git_dir).resolve()}{os.sep}"
    for pid in group_members(group):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            link = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(link)
                if target.startswith(prefix) and target.endswith(".lock"):
                    held.append((target, os.stat(link).st_ino))
            except OSError:
                continue  # closed meanwhile
    return held


def group_members(group: int) -> list[int]:
    members: list[int] = []
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return members  # no /proc: nothing can be shown to be autosave's own
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == group:  # state, ppid, pgrp after the name
            members.append(pid)
    return members
