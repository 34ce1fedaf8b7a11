"""The rendered user_data: real `terraform console` templatefile, size, cloud-init schema, content."""

from __future__ import annotations

import ast
import gzip
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.infrastructure.terraform import (
    BOOTSTRAP,
    USER_DATA_FILES,
    USER_DATA_UNITS,
    render_template,
)

# user_data says only where the rest is; the settings come from SSM at every boot (boot.py sync).
BOOTSTRAP_ENV = {
    "AWS_REGION": "us-east-1",
    "BOOTSTRAP_PARAMETER_PREFIX": "/jupyter-on-demand/bootstrap",
}
EC2_USER_DATA_LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def user_data() -> str:
    return render_template(BOOTSTRAP_ENV)


def test_gzipped_user_data_fits_the_ec2_limit(user_data: str) -> None:
    size = len(gzip.compress(user_data.encode(), compresslevel=6))
    assert size <= EC2_USER_DATA_LIMIT, f"{size} bytes gzipped"


def test_the_installer_files_are_shipped_byte_for_byte(user_data: str) -> None:
    document = yaml.safe_load(user_data)
    written = {entry["path"]: entry["content"] for entry in document["write_files"]}
    for name in USER_DATA_FILES:
        assert written[f"/opt/jupyter-on-demand/{name}"] == (BOOTSTRAP / name).read_text(), name
    for name in USER_DATA_UNITS:
        assert written[f"/etc/systemd/system/{name}"] == (BOOTSTRAP / name).read_text(), name
    bootstrap = written["/etc/jupyter-on-demand/bootstrap.env"]
    assert bootstrap == "".join(f"{k}={v}\n" for k, v in sorted(BOOTSTRAP_ENV.items()))  # sorted
    # boot.py writes config.env from the settings in SSM: a setting never changes user_data.
    assert "/etc/jupyter-on-demand/config.env" not in written
    assert {entry["path"] for entry in document["write_files"]} == {
        "/etc/jupyter-on-demand/bootstrap.env",
        *(f"/opt/jupyter-on-demand/{name}" for name in USER_DATA_FILES),
        *(f"/etc/systemd/system/{name}" for name in USER_DATA_UNITS),
    }


def test_user_data_starts_the_idle_stop_first_then_the_retried_install_unit(
    user_data: str,
) -> None:
    assert user_data.startswith("#cloud-config\n")
    document = yaml.safe_load(user_data)
    assert document["runcmd"] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "jupyter-on-demand-idle.timer"],
        ["systemctl", "enable", "jupyter-on-demand-install.service"],  # again at every boot
        ["systemctl", "start", "--no-block", "jupyter-on-demand-install.service"],
    ]


def imported_modules(nodes: list[ast.stmt] | ast.AST) -> set[str]:
    found = set()
    for node in nodes if isinstance(nodes, list) else ast.walk(nodes):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add((node.module or "").split(".")[0])
    return found


def test_what_runs_on_the_system_python_needs_only_the_standard_library() -> None:
    """user_data's installer runs before any venv exists (its boto3 is imported inside the
    functions that run in the venv); the idle checker always runs on the system Python."""
    ours = {"layout", "__future__", "boot_secrets"}
    for name, scope in (("boot.py", "module"), ("layout.py", "all"), ("idle_check.py", "all")):
        tree = ast.parse((BOOTSTRAP / name).read_text())
        modules = imported_modules(tree.body if scope == "module" else tree)
        outside = {m for m in modules if m not in sys.stdlib_module_names and m not in ours}
        assert not outside, f"{name} imports {outside}"
    service = (BOOTSTRAP / "jupyter-on-demand-idle.service").read_text()
    assert "ExecStart=/usr/bin/python3 /opt/jupyter-on-demand/idle_check.py --instance" in service
    assert "ExecStopPost=/bin/bash /opt/jupyter-on-demand/idle-failsafe.sh" in service
    for dependency in ("Requires=", "After=", "EnvironmentFile=", "/venv/"):
        assert dependency not in service, dependency


def test_cloud_init_schema_accepts_it(user_data: str, tmp_path) -> None:
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        pytest.skip("cloud-init is not installed (apt-get install cloud-init)")
    path = tmp_path / "user-data"
    path.write_text(user_data)
    result = subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Valid (cloud-config|schema)", result.stdout + result.stderr)


def test_user_data_holds_no_secret(user_data: str) -> None:
    lowered = user_data.lower()
    for marker in ("ghp_", "github_pat_", "argon2:", "aws_secret_access_key", "password="):
        assert marker not in lowered
    # Not even the parameter names: bootstrap.env holds the region and the SSM prefix only.
    assert "/jupyter-on-demand/team-pass" not in user_data


def test_shell_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    root = BOOTSTRAP.parent
    scripts = [
        *root.glob("ec2_bootstrap/*.sh"),
        *root.glob("scripts/*.sh"),
        root / ".ci" / "run",
        *root.glob("tests/vm/*.sh"),
    ]
    result = subprocess.run(
        [shellcheck, *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
