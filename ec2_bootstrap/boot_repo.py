"""`boot.py repo` (the service user, run by root's secrets step): git settings and the clone of
the team's repository. Everything under the user's home is done with the user's own rights, so
nothing planted there can make root write, chmod or chown a file. Root skips the step when
nothing it reads or repairs changed (repo_inputs, below), looking at the user's files without
opening or following any of them. Shipped in the code bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from layout import BootError, Paths, read_config
from rootfs import owner_ids, retry, run

logger = logging.getLogger("jupyter_on_demand.boot")

README = (
    "# Team notebooks\n\nEvery file saved in Jupyter Lab lands here (jupyter-on-demand autosave).\n"
)


# --- Skipping an unchanged repo step (root) ---------------------------------------------------
#
# The repo step (a second Python as the service user, ~1 s of CPU on the VM's wake) is skipped
# when nothing it reads or repairs changed since a run that set everything up. What it does on a
# clone that has history: the git settings in ~/.gitconfig (rewritten when they differ), removing
# an older ~/.git-credentials, the clone folder (mkdir), fetching the team's history while the
# first clone's not-cloned marker is there, and a warning when the clone's origin isn't the
# settings' URL. The record (root's, 0600, in root's state folder) holds: the settings it reads,
# its paths, the user's uid, the code that does it (REPO_CODE),
# and what root sees of the user's files WITHOUT opening, reading or following any of them:
# lstat-like facts (type, inode, size, mtime) of ~/.gitconfig and ~/.git-credentials, the clone
# folder and its .git, taken through O_PATH|O_NOFOLLOW handles, so a symlink the user plants
# anywhere on the way is seen as a symlink and never followed (repo_probe). The step's content
# checks (git config --list, .git/config's origin) stay the user's process's; it says "complete"
# only when it set everything up and had nothing to warn about (REPO_COMPLETE), so a failed or
# warning run is run again at every boot, as is a clone with the not-cloned marker.
#
# What a user can do to this: make the probe look unchanged while the clone is broken (e.g. edit
# .git/config). That is the user's own clone; the step, run, would not repair that either (it
# never touches a clone with history), and a skipped step gives no one any right: it runs as the
# user anyway. Root reads nothing of the user's but metadata, and writes only its own record.

# Printed last by `boot.py repo` (stdout, which its log never reaches) when the step set up
# everything and had nothing to warn about.
REPO_COMPLETE = "jupyter-on-demand: repo step complete"
REPO_CODE = ("boot_repo.py", "git_autosave.py", "layout.py", "rootfs.py")
REPO_SETTINGS = ("GITHUB_REPO_URL", "GITHUB_USER_NAME", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL")


def _nofollow(name: str, dir_fd: int | None = None) -> int:
    """A handle on a folder that never follows a symlink (O_PATH: nothing is opened for reading)."""
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
    return os.open(name, flags, dir_fd=dir_fd)


def _facts(name: str, dir_fd: int) -> list[int] | None:
    """What lstat says of name in the folder (no link followed), or None when it doesn't exist."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return [info.st_mode, info.st_uid, info.st_ino, info.st_size, info.st_mtime_ns]


def repo_probe(paths: Paths) -> dict[str, object] | None:
    """What root sees of the user's home and clone, without opening, reading or following any of
    it; None when the clone isn't a healthy-looking one (no folder, no .git folder, a symlink on
    the way, the not-cloned marker): then the step runs."""
    import git_autosave

    handles: list[int] = []
    try:
        home = _nofollow(str(paths.home))
        handles.append(home)
        relative = paths.repo.relative_to(paths.home)
        folder = home
        for part in relative.parts:
            folder = _nofollow(part, folder)
            handles.append(folder)
        git = _nofollow(".git", folder)
        handles.append(git)
        if _facts(git_autosave.NOT_CLONED, git) is not None:
            return None
        return {
            "home": (_facts(".", home) or [])[:3],  # not its mtime: any new file changes it
            "gitconfig": _facts(".gitconfig", home),
            "git-credentials": _facts(".git-credentials", home),
            "repo": [os.fstat(folder).st_ino, os.fstat(git).st_ino],
        }
    except (OSError, ValueError):  # missing, not a folder, a symlink, the clone outside the home
        return None
    finally:
        for handle in handles:
            os.close(handle)


