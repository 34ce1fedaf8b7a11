"""The instance's boot steps, as root (paths: layout.Paths; README "What happens on the instance").

    boot.py install   every boot until it has succeeded once: packages, the `jupyter` user, the
                      venv, the GPU kernel, `sync`, then starts the units; transient failures
                      retry with backoff
    boot.py sync      the code bundle from SSM into /opt/jupyter-on-demand and the units
    boot.py secrets   (boot_secrets.py) secrets from SSM, Jupyter's env file, the git credential,
                      TLS; then `repo` as the service user; `ready` tags the instance

user_data ships this file, layout.py and idle_check.py: standard library only, Python 3.9+, since
the system Python runs `install` before the venv exists; boto3 is imported inside the functions
that run in the venv.
"""

from __future__ import annotations

import argparse
import base64
import grp
import gzip
import hashlib
import json
import logging
import os
import pwd
import subprocess
import sys
from pathlib import Path

from layout import (
    BootError,
    Paths,
    ensure_dir,
    owner_ids,
    read_config,
    read_regular,
    retry,
    run,
    write_file,
)

logger = logging.getLogger("jupyter_on_demand.boot")

SYSTEM_PACKAGES = ("python3-venv", "git", "openssl")
IDLE_TIMER = "jupyter-on-demand-idle.timer"
# Started at every boot (WantedBy=multi-user.target / timers.target); the install unit and the
# idle units are also written by user_data, so that they exist before any of this has run.
UNITS = (
    "jupyter-on-demand-install.service",
    "jupyter-on-demand-idle.service",
    IDLE_TIMER,
    "jupyter-on-demand-secrets.service",
    "jupyter-on-demand.service",
    "jupyter-on-demand-ready.service",
    "jupyter-on-demand-autosave-flush.service",
)
ENABLED = tuple(unit for unit in UNITS if unit != "jupyter-on-demand-idle.service")
LEGACY_FILES = ("idle-check.sh", "idle-check.cron")  # and cron.d/jupyter-on-demand
DLAMI_PYTHON = "/opt/pytorch/bin/python"  # the Deep Learning AMI's PyTorch environment
MIN_PYTHON = (3, 9)


# --- First boot -------------------------------------------------------------------------------


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


def install_step(paths: Paths) -> None:
    if sys.version_info < MIN_PYTHON:
        raise BootError(
            f"this AMI's python3 is {sys.version.split()[0]}; jupyter-on-demand needs Python "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer (Ubuntu 22.04+, Debian 12, the Deep Learning AMIs)"
        )
    config = read_config(paths.config)
    inputs = venv_inputs(paths, config)
    stamp = paths.install_stamp
    if read_regular(stamp) == inputs.encode() and paths.venv_python.exists():
        logger.info("already installed; nothing to do")
        return
    ensure_packages()
    ensure_user(paths)
    deny_scheduled_jobs(paths)
    ensure_state_dirs(paths)
    ensure_venv(paths, config)
    run(str(paths.venv_python), str(paths.app / "boot.py"), "sync")
    write_file(stamp, inputs, 0o644)
    # The units run `secrets`, Jupyter and `ready`; --no-block: they order themselves after this
    # unit, which is still running.
    systemctl("start", "--no-block", "jupyter-on-demand.service", "jupyter-on-demand-ready.service",
              "jupyter-on-demand-autosave-flush.service")  # fmt: skip
    logger.info("installed; Jupyter is starting")


# --- The code bundle --------------------------------------------------------------------------


def aws_client(service: str, config: dict[str, str]):
    """A boto3 client that retries SSM/EC2 throttling with backoff (in the venv only)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=config.get("AWS_REGION"),
        config=Config(
            retries={"max_attempts": 10, "mode": "standard"}, connect_timeout=5, read_timeout=15
        ),
    )


def fetch_bundle(config: dict[str, str]) -> dict[str, str]:
    """The instance code {file name: content} from its SSM chunks, checked against the manifest."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = config["BOOTSTRAP_PARAMETER_PREFIX"]
    try:
        ssm = aws_client("ssm", config)

        def get(name: str) -> str:
            return ssm.get_parameter(Name=f"{prefix}/{name}")["Parameter"]["Value"]

        manifest = json.loads(get("manifest"))
        bundle = "".join(get(str(index)) for index in range(manifest["chunks"]))
    except (BotoCoreError, ClientError, ValueError, KeyError) as error:
        raise BootError(f"cannot read the instance code from SSM {prefix}/*: {error}") from error
    if hashlib.sha256(bundle.encode()).hexdigest() != manifest["sha256"]:
        raise BootError(
            f"the instance code in SSM {prefix}/* does not match its SHA-256; run terraform apply"
        )
    return json.loads(gzip.decompress(base64.b64decode(bundle)))


def sync_step(paths: Paths) -> None:
    """Write the bundle's files; install the units; reload systemd when a unit changed."""
    files = fetch_bundle(read_config(paths.config))
    changed = [
        name
        for name, content in sorted(files.items())
        if write_file(paths.app / name, content, 0o644)
    ]
    units = [write_file(paths.systemd / unit, files[unit], 0o644) for unit in UNITS]
    ensure_dir(paths.jupyter_config, 0o755, owner_ids("root"))
    # jupyter_core writes this marker into the config folder at the first start after a kernel
    # made ~/.ipython, and fails when it can't; it gives up quietly on one it can't write.
    write_file(
        paths.jupyter_config / "migrated", "not migrated: jupyter-on-demand's own config\n", 0o644
    )
    for legacy in LEGACY_FILES:  # the cron-based idle check of older versions
        (paths.app / legacy).unlink(missing_ok=True)
    (paths.system_etc / "cron.d" / "jupyter-on-demand").unlink(missing_ok=True)
    if any(units):
        systemctl("daemon-reload")
        systemctl("enable", *ENABLED)
        systemctl("start", "--no-block", IDLE_TIMER)
    logger.info("instance code in sync (%d files changed)", len(changed))


def systemctl(*args: str) -> None:
    run(os.environ.get("JOD_SYSTEMCTL", "systemctl"), *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="jupyter-on-demand boot steps")
    parser.add_argument("step", choices=["install", "sync", "secrets", "repo", "ready"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="jupyter-on-demand %(levelname)s: %(message)s", stream=sys.stderr
    )
    # botocore's debug log prints response bodies, which hold the secrets: never below WARNING.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    paths = Paths.from_env()
    # config.env is the environment of every step (as the units' EnvironmentFile): the region, and
    # in tests AWS_ENDPOINT_URL and pip's PIP_* settings; child processes inherit it.
    if paths.config.exists():
        for key, value in read_config(paths.config).items():
            os.environ.setdefault(key, value)
    try:
        if args.step == "install":
            install_step(paths)
        elif args.step == "sync":
            sync_step(paths)
        else:
            import boot_secrets  # in the bundle, installed by `sync`

            getattr(boot_secrets, f"{args.step}_step")(paths)
    except BootError as error:
        logger.error("JUPYTER-ON-DEMAND BOOT FAILED (%s): %s", args.step, error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
