"""Git autosave: every file saved in Jupyter Lab reaches the team's GitHub repository.

Inside Jupyter (wired by jupyter_server_config.py):
    `post_save_hook` only records which file changed and wakes a background thread; the save
    returns at once and never waits for git or the network. The thread waits for a short quiet
    period (bursts become one commit), commits everything in the repository (files written by
    code, deletions and renames too), then pushes, retrying with backoff while the network or
    GitHub is down or the token is wrong.

From the shell (the idle checker and the shutdown unit):
    python3 git_autosave.py flush --repo DIR [--timeout S]   commit and push now
    python3 git_autosave.py status --repo DIR                the last push, the last error

    flush exits 0  only when the remote's home branch has HEAD and nothing is left out;
                1  when it could not push within the timeout (the work stays committed here),
                   or at once when the remote refuses the push for good (a pre-receive hook,
                   GitHub's file or pack size limits): the log and `last_error` say what to do;
                2  on a usage error (argparse);
                3  when it pushed what it could but the home branch on the remote does NOT have
                   everything: the work is only on the side branch (a half-done git operation,
                   another branch checked out, a conflict), files are over the size limit (on
                   disk or staged), in a repository nested in the work folder, in a virtualenv
                   or hidden by autosave's own excludes (`.env`, a `venv/` that is not a
                   virtualenv), or changes are left uncommitted. One log line names what is
                   missing.

Never losing data, never moving anything under a person (autosave_git.py does the git side):
    - commits are local first; a failed push is retried, never fatal;
    - while a rebase, merge, cherry-pick, revert, bisect or `git am` is half-done, HEAD is
      detached, another branch is checked out, `.git/index.lock` is there or conflicts are
      unresolved, autosave leaves HEAD, the branches, the index and the files alone and saves a
      snapshot of the work folder on the side branch `autosave/<host>` (status `waiting`);
    - a remote that moved ahead is merged (never rebased) the way git fast-forwards a checkout:
      only files nobody changed here are updated; when that can't be done cleanly, the work is
      pushed to `autosave/<host>` and the log says AUTOSAVE CONFLICT and what to do; that
      branch is never force-pushed: commits a teammate pushed to it are merged in and kept;
    - files over the size limit (JUPYTER_AUTOSAVE_MAX_MB, 50 MB: GitHub rejects files over
      100 MB), also when a person staged one, git repositories inside the work folder and
      virtualenvs (a folder with `pyvenv.cfg` or `conda-meta/`) are left out and named in the log
      and in the status (`skipped`, `not_backed_up`, `virtualenvs`);
    - `.ipynb_checkpoints/`, `__pycache__/`, `.venv/`, `venv/` and `.env` are excluded through
      `.git/info/exclude`, so the team's own `.gitignore` is never touched; whatever they hide but
      Jupyter's copies and caches is named (status `excluded`);
    - a push the remote refuses for good is logged as AUTOSAVE PUSH REFUSED with what to do.
The home branch is JUPYTER_AUTOSAVE_BRANCH, else the remote's default branch, else main.
Every git call of every process holds one lock file (`.git/jod-autosave.lock`), so concurrent
saves, the thread and `flush` never collide on `.git/index.lock`.
Credentials come from git's credential helper (set up by boot.py); the remote URL has no token,
and anything that looks like one is redacted from logs and the status file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Re-exported (`X as X`): boot.py, boot_secrets.py and the tests use them from here.
from autosave_git import (
    NOT_CLONED as NOT_CLONED,
    Outcome as Outcome,
    Repo as Repo,
    host_name as host_name,
)
from autosave_run import GitError as GitError, PushRefused as PushRefused, redact as redact
from autosave_scope import (
    DEFAULT_EXCLUDES as DEFAULT_EXCLUDES,
    DEFAULT_GITIGNORE as DEFAULT_GITIGNORE,
)

logger = logging.getLogger("jupyter_on_demand.autosave")

RECHECK_WAITING = 60.0  # seconds between snapshots while the repository is in a blocked state
EXIT_PUSHED = 0
EXIT_NOT_PUSHED = 1
EXIT_INCOMPLETE = 3


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
                outcome = self.repo.sync(saved)
                self._retry_delay = 0.0
                # While blocked, look again now and then: the person may finish in a terminal.
                waiting = outcome.waiting is not None
                self._retry_at = time.monotonic() + RECHECK_WAITING if waiting else None
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
            except (GitError, OSError) as error:
                # Not cached: a broken ~/.gitconfig fixed later, or a clone that arrives later,
                # turns autosave on at the next save.
                logger.warning("autosave can't work on %s yet: %s", root, redact(str(error)))
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
    """Commit and push now; the exit code says whether the remote's home branch has it all."""
    deadline = time.monotonic() + timeout
    try:
        repo = Repo(repo_path)
    except (GitError, OSError) as error:
        logger.error("flush: %s is not a repository autosave can use: %s; nothing was committed",
                     repo_path, redact(str(error)))  # fmt: skip
        return EXIT_NOT_PUSHED
    delay = 1.0
    while True:
        missing = None
        try:
            missing = not_on_home(repo, repo.sync())
            if missing is not None and not missing.uncommitted:
                return report(repo, missing)
        except PushRefused as error:
            logger.error("flush: not pushed, and retrying will not help: %s", redact(str(error)))
            return EXIT_NOT_PUSHED
        except (GitError, subprocess.TimeoutExpired, TimeoutError) as error:
            logger.warning("flush: %s", redact(str(error)))
        if time.monotonic() + delay > deadline:
            if missing is not None:  # pushed, but changes keep coming in: say which
                return report(repo, missing)
            logger.error(
                "flush: gave up after %.0f s; the work is committed here and pushed later",
                timeout,
            )
            return EXIT_NOT_PUSHED
        time.sleep(delay)
        delay = min(delay * 2, 15)


