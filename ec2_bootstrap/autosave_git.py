"""The git side of autosave (git_autosave.py is the worker and the command line around it).

One `Repo.sync()` under the lock file `.git/jod-autosave.lock`:

1. Blocked states. A rebase, `git am`, merge, cherry-pick, revert or bisect in progress, a
   detached HEAD, another branch than the home branch checked out, `.git/index.lock` present (a
   git running, or killed and its lock left behind) or unresolved conflicts in the index: HEAD,
   the branches, the user's index and the work tree are not touched. The work tree is saved
   through a separate index (`.git/jod-autosave.index`) as a commit on the side branch
   `autosave/<host>`, which is pushed; the status file says `waiting` and why.
2. Normal state: everything is staged (but what autosave_scope.py leaves out: files over the
   size limit, even staged by a person; repositories nested in the work folder; virtualenvs) and
   committed on the home branch with plumbing: the branch moves only by compare-and-swap from the
   commit the snapshot was based on, never through a detached HEAD.
3. Push. When the remote moved ahead, the two are merged without `git merge` or `git rebase`:
   `merge-tree --write-tree`, `commit-tree`, then `read-tree -m -u` (git's own fast-forward
   checkout, which refuses when a file it would change was changed here) and a compare-and-swap
   of the branch. A conflict, a refusal or an older git pushes the work to `autosave/<host>`.
   The side branch is never force-pushed: commits someone else pushed to it (a resolution made on
   GitHub) are fetched and merged in, so they stay in its history and in its files.
   A push the remote refuses for good (a pre-receive hook, GitHub's file or pack size limits)
   raises PushRefused, whose message says what to do; the status file keeps it in `last_error`.
Every git runs under a deadline and is stopped with SIGTERM first (autosave_run.py), so it
removes its own lock files.

Why this module is ~580 lines: `Repo` is one state machine over one working tree, and every step
of a batch (blocked check, staging, commit, merge, push) runs under the same lock and moves the
home branch by the same compare-and-swap. The parts that stand alone already live elsewhere:
running git (autosave_run.py), what is staged (autosave_scope.py), the side branch
(autosave_side.py). The next seam is push and merge (`remote_head` to `_push_side_branch`, ~130
lines); moving them out would still leave `Repo` over 300 lines, so they stay until the staging
moves too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autosave_run import GitError, PushRefused, push_failed, redact, run_git
from autosave_scope import (
    LeftOut,
    empty_tree,
    ensure_excludes,
    left_out,
    without_oversized,
)
from autosave_side import SideBranch

logger = logging.getLogger("jupyter_on_demand.autosave")

LOCK_FILE = "jod-autosave.lock"
SIDE_INDEX = "jod-autosave.index"
# Written by boot.py's repo step when the first clone failed; removed once it has the history.
NOT_CLONED = "jod-not-cloned"
STATUS_FILE = "autosave-status.json"
INDEX_LOCK_GRACE = 2.0  # seconds a live git gets to release .git/index.lock before it counts
OBJECT_ID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GCM_INTERACTIVE": "never",
    "GIT_ASKPASS": "/bin/false",
    "LC_ALL": "C",
}
# What a file or folder in the git dir means, and what the person does about it; first match wins.
IN_PROGRESS = (
    ("rebase-merge", "a rebase is in progress: finish it with `git rebase --continue` or `git rebase --abort`"),
    ("rebase-apply/applying", "a `git am` is in progress: finish it with `git am --continue` or `git am --abort`"),
    ("rebase-apply", "a rebase is in progress: finish it with `git rebase --continue` or `git rebase --abort`"),
    ("MERGE_HEAD", "a merge is in progress: resolve the conflicts, `git add` the files and `git commit`, or `git merge --abort`"),
    ("CHERRY_PICK_HEAD", "a cherry-pick is in progress: finish it with `git cherry-pick --continue` or `git cherry-pick --abort`"),
    ("REVERT_HEAD", "a revert is in progress: finish it with `git revert --continue` or `git revert --abort`"),
    ("sequencer", "a cherry-pick or revert of several commits is in progress: `git cherry-pick --continue` (or `git revert --continue`), or `--abort`"),
    ("BISECT_LOG", "a bisect is in progress: finish it with `git bisect reset`"),
)  # fmt: skip


def utcnow() -> str:
    # timezone.utc, not datetime.UTC: the instance's venv may be Python 3.10.
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def max_file_bytes() -> int:
    return int(float(os.environ.get("JUPYTER_AUTOSAVE_MAX_MB", "50")) * 2**20)


def host_name() -> str:
    """This machine's name, usable in a branch name (`autosave/<host>`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname())
    name = re.sub(r"\.{2,}", ".", name).strip(".-")
    return name.removesuffix(".lock") or "instance"


