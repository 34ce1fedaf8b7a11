"""Root's safe file helpers and the boot steps' process helpers. Shipped in user_data: standard
library, Python 3.10+ (the `units` step also on older ones).

Ownership is the security boundary (README "Security"): root writes only in folders only root
can write, never through a path the `jupyter` user can change, and reads the one file of that
user it needs (the activity file) with `read_regular`. What lives where is layout.py's.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from layout import ENV_NAME, BootError, parse_env

logger = logging.getLogger("jupyter_on_demand.boot")

T = TypeVar("T")
MAX_READ_BYTES = 1 << 20


def read_root_env(path: Path) -> dict[str, str]:
    """A KEY=value file that steers root (bootstrap.env, local.env): {} when there is none; else
    a regular file (never through a symlink) of root's or of this process's own user, that
    nobody else may write. BootError otherwise, saying what to fix."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return {}
    except OSError as error:
        if path.is_symlink():
            raise BootError(
                f"{path} is a symlink, not a regular file; replace it with a file"
            ) from error
        if isinstance(error, PermissionError):  # root's 0600 file, read by the service user
            return {}
        raise BootError(f"cannot read {path}: {error}") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BootError(f"{path} is not a regular file; replace it with a file")
        if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o022:
            raise BootError(
                f"{path} is writable by others than root (owner {info.st_uid}, mode "
                f"{stat.S_IMODE(info.st_mode):o}); run `chown root:root {path}; chmod 644 {path}`"
            )
        values = parse_env(os.read(fd, MAX_READ_BYTES).decode())
    finally:
        os.close(fd)
    bad = sorted(key for key in values if not ENV_NAME.fullmatch(key))
    if bad:
        raise BootError(f"{path}: {', '.join(bad)} is not a variable name")
    return values


def owner_ids(user: str) -> tuple[int, int] | None:
    """uid/gid of the service user, or None when not root (tests run as themselves)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def read_regular(path: Path, limit: int = MAX_READ_BYTES) -> bytes | None:
    """The bytes of a regular file, never through a symlink, a FIFO or a device; None when
    there is no such regular file. For files in folders the service user can write."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def is_regular(path: Path) -> bool:
    """A regular file itself, not a symlink to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def ensure_dir(path: Path, mode: int, owner: tuple[int, int] | None = None) -> None:
    """A real directory (never a symlink) with this mode and owner; its parents are made as
    root's. Refuses when something else sits at the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def secure_file(path: Path, mode: int, owner: tuple[int, int] | None = None) -> None:
    """chmod/chown a file through a descriptor opened without following symlinks."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BootError(f"{path} is not a regular file; refusing to change it")
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def write_file(path: Path, content: str, mode: int, owner: tuple[int, int] | None = None) -> bool:
    """Write atomically when content, mode or owner differ; True when something changed.

    The temp file gets an unpredictable name (O_EXCL) and its mode and owner through its
    descriptor; the rename replaces whatever sits at the path (a symlink included) and never
    follows it."""
    data = content.encode()
    try:
        info = os.lstat(path)
        if (
            stat.S_ISREG(info.st_mode)
            and stat.S_IMODE(info.st_mode) == mode
            and (owner is None or (info.st_uid, info.st_gid) == owner)
            and read_regular(path, len(data) + 1) == data
        ):
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def run(
    *args: str,
    user: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    echo: bool = False,
) -> str:
    """Run a command (as `user`, with privileges dropped, when root); BootError on failure.
    `echo`: the command's own log (stderr) goes on to ours (the journal)."""
    command = list(args)
    if user is not None and os.geteuid() == 0 and pwd.getpwuid(os.geteuid()).pw_name != user:
        # runuser resets HOME and friends: `env` sets what the step needs.
        assignments = [f"{key}={value}" for key, value in (env or {}).items()]
        command = ["runuser", "-u", user, "--", "env", *assignments, *command]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
            cwd="/",
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BootError(f"{' '.join(args[:3])} failed: {error}") from error
    if echo:
        sys.stderr.write(result.stderr)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise BootError(f"{' '.join(args[:3])} failed: {output}")
    return result.stdout


def retry(what: str, action: Callable[[], T], attempts: int = 4) -> T:
    """`action()` again with backoff (10, 30, 90 s; JOD_RETRY_SECONDS sets the first delay) while
    it raises BootError: a dpkg lock held by unattended-upgrades, a PyPI or SSM hiccup. The last
    error is raised."""
    delay = float(os.environ.get("JOD_RETRY_SECONDS", "10"))
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except BootError as error:
            if attempt == attempts:
                raise
            logger.warning("%s failed (attempt %d of %d), retrying in %.0f s: %s",
                           what, attempt, attempts, delay, error)  # fmt: skip
            time.sleep(delay)
            delay *= 3
    raise AssertionError("unreachable")


def systemctl(*args: str) -> None:
    run(os.environ.get("JOD_SYSTEMCTL", "systemctl"), *args)
