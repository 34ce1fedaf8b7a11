"""The instance's boot steps. Runs as root; every path can be overridden for tests (see Paths).

    python3 boot.py install   first boot, from cloud-init: system packages, the `jupyter` user,
                              the venv with JupyterLab, the GPU kernel, then `sync`, then starts
    boot.py sync              the instance code from its SSM bundle (see infrastructure/locals.tf)
                              into /opt/jupyter-on-demand, systemd units and cron; again at every
                              boot, so code changes arrive at the next wake
    boot.py secrets           every boot: the team password and the GitHub token from SSM, the
                              argon2 hash, the API token, the git credential, the TLS certificate,
                              the clone of the repo. Fails closed: no password, no Jupyter.
    boot.py ready             every boot: once Jupyter answers, tags the instance READY_TAG=<time>

Configuration (no secrets) comes from /etc/jupyter-on-demand/config.env, written by cloud-init
from Terraform's locals.instance_config; the two secrets only ever come from SSM.
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
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

logger = logging.getLogger("jupyter_on_demand.boot")

SYSTEM_PACKAGES = ("python3-venv", "git", "cron", "openssl")
UNITS = (
    "jupyter-on-demand-secrets.service",
    "jupyter-on-demand.service",
    "jupyter-on-demand-ready.service",
    "jupyter-on-demand-autosave-flush.service",
)
DLAMI_PYTHON = "/opt/pytorch/bin/python"  # the Deep Learning AMI's PyTorch environment
README = (
    "# Team notebooks\n\nEvery file saved in Jupyter Lab lands here (jupyter-on-demand autosave).\n"
)


@dataclass(frozen=True)
class Paths:
    config: Path
    app: Path
    secrets: Path
    state: Path
    home: Path
    repo: Path
    systemd: Path
    cron: Path
    user: str

    @property
    def venv(self) -> Path:
        return self.app / "venv"

    @property
    def jupyter_env(self) -> Path:
        return self.secrets / "jupyter.env"

    @property
    def credentials(self) -> Path:
        return self.home / ".git-credentials"

    @property
    def certfile(self) -> Path:
        return self.state / "tls" / "jupyter.crt"

    @property
    def keyfile(self) -> Path:
        return self.state / "tls" / "jupyter.key"

    @classmethod
    def from_env(cls) -> Paths:
        env = os.environ
        user = env.get("JOD_USER", "jupyter")
        home = Path(env.get("JOD_HOME", f"/home/{user}"))
        return cls(
            config=Path(env.get("JOD_CONFIG", "/etc/jupyter-on-demand/config.env")),
            app=Path(env.get("JOD_APP_DIR", "/opt/jupyter-on-demand")),
            secrets=Path(env.get("JOD_SECRETS_DIR", "/etc/jupyter-on-demand/secrets")),
            state=Path(env.get("JOD_STATE_DIR", "/var/lib/jupyter-on-demand")),
            home=home,
            repo=Path(env.get("JOD_REPO_DIR", str(home / "work"))),
            systemd=Path(env.get("JOD_SYSTEMD_DIR", "/etc/systemd/system")),
            cron=Path(env.get("JOD_CRON_FILE", "/etc/cron.d/jupyter-on-demand")),
            user=user,
        )


class BootError(Exception):
    """A reason the boot can't go on; logged to journald and the console."""


def read_config(path: Path) -> dict[str, str]:
    config = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            config[key.strip()] = value.strip()
    return config


# --- Small idempotent file helpers ----------------------------------------------------------------


def owner_ids(user: str) -> tuple[int, int] | None:
    """uid/gid to chown to, or None when not root (tests run unprivileged paths as themselves)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def write_file(path: Path, content: str, mode: int, owner: tuple[int, int] | None = None) -> bool:
    """Write atomically only when content, mode or owner differ. True when something changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        stat = path.stat()
        same = path.read_text() == content and (stat.st_mode & 0o777) == mode
        if same and (owner is None or (stat.st_uid, stat.st_gid) == owner):
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)
    return True


