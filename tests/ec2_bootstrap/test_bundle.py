"""The instance code bundle: built by the real `terraform console` as locals.tf does, stored in
(moto's) SSM as Terraform stores it, and installed by `boot.py sync`."""

from __future__ import annotations

import base64
import getpass
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

import boot
import boot_install
import boot_sync
import layout
from demo import units
from tests.infrastructure.terraform import BOOTSTRAP, bundle_files, render_bundle
from tests.support.ssm import PREFIX, put_bundle, put_settings, settings_for

SSM_STANDARD_LIMIT = 4096
SETTINGS = settings_for("https://github.com/team/notebooks.git", GITHUB_USER_NAME="team")


@pytest.fixture(scope="module")
def bundle() -> dict[str, str]:
    return render_bundle()


@pytest.fixture
def paths(tmp_path, monkeypatch) -> layout.Paths:
    (tmp_path / "bootstrap.env").write_text(
        f"AWS_REGION=us-east-1\nBOOTSTRAP_PARAMETER_PREFIX={PREFIX}\n"
    )
    for key, value in {
        "JOD_CONFIG": str(tmp_path / "config.env"),
        "JOD_APP_DIR": str(tmp_path / "app"),
        "JOD_SYSTEMD_DIR": str(tmp_path / "systemd"),
        "JOD_RUN_DIR": str(tmp_path / "run"),
        "JOD_STATE_DIR": str(tmp_path / "state"),
        "JOD_USER": getpass.getuser(),
        "JOD_SYSTEMCTL": "true",
    }.items():
        monkeypatch.setenv(key, value)
    return layout.Paths.from_env()


@pytest.fixture
def ssm(bundle):
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        put_bundle(client, PREFIX, bundle)
        put_settings(client, PREFIX, SETTINGS)
        yield client


def shipped() -> list[str]:
    """Every file locals.tf puts in the bundle: the top-level ones, the prebuilt labextension's."""
    return sorted(bundle_files())


def test_every_chunk_fits_a_free_standard_parameter(bundle) -> None:
    assert all(len(value.encode()) <= SSM_STANDARD_LIMIT for value in bundle.values())
    assert json.loads(bundle["manifest"])["chunks"] == len(bundle) - 1


def test_the_bundle_holds_every_bootstrap_file_byte_for_byte(bundle) -> None:
    data = "".join(bundle[str(i)] for i in range(len(bundle) - 1))
    files = json.loads(gzip.decompress(base64.b64decode(data)))
    assert sorted(files) == shipped()
    for name in shipped():
        assert files[name] == (BOOTSTRAP / name).read_text(), name


def test_sync_installs_the_code_and_units_and_removes_the_cron_idle_check(ssm, paths) -> None:
    (paths.app).mkdir(parents=True)
    (paths.app / "idle-check.sh").write_text("#!/bin/sh\n")  # an older version's
    assert boot.main(["sync"]) == 0
    for name in shipped():
        assert (paths.app / name).read_text() == (BOOTSTRAP / name).read_text()
    assert set(layout.UNITS) | set(boot_sync.LEGACY_UNITS) == {
        p.name for p in BOOTSTRAP.glob("*.service")
    } | {p.name for p in BOOTSTRAP.glob("*.timer")}
    assert not set(layout.UNITS) & set(boot_sync.LEGACY_UNITS)
    assert not any((paths.systemd / unit).exists() for unit in boot_sync.LEGACY_UNITS)
    values = layout.unit_values(paths, boot_install.install_condition(paths))
    for unit in layout.UNITS:
        text = (paths.systemd / unit).read_text()
        # Rendered from the bundle's template for this very layout: every process a unit starts
        # finds the same paths (Environment=), and no placeholder is left.
        template = (BOOTSTRAP / f"{unit}{layout.TEMPLATE_SUFFIX}").read_text()
        assert text == layout.render_unit(unit, template, values), unit
        assert "{" not in text and "}" not in text, unit
        if unit.endswith(".service"):
            assert layout.Paths.from_env(units.environment(text)) == paths, unit
    assert not (paths.app / "idle-check.sh").exists()
    # Jupyter's config folder (JUPYTER_CONFIG_DIR of the unit): root's, with the marker that
    # keeps jupyter_core from writing there.
    unit = (paths.systemd / "jupyter-on-demand.service").read_text()
    assert units.environment(unit)["JUPYTER_CONFIG_DIR"] == str(paths.app / "jupyter-config")
    assert paths.jupyter_config == paths.app / "jupyter-config"
    assert (paths.jupyter_config / "migrated").is_file()
    # Compiled by root at the sync: the service user's Jupyter can't write __pycache__ there.
    import importlib.util

    for name in ("jupyter_extensions", "jupyter_activity", "git_autosave", "boot_secrets"):
        compiled = Path(importlib.util.cache_from_source(str(paths.app / f"{name}.py")))
        assert compiled.is_file(), name
        assert compiled.stat().st_uid == os.geteuid()
    assert not (paths.app / "__pycache__").stat().st_mode & 0o022