def repo_inputs(paths: Paths, config: dict[str, str]) -> str | None:
    """The record of everything the repo step reads or repairs (see above); None: run it."""
    account = owner_ids(paths.user)
    probe = repo_probe(paths)
    if account is None or probe is None:
        return None
    here = Path(__file__).resolve().parent
    code = {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in REPO_CODE}
    return json.dumps(
        {
            "settings": {key: config.get(key) for key in REPO_SETTINGS},
            "paths": [str(paths.home), str(paths.repo), str(paths.credentials)],
            "user": [paths.user, *account],
            "code": code,
            "probe": probe,
        },
        sort_keys=True,
    )


# --- The repository (the service user) --------------------------------------------------------


def configure_git(paths: Paths, config: dict[str, str]) -> None:
    git_config = {
        "user.name": config.get("GIT_AUTHOR_NAME", "Jupyter autosave"),
        "user.email": config.get(
            "GIT_AUTHOR_EMAIL",
            f"{config.get('GITHUB_USER_NAME', 'jupyter')}@users.noreply.github.com",
        ),
        # git's `store` helper answers from root's 0640 file; wrapped so git only reads it (its
        # store/erase actions would rewrite or, after one 401, delete the line boot manages).
        "credential.helper": f'!f() {{ test "$1" = get && git credential-store --file={paths.credentials} get; }}; f',
        "init.defaultBranch": "main",
        "pull.rebase": "true",
        # A teammate's `git pull` works with files autosave left out (over the size limit).
        "rebase.autoStash": "true",
    }
    env = {"HOME": str(paths.home)}
    # One git process reads them all (each costs a wake time); git lowercases the section and
    # variable names it lists; the last value of a key is the one git uses.
    current: dict[str, str] = {}
    if (paths.home / ".gitconfig").exists():
        listed = run("git", "config", "--global", "--list", "-z", env=env)
        for entry in listed.split("\0"):
            name, _, value = entry.partition("\n")
            current[name.lower()] = value
    for key, value in git_config.items():
        if current.get(key.lower()) != value:
            run("git", "config", "--global", key, value, env=env)
    # An older layout kept the credential in the home; the helper no longer reads it.
    (paths.home / ".git-credentials").unlink(missing_ok=True)