@dataclass
class Missing:
    """What the remote's home branch lacks after a sync."""

    outcome: Outcome
    uncommitted: list[str]

    def lines(self) -> list[str]:
        o = self.outcome
        found = []
        if o.pushed_to != o.home:
            found.append(f"the work is only on branch {o.pushed_to}: {o.waiting or o.conflict}")
        if o.skipped:
            found.append(f"files over the size limit: {', '.join(o.skipped)}")
        if o.nested:
            nested = ", ".join(f"{name}/" for name in o.nested)
            found.append(f"git repositories inside the work folder (not backed up): {nested}")
        if o.virtualenvs:
            found.append(
                "not backed up (a virtualenv): " + ", ".join(f"{name}/" for name in o.virtualenvs)
            )
        if o.excluded:
            found.append(
                "left out by autosave's own excludes in .git/info/exclude (a `!name` line in "
                f".gitignore brings one back): {', '.join(o.excluded)}"
            )
        if self.uncommitted:
            found.append(f"changes not committed yet: {', '.join(self.uncommitted[:20])}")
        return found


def not_on_home(repo: Repo, outcome: Outcome) -> Missing | None:
    """None when the remote's home branch does not have HEAD yet (push again), else Missing."""
    if outcome.pushed_to == outcome.home:
        head = repo.rev(f"refs/heads/{outcome.home}")
        remote = repo.remote_head(outcome.home)
        if head is None or remote is None:
            return None
        if remote != head and not repo.is_ancestor(head, remote):
            return None
        left_out = [*outcome.skipped, *outcome.nested, *outcome.virtualenvs, *outcome.excluded]
        return Missing(outcome, repo.uncommitted(left_out))
    return Missing(outcome, [])


def report(repo: Repo, missing: Missing) -> int:
    target = f"{repo.remote}/{missing.outcome.home}"
    lines = missing.lines()
    if lines:
        logger.error("flush: %s does NOT have everything: %s", target, "; ".join(lines))
        return EXIT_INCOMPLETE
    head = repo.rev(f"refs/heads/{missing.outcome.home}") or ""
    logger.info("flush: the remote has everything (%s on %s)", head[:8], target)
    return EXIT_PUSHED


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
