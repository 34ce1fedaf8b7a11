"""The settings reach the instance at every boot, as the code bundle does: user_data writes only
bootstrap.env (the region and the SSM prefix); `boot.py sync` reads <prefix>/settings, checks
it, and writes config.env from it, with the optional site file local.env merged last. Against
moto's SSM, the bundle as Terraform builds it and a real git smart-HTTP remote."""

from __future__ import annotations

import getpass
import json
import os
import re
import stat
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from traitlets.config import Config

import boot
import boot_repo
import boot_sync
import boot_wake
import layout
from demo.git_remote import GitRemote
from layout import BootError, read_config
from tests.infrastructure.terraform import render_bundle
from tests.support.ssm import (
    PREFIX,
    moto_ssm_server,
    put_bundle,
    put_secrets,
    put_settings,
    settings_for,
)

PASSWORD = "the-team-password"
TOKEN = "ghp_settings_test_token_0123456789"
BOOTSTRAP = Path(boot.__file__).resolve().parent


@pytest.fixture(scope="module")
def bundle() -> dict[str, str]:
    return render_bundle()


@pytest.fixture
def remote(tmp_path):
    server = GitRemote(tmp_path / "remote", token=TOKEN)
    yield server
    server.stop()


@pytest.fixture
def ssm(bundle, remote):
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        put_secrets(client, PASSWORD, TOKEN)
        put_bundle(client, PREFIX, bundle)
        put_settings(client, PREFIX, settings_for(remote.url))
        yield client


@pytest.fixture(autouse=True)
def no_jupyter_to_wait_for(monkeypatch) -> None:
    """The wake's own part is what these tests check; its end (the ready tag once Jupyter
    answers) is test_wake_wait.py's: no Jupyter runs here, so it gives up at once."""
    monkeypatch.setattr(boot_wake, "ready_after_wake", lambda paths: 0)
    monkeypatch.setenv("JOD_READY_TIMEOUT", "0")


@pytest.fixture
def paths(tmp_path, monkeypatch) -> layout.Paths:
    """The instance as user_data leaves it: bootstrap.env, no config.env yet."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "bootstrap.env").write_text(
        f"AWS_REGION=us-east-1\nBOOTSTRAP_PARAMETER_PREFIX={PREFIX}\n"
    )
    monkeypatch.delenv("JOD_CONFIG", raising=False)
    for key, value in {
        "JOD_ETC_DIR": str(etc),
        "JOD_APP_DIR": str(tmp_path / "app"),
        "JOD_STATE_DIR": str(tmp_path / "state"),
        "JOD_HOME": str(tmp_path / "home"),
        "JOD_SYSTEMD_DIR": str(tmp_path / "systemd"),
        "JOD_RUN_DIR": str(tmp_path / "run"),
        "JOD_SYSTEM_ETC": str(tmp_path / "system-etc"),
        "JOD_USER": getpass.getuser(),
        "JOD_SYSTEMCTL": "true",
        "JOD_RETRY_SECONDS": "0.01",
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "home").mkdir()
    return layout.Paths.from_env()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_sync_writes_config_env_from_the_settings_parameter(ssm, paths, remote) -> None:
    assert not paths.config.exists()  # user_data no longer writes it
    assert boot.main(["sync"]) == 0
    assert read_config(paths.config) == {
        "AWS_REGION": "us-east-1",
        "BOOTSTRAP_PARAMETER_PREFIX": PREFIX,
        **settings_for(remote.url),
    }
    assert mode(paths.config) == 0o644
    assert paths.config.stat().st_uid == os.geteuid()
    assert paths.config.parent == paths.bootstrap_env.parent == paths.local_env.parent


def test_fetch_settings_returns_the_parameter_as_terraform_wrote_it(ssm, remote) -> None:
    config = {"AWS_REGION": "us-east-1", "BOOTSTRAP_PARAMETER_PREFIX": PREFIX}
    assert boot_sync.fetch_settings(config) == settings_for(remote.url)


def test_site_settings_in_local_env_are_merged_last(ssm, paths) -> None:
    paths.local_env.write_text(
        "# site settings: a proxy and a pip mirror\n"
        "HTTPS_PROXY=http://proxy.internal:3128\nPIP_INDEX_URL=https://pypi.internal/simple\n"
        "IDLE_MINUTES=90\n"
    )
    assert boot.main(["sync"]) == 0
    config = read_config(paths.config)
    assert config["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert config["PIP_INDEX_URL"] == "https://pypi.internal/simple"
    assert config["IDLE_MINUTES"] == "90"  # the site's word is last


def test_local_env_reaches_ssm_itself_as_the_vm_test_injects_its_endpoint(
    bundle, paths, remote, monkeypatch
) -> None:
    """The VM test's endpoint and credentials come from local.env alone, not the environment."""
    with moto_ssm_server() as (endpoint, client):
        put_bundle(client, PREFIX, bundle)
        put_settings(client, PREFIX, settings_for(remote.url, IDLE_MINUTES="7"))
        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(key, raising=False)
        paths.local_env.write_text(
            f"AWS_ENDPOINT_URL={endpoint}\nAWS_ACCESS_KEY_ID=testing\n"
            "AWS_SECRET_ACCESS_KEY=testing\nINSTANCE_ID=i-0123456789abcdef0\n"
        )
        assert boot.main(["sync"]) == 0
    config = read_config(paths.config)
    assert config["IDLE_MINUTES"] == "7"
    assert config["AWS_ENDPOINT_URL"] == endpoint
    assert config["INSTANCE_ID"] == "i-0123456789abcdef0"


