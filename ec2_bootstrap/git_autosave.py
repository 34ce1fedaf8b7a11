"""Git autosave: every file saved in Jupyter Lab reaches the team's GitHub repository.

Inside Jupyter (wired by jupyter_server_config.py):
    `post_save_hook` only records which file changed and wakes a background thread; the save
    returns at once and never waits for git or the network. The thread waits for a short quiet
    period (bursts become one commit), commits everything in the repository (files written by
    code, deletions and renames too), then pushes, retrying with backoff while the network or
    GitHub is down or the token is wrong.

From the shell (the idle checker and the shutdown unit):
    python3 git_autosave.py flush --repo DIR [--timeout S]   commit and push now; exit 0 only
                                                             when the remote has everything
    python3 git_autosave.py status --repo DIR                the last push, the last error

Never losing data:
    - commits are local first; a failed push is retried, never fatal;
    - a remote that moved ahead is rebased onto; when the rebase conflicts, it is aborted and
      the local work is pushed to a side branch `autosave/<host>-<UTC time>` (logged loudly)
      until someone merges it; the working files are never rewritten;
    - files over the size limit (JUPYTER_AUTOSAVE_MAX_MB, 50 MB: GitHub rejects files over
      100 MB) are left out and logged with their name and the limit;
    - `.ipynb_checkpoints/`, virtualenvs and `.env` are excluded through `.git/info/exclude`, so
      the team's own `.gitignore` is never touched.
Every git call of every process holds one lock file (`.git/jod-autosave.lock`), so concurrent
saves, the thread and `flush` never collide on `.git/index.lock`.
Credentials come from git's credential helper (set up by boot.py); the remote URL has no token,
and anything that looks like one is redacted from logs and the status file.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("jupyter_on_demand.autosave")

DEFAULT_EXCLUDES = (
    ".ipynb_checkpoints/",
    "__pycache__/",
    ".venv/",
    "venv/",
    ".virtualenv/",
    "env/",
    ".env",
    ".env.*",
    ".Trash-*/",
)
DEFAULT_GITIGNORE = (
    "\n".join(["# Added by jupyter-on-demand; edit freely.", *DEFAULT_EXCLUDES]) + "\n"
)
LOCK_FILE = "jod-autosave.lock"
STATUS_FILE = "autosave-status.json"
CREDENTIALS_IN_URL = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")
REJECTED = re.compile(r"\[rejected\]|non-fast-forward|fetch first")
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GCM_INTERACTIVE": "never",
    "GIT_ASKPASS": "/bin/false",
    "LC_ALL": "C",
}


def redact(text: str) -> str:
    return CREDENTIALS_IN_URL.sub(r"\1***@", text)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class GitError(Exception):
    pass


class Repo:
    """The git operations of autosave on one working tree; every batch holds the lock file."""

    def __init__(self, path: Path, max_bytes: int | None = None, remote: str = "origin") -> None:
        self.path = Path(path)
        self.remote = remote
        self.max_bytes = max_bytes if max_bytes is not None else max_file_bytes()
        self.git_dir = Path(self.git("rev-parse", "--absolute-git-dir").strip())

    # --- plumbing --------------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **GIT_ENV},
            check=False,
        )

    def git(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        result = self.run(*args, timeout=timeout)
        if check and result.returncode != 0:
            raise GitError(redact(f"git {args[0]}: {(result.stderr or result.stdout).strip()}"))
        return result.stdout

    @contextmanager
    def locked(self, timeout: float = 600) -> Iterator[None]:
        deadline = time.monotonic() + timeout
        with open(self.git_dir / LOCK_FILE, "w") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError("another autosave holds the lock") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def branch(self) -> str:
        name = self.git("symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        return name or "main"

    def ensure_excludes(self) -> None:
        exclude = self.git_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        current = exclude.read_text() if exclude.exists() else ""
        missing = [line for line in DEFAULT_EXCLUDES if line not in current.splitlines()]
        if missing:
            with exclude.open("a") as handle:
                handle.write("\n# jupyter-on-demand autosave\n" + "\n".join(missing) + "\n")

    # --- status ----------------------------------------------------------------------------------

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads((self.git_dir / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def write_status(self, **changes: Any) -> None:
        status = {**self.read_status(), **changes, "updated_at": utcnow()}
        target = self.git_dir / STATUS_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        os.replace(tmp, target)

    # --- commit ----------------------------------------------------------------------------------

    def oversized(self) -> list[str]:
        """Changed or new files over the size limit, relative to the repo."""
        listed = self.git("ls-files", "-z", "--others", "--modified", "--exclude-standard")
        big = []
        for name in filter(None, listed.split("\0")):
            try:
                if (self.path / name).stat().st_size > self.max_bytes:
                    big.append(name)
            except OSError:
                continue  # deleted since: `git add -A` records the deletion
        return sorted(set(big))

    def commit_all(self, saved: list[str] | None = None) -> bool:
        """Stage everything but oversized files and commit. True when a commit was made."""
        self.ensure_excludes()
        skipped = self.oversized()
        for name in skipped:
            logger.warning(
                "autosave skipped %s: larger than the %d MB limit (GitHub rejects files over 100 MB)",
                name,
                self.max_bytes // 2**20,
            )
        # Excluded from staging: a tracked file that grew over the limit keeps its last version.
        excludes = [f":(exclude,literal){name}" for name in skipped]
        self.git("add", "-A", "--", ".", *excludes)
        changed = self.git("diff", "--cached", "--name-status", "-z").split("\0")
        if not any(changed):
            if skipped:
                self.write_status(skipped=skipped)
            return False
        files = [p for p in changed[1::2] if p]
        self.git("commit", "-q", "--no-verify", "-m", commit_message(files, saved or []))
        head = self.git("rev-parse", "--short", "HEAD").strip()
        logger.info("autosave committed %s: %s", head, ", ".join(files[:10]))
        self.write_status(last_commit=head, last_commit_at=utcnow(), skipped=skipped)
        return True

    # --- push ------------------------------------------------------------------------------------

    def remote_head(self, branch: str) -> str | None:
        out = self.git("ls-remote", self.remote, f"refs/heads/{branch}", timeout=60).split()
        return out[0] if out else None

    def push(self) -> str:
        """Push HEAD; rebase when the remote moved; side branch when that conflicts.

        Returns the remote branch that now holds HEAD. Raises GitError when the remote can't be
        reached or refuses (network, 5xx, bad token); nothing local is lost then.
        """
        branch = self.branch()
        target = f"HEAD:refs/heads/{branch}"
        result = self.run("push", "-q", self.remote, target)
        if result.returncode == 0:
            return self._pushed_to(branch)
        if not REJECTED.search(result.stderr):
            raise GitError(redact(f"git push: {result.stderr.strip()}"))
        self.git("fetch", "-q", self.remote, branch)
        upstream = f"{self.remote}/{branch}"
        if self.run("rebase", "-q", upstream).returncode != 0:
            self.git("rebase", "--abort", check=False)
            return self._push_side_branch(branch)
        self.git("push", "-q", self.remote, target)
        logger.info("autosave rebased onto %s and pushed", upstream)
        return self._pushed_to(branch)

    def _pushed_to(self, branch: str) -> str:
        head = self.git("rev-parse", "--short", "HEAD").strip()
        self.write_status(
            last_push=head,
            last_push_at=utcnow(),
            pushed_to=branch,
            last_error=None,
            side_branch=None,
        )
        return branch

    def _push_side_branch(self, branch: str) -> str:
        side = self.read_status().get("side_branch")
        if not side:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            side = f"autosave/{socket.gethostname()}-{stamp}"
        self.git("push", "-q", "--force", self.remote, f"HEAD:refs/heads/{side}", timeout=120)
        head = self.git("rev-parse", "--short", "HEAD").strip()
        self.write_status(
            last_push=head,
            last_push_at=utcnow(),
            pushed_to=side,
            side_branch=side,
            last_error=f"conflict with {branch}",
        )
        logger.error(
            "AUTOSAVE CONFLICT: %s on GitHub changed the same lines as work here. Nothing is lost: "
            "this machine's work is on branch %s; merge it into %s on GitHub or a laptop.",
            branch,
            side,
            branch,
        )
        return side

    def record_error(self, error: Exception) -> None:
        message = redact(str(error))
        logger.warning("autosave failed, will retry: %s", message)
        self.write_status(last_error=message, last_error_at=utcnow())

    def sync(self, saved: list[str] | None = None) -> str:
        """Commit everything and push, under the lock. Returns the remote branch holding HEAD."""
        with self.locked():
            try:
                self.commit_all(saved)
                return self.push()
            except (GitError, subprocess.TimeoutExpired) as error:
                self.record_error(error)
                raise


def commit_message(files: list[str], saved: list[str]) -> str:
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    body = "\n".join(f"- {name}" for name in files[:100])
    source = "saved in Jupyter Lab" if saved else "changed on the instance"
    return (
        f"Autosave: {shown}\n\n{len(files)} file(s) {source} on {socket.gethostname()}:\n{body}\n"
    )


def max_file_bytes() -> int:
    return int(float(os.environ.get("JUPYTER_AUTOSAVE_MAX_MB", "50")) * 2**20)


# --- The worker inside Jupyter ------------------------------------------------------------------


class Worker:
    """One background thread per Jupyter process: debounce, commit, push, retry with backoff."""

    def __init__(self, repo: Repo, debounce: float = 2.0, max_wait: float = 10.0) -> None:
        self.repo = repo
        self.debounce = debounce
        self.max_wait = max_wait
        self._changed: list[str] = []
        self._first_change = 0.0
        self._last_change = 0.0
        self._retry_at: float | None = None
        self._retry_delay = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="git-autosave", daemon=True)
        self.thread.start()

    def notify(self, path: str) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._changed:
                self._first_change = now
            self._changed.append(path)
            self._last_change = now
        self._wake.set()

    def _seconds_until_due(self) -> float:
        """A batch is due after `debounce` s of quiet (or `max_wait` s after its first save), or
        when a failed push is due for its retry."""
        now = time.monotonic()
        with self._lock:
            if self._changed:
                return (
                    min(self._last_change + self.debounce, self._first_change + self.max_wait) - now
                )
            if self._retry_at is not None:
                return self._retry_at - now
            return 3600.0

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=max(self._seconds_until_due(), 0.0))
            self._wake.clear()
            if self._seconds_until_due() > 0:
                continue
            with self._lock:
                saved, self._changed = self._changed, []
            try:
                self.repo.sync(saved)
                self._retry_at, self._retry_delay = None, 0.0
            except (GitError, subprocess.TimeoutExpired, TimeoutError, OSError):
                self._retry_delay = min(max(self._retry_delay * 2, 2.0), 300.0)
                self._retry_at = time.monotonic() + self._retry_delay
                logger.info("autosave retries the push in %.0f s", self._retry_delay)
            except Exception:
                logger.exception("autosave failed unexpectedly; it retries on the next save")


_workers: dict[Path, Worker] = {}
_workers_lock = threading.Lock()


def worker_for(root: Path) -> Worker | None:
    with _workers_lock:
        if root not in _workers:
            try:
                repo = Repo(root)
            except (GitError, OSError):
                logger.warning("autosave is off: %s is not a git repository", root)
                _workers[root] = None  # type: ignore[assignment]
                return None
            debounce = float(os.environ.get("JUPYTER_AUTOSAVE_DEBOUNCE", "2"))
            _workers[root] = Worker(repo, debounce=debounce)
        return _workers[root]


def post_save_hook(
    model: dict[str, Any], os_path: str, contents_manager: Any, **kwargs: Any
) -> None:
    """Jupyter's FileContentsManager.post_save_hook: record the save, never block or raise."""
    try:
        worker = worker_for(Path(contents_manager.root_dir).resolve())
        if worker is not None:
            worker.notify(model.get("path") or os_path)
    except Exception:
        logger.exception("autosave could not record the save of %s", model.get("path"))


