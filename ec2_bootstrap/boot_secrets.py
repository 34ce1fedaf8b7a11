"""The every-boot steps that run in the venv (botocore, argon2-cffi): `boot.py secrets`, `repo`
and the wake's end (announce_ready; `boot.py ready` by hand). Shipped in the code bundle, not in
user_data.

secrets (root): the team password and the GitHub token from SSM, the argon2 hash, the API token,
the git credential and the TLS certificate, all in root-owned folders (layout.py); then the
`repo` step as the service user (skipped when nothing it reads or repairs changed: repo_inputs).
Fails closed: no password, no Jupyter. The idle stop never
depends on it: the idle checker reads no secret it can't do without.
repo (the service user): git settings and the clone of the team's repository. Everything under
the user's home is done with the user's own rights, so nothing planted there can make root
write, chmod or chown a file.
ready (root, the end of `boot.py wake`, after root's marker of the wake's success): once Jupyter
answers, starts the idle clock and tags the instance READY_TAG=<time>.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

from boot import aws_client, deny_scheduled_jobs, ensure_state_dirs, get_parameters
from layout import (
    BootError,
    Paths,
    ensure_dir,
    env_file,
    is_regular,
    owner_ids,
    read_config,
    read_regular,
    retry,
    run,
    secure_file,
    wake_result,
    write_file,
)

logger = logging.getLogger("jupyter_on_demand.boot")

README = (
    "# Team notebooks\n\nEvery file saved in Jupyter Lab lands here (jupyter-on-demand autosave).\n"
)


# --- Secrets (root) ---------------------------------------------------------------------------


def fetch_secrets(config: dict[str, str], ssm=None) -> tuple[str, str]:
    """The team password and the GitHub token from SSM, in one call (AWS_ENDPOINT_URL is
    honoured by botocore)."""
    from botocore.exceptions import BotoCoreError, ClientError

    names = (config["TEAM_PASS_PARAMETER"], config["GITHUB_TOKEN_PARAMETER"])
    try:
        ssm = ssm or aws_client("ssm", config)
        found = get_parameters(ssm, list(dict.fromkeys(names)), decrypt=True)
        values = [found[name]["Value"] for name in names]
    except (BotoCoreError, ClientError, BootError) as error:
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


# jupyter_server.auth.security.passwd(algorithm="argon2"): these parameters, and "argon2:" before
# argon2-cffi's own encoded hash. Made here with argon2-cffi itself: importing jupyter_server.auth
# (tornado, traitlets, jupyter_core...) cost the wake more CPU than the hash.
ARGON2_PARAMETERS = {"memory_cost": 10240, "time_cost": 10, "parallelism": 8}
ARGON2_PREFIX = "argon2:"


def argon2_hash(password: str) -> str:
    """The hash jupyter_server's passwd(password, algorithm="argon2") makes, in its format."""
    import argon2

    return ARGON2_PREFIX + argon2.PasswordHasher(**ARGON2_PARAMETERS).hash(password)


