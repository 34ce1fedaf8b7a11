"""The instance's boot steps, as root (paths: layout.Paths; README "What happens on the instance").

    boot.py install   every boot until it has succeeded once: packages, the `jupyter` user, the
                      venv, the GPU kernel, `sync`, then starts the units; transient failures
                      retry with backoff
    boot.py sync      the code bundle from SSM into /opt/jupyter-on-demand and the units, and the
                      settings from SSM into config.env
    boot.py wake      every boot, one process (jupyter-on-demand-secrets.service): `sync`, keeping
                      the installed code and the last good config.env when SSM can't be read, then
                      `secrets` (boot_secrets.py: secrets from SSM, Jupyter's env file, the git
                      credential, TLS; then `repo` as the service user, unless unchanged), then
                      root's marker for Jupyter, then the ready tag once Jupyter answers
    boot.py secrets   the middle of `wake` alone; `repo` the service user's part of it
    boot.py ready     the end of `wake` alone, by hand: tags the instance once Jupyter answers

Settings: user_data writes only bootstrap.env (AWS_REGION and BOOTSTRAP_PARAMETER_PREFIX, where
the rest is). `sync` reads the JSON settings Terraform keeps in <prefix>/settings, checks them,
and writes config.env from bootstrap.env, the settings and local.env, so a changed setting takes
effect at the next boot with no change to user_data. local.env (optional, root's, beside
config.env) holds the site's own settings: a proxy, a pip mirror (PIP_*), KERNEL_PYTHON, or in the
VM test the AWS endpoint, credentials and INSTANCE_ID (written by cloud-init vendor-data, so the
user_data Terraform rendered stays as it is). It is merged last, wins over the settings, and is
also the environment of every step (it may be what reaches SSM at all). Its values end up in
config.env, which every user can read: no secrets in it.

user_data ships this file and layout.py: standard library only, Python 3.10+, since the system
Python runs `install` before the venv exists; boto3 is imported inside the functions that run in
the venv.
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
import re
import subprocess
import sys
from pathlib import Path

from layout import (
    BootError,
    Paths,
    current_boot_id,
    ensure_dir,
    env_file,
    is_regular,
    owner_ids,
    read_config,
    read_regular,
    read_root_env,
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
    "jupyter-on-demand-autosave-flush.service",
)
ENABLED = tuple(unit for unit in UNITS if unit != "jupyter-on-demand-idle.service")
LEGACY_FILES = ("idle-check.sh", "idle-check.cron")  # and cron.d/jupyter-on-demand
# Units of older versions, disabled and removed at sync (retire_legacy_units). The bundle still
# ships a no-op jupyter-on-demand-ready.service: the previous version's sync, which runs once
# more when an instance takes this version, installs every unit of ITS list from the bundle.
LEGACY_UNITS = ("jupyter-on-demand-ready.service",)
# What `boot.py wake` exits with when the wake succeeded (Jupyter serves) but the ready tag
# could not be set: the secrets unit counts it a success (SuccessExitStatus=), so that BindsTo=
# doesn't stop a Jupyter the team can use; the journal says why.
READY_FAILED_EXIT = 4
DLAMI_PYTHON = "/opt/pytorch/bin/python"  # the Deep Learning AMI's PyTorch environment
MIN_PYTHON = (3, 10)
# The step names: idle-failsafe.sh's pgrep and idle_check.BOOT_STEP know them all.
STEPS = ("install", "sync", "wake", "secrets", "repo", "ready")
# SSM GetParameters takes at most 10 names a call.
GET_PARAMETERS_BATCH = 10

# The settings Terraform writes to <prefix>/settings (infrastructure/locals.tf instance_config):
# each key with the shape its value must have, and what that is in words.
SETTINGS = {
    "AWS_REGION": (r"[a-z]{2}(-[a-z]+)+-[0-9]+", "an AWS region such as eu-west-1"),
    "TEAM_PASS_PARAMETER": (r"[A-Za-z0-9_.\-/]{1,2048}", "an SSM parameter name"),
    "GITHUB_TOKEN_PARAMETER": (r"[A-Za-z0-9_.\-/]{1,2048}", "an SSM parameter name"),
    "GITHUB_REPO_URL": (r"https?://[^\s/@]+/[^\s@]+", "an http(s) URL without credentials"),
    "GITHUB_USER_NAME": (r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", "a GitHub user name"),
    "JUPYTER_PORT": (r"[0-9]{4,5}", "a port from 1024 to 65535"),
    "JUPYTER_TLS": (r"[01]", '"1" or "0"'),
    "IDLE_MINUTES": (r"[0-9]+(\.[0-9]+)?", "a positive number of minutes"),
    "READY_TAG": (r"[A-Za-z0-9 _.:/=+\-@]{1,128}", "an EC2 tag key"),
}


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
        f"readlink -e /usr/bin/python3 {paths.venv_python} {DLAMI_PYTHON}; "
        "ls -lL --full-time /usr/bin/python3 2>&1"
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
    ensure_packages()
    ensure_user(paths)
    deny_scheduled_jobs(paths)
    ensure_state_dirs(paths)
    ensure_venv(paths, config)
    run(str(paths.venv_python), str(paths.app / "boot.py"), "sync")
    write_file(stamp, inputs, 0o644)
    record_install_inputs(paths)
    # The units run the wake (which ends with the ready tag) and Jupyter; --no-block: they order
    # themselves after this unit, which is still running.
    systemctl("start", "--no-block", "jupyter-on-demand.service",
              "jupyter-on-demand-autosave-flush.service")  # fmt: skip
    logger.info("installed; Jupyter is starting")


# --- The code bundle and the settings ---------------------------------------------------------


def aws_session():
    """botocore's own session: boto3 adds nothing the steps use, and its import (s3transfer)
    costs a wake time. AWS_ENDPOINT_URL and the credential chain are botocore's."""
    import botocore.session

    return botocore.session.get_session()


