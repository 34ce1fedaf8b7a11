"""The side branch `autosave/<host>`: where autosave puts the work when it can't go to the home
branch (a half-done git operation, another branch checked out, a conflict).

It is never force-pushed. This machine's snapshots form their own line of commits
(`refs/jod-autosave/autosave/<host>`, each with the one before and HEAD as parents), and the side
branch is that line merged with whatever else reached the branch: a teammate who resolves a
conflict on GitHub commits onto it, and those commits stay, in its history and, when they don't
touch the same lines as this machine, in its files. When they do, the branch's files are this
machine's version and theirs stay in its history; the log says so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from autosave_run import GitError, push_failed

if TYPE_CHECKING:
    from autosave_git import Repo

logger = logging.getLogger("jupyter_on_demand.autosave")

OWN_SNAPSHOTS = "refs/jod-autosave/"  # + the side branch name: the snapshots this machine made


class SideBranch:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def ref(self) -> str:
        ref = f"refs/heads/autosave/{self.repo.host}"
        if self.repo.git("symbolic-ref", "-q", "HEAD", check=False).strip() == ref:
            ref += "-snapshots"  # someone checked the side branch out: never move it under them
        return ref

    def name(self) -> str:
        return self.ref().removeprefix("refs/heads/")

    def save(self, tree: str, head: str | None, message: str) -> str:
        """Advance the side branch to hold `tree` (and `head` in its history); push it.

        Returns the branch name.
        """
        repo, ref = self.repo, self.ref()
        own_ref = OWN_SNAPSHOTS + ref.removeprefix("refs/heads/")
        tip, recorded = repo.rev(ref), repo.rev(own_ref)
        # Before there was an own line, the side branch held only this machine's snapshots.
        own = self.next_snapshot(recorded or tip, tree, head, message)
        if own != recorded:
            repo.git("update-ref", "-m", "autosave: snapshot", own_ref, own, recorded or "")
        self.move(ref, tip, self.combine(ref, tip, own))
        self.push(ref)
        return ref.removeprefix("refs/heads/")

    def next_snapshot(self, last: str | None, tree: str, head: str | None, message: str) -> str:
        """`last` when it holds `tree` and `head`, `head` when it holds `tree` and `last`, else
        a new commit of `tree` on both: the line only grows."""
        repo = self.repo
        if (
            last
            and repo.rev(f"{last}^{{tree}}") == tree
            and (not head or repo.is_ancestor(head, last))
        ):
            return last
        if (
            head
            and repo.rev(f"{head}^{{tree}}") == tree
            and (not last or repo.is_ancestor(last, head))
        ):
            return head
        parents = [last] if last else []
        if head and not (last and repo.is_ancestor(head, last)):
            parents.append(head)
        return repo.commit_tree(tree, parents, message)

    def combine(self, ref: str, theirs: str | None, ours: str) -> str:
        """A commit that holds both `theirs` (the side branch as it is) and `ours`."""
        repo = self.repo
        if theirs is None or repo.is_ancestor(theirs, ours):
            return ours
        if repo.is_ancestor(ours, theirs):
            return theirs
        branch = ref.removeprefix("refs/heads/")
        tree, conflicts, error = repo.merge_trees(ours, theirs, "--allow-unrelated-histories")
        if tree is None:
            tree = repo.rev(f"{ours}^{{tree}}") or ""
            logger.warning(
                "autosave: branch %s has commits from elsewhere (%s) that changed the same files "
                "as this machine (%s): they stay in the branch's history, and its files are this "
                "machine's version; compare with `git diff %s %s`",
                branch,
                theirs[:7],
                ", ".join(conflicts[:10]) or error,
                theirs[:7],
                branch,
            )
        message = f"Autosave: keep the commits from elsewhere on {branch}\n"
        return repo.commit_tree(tree, [theirs, ours], message)

    def move(self, ref: str, old: str | None, new: str) -> None:
        if new != old:
            self.repo.git("update-ref", "-m", "autosave: side branch", ref, new, old or "")

    def push(self, ref: str) -> None:
        """Push without force; commits that reached the branch elsewhere are merged in first."""
        repo, branch = self.repo, ref.removeprefix("refs/heads/")
        tracking = f"refs/remotes/{repo.remote}/{branch}"
        for _ in range(3):
            result = repo.run("push", "-q", repo.remote, f"{ref}:{ref}")
            if result.returncode == 0:
                return
            push_failed(result, repo.remote, branch)  # returns only when the branch moved ahead
            repo.git("fetch", "-q", repo.remote, f"+{ref}:{tracking}")
            theirs, tip = repo.rev(tracking), repo.rev(ref) or ""
            logger.warning(
                "autosave: branch %s on %s has commits that were pushed from elsewhere (%s): "
                "autosave merges them in and never overwrites them",
                branch,
                repo.remote,
                (theirs or "")[:7],
            )
            self.move(ref, tip, self.combine(ref, theirs, tip))
        raise GitError(f"git push: {branch} on {repo.remote} kept moving; retrying later")
