"""Root's marker of this boot's wake, which Jupyter's start and the ready step wait for: written
by `boot.py wake` in root's run folder (layout.Paths.wake_marker, wake_failed_marker), holding
the boot id, so a marker of an earlier boot, or one the service user made, never counts. Shipped
in the code bundle: standard library only.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from layout import Paths
from rootfs import ensure_dir, owner_ids, write_file


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


def mark_wake(paths: Paths, ok: bool | None) -> None:
    """Root's marker of this boot's wake in root's run folder: success (True), failure (False),
    or none yet (None: both removed, as at the start of a wake)."""
    ensure_dir(paths.run, 0o755, owner_ids("root"))
    for marker, kept in ((paths.wake_marker, ok is True), (paths.wake_failed_marker, ok is False)):
        if kept:
            write_file(marker, f"{current_boot_id()}\n", 0o644, owner_ids("root"))
        else:
            marker.unlink(missing_ok=True)