def env_file(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def run(
    *args: str, user: str | None = None, env: dict[str, str] | None = None, timeout: float = 1800
) -> str:
    command = list(args)
    if user is not None and os.geteuid() == 0 and pwd.getpwuid(os.geteuid()).pw_name != user:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise BootError(f"{' '.join(args[:3])} failed: {output}")
    return result.stdout


# --- Secrets ----------------------------------------------------------------------------------


def fetch_secrets(config: dict[str, str]) -> tuple[str, str]:
    """The team password and the GitHub token from SSM (AWS_ENDPOINT_URL is honoured by boto3)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    names = (config["TEAM_PASS_PARAMETER"], config["GITHUB_TOKEN_PARAMETER"])
    try:
        ssm = boto3.client("ssm", region_name=config.get("AWS_REGION"))
        values = [
            ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
            for name in names
        ]
    except (BotoCoreError, ClientError) as error:
        raise BootError(
            f"cannot read the secrets {', '.join(names)} from SSM: {error}. Check the instance role "
            "and that the parameters exist (terraform apply)."
        ) from error
    password, token = values
    if len(password) < 8:
        raise BootError(f"the team password in {names[0]} is shorter than 8 characters")
    if not token:
        raise BootError(f"the GitHub token in {names[1]} is empty")
    return password, token


def hashed_password(password: str, current: str | None) -> str:
    """The argon2 hash; the current one is kept when it still matches (salted hashes differ)."""
    from jupyter_server.auth import passwd, passwd_check

    if current and passwd_check(current, password):
        return current
    return passwd(password, algorithm="argon2")


def credential_line(repo_url: str, user: str, token: str) -> str:
    parts = urlsplit(repo_url)
    return f"{parts.scheme}://{quote(user, safe='')}:{quote(token, safe='')}@{parts.netloc}\n"


def ensure_certificate(paths: Paths, owner: tuple[int, int] | None) -> None:
    """A self-signed certificate, made once and kept; the key is 0600 for the service user."""
    if paths.certfile.exists() and paths.keyfile.exists():
        return
    paths.certfile.parent.mkdir(parents=True, exist_ok=True)
    run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-subj", "/CN=jupyter-on-demand", "-keyout", str(paths.keyfile), "-out", str(paths.certfile),
    )  # fmt: skip
    os.chmod(paths.keyfile, 0o600)
    os.chmod(paths.certfile, 0o644)
    if owner is not None:
        os.chown(paths.keyfile, *owner)
    logger.info("created a self-signed TLS certificate %s", paths.certfile)


def configure_git(paths: Paths, config: dict[str, str]) -> None:
    git_config = {
        "user.name": config.get("GIT_AUTHOR_NAME", "Jupyter autosave"),
        "user.email": config.get(
            "GIT_AUTHOR_EMAIL",
            f"{config.get('GITHUB_USER_NAME', 'jupyter')}@users.noreply.github.com",
        ),
        # git's `store` helper answers from the 0600 file; wrapped so git only reads it (its
        # store/erase actions would rewrite or, after one 401, delete the line boot.py manages).
        "credential.helper": f'!f() {{ test "$1" = get && git credential-store --file={paths.credentials} get; }}; f',
        "init.defaultBranch": "main",
        "pull.rebase": "true",
    }
    env = {"HOME": str(paths.home)}
    for key, value in git_config.items():
        current = subprocess.run(
            ["git", "config", "--global", "--get", key],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
        ).stdout.strip()
        if current != value:
            run("git", "config", "--global", key, value, user=paths.user, env=env)


def ensure_repo(paths: Paths, config: dict[str, str]) -> None:
    """Clone the team's repo at first boot; initialise it when empty; never touch an existing one."""
    env = {"HOME": str(paths.home), "GIT_TERMINAL_PROMPT": "0"}
    url = config["GITHUB_REPO_URL"]

    def git(*args: str, timeout: float = 120) -> str:
        """git as the service user: git refuses root in a repository root does not own."""
        return run("git", *args, user=paths.user, env=env, timeout=timeout)

    def in_repo(*args: str, timeout: float = 120) -> str:
        return git("-C", str(paths.repo), *args, timeout=timeout)

    owner = owner_ids(paths.user)
    if not (paths.repo / ".git").exists():
        try:
            git("clone", "-q", url, str(paths.repo), timeout=600)
            logger.info("cloned %s into %s", url, paths.repo)
        except BootError as error:
            # Jupyter still starts; autosave commits locally and pushes once GitHub answers.
            logger.error("could not clone %s (%s); starting with a local repository", url, error)
            paths.repo.mkdir(parents=True, exist_ok=True)
            if owner is not None:
                os.chown(paths.repo, *owner)
            git("init", "-q", "-b", "main", str(paths.repo))
            in_repo("remote", "add", "origin", url)
    try:
        in_repo("rev-parse", "-q", "--verify", "HEAD")
        return  # it has commits: never touch it
    except BootError:
        pass  # an empty clone: initialise it below
    import git_autosave

    if not (paths.repo / "README.md").exists():
        write_file(paths.repo / "README.md", README, 0o644, owner)
    if not (paths.repo / ".gitignore").exists():
        write_file(paths.repo / ".gitignore", git_autosave.DEFAULT_GITIGNORE, 0o644, owner)
    in_repo("symbolic-ref", "HEAD", "refs/heads/main")
    in_repo("add", "README.md", ".gitignore")
    in_repo("commit", "-q", "-m", "Initialise the team repository")
    logger.info("initialised the empty repository with a README and a .gitignore")
    try:
        in_repo("push", "-q", "origin", "HEAD:refs/heads/main", timeout=300)
    except BootError as error:
        logger.warning("first push failed (%s); autosave pushes it later", error)


def secrets_step(paths: Paths) -> None:
    """Every boot. Fails closed: on any secret problem, the Jupyter env file is removed."""
    config = read_config(paths.config)
    try:
        password, token = fetch_secrets(config)
    except BootError:
        paths.jupyter_env.unlink(missing_ok=True)
        raise
    owner = owner_ids(paths.user)
    group_owner = (0, owner[1]) if owner else None
    current = read_config(paths.jupyter_env) if paths.jupyter_env.exists() else {}
    values = {
        "JUPYTER_HASHED_PASSWORD": hashed_password(
            password, current.get("JUPYTER_HASHED_PASSWORD")
        ),
        "JUPYTER_TOKEN": current.get("JUPYTER_TOKEN") or secrets.token_urlsafe(32),
        "JUPYTER_ROOT_DIR": str(paths.repo),
        "JUPYTER_ACTIVITY_FILE": str(paths.state / "activity.json"),
    }
    if config.get("JUPYTER_TLS", "1") == "1":
        ensure_certificate(paths, owner)
        values |= {"JUPYTER_CERTFILE": str(paths.certfile), "JUPYTER_KEYFILE": str(paths.keyfile)}
    paths.secrets.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.secrets, 0o750)  # noqa: S103  (root and the service group only)
    if group_owner:
        os.chown(paths.secrets, *group_owner)
    if write_file(paths.jupyter_env, env_file(values), 0o640, group_owner):
        logger.info("wrote %s (password hash, API token)", paths.jupyter_env)
    line = credential_line(config["GITHUB_REPO_URL"], config.get("GITHUB_USER_NAME", "git"), token)
    if write_file(paths.credentials, line, 0o600, owner):
        logger.info("wrote the git credential %s", paths.credentials)
    paths.state.mkdir(parents=True, exist_ok=True)
    if owner:  # Jupyter (the service user) records activity there
        os.chown(paths.state, *owner)
    configure_git(paths, config)
    ensure_repo(paths, config)