def jupyter_settings(paths: layout.Paths) -> Config:
    """What jupyter_server_config.py makes of the environment jupyter-on-demand.service gives it
    (EnvironmentFile= config.env, then secrets/jupyter.env)."""
    env = {**read_config(paths.config), **read_config(paths.jupyter_env)}
    saved = dict(os.environ)
    config = Config()
    try:
        os.environ.update(env)
        code = compile((BOOTSTRAP / "jupyter_server_config.py").read_text(), "config", "exec")
        exec(code, {"get_config": lambda: config, "__file__": str(BOOTSTRAP / "x.py")})  # noqa: S102
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return config


def test_changed_settings_take_effect_at_the_next_boot(ssm, paths, remote, caplog) -> None:
    assert boot.main(["sync"]) == 0
    assert boot.main(["wake"]) == 0
    assert jupyter_settings(paths).ServerApp.port == 8443
    assert jupyter_settings(paths).ServerApp.certfile == str(paths.certfile)
    other = GitRemote(paths.home.parent / "other-remote", token=TOKEN)
    try:
        put_settings(
            ssm,
            PREFIX,
            settings_for(other.url, JUPYTER_PORT="9443", IDLE_MINUTES="15", JUPYTER_TLS="0"),
        )
        assert boot.main(["wake"]) == 0  # the next boot, nothing else changed
        config = read_config(paths.config)
        assert (config["JUPYTER_PORT"], config["IDLE_MINUTES"]) == ("9443", "15")
        assert config["GITHUB_REPO_URL"] == other.url
        assert paths.credentials.read_text() == other.credential_line()
        # The work folder is the team's clone with their work: never switched under them.
        assert f"is a clone of {remote.url}, but the settings name {other.url}" in caplog.text
        assert boot_repo.origin_url(paths.repo) == remote.url
        jupyter = jupyter_settings(paths)
        assert jupyter.ServerApp.port == 9443
        assert "certfile" not in jupyter.ServerApp  # TLS off
    finally:
        other.stop()


def test_unreadable_settings_keep_the_last_good_config_and_say_so(
    ssm, paths, remote, caplog
) -> None:
    assert boot.main(["wake"]) == 0
    before = paths.config.read_bytes()
    ssm.delete_parameter(Name=f"{PREFIX}/settings")  # SSM down or the parameter gone
    assert boot.main(["wake"]) == 0  # Jupyter still starts, the idle stop keeps its minutes
    assert paths.config.read_bytes() == before
    assert f"{PREFIX}/settings" in caplog.text
    assert "keeping the last good" in caplog.text
    assert paths.jupyter_env.exists()