def test_systemd_accepts_every_unit_the_sync_renders_and_every_unit_file_shipped(
    ssm, paths, tmp_path
) -> None:
    """`systemd-analyze verify`: what the sync installs for a layout (here one in tmp_path, with
    a venv Python that exists), and the unit files an older version's sync installs by name (the
    default layout). A template itself is no unit: systemd refuses it (the control)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    paths.venv_python.parent.mkdir(parents=True)
    paths.venv_python.symlink_to(Path(sys.executable).resolve())
    assert boot.main(["sync"]) == 0

    def verify(*units: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([analyze, "verify", *map(str, units)], capture_output=True,
                              text=True, check=False)  # fmt: skip

    installed = verify(*(paths.systemd / unit for unit in layout.UNITS))
    assert installed.returncode == 0 and not installed.stderr.strip(), installed.stderr
    shipped = tmp_path / "shipped"  # the unit files beside the templates, their own names
    shipped.mkdir()
    for unit in layout.UNITS:
        text = (BOOTSTRAP / unit).read_text()  # the default layout's paths, absent here
        (shipped / unit).write_text(text.replace(str(layout.Paths.from_env({}).venv_python),
                                                 str(paths.venv_python)))  # fmt: skip
    result = verify(*(shipped / unit for unit in layout.UNITS))
    assert result.returncode == 0 and "is not executable" not in result.stderr, result.stderr
    raw = tmp_path / "raw" / layout.JUPYTER_UNIT
    raw.parent.mkdir()
    raw.write_text((BOOTSTRAP / f"{layout.JUPYTER_UNIT}{layout.TEMPLATE_SUFFIX}").read_text())
    assert verify(raw).returncode != 0


def test_the_units_follow_a_moved_clone_home_and_user(ssm, paths, monkeypatch, tmp_path) -> None:
    """Setting JOD_REPO_DIR (or the home, or the user) moves what every unit runs on: the flush
    pushes the clone Jupyter serves, as the user who owns it."""
    monkeypatch.setenv("JOD_REPO_DIR", str(tmp_path / "elsewhere" / "clone"))
    monkeypatch.setenv("JOD_HOME", str(tmp_path / "home"))
    moved = layout.Paths.from_env()
    assert boot.main(["sync"]) == 0
    flush = (moved.systemd / layout.FLUSH_UNIT).read_text()
    assert units.command(flush, "ExecStop") == [
        str(moved.venv_python), str(moved.app / "git_autosave.py"), "flush",
        "--repo", str(tmp_path / "elsewhere" / "clone"), "--timeout", "60",
    ]  # fmt: skip
    assert ("User", moved.user) in units.directives(flush)
    assert units.environment(flush)["HOME"] == str(tmp_path / "home")
    jupyter = (moved.systemd / layout.JUPYTER_UNIT).read_text()
    assert ("WorkingDirectory", str(tmp_path / "home")) in units.directives(jupyter)
    for unit in layout.UNITS:
        if unit.endswith(".service"):
            text = (moved.systemd / unit).read_text()
            assert layout.Paths.from_env(units.environment(text)).repo == moved.repo, unit


def test_a_new_labextension_build_replaces_the_old_ones_files(ssm, paths) -> None:
    """Its files are named by their content's hash: an older build's must not linger."""
    assert boot.main(["sync"]) == 0
    old = paths.app / "labextensions" / "jupyter-on-demand" / "static" / "remoteEntry.0ld.js"
    old.write_text("// an older build\n")
    (paths.app / "labextensions" / "stale-extension" / "static").mkdir(parents=True)
    (paths.app / "labextensions" / "stale-extension" / "static" / "x.js").write_text("x")
    (paths.app / "notes.txt").write_text("not the labextension's: kept")
    paths.bundle_stamp.unlink()  # as when a new bundle (the new build) arrives
    assert boot.main(["sync"]) == 0
    assert not old.exists()
    assert not (paths.app / "labextensions" / "stale-extension").exists()
    assert (paths.app / "notes.txt").exists()
    built = sorted(
        p.relative_to(paths.app).as_posix()
        for p in (paths.app / "labextensions").rglob("*")
        if p.is_file()
    )
    assert built == [name for name in shipped() if name.startswith("labextensions/")]


@pytest.mark.parametrize("name", ["../evil.py", "/etc/cron.d/x", "a//b.js", "a/./b.js", "a b.py"])
def test_a_bundle_naming_a_file_outside_the_app_folder_is_refused(paths, name: str) -> None:
    with pytest.raises(layout.BootError, match="names a file"):
        boot_sync.install_code(paths, {name: "x"})
    assert not (paths.app / name.lstrip("/")).exists()


def test_sync_twice_changes_nothing(ssm, paths) -> None:
    assert boot.main(["sync"]) == 0
    before = {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths.app.rglob("*") if p.is_file()
    }
    assert boot.main(["sync"]) == 0
    assert {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths.app.rglob("*") if p.is_file()
    } == before


def test_a_tampered_chunk_is_refused_and_the_installed_code_kept(ssm, paths, caplog) -> None:
    assert boot.main(["sync"]) == 0
    before = (paths.app / "idle_check.py").read_text()
    # A new manifest (as an apply writes) whose chunks don't match it.
    manifest = json.loads(ssm.get_parameter(Name=f"{PREFIX}/manifest")["Parameter"]["Value"])
    manifest["sha256"] = "0" * 64
    ssm.put_parameter(
        Name=f"{PREFIX}/manifest", Value=json.dumps(manifest), Type="String", Overwrite=True
    )
    ssm.put_parameter(Name=f"{PREFIX}/0", Value="A" * 100, Type="String", Overwrite=True)
    assert boot.main(["sync"]) == 1
    assert "does not match its SHA-256" in caplog.text
    assert (paths.app / "idle_check.py").read_text() == before
    assert paths.bundle_stamp.read_text() != "0" * 64  # still the bundle installed before


def test_an_unchanged_bundle_is_neither_fetched_nor_written_again(ssm, paths, caplog) -> None:
    """A wake whose manifest names the bundle installed last reads no chunk (here: they are
    gone, and the sync still succeeds) and rewrites no file; a new manifest installs again."""
    caplog.set_level(logging.INFO, logger="jupyter_on_demand.boot")
    assert boot.main(["sync"]) == 0
    sha = json.loads(ssm.get_parameter(Name=f"{PREFIX}/manifest")["Parameter"]["Value"])["sha256"]
    assert paths.bundle_stamp.read_text() == sha
    chunks = [p["Name"] for p in ssm.get_parameters_by_path(Path=PREFIX)["Parameters"]
              if p["Name"].rsplit("/", 1)[1].isdigit()]  # fmt: skip
    saved = {name: ssm.get_parameter(Name=name)["Parameter"]["Value"] for name in chunks}
    ssm.delete_parameters(Names=chunks)
    (paths.app / "idle_check.py").write_text("# changed on the disk by root\n")
    assert boot.main(["sync"]) == 0
    assert "instance code unchanged" in caplog.text
    assert (paths.app / "idle_check.py").read_text() == "# changed on the disk by root\n"
    for name, value in saved.items():
        ssm.put_parameter(Name=name, Value=value, Type="String")
    paths.bundle_stamp.unlink()  # as after a failed install: the whole bundle again
    assert boot.main(["sync"]) == 0
    assert (paths.app / "idle_check.py").read_text() == (BOOTSTRAP / "idle_check.py").read_text()


def test_missing_code_parameters_say_what_to_do(paths, caplog) -> None:
    with mock_aws():
        assert boot.main(["sync"]) == 1
    assert f"cannot read the instance code from SSM {PREFIX}/*" in caplog.text


class RawBody:
    """The raw stream botocore reads a response body from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs):
        yield self.data