def ensure_repo(paths: Paths, config: dict[str, str]) -> bool:
    """Clone the team's repo at first boot (retried); initialise it when the team's is empty;
    never touch one that has history. When GitHub can't be reached at first boot, the folder
    starts as an empty repository marked not-cloned (autosave commits nothing on main then, or
    it would start a history unrelated to the team's), and a later boot takes the history.
    False when something is left for a later boot (the team's history, a push) or worth saying
    at every boot (the settings name another repository)."""
    import git_autosave

    env = {"HOME": str(paths.home), "GIT_TERMINAL_PROMPT": "0"}
    url = config["GITHUB_REPO_URL"]
    marker = paths.repo / ".git" / git_autosave.NOT_CLONED

    def git(*args: str, timeout: float = 120) -> str:
        return run("git", *args, env=env, timeout=timeout)

    def in_repo(*args: str, timeout: float = 120) -> str:
        return git("-C", str(paths.repo), *args, timeout=timeout)

    complete = True
    if not (paths.repo / ".git").exists():
        try:
            retry("git clone", lambda: git("clone", "-q", url, str(paths.repo), timeout=600))
            logger.info("cloned %s into %s", url, paths.repo)
        except BootError as error:
            logger.error("could not clone %s (%s); Jupyter starts on an empty folder, and the "
                         "next boot takes the team's history", url, error)  # fmt: skip
            paths.repo.mkdir(parents=True, exist_ok=True)
            git("init", "-q", "-b", "main", str(paths.repo))
            in_repo("remote", "add", "origin", url)
            marker.write_text("the first clone failed; boot.py repo fetches the history\n")
            return False
    elif (origin := origin_url(paths.repo)) not in (None, url):
        # A repository changed in the settings: the work folder is the person's, never switched
        # under them (its files, its unpushed commits); it says how to take the new one.
        logger.warning("%s is a clone of %s, but the settings name %s: autosave still pushes to "
                       "%s. To work on the new repository, move %s aside and reboot; the next boot "
                       "clones it", paths.repo, origin, url, origin, paths.repo)  # fmt: skip
        complete = False
    if marker.exists():
        take_the_teams_history(paths, in_repo, marker)
        if marker.exists():
            return False
    if in_repo("for-each-ref", "--count=1").strip():
        # It has a branch or tag: a person's repository. Never touch it, even on an unborn
        # branch (`git checkout --orphan` makes HEAD unborn in a repository with history).
        return complete
    for name, content in (("README.md", README), (".gitignore", git_autosave.DEFAULT_GITIGNORE)):
        if not (paths.repo / name).exists():
            (paths.repo / name).write_text(content)
    in_repo("symbolic-ref", "HEAD", "refs/heads/main")
    in_repo("add", "README.md", ".gitignore")
    in_repo("commit", "-q", "-m", "Initialise the team repository", "--", "README.md", ".gitignore")
    logger.info("initialised the empty repository with a README and a .gitignore")
    try:
        in_repo("push", "-q", "origin", "HEAD:refs/heads/main", timeout=300)
    except BootError as error:
        logger.warning("first push failed (%s); autosave pushes it later", error)
        return False
    return complete


def origin_url(repo: Path) -> str | None:
    """remote.origin.url of the clone, read from its .git/config (no git process: a wake time)."""
    try:
        text = (repo / ".git" / "config").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]' and line.partition("=")[0].strip().lower() == "url":
            return line.partition("=")[2].strip()
    return None


def take_the_teams_history(paths: Paths, in_repo: Callable[..., str], marker: Path) -> None:
    """The first clone failed: fetch now, and check out the team's branch as `git checkout`
    does, which refuses rather than overwrite a file saved meanwhile (then it says which)."""
    try:
        in_repo("fetch", "-q", "origin", timeout=600)
    except BootError as error:
        logger.error(
            "GitHub is still unreachable (%s); the work folder is not the team's yet", error
        )
        return
    head = in_repo("ls-remote", "--symref", "origin", "HEAD").split()
    branch = head[1].removeprefix("refs/heads/") if len(head) > 1 and head[0] == "ref:" else "main"
    if in_repo("for-each-ref", "--count=1", f"refs/remotes/origin/{branch}").strip():
        try:
            in_repo("checkout", "-q", "-B", branch, "--track", f"origin/{branch}")
        except BootError as error:
            logger.error("could not take the team's history into %s: %s. Move the files it names "
                         "aside (autosave keeps them on its side branch), then reboot", paths.repo,
                         error)  # fmt: skip
            return
        logger.info("took the team's history: %s is on %s", paths.repo, branch)
    marker.unlink()


def repo_step(paths: Paths) -> bool:
    """git settings, then the clone. A failure of either is logged and Jupyter still starts on
    the folder (a teammate's broken ~/.gitconfig must not lock the team out of Jupyter). True
    when everything was set up with nothing to warn about (then root may skip the next, unchanged
    run: repo_inputs); `boot.py repo` then prints REPO_COMPLETE."""
    if owner_ids(paths.user) not in (None, (os.geteuid(), os.getegid())):
        raise BootError(f"`boot.py repo` runs as {paths.user}, not as root")
    config = read_config(paths.config)
    complete = True
    for what, step in (("the git settings", configure_git), ("the repository", ensure_repo)):
        try:
            complete = step(paths, config) is not False and complete
        except BootError as error:
            complete = False
            logger.error("could not set up %s (%s); Jupyter starts, autosave may not work", what,
                         error)  # fmt: skip
    paths.repo.mkdir(parents=True, exist_ok=True)  # Jupyter's root folder
    return complete