def test_a_first_boot_without_settings_fails_and_writes_no_config(ssm, paths, caplog) -> None:
    ssm.delete_parameter(Name=f"{PREFIX}/settings")
    assert boot.main(["sync"]) == 1
    assert not paths.config.exists()  # the fail-safe uses its default 40 min
    assert "BOOT FAILED (sync)" in caplog.text and "terraform apply" in caplog.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not a JSON object"),
        ('["AWS_REGION"]', "not a JSON object"),
        ("a number, not a string", "JUPYTER_PORT"),
        ("unknown", "UNKNOWN_SETTING"),
        ("missing", "READY_TAG"),
        ("JUPYTER_PORT=80", "JUPYTER_PORT"),
        ("JUPYTER_PORT=84a3", "JUPYTER_PORT"),
        ("JUPYTER_TLS=yes", "JUPYTER_TLS"),
        ("IDLE_MINUTES=0", "IDLE_MINUTES"),
        ("IDLE_MINUTES=-5", "IDLE_MINUTES"),
        ("IDLE_MINUTES=forty", "IDLE_MINUTES"),
        ("GITHUB_REPO_URL=file:///etc", "GITHUB_REPO_URL"),
        ("TEAM_PASS_PARAMETER=team pass", "TEAM_PASS_PARAMETER"),
        ("AWS_REGION=", "AWS_REGION"),
        ("newline", "READY_TAG"),
    ],
)
def test_malformed_settings_are_refused_with_what_is_wrong(
    ssm, paths, remote, caplog, value: str, message: str
) -> None:
    settings = settings_for(remote.url)
    if value == "a number, not a string":
        value = json.dumps({**settings, "JUPYTER_PORT": 8443})
    elif value == "unknown":
        value = json.dumps({**settings, "UNKNOWN_SETTING": "x"})
    elif value == "missing":
        value = json.dumps({k: v for k, v in settings.items() if k != "READY_TAG"})
    elif value == "newline":  # a line injected into config.env, such as a longer idle time
        value = json.dumps({**settings, "READY_TAG": "ready\nIDLE_MINUTES=99999"})
    elif "=" in value and not value.startswith(("[", "{")):
        key, item = value.split("=", 1)
        value = json.dumps({**settings, key: item})
    put_settings(ssm, PREFIX, value)
    with pytest.raises(BootError, match=message):
        boot_sync.fetch_settings({"AWS_REGION": "us-east-1", "BOOTSTRAP_PARAMETER_PREFIX": PREFIX})
    assert boot.main(["sync"]) == 1
    assert not paths.config.exists()
    assert f"{PREFIX}/settings" in caplog.text


def test_a_symlink_at_local_env_is_never_followed(ssm, paths, tmp_path, caplog) -> None:
    target = tmp_path / "elsewhere.env"
    target.write_text("IDLE_MINUTES=99999\n")
    paths.local_env.symlink_to(target)
    assert boot.main(["sync"]) == 1
    assert "local.env" in caplog.text and "regular file" in caplog.text
    assert not paths.config.exists()


def test_a_local_env_others_can_write_is_refused(ssm, paths, caplog) -> None:
    paths.local_env.write_text("IDLE_MINUTES=99999\n")
    paths.local_env.chmod(0o666)
    assert boot.main(["sync"]) == 1
    assert "local.env" in caplog.text and "writable" in caplog.text