# --- Ready signal -----------------------------------------------------------------------------


def instance_id(config: dict[str, str]) -> str:
    """From the config (tests) or IMDSv2."""
    if config.get("INSTANCE_ID"):
        return config["INSTANCE_ID"]
    import requests

    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254").rstrip(
        "/"
    )
    token = requests.put(
        f"{endpoint}/latest/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        timeout=5,
    ).text
    return requests.get(
        f"{endpoint}/latest/meta-data/instance-id",
        headers={"X-aws-ec2-metadata-token": token},
        timeout=5,
    ).text


def jupyter_answers(config: dict[str, str], jupyter_env: dict[str, str]) -> bool:
    import requests
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # our own certificate

    scheme = "https" if jupyter_env.get("JUPYTER_CERTFILE") else "http"
    url = (
        f"{scheme}://127.0.0.1:{config.get('JUPYTER_PORT', '8443')}/api/status?no_track_activity=1"
    )
    try:
        response = requests.get(
            url,
            headers={"Authorization": f"token {jupyter_env.get('JUPYTER_TOKEN', '')}"},
            timeout=5,
            verify=False,  # noqa: S501  (loopback, our own self-signed certificate)
        )
    except requests.RequestException:
        return False
    return response.status_code == 200


def start_idle_clock(paths: Paths) -> None:
    """The idle clock starts when people can use the machine: now, not at boot (a first boot's
    install can take longer than the idle timeout)."""
    import idle_check

    state = {
        "boot_id": idle_check.boot_id(),
        "last_active": idle_check.utcnow().isoformat(),
        "reason": "Jupyter ready",
    }
    write_file(paths.state / "idle-state.json", json.dumps(state), 0o644)