def test_ssm_throttling_is_retried_with_backoff(ssm, paths, monkeypatch) -> None:
    """moto never throttles: the first five GetParameter calls are answered with AWS's
    ThrottlingException by a botocore hook, as SSM does under load at a fleet's boot."""
    from botocore.awsrequest import AWSResponse

    calls = {"throttled": 0}

    def throttle(request, **kwargs):
        if calls["throttled"] >= 5:  # botocore's default (legacy) mode gives up after 4 retries
            return None
        calls["throttled"] += 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"},
                           RawBody(body))  # fmt: skip

    import botocore.session

    session = botocore.session.get_session()
    session.register("before-send.ssm.GetParameter", throttle)
    monkeypatch.setattr(boot_sync, "aws_session", lambda: session)
    assert boot.main(["sync"]) == 0
    assert calls["throttled"] == 5
    assert (paths.app / "idle_check.py").read_text() == (BOOTSTRAP / "idle_check.py").read_text()


def recording_systemctl(tmp_path: Path, monkeypatch, fail: str = "") -> Path:
    """A systemctl that logs its arguments; `disable` removes the unit's .wants link, as
    systemctl does; a command starting with `fail` exits 1."""
    log = tmp_path / "systemctl.log"
    script = tmp_path / "systemctl"
    wants = tmp_path / "systemd" / "multi-user.target.wants"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {log}\n'
        f'if [ -n "{fail}" ] && [ "$1" = "{fail}" ]; then echo refused >&2; exit 1; fi\n'
        f'if [ "$1" = disable ]; then rm -f "{wants}/$2"; fi\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("JOD_SYSTEMCTL", str(script))
    return log


