"""`boot.py install` (root, the system Python, before any venv exists): the Debian packages, the
`jupyter` user, root's state folders, the venv and the GPU kernel, then `sync` in the venv and
the units. Runs at every boot until it has succeeded once, and again when what it installs from
changes (install_condition, the install unit's ExecCondition=). Shipped in user_data: standard
library only, Python 3.10+.
"""

from __future__ import annotations

import grp
import hashlib
import json
import logging
import os
import pwd
import subprocess
import sys
from pathlib import Path

from layout import (
    FLUSH_UNIT,
    JUPYTER_UNIT,
    SPOT_UNIT,
    SYSTEM_PYTHON,
    BootError,
    Paths,
    read_config,
)
from rootfs import (
    ensure_dir,
    is_regular,
    owner_ids,
    read_regular,
    read_root_env,
    retry,
    run,
    systemctl,
    write_file,
)

logger = logging.getLogger("jupyter_on_demand.boot")

SYSTEM_PACKAGES = ("python3-venv", "git", "openssl")
DLAMI_PYTHON = "/opt/pytorch/bin/python"  # the Deep Learning AMI's PyTorch environment


def site_config(paths: Paths) -> dict[str, str]:
    """Where the settings are and the site's own: bootstrap.env, then the last config.env, then
    local.env. An instance whose older user_data wrote only config.env still finds its prefix."""
    last = read_config(paths.config) if is_regular(paths.config) else {}
    return {**last, **read_root_env(paths.bootstrap_env), **read_root_env(paths.local_env)}


def ensure_packages() -> None:
    missing = [
        p
        for p in SYSTEM_PACKAGES
        if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode
    ]
    if not missing:
        return
    logger.info("installing %s", " ".join(missing))
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    # unattended-upgrades often holds the dpkg lock right after a first boot: wait for it.
    lock = ("-o", "DPkg::Lock::Timeout=300")
    retry("apt-get update", lambda: run("apt-get", *lock, "update", "-q", env=env))
    retry(
        "apt-get install", lambda: run("apt-get", *lock, "install", "-y", "-q", *missing, env=env)
    )


def ensure_user(paths: Paths) -> None:
    try:
        pwd.getpwnam(paths.user)
    except KeyError:
        run("useradd", "--create-home", "--home-dir", str(paths.home), "--shell", "/bin/bash",
            paths.user)  # fmt: skip
        logger.info("created user %s", paths.user)
    for group in ("video", "render"):  # GPU device access where the groups exist
        try:
            grp.getgrnam(group)
        except KeyError:
            continue
        run("usermod", "-aG", group, paths.user)


def deny_scheduled_jobs(paths: Paths) -> None:
    """The service user may not schedule jobs (cron, at): nothing a notebook leaves behind may
    run after a reboot with no process to see, such as a job that fakes activity."""
    for name in ("cron.deny", "at.deny"):
        deny = paths.system_etc / name
        lines = (read_regular(deny) or b"").decode().splitlines()
        if paths.user in lines:
            continue
        mode, owner = 0o644, None
        if deny.exists():  # Debian's at.deny is root:daemon 0640: keep what it is
            info = os.lstat(deny)
            mode, owner = info.st_mode & 0o777, (info.st_uid, info.st_gid)
        write_file(deny, "".join(f"{line}\n" for line in [*lines, paths.user]), mode, owner)
        logger.info("%s may not schedule jobs (%s)", paths.user, deny)


def ensure_state_dirs(paths: Paths) -> None:
    """Root's state folder is root's (an older layout gave it to the service user); Jupyter
    records activity in a folder of its own inside it."""
    ensure_dir(paths.state, 0o755, owner_ids("root"))
    ensure_dir(paths.user_state, 0o700, owner_ids(paths.user))


def venv_inputs(paths: Paths, config: dict[str, str]) -> str:
    """What the venv is built from; the install redoes pip only when this changes."""
    requirements = (paths.app / "requirements.txt").read_bytes()
    kernel = config.get("KERNEL_PYTHON") or (DLAMI_PYTHON if Path(DLAMI_PYTHON).exists() else "")
    return json.dumps(
        {
            "requirements": hashlib.sha256(requirements).hexdigest(),
            "python": sys.version.split()[0],
            "kernel": kernel,
        },
        sort_keys=True,
    )