def password_matches(hashed: str, password: str) -> bool:
    """jupyter_server's passwd_check: an argon2 hash is checked as it checks one (argon2-cffi's
    verify, which reads the parameters from the hash), without importing jupyter_server; an
    unreadable argon2 hash is no match (it is made anew). Any other kind (an older sha1 hash)
    goes to passwd_check itself."""
    if hashed.startswith(ARGON2_PREFIX):
        import argon2
        import argon2.exceptions

        try:
            return argon2.PasswordHasher().verify(hashed[len(ARGON2_PREFIX) :], password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    from jupyter_server.auth import passwd_check

    return passwd_check(hashed, password)


def hashed_password(paths: Paths, password: str, current: str | None) -> str:
    """The argon2 hash; the current one is kept when it still matches (salted hashes differ).

    argon2 is slow on purpose: a wake whose password didn't change skips it. Root's record
    (state/password-check.json, 0600, in root's folder) holds the hash it last checked and an
    HMAC of the password under a random key of its own; only when both match is the hash kept
    unchecked. The record tells no more than root can read anyway (the instance role reads the
    password itself)."""
    record_path = paths.state / "password-check.json"
    try:
        record = json.loads(read_regular(record_path) or b"{}")
        key = bytes.fromhex(record["key"])
    except (ValueError, KeyError, TypeError):
        record, key = {}, secrets.token_bytes(32)
    fingerprint = hmac.new(key, password.encode(), hashlib.sha256).hexdigest()
    if (
        current
        and record.get("hash") == current
        and hmac.compare_digest(str(record.get("fingerprint", "")), fingerprint)
    ):
        return current
    if not (current and password_matches(current, password)):
        current = argon2_hash(password)
        logger.info("the team password changed: hashed it anew (argon2)")
    record = {"key": key.hex(), "fingerprint": fingerprint, "hash": current}
    write_file(record_path, json.dumps(record), 0o600, owner_ids("root"))
    return current


def credential_line(repo_url: str, user: str, token: str) -> str:
    parts = urlsplit(repo_url)
    return f"{parts.scheme}://{quote(user, safe='')}:{quote(token, safe='')}@{parts.netloc}\n"


def ensure_certificate(paths: Paths, group: tuple[int, int] | None) -> None:
    """A self-signed certificate, made once and kept, in root's TLS folder; the key is readable
    by the service group only."""
    ensure_dir(paths.tls, 0o750, group)
    if not (is_regular(paths.certfile) and is_regular(paths.keyfile)):
        for path in (paths.certfile, paths.keyfile):  # whatever sits there, a link included
            path.unlink(missing_ok=True)
        run(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-subj", "/CN=jupyter-on-demand", "-keyout", str(paths.keyfile), "-out", str(paths.certfile),
        )  # fmt: skip
        logger.info("created a self-signed TLS certificate %s", paths.certfile)
    secure_file(paths.keyfile, 0o640, group)
    secure_file(paths.certfile, 0o644, owner_ids("root"))


def secrets_step(paths: Paths, ssm=None) -> None:
    """Every boot. Fails closed: on any secret problem, the Jupyter env file is removed."""
    config = read_config(paths.config)
    owner = owner_ids(paths.user)
    group = (0, owner[1]) if owner else None
    ensure_state_dirs(paths)
    deny_scheduled_jobs(paths)  # every boot: an AMI update may have reset the files
    ensure_dir(paths.secrets, 0o750, group)
    try:
        password, token = fetch_secrets(config, ssm)
    except BootError:
        paths.jupyter_env.unlink(missing_ok=True)
        raise
    current = read_config(paths.jupyter_env) if paths.jupyter_env.exists() else {}
    values = {
        "JUPYTER_HASHED_PASSWORD": hashed_password(
            paths, password, current.get("JUPYTER_HASHED_PASSWORD")
        ),
        "JUPYTER_TOKEN": current.get("JUPYTER_TOKEN") or secrets.token_urlsafe(32),
        "JUPYTER_ROOT_DIR": str(paths.repo),
        "JUPYTER_ACTIVITY_FILE": str(paths.activity),
    }
    if config.get("JUPYTER_TLS", "1") == "1":
        ensure_certificate(paths, group)
        values |= {"JUPYTER_CERTFILE": str(paths.certfile), "JUPYTER_KEYFILE": str(paths.keyfile)}
    if write_file(paths.jupyter_env, env_file(values), 0o640, group):
        logger.info("wrote %s (password hash, API token)", paths.jupyter_env)
    line = credential_line(config["GITHUB_REPO_URL"], config.get("GITHUB_USER_NAME", "git"), token)
    if write_file(paths.credentials, line, 0o640, group):
        logger.info("wrote the git credential %s", paths.credentials)
    inputs = repo_inputs(paths, config)
    if inputs is not None and read_regular(paths.repo_inputs) == inputs.encode():
        logger.info("the repo step's inputs and the clone are as after its last complete run: "
                    "not run (%s)", paths.repo_inputs)  # fmt: skip
        return
    paths.repo_inputs.unlink(missing_ok=True)
    # As the service user, with its own rights: its home and the clone are its to change.
    if owner_ids(paths.user) in (None, (os.geteuid(), os.getegid())):
        complete = repo_step(paths)  # already that user (tests, the demo)
    else:
        boot_py = str(Path(__file__).resolve().parent / "boot.py")
        output = run(sys.executable, boot_py, "repo", user=paths.user,
                     env={"HOME": str(paths.home)}, timeout=900, echo=True)  # fmt: skip
        complete = REPO_COMPLETE in output.splitlines()
    inputs = repo_inputs(paths, config)  # the clone and ~/.gitconfig as the step left them
    if complete and inputs is not None:
        write_file(paths.repo_inputs, inputs, 0o600, owner_ids("root"))


# --- Skipping an unchanged repo step (root) ---------------------------------------------------
#
# The repo step (a second Python as the service user, ~1 s of CPU on the VM's wake) is skipped
# when nothing it reads or repairs changed since a run that set everything up. What it does on a
# clone that has history: the git settings in ~/.gitconfig (rewritten when they differ), removing
# an older ~/.git-credentials, the clone folder (mkdir), fetching the team's history while the
# first clone's not-cloned marker is there, and a warning when the clone's origin isn't the
# settings' URL. The record (root's, 0600, in root's state folder) holds: the settings it reads,
# its paths, the user's uid, the code that does it (boot_secrets.py, git_autosave.py, layout.py),
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
REPO_CODE = ("boot_secrets.py", "git_autosave.py", "layout.py")
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


# --- Ready signal (root) ----------------------------------------------------------------------


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
    """The idle clock restarts when people can use the machine (a first boot's install can take
    a while); root's own state file, in root's folder."""
    import idle_check

    state = {
        "boot_id": idle_check.boot_id(),
        "last_active": idle_check.utcnow().isoformat(),
        "reason": "Jupyter ready",
    }
    write_file(paths.idle_state, json.dumps(state), 0o644)


# How long the end of the wake waits for Jupyter's first answer (what `boot.py ready` waited);
# JOD_READY_TIMEOUT sets it (tests that run a wake with no Jupyter to answer).
READY_TIMEOUT = float(os.environ.get("JOD_READY_TIMEOUT", "600"))


def announce_ready(paths: Paths, timeout: float | None = None) -> None:
    """The end of a successful wake, in its process: once Jupyter answers, restart the idle clock
    and tag the instance READY_TAG=<time>. The EC2 client (EC2's large model) is made here,
    after root's marker: Jupyter's config and listen run meanwhile."""
    timeout = READY_TIMEOUT if timeout is None else timeout
    config = read_config(paths.config)
    jupyter_env = read_config(paths.jupyter_env)
    ec2 = aws_client("ec2", config)
    instance = instance_id(config)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while not jupyter_answers(config, jupyter_env):
        if time.monotonic() > deadline:
            raise BootError(f"Jupyter did not answer within {timeout:.0f} s")
        time.sleep(0.2)  # a refused connection on loopback costs nothing
    logger.info("Jupyter answers after %.1f s", time.monotonic() - started)
    start_idle_clock(paths)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ec2.create_tags(Resources=[instance], Tags=[{"Key": config["READY_TAG"], "Value": now}])
    logger.info("JUPYTER-ON-DEMAND READY at %s", now)


def ready_step(paths: Paths, timeout: float | None = None, wake_timeout: float = 960) -> None:
    """`boot.py ready` by hand (no unit runs it: the wake ends with announce_ready): once this
    boot's wake succeeded, the same as the wake's end."""
    result = wake_result(paths, wake_timeout)
    if result is not True:
        raise BootError("this boot's wake " + ("failed" if result is False else "did not end")
                        + "; Jupyter does not start (journalctl -u jupyter-on-demand-secrets)")  # fmt: skip
    announce_ready(paths, timeout)