def aws_client(service: str, config: dict[str, str]):
    """A client that retries SSM/EC2 throttling with backoff (in the venv only); `wake` makes
    one SSM client and hands it to each step."""
    from botocore.config import Config

    return aws_session().create_client(
        service,
        region_name=config.get("AWS_REGION"),
        config=Config(
            retries={"max_attempts": 10, "mode": "standard"}, connect_timeout=5, read_timeout=15
        ),
    )


def get_parameters(ssm, names: list[str], decrypt: bool = False) -> dict[str, dict]:
    """{name: Parameter} of SSM parameters, ten a call; BootError naming those that don't exist."""
    found: dict[str, dict] = {}
    missing: list[str] = []
    for start in range(0, len(names), GET_PARAMETERS_BATCH):
        batch = names[start : start + GET_PARAMETERS_BATCH]
        answer = ssm.get_parameters(Names=batch, WithDecryption=decrypt)
        found |= {parameter["Name"]: parameter for parameter in answer["Parameters"]}
        missing += answer.get("InvalidParameters", [])
    if missing:
        raise BootError(f"SSM has no parameter {', '.join(missing)}")
    return found


def fetch_bundle(config: dict[str, str], ssm=None) -> dict[str, str]:
    """The instance code {file name: content} from its SSM chunks, checked against the manifest."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = config["BOOTSTRAP_PARAMETER_PREFIX"]
    try:
        ssm = ssm or aws_client("ssm", config)
        manifest = json.loads(ssm.get_parameter(Name=f"{prefix}/manifest")["Parameter"]["Value"])
        names = [f"{prefix}/{index}" for index in range(manifest["chunks"])]
        chunks = get_parameters(ssm, names)
        bundle = "".join(chunks[name]["Value"] for name in names)
    except (BotoCoreError, ClientError, ValueError, KeyError, TypeError, BootError) as error:
        raise BootError(f"cannot read the instance code from SSM {prefix}/*: {error}") from error
    if hashlib.sha256(bundle.encode()).hexdigest() != manifest["sha256"]:
        raise BootError(
            f"the instance code in SSM {prefix}/* does not match its SHA-256; run terraform apply"
        )
    return json.loads(gzip.decompress(base64.b64decode(bundle)))


def check_settings(value: str, name: str) -> dict[str, str]:
    """The settings JSON as Terraform writes it: an object of strings, exactly SETTINGS' keys,
    each of its shape (one line each: nothing can add a line to config.env)."""
    try:
        settings = json.loads(value)
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise BootError(f"the settings in SSM {name} are not a JSON object; run terraform apply")
    unknown = sorted(set(settings) - set(SETTINGS))
    missing = sorted(set(SETTINGS) - set(settings))
    if unknown or missing:
        raise BootError(
            f"the settings in SSM {name} " + "; ".join(
                [f"have unknown keys {', '.join(unknown)}"] * bool(unknown)
                + [f"lack {', '.join(missing)}"] * bool(missing)
            ) + "; run terraform apply with this version of jupyter-on-demand"
        )  # fmt: skip
    for key, (pattern, shape) in SETTINGS.items():
        item = settings[key]
        ok = isinstance(item, str) and re.fullmatch(pattern, item) is not None
        if ok and key == "JUPYTER_PORT":
            ok = 1024 <= int(item) <= 65535
        if ok and key == "IDLE_MINUTES":
            ok = float(item) > 0
        if not ok:
            raise BootError(
                f"the settings in SSM {name}: {key} is {json.dumps(item)}, not {shape}; "
                "check the variable in terraform.tfvars and run terraform apply"
            )
    return {key: settings[key] for key in SETTINGS}


def fetch_settings(config: dict[str, str], ssm=None) -> dict[str, str]:
    """The settings {KEY: value} from SSM <prefix>/settings, checked (check_settings)."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = f"{config['BOOTSTRAP_PARAMETER_PREFIX']}/settings"
    try:
        ssm = ssm or aws_client("ssm", config)
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as error:
        raise BootError(
            f"cannot read the settings from SSM {name}: {error}. Check the instance role, and "
            "that the parameter exists (terraform apply)."
        ) from error
    return check_settings(value, name)


