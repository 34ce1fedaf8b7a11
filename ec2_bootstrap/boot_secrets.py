"""`boot.py secrets` (root, in the venv; the middle of every wake): the team password and the
GitHub token from SSM, the argon2 hash, the API token, the git credential and the TLS
certificate, all in root-owned folders (layout.Paths); then the `repo` step as the service user
(boot_repo.py), skipped when nothing it reads or repairs changed. Fails closed: no password, no
Jupyter. The idle stop never depends on it. Shipped in the code bundle, not in user_data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from boot_install import deny_scheduled_jobs, ensure_state_dirs
from boot_repo import REPO_COMPLETE, repo_inputs, repo_step
from boot_sync import aws_client, get_parameters
from layout import BootError, Paths, env_file, jupyter_env_values, read_config
from rootfs import ensure_dir, is_regular, owner_ids, read_regular, run, secure_file, write_file

logger = logging.getLogger("jupyter_on_demand.boot")


# --- Secrets (root) ---------------------------------------------------------------------------


def fetch_secrets(config: dict[str, str], ssm: Any = None) -> tuple[str, str]:
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


# jupyter_server.auth.security.passwd(algorithm="argon2"): its memory and passes, and "argon2:"
# before argon2-cffi's own encoded hash. Made here with argon2-cffi itself: importing
# jupyter_server.auth (tornado, traitlets, jupyter_core...) cost the wake more CPU than the hash.
# One lane, not jupyter_server's 8: the same memory and passes for each guess, without 8 threads
# taking both CPUs from Jupyter's start at a wake (0.77 CPU-s on one, against 1.1 on two, under
# the VM test's emulation). argon2 reads them from the hash when Jupyter checks a login.
ARGON2_PARAMETERS: dict[str, Any] = {"memory_cost": 10240, "time_cost": 10, "parallelism": 1}
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
            return bool(argon2.PasswordHasher().verify(hashed[len(ARGON2_PREFIX) :], password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    from jupyter_server.auth import passwd_check  # type: ignore[attr-defined]  # re-exported

    return bool(passwd_check(hashed, password))


def hashed_password(paths: Paths, password: str, current: str | None) -> str:
    """The argon2 hash; the current one is kept when it still matches (salted hashes differ).

    argon2 is slow on purpose: a wake whose password didn't change skips it, and one whose
    password changed hashes it once, without checking the old hash first. Root's record
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
    if current and record.get("hash") == current:
        if hmac.compare_digest(str(record.get("fingerprint", "")), fingerprint):
            return current
        current = None  # the hash of another password, as the record says: no argon2 check
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


def secrets_step(paths: Paths, ssm: Any = None) -> None:
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
    values = jupyter_env_values(
        paths,
        hashed_password(paths, password, current.get("JUPYTER_HASHED_PASSWORD")),
        current.get("JUPYTER_TOKEN") or secrets.token_urlsafe(32),
        tls=config.get("JUPYTER_TLS", "1") == "1",
    )
    if "JUPYTER_CERTFILE" in values:
        ensure_certificate(paths, group)
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