def ready_step(paths: Paths, timeout: float = 600) -> None:
    import boto3

    config = read_config(paths.config)
    jupyter_env = read_config(paths.jupyter_env)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while not jupyter_answers(config, jupyter_env):
        if time.monotonic() > deadline:
            raise BootError(f"Jupyter did not answer within {timeout:.0f} s")
        time.sleep(1)
    logger.info("Jupyter answers after %.1f s", time.monotonic() - started)
    start_idle_clock(paths)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    ec2 = boto3.client("ec2", region_name=config.get("AWS_REGION"))
    ec2.create_tags(
        Resources=[instance_id(config)], Tags=[{"Key": config["READY_TAG"], "Value": now}]
    )
    logger.info("JUPYTER-ON-DEMAND READY at %s", now)


# --- First boot -------------------------------------------------------------------------------


def ensure_packages() -> None:
    missing = [
        p
        for p in SYSTEM_PACKAGES
        if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode
    ]
    if missing:
        logger.info("installing %s", " ".join(missing))
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-q", env=env)
        run("apt-get", "install", "-y", "-q", *missing, env=env)


def ensure_user(paths: Paths) -> None:
    try:
        pwd.getpwnam(paths.user)
    except KeyError:
        run(
            "useradd",
            "--create-home",
            "--home-dir",
            str(paths.home),
            "--shell",
            "/bin/bash",
            paths.user,
        )
        logger.info("created user %s", paths.user)
    for group in ("video", "render"):  # GPU device access where the groups exist
        try:
            grp.getgrnam(group)
        except KeyError:
            continue
        run("usermod", "-aG", group, paths.user)


def ensure_venv(paths: Paths, config: dict[str, str]) -> None:
    python = paths.venv / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", str(paths.venv))
    pip_env = {k: v for k, v in config.items() if k.startswith("PIP_")}
    run(
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "-r",
        str(paths.app / "requirements.txt"),
        env=pip_env,
    )
    kernel_python = config.get("KERNEL_PYTHON") or (
        DLAMI_PYTHON if Path(DLAMI_PYTHON).exists() else ""
    )
    if kernel_python:
        # The Deep Learning AMI's environment (PyTorch, CUDA) becomes the default "python3" kernel.
        if subprocess.run(
            [kernel_python, "-c", "import ipykernel"], capture_output=True, check=False
        ).returncode:
            run(kernel_python, "-m", "pip", "install", "-q", "ipykernel", env=pip_env)
        run(kernel_python, "-m", "ipykernel", "install", "--prefix", str(paths.venv), "--name", "python3",
            "--display-name", "Python 3 (GPU, PyTorch)")  # fmt: skip
        logger.info("registered %s as the default kernel", kernel_python)


def fetch_bundle(config: dict[str, str]) -> dict[str, str]:
    """The instance code {file name: content} from its SSM chunks, checked against the manifest."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = config["BOOTSTRAP_PARAMETER_PREFIX"]
    try:
        ssm = boto3.client("ssm", region_name=config.get("AWS_REGION"))

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
    """Write the bundle's files; install units and cron; reload systemd when a unit changed."""
    files = fetch_bundle(read_config(paths.config))
    changed = [
        name
        for name, content in sorted(files.items())
        if write_file(paths.app / name, content, 0o755 if name.endswith(".sh") else 0o644)
    ]
    units = [write_file(paths.systemd / unit, files[unit], 0o644) for unit in UNITS]
    write_file(paths.cron, files["idle-check.cron"], 0o644)
    if any(units):
        systemctl("daemon-reload")
        systemctl("enable", *UNITS)
    logger.info("instance code in sync (%d files changed)", len(changed))


def systemctl(*args: str) -> None:
    run(os.environ.get("JOD_SYSTEMCTL", "systemctl"), *args)


def install_step(paths: Paths) -> None:
    config = read_config(paths.config)
    ensure_packages()
    ensure_user(paths)
    paths.state.mkdir(parents=True, exist_ok=True)
    ensure_venv(paths, config)
    run(str(paths.venv / "bin" / "python"), str(paths.app / "boot.py"), "sync")
    # The units run `secrets`, Jupyter and `ready`; --no-block because cloud-init's own unit is
    # still running and the new units order themselves after it.
    systemctl("start", "--no-block", "jupyter-on-demand.service", "jupyter-on-demand-ready.service",
              "jupyter-on-demand-autosave-flush.service")  # fmt: skip
    logger.info("installed; Jupyter is starting")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="jupyter-on-demand boot steps")
    parser.add_argument("step", choices=["install", "sync", "secrets", "ready"])
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
    steps = {
        "install": install_step,
        "sync": sync_step,
        "secrets": secrets_step,
        "ready": ready_step,
    }
    try:
        steps[args.step](paths)
    except BootError as error:
        logger.error("JUPYTER-ON-DEMAND BOOT FAILED (%s): %s", args.step, error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