# --- Command line -------------------------------------------------------------------------------


def flush(repo_path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    repo = Repo(repo_path)
    delay = 1.0
    while True:
        try:
            branch = repo.sync()
            head = repo.git("rev-parse", "HEAD").strip()
            if repo.remote_head(branch) == head:
                logger.info("flush: the remote has everything (%s on %s)", head[:8], branch)
                return 0
        except (GitError, subprocess.TimeoutExpired, TimeoutError) as error:
            logger.warning("flush: %s", redact(str(error)))
        if time.monotonic() + delay > deadline:
            logger.error(
                "flush: gave up after %.0f s; the work is committed locally and pushed later",
                timeout,
            )
            return 1
        time.sleep(delay)
        delay = min(delay * 2, 15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="jupyter-on-demand git autosave")
    sub = parser.add_subparsers(dest="command", required=True)
    flush_parser = sub.add_parser("flush", help="commit and push everything now")
    flush_parser.add_argument("--repo", type=Path, required=True)
    flush_parser.add_argument("--timeout", type=float, default=60.0)
    status_parser = sub.add_parser("status", help="print the last push and the last error")
    status_parser.add_argument("--repo", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.command == "flush":
        return flush(args.repo, args.timeout)
    print(json.dumps(Repo(args.repo).read_status(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