def site_config(paths: Paths) -> dict[str, str]:
    """Where the settings are and the site's own: bootstrap.env, then the last config.env, then
    local.env. An instance whose older user_data wrote only config.env still finds its prefix."""
    last = read_config(paths.config) if is_regular(paths.config) else {}
    return {**last, **read_root_env(paths.bootstrap_env), **read_root_env(paths.local_env)}


def bootstrap_location(paths: Paths) -> dict[str, str]:
    config = site_config(paths)
    where = {key: config.get(key, "") for key in ("AWS_REGION", "BOOTSTRAP_PARAMETER_PREFIX")}
    if not all(where.values()):
        raise BootError(
            f"{paths.bootstrap_env} lacks AWS_REGION or BOOTSTRAP_PARAMETER_PREFIX; user_data "
            "writes it at the first boot (check the instance's user data, terraform apply)"
        )
    return where


def write_settings(paths: Paths, where: dict[str, str], settings: dict[str, str]) -> bool:
    """config.env: where the settings are, the settings, then the site's (local.env) last; root's
    0644, replaced atomically (never written through a link)."""
    values = {**where, **settings, **read_root_env(paths.local_env)}
    changed = write_file(paths.config, env_file(values), 0o644, owner_ids("root"))
    logger.info("settings from SSM %s/settings %s %s", where["BOOTSTRAP_PARAMETER_PREFIX"],
                "written to" if changed else "unchanged in", paths.config)  # fmt: skip
    return changed


def install_code(paths: Paths, files: dict[str, str]) -> list[str]:
    """Write the bundle's files; install the units; reload systemd when a unit changed. The
    names of the files that changed."""
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
    # Compiled now, as root: the service user can't write __pycache__ here, so Jupyter's process
    # compiled jupyter_extensions, git_autosave... at every start. Only what changed is compiled.
    import compileall

    compileall.compile_dir(str(paths.app), maxlevels=0, quiet=1)
    for legacy in LEGACY_FILES:  # the cron-based idle check of older versions
        (paths.app / legacy).unlink(missing_ok=True)
    (paths.system_etc / "cron.d" / "jupyter-on-demand").unlink(missing_ok=True)
    if retire_legacy_units(paths) or any(units):
        systemctl("daemon-reload")
        systemctl("enable", *ENABLED)
        systemctl("start", "--no-block", IDLE_TIMER)
    logger.info("instance code in sync (%d files changed)", len(changed))
    return changed


def retire_legacy_units(paths: Paths) -> bool:
    """Disable, then remove, the unit files of older versions still installed (an instance
    upgraded from them); True when one was removed (systemd then needs a daemon-reload). A unit
    still running (the previous version's ready step, at the boot that upgrades) runs to its end.
    A disable that fails keeps the file (no dangling link in a .wants folder), said in the log."""
    removed = False
    for unit in LEGACY_UNITS:
        path = paths.systemd / unit
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            systemctl("disable", unit)
        except BootError as error:
            logger.error("could not disable %s, an older version's unit (%s)", unit, error)
            continue
        path.unlink()
        logger.info("removed %s, an older version's unit", unit)
        removed = True
    return removed


def sync_step(paths: Paths, ssm=None, keep_last_good: bool = False) -> list[str]:
    """The code bundle and the settings from SSM; the names of the code files that changed.
    keep_last_good (every wake): what can't be read keeps the code installed and the last good
    config.env (so the idle stop keeps its minutes), said in the log; the first boot's `sync`
    (from `install`) fails instead, and the install is retried at the next boot."""
    where = bootstrap_location(paths)
    ssm = ssm or aws_client("ssm", where)
    changed: list[str] = []
    try:
        changed = install_code(paths, fetch_bundle(where, ssm))
    except BootError as error:
        if not keep_last_good:
            raise
        logger.error("%s; keeping the instance code installed in %s", error, paths.app)
    try:
        write_settings(paths, where, fetch_settings(where, ssm))
    except BootError as error:
        if not (keep_last_good and is_regular(paths.config)):
            raise
        logger.error("%s; keeping the last good %s (IDLE_MINUTES=%s)", error, paths.config,
                     read_config(paths.config).get("IDLE_MINUTES", "?"))  # fmt: skip
    return changed