def ensure_venv(paths: Paths, config: dict[str, str]) -> None:
    python = paths.venv_python
    if not python.exists():
        run(sys.executable, "-m", "venv", str(paths.venv))
    pip_env = {k: v for k, v in config.items() if k.startswith("PIP_")}
    pip = (str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check")
    requirements = str(paths.app / "requirements.txt")
    retry("pip install", lambda: run(*pip, "-r", requirements, env=pip_env))
    kernel_python = config.get("KERNEL_PYTHON") or (
        DLAMI_PYTHON if Path(DLAMI_PYTHON).exists() else ""
    )
    if kernel_python:
        # The Deep Learning AMI's environment (PyTorch, CUDA) becomes the default "python3" kernel.
        if subprocess.run(
            [kernel_python, "-c", "import ipykernel"], capture_output=True, check=False
        ).returncode:
            retry("pip install ipykernel",
                  lambda: run(kernel_python, "-m", "pip", "install", "-q", "ipykernel", env=pip_env))  # fmt: skip
        run(kernel_python, "-m", "ipykernel", "install", "--prefix", str(paths.venv), "--name", "python3",
            "--display-name", "Python 3 (GPU, PyTorch)")  # fmt: skip
        logger.info("registered %s as the default kernel", kernel_python)


def install_inputs_command(paths: Paths) -> str:
    """A shell command that prints what venv_inputs and the venv's health are made of: the
    requirements, the three env files (KERNEL_PYTHON, PIP_*), the venv's own files, the system
    Python's binary and the AMI's kernel Python. A missing file prints its error, so a file that
    appears (local.env, the kernel) changes the output too. The install unit runs `boot.py
    install` only when this differs from what it printed after the last install check that found
    everything installed (install_condition): an unchanged wake skips the Python start."""
    files = (paths.app / "requirements.txt", paths.bootstrap_env, paths.config, paths.local_env,
             paths.venv / "pyvenv.cfg")  # fmt: skip
    return (
        f"sha256sum {' '.join(map(str, files))} 2>&1; "
        f"readlink -e {SYSTEM_PYTHON} {paths.venv_python} {DLAMI_PYTHON}; "
        f"ls -lL --full-time {SYSTEM_PYTHON} 2>&1"
    )


def install_condition(paths: Paths) -> str:
    """The install unit's ExecCondition= script (`$` doubled there for systemd): exit 1 (skip
    the unit) only when the inputs print exactly as at the last good check; anything else,
    an error included, runs the install (exit 0)."""
    return (
        f'if [ "$({install_inputs_command(paths)})" = "$(cat {paths.install_inputs} 2>/dev/null)" ]; '
        "then echo jupyter-on-demand: installed, and its inputs did not change; exit 1; fi"
    )


def record_install_inputs(paths: Paths) -> None:
    output = subprocess.run(["/bin/sh", "-c", install_inputs_command(paths)], capture_output=True,
                            text=True, check=False).stdout  # fmt: skip
    write_file(paths.install_inputs, output, 0o644, owner_ids("root"))


def stop_jupyter() -> bool:
    """Jupyter's unit is not ordered after this one (its imports start with the boot's other
    units, while this unit's check runs): stop it before anything changes under it. False when
    there was nothing to stop (the first boot has no Jupyter unit yet): said, not raised."""
    try:
        systemctl("stop", JUPYTER_UNIT)
    except BootError as error:
        logger.info("Jupyter not stopped before the install: %s", error)
        return False
    return True


def install_step(paths: Paths) -> None:
    # config.env may not exist yet (the first boot): the site's settings are what pip needs, and
    # `sync` below writes config.env before any unit that reads it starts.
    config = site_config(paths)
    inputs = venv_inputs(paths, config)
    stamp = paths.install_stamp
    if read_regular(stamp) == inputs.encode() and paths.venv_python.exists():
        record_install_inputs(paths)
        logger.info("already installed; nothing to do")
        return
    paths.install_inputs.unlink(missing_ok=True)
    stopped = stop_jupyter()
    try:
        ensure_packages()
        ensure_user(paths)
        deny_scheduled_jobs(paths)
        ensure_state_dirs(paths)
        ensure_venv(paths, config)
        run(str(paths.venv_python), str(paths.app / "boot.py"), "sync")
        write_file(stamp, inputs, 0o644)
        record_install_inputs(paths)
    except BaseException:
        # As when Jupyter was ordered after this unit: it starts after a failed install too
        # (a download that failed leaves the venv as it was), and the next boot installs again.
        if stopped:
            systemctl("start", "--no-block", JUPYTER_UNIT)
        raise
    # The units run the wake (which ends with the ready tag) and Jupyter, and watch for a spot
    # interruption; --no-block: the wake orders itself after this unit, which is still running.
    systemctl("start", "--no-block", JUPYTER_UNIT, FLUSH_UNIT, SPOT_UNIT)
    logger.info("installed; Jupyter is starting")