def plant_previous_ready_unit(paths: layout.Paths) -> Path:
    """What the previous version installed and enabled: its ready unit, linked from the target."""
    (paths.systemd / "multi-user.target.wants").mkdir(parents=True)
    old = paths.systemd / "jupyter-on-demand-ready.service"
    old.write_text("[Service]\nExecStart=/opt/jupyter-on-demand/venv/bin/python boot.py ready\n")
    (paths.systemd / "multi-user.target.wants" / old.name).symlink_to(old)
    return old


def test_an_upgraded_instance_has_the_previous_ready_unit_disabled_and_removed(
    ssm, paths, tmp_path, monkeypatch
) -> None:
    log = recording_systemctl(tmp_path, monkeypatch)
    old = plant_previous_ready_unit(paths)
    assert boot.main(["sync"]) == 0
    assert not old.exists() and not old.is_symlink()
    assert not os.path.lexists(paths.systemd / "multi-user.target.wants" / old.name)
    calls = log.read_text().splitlines()
    assert calls.index(f"disable {old.name}") < calls.index("daemon-reload")
    assert not any(old.name in call for call in calls if call.startswith("enable"))
    log.unlink()
    assert boot.main(["sync"]) == 0  # nothing left to retire, nothing changed
    assert not log.exists()


def test_a_legacy_unit_that_cannot_be_disabled_is_kept_with_its_link_and_said(
    ssm, paths, tmp_path, monkeypatch, caplog
) -> None:
    """A failed disable would leave a dangling .wants link if the file went: both stay."""
    recording_systemctl(tmp_path, monkeypatch, fail="disable")
    old = plant_previous_ready_unit(paths)
    assert boot.main(["sync"]) == 0
    assert old.exists() and (paths.systemd / "multi-user.target.wants" / old.name).exists()
    assert f"could not disable {old.name}" in caplog.text


def test_the_previous_versions_sync_finds_every_unit_it_installs_in_this_bundle(bundle) -> None:
    """At the boot that takes this version, the previous version's sync installs the bundle with
    ITS unit list, which had jupyter-on-demand-ready.service (a KeyError would fail that wake)."""
    data = "".join(bundle[str(i)] for i in range(len(bundle) - 1))
    files = json.loads(gzip.decompress(base64.b64decode(data)))
    for unit in (*layout.UNITS, *boot_sync.LEGACY_UNITS):
        assert unit in files, unit