def wake_step(paths: Paths, synced: bool = False) -> None:
    """Every boot, in one process with one SSM client: sync, then secrets (and repo). When sync
    brought new code for this very process, the wake goes on in it (one exec, only then)."""
    import boot_secrets  # in the bundle, installed by `sync`

    ssm = aws_client("ssm", bootstrap_location(paths))
    if not synced:
        changed = sync_step(paths, ssm, keep_last_good=True)
        here = Path(__file__).resolve().parent
        if here == paths.app.resolve() and any(name.endswith(".py") for name in changed):
            logger.info("the instance code changed; the wake goes on in the new code")
            sys.stderr.flush()
            # The same interpreter and script, by absolute path: no shell, no PATH lookup.
            os.execv(sys.executable, [sys.executable, str(here / "boot.py"), "wake", "--synced"])  # noqa: S606
    else:
        # The previous version's sync just ran (it exec'd this): it knew no legacy units.
        if retire_legacy_units(paths):
            systemctl("daemon-reload")
    boot_secrets.secrets_step(paths, ssm)


def mark_wake(paths: Paths, ok: bool | None) -> None:
    """Root's marker of this boot's wake in root's run folder: success (True), failure (False),
    or none yet (None: both removed, as at the start of a wake)."""
    ensure_dir(paths.run, 0o755, owner_ids("root"))
    for marker, kept in ((paths.wake_marker, ok is True), (paths.wake_failed_marker, ok is False)):
        if kept:
            write_file(marker, f"{current_boot_id()}\n", 0o644, owner_ids("root"))
        else:
            marker.unlink(missing_ok=True)


def ready_after_wake(paths: Paths) -> int:
    """The wake's last part, after root's marker (Jupyter serves from then on): the ready tag once
    Jupyter answers, in this process (botocore is imported already; no second Python). Nothing
    here undoes the wake: a failure exits READY_FAILED_EXIT, which the unit counts a success."""
    import boot_secrets

    try:
        boot_secrets.announce_ready(paths)
    except Exception:
        logger.exception("JUPYTER-ON-DEMAND READY FAILED: the instance is not tagged ready, so the "
                         "start page says booting until the next boot; Jupyter itself serves "
                         "(journalctl -u jupyter-on-demand)")  # fmt: skip
        return READY_FAILED_EXIT
    return 0


def systemctl(*args: str) -> None:
    run(os.environ.get("JOD_SYSTEMCTL", "systemctl"), *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="jupyter-on-demand boot steps")
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--synced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="jupyter-on-demand %(levelname)s: %(message)s", stream=sys.stderr
    )
    if sys.version_info < MIN_PYTHON:
        # Before anything that may need a newer Python; the idle stop needs none of this.
        logger.error(
            "JUPYTER-ON-DEMAND BOOT FAILED (%s): this AMI's python3 is %s; jupyter-on-demand needs "
            "Python %s or newer (Ubuntu 22.04+, Debian 12, the Deep Learning AMIs): choose another "
            "ami. The idle stop still stops the machine.", args.step,
            ".".join(map(str, sys.version_info[:3])), ".".join(map(str, MIN_PYTHON)),
        )  # fmt: skip
        return 1
    # botocore's debug log prints response bodies, which hold the secrets: never below WARNING.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    paths = Paths.from_env()
    try:
        # The environment of every step and of what it runs (no EnvironmentFile= in the units,
        # which would hold a config.env older than the one `wake` writes): the region, and the
        # site's AWS_ENDPOINT_URL, proxy and PIP_* settings. What is set already wins.
        for key, value in site_config(paths).items():
            os.environ.setdefault(key, value)
        if args.step == "install":
            install_step(paths)
        elif args.step == "sync":
            sync_step(paths)
        elif args.step == "wake":
            # Jupyter waits for this boot's verdict (layout.wake_result): none until the wake's
            # own part ends, then root's marker of success or of failure.
            mark_wake(paths, None)
            try:
                wake_step(paths, synced=args.synced)
            except BaseException:
                mark_wake(paths, False)
                raise
            mark_wake(paths, True)
            logger.info("JUPYTER-ON-DEMAND WAKE DONE")
            return ready_after_wake(paths)
        elif args.step == "repo":
            import boot_secrets

            if boot_secrets.repo_step(paths):
                print(boot_secrets.REPO_COMPLETE)  # for root: the step may be skipped next time
        else:
            import boot_secrets  # in the bundle, installed by `sync`

            getattr(boot_secrets, f"{args.step}_step")(paths)
    except BootError as error:
        logger.error("JUPYTER-ON-DEMAND BOOT FAILED (%s): %s", args.step, error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
