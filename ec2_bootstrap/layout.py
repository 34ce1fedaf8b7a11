"""Where things live on the instance (Paths, every path overridable by a JOD_* variable), and
the safe file helpers of the root steps. Shipped in user_data: standard library, Python 3.10+.

Ownership is the security boundary (README "Security"): root writes only in folders only root
can write, never through a path the `jupyter` user can change, and reads the one file of that
user it needs (the activity file) with `read_regular`.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger("jupyter_on_demand.boot")

T = TypeVar("T")
MAX_READ_BYTES = 1 << 20


class BootError(Exception):
    """A reason a boot step can't go on; logged to journald and the console."""


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Paths:
    config: Path
    bootstrap_env: Path
    local_env: Path
    app: Path
    secrets: Path
    tls: Path
    state: Path
    user_state: Path
    home: Path
    repo: Path
    systemd: Path
    run: Path
    system_etc: Path
    user: str

    @property
    def venv(self) -> Path:
        return self.app / "venv"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def jupyter_config(self) -> Path:
        """Jupyter's config path for the server (JUPYTER_CONFIG_DIR in jupyter-on-demand.service):
        root's and empty, so nothing the user writes in ~/.jupyter runs inside the server."""
        return self.app / "jupyter-config"

    @property
    def jupyter_env(self) -> Path:
        return self.secrets / "jupyter.env"

    @property
    def credentials(self) -> Path:
        return self.secrets / "git-credentials"

    @property
    def certfile(self) -> Path:
        return self.tls / "jupyter.crt"

    @property
    def keyfile(self) -> Path:
        return self.tls / "jupyter.key"

    @property
    def idle_state(self) -> Path:
        return self.state / "idle-state.json"

    @property
    def repo_inputs(self) -> Path:
        """Root's record of what the last complete `repo` step ran with (boot_secrets.repo_inputs)."""
        return self.state / "repo-inputs.json"

    @property
    def install_stamp(self) -> Path:
        return self.state / "installed"

    @property
    def install_inputs(self) -> Path:
        """What boot.install_inputs_command printed at the last good install check."""
        return self.state / "install-inputs"

    @property
    def activity(self) -> Path:
        return self.user_state / "activity.json"

    @property
    def wake_marker(self) -> Path:
        """Written by root at the end of this boot's successful wake (`boot.py wake`), holding
        the boot id; Jupyter and the ready step wait for it (wake_result)."""
        return self.run / "wake-ok"

    @property
    def wake_failed_marker(self) -> Path:
        """Written by root when this boot's wake failed: whoever waits gives up at once."""
        return self.run / "wake-failed"

    @property
    def idle_heartbeat(self) -> Path:
        """Touched after each completed idle check; idle-failsafe.sh reads its age."""
        return self.run / "idle-ok"

    @classmethod
    def from_env(cls) -> Paths:
        env = os.environ
        user = env.get("JOD_USER", "jupyter")
        home = Path(env.get("JOD_HOME", f"/home/{user}"))
        etc = Path(env.get("JOD_ETC_DIR", "/etc/jupyter-on-demand"))
        state = Path(env.get("JOD_STATE_DIR", "/var/lib/jupyter-on-demand"))
        config = Path(env.get("JOD_CONFIG", str(etc / "config.env")))
        return cls(
            # config.env: what the steps, the units and the idle checker read. boot.py writes it at
            # every boot from bootstrap.env (user_data: where the settings are), the settings in
            # SSM, and local.env (the site's own, optional), all three root's, side by side.
            config=config,
            bootstrap_env=Path(env.get("JOD_BOOTSTRAP_ENV", str(config.parent / "bootstrap.env"))),
            local_env=Path(env.get("JOD_LOCAL_ENV", str(config.parent / "local.env"))),
            app=Path(env.get("JOD_APP_DIR", "/opt/jupyter-on-demand")),
            secrets=etc / "secrets",
            tls=etc / "tls",
            state=state,
            user_state=state / "jupyter",
            home=home,
            repo=Path(env.get("JOD_REPO_DIR", str(home / "work"))),
            systemd=Path(env.get("JOD_SYSTEMD_DIR", "/etc/systemd/system")),
            run=Path(env.get("JOD_RUN_DIR", "/run/jupyter-on-demand")),
            system_etc=Path(env.get("JOD_SYSTEM_ETC", "/etc")),
            user=user,
        )


def current_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def roots_marker(path: Path, boot_id: str) -> bool:
    """True only for a marker root wrote at this boot: a regular file (never through a symlink),
    owned by root, in a folder owned by root that nobody else may write, that nobody else may
    write either, holding exactly this boot's id. The service user can't make such a file: it
    can't write root's folder, and a file it owns is not root's."""
    if not boot_id:
        return False
    try:
        folder = os.lstat(path.parent)
        if not stat.S_ISDIR(folder.st_mode) or folder.st_uid != 0 or folder.st_mode & 0o022:
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            return False
        return os.read(fd, 200).decode(errors="replace").strip() == boot_id
    finally:
        os.close(fd)


def wake_result(paths: Paths, timeout: float, poll: float = 0.2) -> bool | None:
    """Wait for this boot's wake: True once it succeeded (root's marker of this boot), False
    once it failed, None when `timeout` seconds passed with neither."""
    boot_id = current_boot_id()
    deadline = time.monotonic() + timeout
    while True:
        if roots_marker(paths.wake_marker, boot_id):
            return True
        if roots_marker(paths.wake_failed_marker, boot_id):
            return False
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines (no shell expansion: the argon2 hash is full of `$`)."""
    config = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            config[key.strip()] = value.strip()
    return config


def read_config(path: Path) -> dict[str, str]:
    return parse_env(path.read_text())


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


def env_file(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


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
