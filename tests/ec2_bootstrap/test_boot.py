"""The every-boot step (boot.py secrets) against moto's SSM and a real git smart-HTTP remote."""

from __future__ import annotations

import getpass
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from jupyter_server.auth import passwd_check
from moto import mock_aws

import boot
import layout
import wake_marker
from demo.git_remote import GitRemote
from tests.support.ssm import PREFIX, moto_ssm_server, put_secrets, settings_for

PASSWORD = "the-team-password"
TOKEN = "ghp_test_token_0123456789abcdef"


@pytest.fixture
def ssm():
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        put_secrets(client, PASSWORD, TOKEN)
        yield client


@pytest.fixture
def paths(tmp_path, monkeypatch, remote: GitRemote) -> layout.Paths:
    config = tmp_path / "etc" / "config.env"
    config.parent.mkdir()
    # As `boot.py sync` writes it from the settings Terraform writes (the steps here skip it).
    where = {"AWS_REGION": "us-east-1", "BOOTSTRAP_PARAMETER_PREFIX": PREFIX}
    config.write_text(layout.env_file(layout.config_values(where, settings_for(remote.url), {})))
    env = {
        "JOD_CONFIG": str(config),
        "JOD_APP_DIR": str(Path(boot.__file__).parent),
        "JOD_ETC_DIR": str(tmp_path / "etc"),
        "JOD_STATE_DIR": str(tmp_path / "state"),
        "JOD_HOME": str(tmp_path / "home"),
        "JOD_USER": getpass.getuser(),
        "JOD_RETRY_SECONDS": "0.01",
        "JOD_SYSTEMD_DIR": str(tmp_path / "systemd"),
        "JOD_RUN_DIR": str(tmp_path / "run"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "home").mkdir()
    return layout.Paths.from_env()


@pytest.fixture
def remote(tmp_path):
    server = GitRemote(tmp_path / "remote", token=TOKEN)
    yield server
    server.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(*roots: Path) -> dict[str, tuple[bytes, int, int]]:
    files = {}
    for root in roots:
        for path in (
            [root]
            if root.is_file()
            else sorted(p for p in root.rglob("*") if p.is_file() and ".git/" not in str(p))
        ):
            files[str(path)] = (path.read_bytes(), mode(path), path.stat().st_mtime_ns)
    return files


def team_pushes(remote: GitRemote, tmp_path: Path, files: dict[str, str]) -> None:
    """The team's repository gets history: a teammate commits `files` and pushes to main."""
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(remote.bare), str(seed)], check=True)
    for name, content in files.items():
        (seed / name).write_text(content)
    git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "team"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True)


def test_secrets_step_writes_the_hash_token_credential_and_certificate(ssm, paths, remote) -> None:
    assert boot.main(["secrets"]) == 0
    values = layout.read_config(paths.jupyter_env)
    assert passwd_check(values["JUPYTER_HASHED_PASSWORD"], PASSWORD)
    assert values["JUPYTER_HASHED_PASSWORD"].startswith("argon2:")
    assert len(values["JUPYTER_TOKEN"]) >= 32
    assert values["JUPYTER_ROOT_DIR"] == str(paths.repo)
    assert PASSWORD not in paths.jupyter_env.read_text()
    assert mode(paths.jupyter_env) == 0o640
    assert mode(paths.secrets) == 0o750
    assert paths.credentials.read_text() == remote.credential_line()
    assert mode(paths.credentials) == 0o640  # root's; the service group reads it
    assert values["JUPYTER_CERTFILE"] == str(paths.certfile)
    assert mode(paths.keyfile) == 0o640
    assert "BEGIN CERTIFICATE" in paths.certfile.read_text()


def test_an_empty_team_repo_is_cloned_and_initialised_with_readme_and_gitignore(
    ssm, paths, remote
) -> None:
    assert boot.main(["secrets"]) == 0
    assert (paths.repo / ".git").is_dir()
    assert sorted(remote.files()) == [".gitignore", "README.md"]
    assert ".ipynb_checkpoints/" in remote.show(".gitignore")