def test_a_symlink_planted_at_config_env_is_replaced_not_followed(ssm, paths, tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root-only\n")
    paths.config.symlink_to(victim)
    assert boot.main(["sync"]) == 0
    assert victim.read_text() == "root-only\n"
    assert stat.S_ISREG(paths.config.lstat().st_mode)


def test_new_code_from_ssm_runs_the_rest_of_the_same_wake(paths, remote, tmp_path) -> None:
    """One process runs the wake; when its sync brings new code for that process, the wake goes
    on in the new code (one exec), as the separate secrets process did before."""
    import shutil
    import subprocess
    import sys

    new = tmp_path / "new"
    shutil.copytree(BOOTSTRAP, new, ignore=shutil.ignore_patterns("__pycache__"))
    with (new / "boot_secrets.py").open("a") as handle:
        handle.write('\nlogger.info("the new boot_secrets runs")\n')
    shutil.copytree(BOOTSTRAP, paths.app, ignore=shutil.ignore_patterns("__pycache__"))
    with moto_ssm_server() as (endpoint, client):
        put_secrets(client, PASSWORD, TOKEN)
        put_bundle(client, PREFIX, render_bundle(new))
        put_settings(client, PREFIX, settings_for(remote.url))
        paths.local_env.write_text(
            f"AWS_ENDPOINT_URL={endpoint}\nAWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n"
        )

        def wake() -> str:
            result = subprocess.run(
                [sys.executable, str(paths.app / "boot.py"), "wake"],
                env=dict(os.environ), capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert result.returncode in (0, boot_wake.READY_FAILED_EXIT), result.stderr
            assert "JUPYTER-ON-DEMAND WAKE DONE" in result.stderr
            return result.stderr

        first = wake()
        assert first.count("the wake goes on in the new code") == 1, first
        assert first.count("the new boot_secrets runs") == 1, first
        assert (paths.app / "boot_secrets.py").read_text() == (new / "boot_secrets.py").read_text()
        assert paths.jupyter_env.exists()
        second = wake()  # nothing new: no second exec
        assert "the wake goes on in the new code" not in second, second
        assert second.count("the new boot_secrets runs") == 1, second


def ssm_actions_called(source: str) -> set[str]:
    """ssm:<Action> of every `ssm.<snake_case>(` call on an SSM client in the source."""
    calls = set(re.findall(r"\bssm\.(get_parameters?)\(", source))
    return {"ssm:" + "".join(part.title() for part in call.split("_")) for call in calls}


def test_the_instance_role_allows_every_ssm_call_the_boot_steps_make() -> None:
    """Contract with infrastructure/iam.tf. The boot steps read the manifest and the settings
    with GetParameter, and the bundle's chunks and both secrets ten a call with GetParameters
    (boot_sync.get_parameters): the instance role must grant GetParameters on the code prefix and on
    the two secrets. moto doesn't enforce IAM; AWS would refuse."""
    from tests.infrastructure.terraform import blocks

    assert ssm_actions_called((BOOTSTRAP / "boot_sync.py").read_text()) == {
        "ssm:GetParameter",
        "ssm:GetParameters",
    }
    for name in ("boot.py", "boot_install.py", "boot_secrets.py", "boot_repo.py", "boot_ready.py"):
        assert ssm_actions_called((BOOTSTRAP / name).read_text()) == set(), name
    assert "get_parameters(ssm, " in (BOOTSTRAP / "boot_secrets.py").read_text()
    needed = {
        "ReadItsCode": {"ssm:GetParameter", "ssm:GetParameters"},
        "ReadItsSecrets": {"ssm:GetParameters"},
    }
    statements = {
        statement["sid"][0] if isinstance(statement["sid"], list) else statement["sid"]: statement
        for kind, name, body in blocks("data")
        if (kind, name) == ("aws_iam_policy_document", "instance")
        for statement in body["statement"]
    }
    for sid, actions in needed.items():
        granted = set(statements[sid]["actions"][0])
        assert actions <= granted, f"iam.tf {sid} grants {sorted(granted)}, not {sorted(actions)}"


def test_a_settings_value_as_terraform_encodes_it_passes_the_checks(remote) -> None:
    from tests.infrastructure.terraform import render_settings

    settings = settings_for(remote.url, IDLE_MINUTES="0.5")
    value = render_settings(settings)  # jsonencode's text, as SSM holds it
    assert layout.check_settings(json.loads(value), f"{PREFIX}/settings") == settings