class Blocked(Exception):
    """The repository went into a blocked state while a commit or merge was being prepared."""


@dataclass
class Outcome:
    """Where one sync left the work."""

    home: str  # the branch autosave commits to
    pushed_to: str  # the remote branch that holds the work: home, or the side branch
    waiting: str | None = None  # a blocked state, with what to do about it
    conflict: str | None = None  # why the work could not go to home
    skipped: list[str] = field(default_factory=list)  # over the size limit
    nested: list[str] = field(default_factory=list)  # repositories inside the work folder
    virtualenvs: list[str] = field(default_factory=list)  # not backed up
    excluded: list[str] = field(default_factory=list)  # hidden by autosave's own excludes

    @classmethod
    def of(
        cls,
        home: str,
        pushed_to: str,
        left: LeftOut,
        waiting: str | None = None,
        conflict: str | None = None,
    ) -> Outcome:
        return cls(
            home,
            pushed_to,
            waiting=waiting,
            conflict=conflict,
            skipped=left.big,
            nested=left.nested,
            virtualenvs=left.virtualenvs,
            excluded=left.excluded,
        )


class Repo:
    """The git operations of autosave on one working tree; every batch holds the lock file."""

    def __init__(self, path: Path, max_bytes: int | None = None, remote: str = "origin") -> None:
        self.path = Path(path)
        self.timeout = 120.0  # seconds one git command may take
        self.remote = remote
        self.max_bytes = max_bytes if max_bytes is not None else max_file_bytes()
        self.git_dir = self.path  # where run() looks for lock files, until git names the git dir
        self.git_dir = Path(self.git("rev-parse", "--absolute-git-dir").strip())
        self.host = host_name()
        self.side = SideBranch(self)
        self.left_out_last = LeftOut()

    # --- plumbing --------------------------------------------------------------------------------

    def run(
        self,
        *args: str,
        timeout: float | None = None,
        index: Path | None = None,
        stdin_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """git in the work tree; `index` replaces the user's index (GIT_INDEX_FILE)."""
        env = {**os.environ, **GIT_ENV}
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        limit = self.timeout if timeout is None else timeout
        return run_git(list(args), self.path, env, limit, self.git_dir, stdin_text)

    def git(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = None,
        index: Path | None = None,
        stdin_text: str | None = None,
    ) -> str:
        result = self.run(*args, timeout=timeout, index=index, stdin_text=stdin_text)
        if check and result.returncode != 0:
            raise GitError(redact(f"git {args[0]}: {(result.stderr or result.stdout).strip()}"))
        return result.stdout

    def rev(self, name: str) -> str | None:
        return self.git("rev-parse", "-q", "--verify", name, check=False).strip() or None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer).returncode == 0

    def git_version(self) -> tuple[int, ...]:
        found = re.search(r"(\d+)\.(\d+)", self.git("version"))
        return tuple(int(n) for n in found.groups()) if found else (0, 0)

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

    def ensure_excludes(self) -> None:
        ensure_excludes(self.git_dir)

    # --- status ----------------------------------------------------------------------------------

    def read_status(self) -> dict[str, Any]:
        try:
            status = json.loads((self.git_dir / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    def write_status(self, **changes: Any) -> None:
        status = {**self.read_status(), **changes, "updated_at": utcnow()}
        target = self.git_dir / STATUS_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        os.replace(tmp, target)

    # --- the state of the repository -------------------------------------------------------------

    def home_branch(self) -> str:
        """JUPYTER_AUTOSAVE_BRANCH, else the remote's default branch (origin/HEAD), else main."""
        override = os.environ.get("JUPYTER_AUTOSAVE_BRANCH", "").strip()
        if override:
            return override
        prefix = f"refs/remotes/{self.remote}/"
        ref = self.git("symbolic-ref", "-q", f"{prefix}HEAD", check=False).strip()
        return ref[len(prefix) :] if ref.startswith(prefix) else "main"

    def index_locked(self, name: str = "index.lock") -> bool:
        """`.git/<name>` is there and stays for INDEX_LOCK_GRACE s (a live git gets time)."""
        lock = self.git_dir / name
        deadline = time.monotonic() + INDEX_LOCK_GRACE
        while lock.exists():
            if time.monotonic() > deadline:
                return True
            time.sleep(0.1)
        return False

    def blocked(self, home: str) -> str | None:
        """Why autosave must not commit to `home` now, with what the person does; None if it may."""
        if (self.git_dir / NOT_CLONED).exists():
            # A commit now would start a history unrelated to the team's (boot.py repo step).
            return (
                "the team's repository could not be cloned here yet (GitHub was unreachable at "
                "the first boot): the next boot takes its history; until then nothing is "
                "committed on main"
            )
        for lock in ("index.lock", f"refs/heads/{home}.lock", "HEAD.lock"):
            if self.index_locked(lock):
                return (
                    f"another git command is running, or one was killed and left .git/{lock} "
                    f"behind: remove .git/{lock} if no git command is running"
                )
        for name, reason in IN_PROGRESS:
            if (self.git_dir / name).exists():
                return reason
        ref = self.git("symbolic-ref", "-q", "HEAD", check=False).strip()
        if not ref:
            return f"HEAD is detached (a commit, not a branch, is checked out): go back with `git switch {home}`"
        if ref != f"refs/heads/{home}":
            return (
                f"branch {ref.removeprefix('refs/heads/')} is checked out, not {home}: autosave "
                f"commits only to {home}; go back with `git switch {home}`"
            )
        unmerged = self.git("ls-files", "-u", "-z").split("\0")
        names = sorted({entry.split("\t", 1)[1] for entry in unmerged if "\t" in entry})
        if names:
            return f"unresolved conflicts in {', '.join(names[:10])}: resolve them and `git add` the files"
        return None

    # --- staging ---------------------------------------------------------------------------------

    def stage(self, index: Path | None = None, base: str | None = None) -> tuple[str, LeftOut]:
        """`git add -A` but what autosave_scope leaves out; (the tree to commit, what was left out).

        A tracked file left out keeps its last staged version in the index. In the tree, a file
        over the size limit that is staged anyway (a person's `git add`) keeps `base`'s version.
        """
        left = left_out(self, index)
        excludes = [f":(exclude,literal){name}" for name in left.not_staged]
        self.git("add", "-A", "--", ".", *excludes, index=index)
        staged = self.git("write-tree", index=index).strip()
        tree, staged_big = without_oversized(self, staged, base)
        self.report_left_out(left, staged_big)
        left.big = sorted({*left.big, *staged_big})
        self.write_status(
            skipped=left.big,
            not_backed_up=left.nested,
            virtualenvs=left.virtualenvs,
            excluded=left.excluded,
        )
        self.left_out_last = left
        return tree, left

    def report_left_out(self, left: LeftOut, staged_big: list[str]) -> None:
        limit = f"{self.max_bytes / 2**20:.3g} MB limit (GitHub refuses files over 100 MB)"
        for name in left.big:
            logger.warning("autosave skipped %s: larger than the %s", name, limit)
        for name in sorted(set(staged_big) - set(left.big)):
            logger.warning(
                "autosave skipped %s: the version staged with `git add` is larger than the %s, "
                "and a push holding it would be refused, and every later one too. It stays "
                "staged in your index; unstage it with `git restore --staged %s`",
                name,
                limit,
                name,
            )
        if left.nested:
            logger.warning(
                "autosave does NOT back up the files in %s: each is a git repository of its own "
                "inside the work folder; commit and push inside it, or move it out of the folder",
                ", ".join(f"{name}/" for name in left.nested),
            )
        if left.virtualenvs:
            logger.warning(
                "autosave does NOT back up %s: a virtualenv (it holds pyvenv.cfg or conda-meta/); "
                "list its packages in a requirements file instead",
                ", ".join(f"{name}/" for name in left.virtualenvs),
            )
        if left.excluded:
            logger.info(
                "autosave leaves out %s: autosave's own excludes in .git/info/exclude hide them",
                ", ".join(left.excluded),
            )

    def changed_files(self, base: str | None, tree: str) -> list[str]:
        base_tree = f"{base}^{{tree}}" if base else empty_tree(self)
        names = self.git("diff-tree", "-r", "-z", "--name-only", "--no-renames", base_tree, tree)
        return [name for name in names.split("\0") if name]

    # --- commit on the home branch ---------------------------------------------------------------

    def commit_all(self, saved: list[str] | None = None) -> bool:
        """Stage and commit on the home branch (the caller checked it is not blocked).

        True when a commit was made. Raises Blocked when the state changed while staging.
        """
        self.ensure_excludes()
        home = self.home_branch()
        parent = self.rev(f"refs/heads/{home}")
        tree, _ = self.stage(base=parent)
        files = self.changed_files(parent, tree)
        if not files:
            return False
        message = commit_message(files, saved or [], self.host)
        commit = self.commit_tree(tree, [parent] if parent else [], message)
        reason = self.blocked(home)
        if reason:
            raise Blocked(reason)
        self.git("update-ref", "-m", "autosave: commit", f"refs/heads/{home}", commit, parent or "")
        logger.info("autosave committed %s: %s", commit[:7], ", ".join(files[:10]))
        self.run("gc", "--auto", "--quiet")  # what `git commit` does; objects and packs only
        self.write_status(last_commit=commit[:7], last_commit_at=utcnow())
        return True

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        args = [arg for parent in parents for arg in ("-p", parent)]
        return self.git("commit-tree", tree, *args, "-m", message).strip()

    # --- the side branch -------------------------------------------------------------------------

    def snapshot(self, reason: str) -> Outcome:
        """Blocked: save the work tree on the side branch through a separate index."""
        home = self.home_branch()
        index = self.git_dir / SIDE_INDEX
        head = self.rev("HEAD")
        if head is None:
            self.git("read-tree", "--empty", index=index)
        elif self.run("read-tree", "-m", head, index=index).returncode != 0:
            self.git("read-tree", head, index=index)  # -m keeps the stat cache when it can
        tree, left = self.stage(index, base=head)
        side = self.side.name()
        self.write_status(waiting=reason, side_branch=side)
        logger.warning(
            "autosave is waiting: %s; until then autosave saves your files on branch %s",
            reason,
            side,
        )
        message = f"Autosave snapshot of the work folder on {self.host}\n\nWhile {reason}.\n"
        side = self.side.save(tree, head, message)
        self.write_status(pushed_to=side, side_branch=side, last_push_at=utcnow(), last_error=None)
        return Outcome.of(home, side, left, waiting=reason)

    # --- push ------------------------------------------------------------------------------------

    def remote_head(self, branch: str) -> str | None:
        out = self.git("ls-remote", self.remote, f"refs/heads/{branch}", timeout=60).split()
        return out[0] if out else None

    def push(self, home: str) -> tuple[str, str | None]:
        """Push home; merge when the remote moved ahead; the side branch when that can't be clean.

        Returns (the remote branch holding the work, why it is not home). Raises GitError when
        the remote can't be reached (network, 5xx, bad token), PushRefused when it refuses for
        good; nothing is lost then.
        """
        ref = f"refs/heads/{home}"
        for _ in range(3):
            result = self.run("push", "-q", self.remote, f"{ref}:{ref}")
            if result.returncode == 0:
                return self._pushed_to(home), None
            push_failed(result, self.remote, home)  # returns only when the remote moved ahead
            upstream = f"refs/remotes/{self.remote}/{home}"
            self.git("fetch", "-q", self.remote, f"+{ref}:{upstream}")
            head, theirs = self.rev(ref), self.rev(upstream)
            if head is None or theirs is None:
                raise GitError(f"git push: {home} is missing here or on {self.remote}")
            if self.is_ancestor(head, theirs):
                return self._pushed_to(home), None  # the remote already holds all of it
            problem = self.merge(home, head, theirs)
            if problem:
                return self._push_side_branch(home, problem), problem
        raise GitError(f"git push: {home} on {self.remote} kept moving; retrying later")

    def merge(self, home: str, head: str, theirs: str) -> str | None:
        """Merge `theirs` into home as a clean `git merge` would. None when done, else why not."""
        upstream = f"{self.remote}/{home}"
        tree, conflicts, error = self.merge_trees(head, theirs)
        if conflicts:
            return (
                f"{upstream} changed the same lines as this machine in {', '.join(conflicts[:10])}"
            )
        if tree is None:
            return error
        message = f"Autosave: merge {upstream} into the work on {self.host}\n"
        merge = self.commit_tree(tree, [head, theirs], message)
        in_the_way = self.untracked_in_the_way(head, merge)
        if in_the_way:
            return f"files here that git does not track are in the way of {upstream}'s new files: {', '.join(in_the_way[:10])}"
        reason = self.blocked(home)
        if reason:
            raise Blocked(reason)
        checkout = self.run("read-tree", "-m", "-u", head, merge)
        if checkout.returncode != 0:
            return (
                f"files changed here would be overwritten by {upstream}: {checkout.stderr.strip()}"
            )
        moved = self.run("update-ref", "-m", "autosave: merge", f"refs/heads/{home}", merge, head)
        if moved.returncode != 0:
            return f"{home} moved here while merging: {moved.stderr.strip()}"
        logger.info("autosave merged %s (changes pushed from elsewhere) into %s", upstream, home)
        return None

    def merge_trees(
        self, ours: str, theirs: str, *options: str
    ) -> tuple[str | None, list[str], str | None]:
        """(the merged tree, [], None) when clean, (None, the files both changed, None) on a
        conflict, (None, [], why) when git can't merge here."""
        if self.git_version() < (2, 38):
            return None, [], "this git is older than 2.38 (no `git merge-tree --write-tree`)"
        result = self.run(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", *options, ours, theirs
        )
        lines = result.stdout.splitlines()
        if result.returncode not in (0, 1) or not lines or not OBJECT_ID.fullmatch(lines[0]):
            return None, [], f"git merge-tree failed: {redact(result.stderr.strip())}"
        if result.returncode == 1:
            return None, lines[1:], None
        return lines[0], [], None

    def untracked_in_the_way(self, head: str, merge: str) -> list[str]:
        """Paths the merge adds where something untracked is on disk. read-tree -u refuses for
        untracked files but overwrites ignored ones (git 2.39), so both are checked here."""
        added = self.git("diff-tree", "-r", "-z", "--name-only", "--diff-filter=A", head, merge)
        found = []
        for name in filter(None, added.split("\0")):
            parts = Path(name).parts
            for depth in range(1, len(parts) + 1):
                path = self.path.joinpath(*parts[:depth])
                if not os.path.lexists(path):
                    break  # nothing on disk from here down
                if depth == len(parts) or path.is_symlink() or not path.is_dir():
                    found.append(name)  # the file itself, or a file where a folder must go
                    break
        return found

    def _pushed_to(self, branch: str) -> str:
        head = self.rev(f"refs/heads/{branch}") or ""
        self.write_status(
            last_push=head[:7],
            last_push_at=utcnow(),
            pushed_to=branch,
            last_error=None,
            side_branch=None,
            conflict=None,
        )
        return branch

    def _push_side_branch(self, home: str, problem: str) -> str:
        head = self.rev(f"refs/heads/{home}")
        tree = self.rev(f"{head}^{{tree}}") or ""
        side = self.side.save(tree, head, f"Autosave: the work on {self.host}\n\n{problem}.\n")
        self.write_status(
            last_push=(head or "")[:7],
            last_push_at=utcnow(),
            pushed_to=side,
            side_branch=side,
            conflict=problem,
            last_error=None,
        )
        logger.error(
            "AUTOSAVE CONFLICT: %s. This machine's work is safe on branch %s, not on %s yet; "
            "your files here are unchanged. To bring it into %s: run `git pull` in a terminal "
            "here and resolve what it shows, or merge %s into %s on GitHub.",
            problem,
            side,
            home,
            home,
            side,
            home,
        )
        return side

    # --- one batch -------------------------------------------------------------------------------

    def record_error(self, error: Exception) -> None:
        message = redact(str(error))
        if isinstance(error, PushRefused):
            logger.error("AUTOSAVE PUSH REFUSED: %s", message)
        else:
            logger.warning("autosave failed, will retry: %s", message)
        self.write_status(last_error=message, last_error_at=utcnow())

    def sync(self, saved: list[str] | None = None) -> Outcome:
        """Commit everything and push, or snapshot to the side branch when blocked; locked."""
        with self.locked():
            try:
                self.ensure_excludes()
                home = self.home_branch()
                try:
                    reason = self.blocked(home)
                    if reason is None:
                        return self._sync_home(home, saved)
                except Blocked as blocked:
                    reason = str(blocked)
                return self.snapshot(reason)
            except (GitError, subprocess.TimeoutExpired) as error:
                self.record_error(error)
                raise

    def _sync_home(self, home: str, saved: list[str] | None) -> Outcome:
        previous = self.read_status()
        if previous.get("waiting"):
            logger.info(
                "autosave resumes on %s: the repository is back to normal (the snapshots made "
                "meanwhile stay on branch %s)",
                home,
                previous.get("side_branch"),
            )
            self.write_status(waiting=None)
        self.commit_all(saved)
        left = self.left_out_last
        pushed_to, problem = self.push(home)
        return Outcome.of(home, pushed_to, left, conflict=problem)

    def uncommitted(self, left_out: list[str]) -> list[str]:
        """Paths with changes not in HEAD, but those under `left_out` (already reported)."""
        left_out = [name.rstrip("/") for name in left_out]
        out = self.git("status", "--porcelain", "-z", "--untracked-files=all").split("\0")
        paths, entries = [], iter(out)
        for entry in entries:
            if len(entry) < 4:
                continue
            if entry[0] in "RC":
                next(entries, None)  # a rename or copy: the source follows
            path = entry[3:].rstrip("/")
            if not any(path == name or path.startswith(f"{name}/") for name in left_out):
                paths.append(path)
        return paths


def commit_message(files: list[str], saved: list[str], host: str) -> str:
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    body = "\n".join(f"- {name}" for name in files[:100])
    source = "saved in Jupyter Lab" if saved else "changed on the instance"
    return f"Autosave: {shown}\n\n{len(files)} file(s) {source} on {host}:\n{body}\n"