def test_an_existing_repo_is_cloned_and_its_gitignore_is_never_touched(
    ssm, paths, remote, tmp_path
) -> None:
    team_pushes(remote, tmp_path, {".gitignore": "data/\n", "train.py": "print('hi')\n"})
    assert boot.main(["secrets"]) == 0
    assert (paths.repo / "train.py").exists()
    assert (paths.repo / ".gitignore").read_text() == "data/\n"
    assert remote.show(".gitignore") == "data/\n"


def test_the_token_never_reaches_the_remote_url_the_git_config_or_the_logs(
    ssm, paths, remote, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    assert boot.main(["secrets"]) == 0
    assert TOKEN not in (paths.repo / ".git" / "config").read_text()
    assert (
        TOKEN
        not in subprocess.run(
            ["git", "-C", str(paths.repo), "remote", "-v"], capture_output=True, text=True
        ).stdout
    )
    assert TOKEN not in caplog.text and PASSWORD not in caplog.text


def test_running_the_every_boot_step_twice_changes_nothing(ssm, paths, remote) -> None:
    assert boot.main(["secrets"]) == 0
    before = snapshot(paths.secrets, paths.credentials, paths.state, paths.home / ".gitconfig")
    head = remote.head()
    assert boot.main(["secrets"]) == 0
    assert (
        snapshot(paths.secrets, paths.credentials, paths.state, paths.home / ".gitconfig") == before
    )
    assert remote.head() == head


def test_a_new_password_in_ssm_takes_effect_at_the_next_boot(ssm, paths, remote) -> None:
    assert boot.main(["secrets"]) == 0
    first = layout.read_config(paths.jupyter_env)
    ssm.put_parameter(
        Name="/jod/team-pass", Value="a-brand-new-password", Type="SecureString", Overwrite=True
    )
    assert boot.main(["secrets"]) == 0
    second = layout.read_config(paths.jupyter_env)
    assert passwd_check(second["JUPYTER_HASHED_PASSWORD"], "a-brand-new-password")
    assert not passwd_check(second["JUPYTER_HASHED_PASSWORD"], PASSWORD)
    assert second["JUPYTER_TOKEN"] == first["JUPYTER_TOKEN"]


def test_unreadable_secrets_fail_closed_and_say_why(ssm, paths, remote, caplog) -> None:
    assert boot.main(["secrets"]) == 0
    ssm.delete_parameter(Name="/jod/team-pass")
    assert boot.main(["secrets"]) == 1
    assert not paths.jupyter_env.exists()
    assert "/jod/team-pass" in caplog.text and "BOOT FAILED" in caplog.text


def test_tls_off_writes_no_certificate_settings(ssm, paths, remote) -> None:
    paths.config.write_text(paths.config.read_text().replace("JUPYTER_TLS=1", "JUPYTER_TLS=0"))
    assert boot.main(["secrets"]) == 0
    values = layout.read_config(paths.jupyter_env)
    assert "JUPYTER_CERTFILE" not in values
    assert not paths.certfile.exists()


def test_an_unreachable_github_still_gives_a_local_repo_with_its_remote(
    ssm, paths, remote, caplog
) -> None:
    remote.stop()
    assert boot.main(["secrets"]) == 0
    assert (paths.repo / ".git").is_dir()
    origin = subprocess.run(
        ["git", "-C", str(paths.repo), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
    )
    assert origin.stdout.strip() == remote.url
    assert "could not clone" in caplog.text


def test_every_path_and_endpoint_can_be_overridden_by_the_environment(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("JOD_REPO_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("JOD_USER", "someone")
    paths = layout.Paths.from_env()
    assert paths.repo == tmp_path / "r"
    assert paths.user == "someone"


def test_secrets_are_read_through_aws_endpoint_url(paths, remote, monkeypatch) -> None:
    with moto_ssm_server() as (endpoint, client):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        put_secrets(client, "served-by-moto-server", TOKEN)
        assert boot.main(["secrets"]) == 0
        assert passwd_check(
            layout.read_config(paths.jupyter_env)["JUPYTER_HASHED_PASSWORD"],
            "served-by-moto-server",
        )


@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_jupyter_answers_only_to_its_token_and_not_before_it_listens(
    tmp_path, monkeypatch, tls: bool
) -> None:
    """The wake's readiness check against a real Jupyter: over TLS with its self-signed
    certificate (loopback), a 200 with the API token; the wrong token or a closed port is no
    answer. The TLS context loads no CA store: under the VM test's emulation that load was a
    large part of the time between Jupyter listening and the ready tag."""
    import ssl

    import boot_ready
    from tests.support.jupyter import free_port, running_jupyter

    def no_ca_store(*args: object, **kwargs: object) -> None:
        raise AssertionError("the readiness check loaded a CA store")

    with running_jupyter(tmp_path / "root", tmp_path / "work", tls=tls) as jupyter:
        for method in ("load_default_certs", "load_verify_locations", "set_default_verify_paths"):
            monkeypatch.setattr(ssl.SSLContext, method, no_ca_store)
        port = jupyter.url.rsplit(":", 1)[1]
        config = {"JUPYTER_PORT": port, "JUPYTER_TLS": str(int(tls))}
        assert boot_ready.jupyter_answers(config, {"JUPYTER_TOKEN": jupyter.token})
        assert not boot_ready.jupyter_answers(config, {"JUPYTER_TOKEN": "not-the-token"})
        assert not boot_ready.jupyter_answers(config, {})
    closed = {"JUPYTER_PORT": str(free_port()), "JUPYTER_TLS": str(int(tls))}
    assert not boot_ready.jupyter_answers(closed, {"JUPYTER_TOKEN": jupyter.token})


def test_ready_tags_the_instance_once_jupyter_answers_and_starts_the_idle_clock(
    paths, tmp_path
) -> None:
    import handler
    import idle_check
    from tests.support.jupyter import running_jupyter

    with mock_aws(), running_jupyter(tmp_path / "root", tmp_path / "work") as jupyter:
        ec2 = boto3.client("ec2", region_name="us-east-1")
        instance_id = ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1)[
            "Instances"
        ][0]["InstanceId"]
        port = jupyter.url.rsplit(":", 1)[1]
        paths.config.write_text(
            paths.config.read_text()
            .replace("JUPYTER_PORT=8443", f"JUPYTER_PORT={port}")
            .replace("JUPYTER_TLS=1", f"JUPYTER_TLS={int(jupyter.url.startswith('https'))}")
            + f"INSTANCE_ID={instance_id}\nREADY_TAG={handler.READY_TAG}\n"
        )
        paths.jupyter_env.parent.mkdir(parents=True, exist_ok=True)
        paths.jupyter_env.write_text(f"JUPYTER_TOKEN={jupyter.token}\n")
        wake_marker.mark_wake(paths, False)
        assert boot.main(["ready"]) == 1  # this boot's wake failed: no tag
        assert not handler.is_ready(
            ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        )
        wake_marker.mark_wake(paths, True)
        # The month's hours the checker kept before this boot survive the clock's restart.
        month = {"month": "2026-11", "hours": 3.5, "at": "2026-11-29T10:00:00+00:00",
                 "boot_id": "an-earlier-boot", "previous": None}  # fmt: skip
        paths.state.mkdir(parents=True, exist_ok=True)
        (paths.state / "idle-state.json").write_text(json.dumps({"month_hours": month}))
        assert boot.main(["ready"]) == 0
        instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ][0]
    assert handler.is_ready(instance)
    state = json.loads((paths.state / "idle-state.json").read_text())
    assert state["boot_id"] == idle_check.boot_id() and state["reason"] == "Jupyter ready"
    assert state["month_hours"] == month


def test_an_orphan_branch_a_person_started_is_never_switched_committed_or_pushed(
    ssm, paths, remote
) -> None:
    assert boot.main(["secrets"]) == 0
    main_before = remote.head()
    git = ["git", "-C", str(paths.repo)]
    subprocess.run([*git, "checkout", "-q", "--orphan", "clean-start"], check=True)
    subprocess.run([*git, "rm", "-rfq", "."], check=True)
    assert boot.main(["secrets"]) == 0  # the next boot
    head = subprocess.run([*git, "symbolic-ref", "HEAD"], capture_output=True, text=True)
    assert head.stdout.strip() == "refs/heads/clean-start"
    assert remote.head() == main_before
    assert subprocess.run([*git, "ls-files"], capture_output=True, text=True).stdout == ""


def test_a_broken_gitconfig_is_logged_and_never_keeps_jupyter_from_starting(
    ssm, paths, remote, caplog
) -> None:
    assert boot.main(["secrets"]) == 0
    (paths.home / ".gitconfig").write_text("[user\n\tname = broken\n")  # a teammate's typo
    assert boot.main(["secrets"]) == 0
    assert paths.jupyter_env.exists()
    assert "could not set up the git settings" in caplog.text


def test_a_first_clone_that_failed_takes_the_teams_history_at_the_next_boot(
    ssm, paths, remote, tmp_path
) -> None:
    import git_autosave

    team_pushes(remote, tmp_path, {"team_analysis.py": "print('the team')\n"})
    team_head = remote.head()
    remote.stop()  # GitHub unreachable at the first boot
    assert boot.main(["secrets"]) == 0
    (paths.repo / "my_notebook.py").write_text("x = 1\n")  # saved while GitHub was away
    with pytest.raises(git_autosave.GitError):  # the side branch can't be pushed either
        git_autosave.Repo(paths.repo).sync(["my_notebook.py"])
    assert "could not be cloned" in git_autosave.Repo(paths.repo).read_status()["waiting"]
    branches = subprocess.run(["git", "-C", str(paths.repo), "for-each-ref", "refs/heads"],
                              capture_output=True, text=True).stdout  # fmt: skip
    assert "refs/heads/main" not in branches  # no history unrelated to the team's
    remote.start()
    assert boot.main(["secrets"]) == 0  # the next boot
    assert (paths.repo / "team_analysis.py").read_text() == "print('the team')\n"
    assert (paths.repo / "my_notebook.py").read_text() == "x = 1\n"
    head = subprocess.run(["git", "-C", str(paths.repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert head == team_head
    assert not (paths.repo / ".git" / git_autosave.NOT_CLONED).exists()


def test_an_unchanged_password_is_not_hashed_or_checked_again(
    ssm, paths, remote, monkeypatch
) -> None:
    """argon2 is slow on purpose (and jupyter_server slow to import): a wake whose password
    didn't change reuses the hash without running either."""
    import jupyter_server.auth

    assert boot.main(["secrets"]) == 0
    before = paths.jupyter_env.read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("argon2 ran again for an unchanged password")

    monkeypatch.setattr(jupyter_server.auth, "passwd_check", refuse)
    monkeypatch.setattr(jupyter_server.auth, "passwd", refuse)
    assert boot.main(["secrets"]) == 0
    assert paths.jupyter_env.read_bytes() == before


def test_a_new_password_is_hashed_once_without_checking_the_old_hash(
    ssm, paths, remote, monkeypatch
) -> None:
    import boot_secrets

    assert boot.main(["secrets"]) == 0
    ssm.put_parameter(Name="/jod/team-pass", Value="another-password", Type="SecureString",
                      Overwrite=True)  # fmt: skip

    def refuse(*args: object) -> bool:
        raise AssertionError("argon2 checked the old hash although the record says it changed")

    monkeypatch.setattr(boot_secrets, "password_matches", refuse)
    assert boot.main(["secrets"]) == 0
    hashed = layout.read_config(paths.jupyter_env)["JUPYTER_HASHED_PASSWORD"]
    assert passwd_check(hashed, "another-password")


@pytest.mark.parametrize("fault", ["other password", "other hash", "corrupt"])
def test_a_password_record_that_does_not_match_is_checked_in_full(
    ssm, paths, remote, fault: str
) -> None:
    assert boot.main(["secrets"]) == 0
    record_path = paths.state / "password-check.json"
    record = json.loads(record_path.read_text())
    if fault == "other password":
        record["fingerprint"] = "0" * 64
    elif fault == "other hash":
        record["hash"] = "argon2:$argon2id$v=19$m=10240,t=10,p=8$c2FsdA$aGFzaA"
    record_path.write_text("{not json" if fault == "corrupt" else json.dumps(record))
    ssm.put_parameter(Name="/jod/team-pass", Value="another-password", Type="SecureString",
                      Overwrite=True)  # fmt: skip
    assert boot.main(["secrets"]) == 0
    hashed = layout.read_config(paths.jupyter_env)["JUPYTER_HASHED_PASSWORD"]
    assert passwd_check(hashed, "another-password")


def test_the_password_record_is_roots_alone_and_holds_no_password(ssm, paths, remote) -> None:
    assert boot.main(["secrets"]) == 0
    record = paths.state / "password-check.json"
    assert mode(record) == 0o600
    assert PASSWORD.encode() not in record.read_bytes()


def test_a_later_boot_runs_two_git_commands_only(ssm, paths, remote, tmp_path, monkeypatch) -> None:
    """Each git process costs a wake time: the settings are read in one, the clone checked in one."""
    shim = tmp_path / "shim"
    shim.mkdir()
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/git-calls"\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    assert boot.main(["secrets"]) == 0
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    assert boot.main(["secrets"]) == 0  # unchanged: the repo step is not even run
    assert not (tmp_path / "git-calls").exists()
    paths.repo_inputs.unlink()  # when it runs (its record gone), two at most
    assert boot.main(["secrets"]) == 0
    calls = (tmp_path / "git-calls").read_text().splitlines()
    assert len(calls) <= 2, calls


def test_a_new_hash_is_made_without_jupyter_server_and_jupyter_server_accepts_it(paths) -> None:
    """argon2-cffi with jupyter_server's cost and prefix; its passwd_check takes it. A fresh
    Python shows the hashing imports no jupyter_server (its import cost the wake more CPU)."""
    import argon2

    import boot_secrets

    made = boot_secrets.argon2_hash(PASSWORD)
    assert made.startswith("argon2:$argon2id$")
    assert passwd_check(made, PASSWORD) and not passwd_check(made, PASSWORD + "x")
    parameters = argon2.extract_parameters(made.removeprefix("argon2:"))
    # jupyter_server's memory and passes, in one lane: the same work for a guess, without 8
    # threads taking both CPUs from Jupyter's start at a wake (argon2 reads them from the hash).
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (10240, 10, 1)
    from jupyter_server.auth import passwd

    theirs = argon2.extract_parameters(passwd(PASSWORD).removeprefix("argon2:"))
    assert (theirs.type, theirs.memory_cost, theirs.time_cost, theirs.hash_len) == (
        parameters.type,
        parameters.memory_cost,
        parameters.time_cost,
        parameters.hash_len,
    )
    probe = (
        "import sys, boot_secrets\n"
        "assert boot_secrets.password_matches(boot_secrets.argon2_hash('p' * 9), 'p' * 9)\n"
        "print(sorted(m for m in sys.modules if m.startswith('jupyter_server')))\n"
    )
    app = str(Path(boot.__file__).parent)
    found = subprocess.run([sys.executable, "-c", probe], cwd=app, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": app}, check=True)  # fmt: skip
    assert found.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["argon2 by jupyter_server", "sha1 of an old version", "garbage"])
def test_an_existing_hash_is_checked_as_jupyter_server_checks_it(paths, kind) -> None:
    from jupyter_server.auth import passwd

    import boot_secrets

    hashed = {
        "argon2 by jupyter_server": passwd(PASSWORD),
        "sha1 of an old version": passwd(PASSWORD, algorithm="sha1"),
        "garbage": "argon2:$argon2id$v=19$not-a-hash",
    }[kind]
    for password in (PASSWORD, "another-password"):
        expected = kind != "garbage" and passwd_check(hashed, password)
        assert boot_secrets.password_matches(hashed, password) is expected


def test_a_password_changed_in_ssm_is_hashed_anew_and_the_old_one_no_longer_matches(
    ssm, paths
) -> None:
    assert boot.main(["secrets"]) == 0
    first = layout.read_config(paths.jupyter_env)["JUPYTER_HASHED_PASSWORD"]
    ssm.put_parameter(Name="/jod/team-pass", Value="a-new-team-password", Type="SecureString",
                      Overwrite=True)  # fmt: skip
    assert boot.main(["secrets"]) == 0
    second = layout.read_config(paths.jupyter_env)["JUPYTER_HASHED_PASSWORD"]
    assert second != first and second.startswith("argon2:")
    assert passwd_check(second, "a-new-team-password") and not passwd_check(second, PASSWORD)


def repo_step_ran(caplog) -> bool:
    return "not run (" not in caplog.text


@pytest.mark.parametrize(
    "change",
    ["nothing", "the clone removed", "gitconfig edited", "repo url", "code", "not-cloned marker",
     "the clone made a symlink"],
)  # fmt: skip
def test_the_repo_step_is_skipped_only_when_its_inputs_and_the_clone_are_unchanged(
    ssm, paths, remote, caplog, change, tmp_path, monkeypatch
) -> None:
    import boot_repo
    import git_autosave

    caplog.set_level(logging.INFO)
    assert boot.main(["secrets"]) == 0
    assert paths.repo_inputs.is_file() and mode(paths.repo_inputs) == 0o600
    assert repo_step_ran(caplog)
    if change == "the clone removed":
        subprocess.run(["rm", "-rf", str(paths.repo)], check=True)
    elif change == "gitconfig edited":
        subprocess.run(["git", "config", "--file", str(paths.home / ".gitconfig"),
                        "credential.helper", "store"], check=True)  # fmt: skip
    elif change == "repo url":
        paths.config.write_text(paths.config.read_text().replace(remote.url, remote.url + "/"))
    elif change == "code":
        monkeypatch.setattr(boot_repo, "REPO_CODE", ("boot_repo.py", "boot.py"))
    elif change == "not-cloned marker":
        (paths.repo / ".git" / git_autosave.NOT_CLONED).write_text("x\n")
    elif change == "the clone made a symlink":
        moved = tmp_path / "elsewhere"
        paths.repo.rename(moved)
        paths.repo.symlink_to(moved)
    caplog.clear()
    assert boot.main(["secrets"]) == 0
    assert repo_step_ran(caplog) is (change != "nothing")
    if change == "the clone removed":
        assert (paths.repo / ".git").is_dir()
    if change == "gitconfig edited":
        listed = subprocess.run(["git", "config", "--file", str(paths.home / ".gitconfig"),
                                 "credential.helper"], capture_output=True, text=True)  # fmt: skip
        assert str(paths.credentials) in listed.stdout


def test_a_repo_step_that_only_warned_runs_again_at_the_next_boot(ssm, paths, remote, caplog):
    """The settings name another repository: the warning is said at every boot, not recorded."""
    caplog.set_level(logging.INFO)
    assert boot.main(["secrets"]) == 0
    subprocess.run(["git", "-C", str(paths.repo), "remote", "set-url", "origin",
                    "https://example.invalid/other.git"], check=True)  # fmt: skip
    paths.repo_inputs.unlink()
    for _ in range(2):
        caplog.clear()
        assert boot.main(["secrets"]) == 0
        assert "but the settings name" in caplog.text and repo_step_ran(caplog)
    assert not paths.repo_inputs.exists()
