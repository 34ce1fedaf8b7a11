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

import layout
from tests.infrastructure.terraform import (
    BOOTSTRAP,
    COMMENT_LINE,
    COMMENT_LINE_HCL,
    DOCSTRING_HCL,
    INFRA,
    USER_DATA_FILES,
    render_template,
    user_data_copy,
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
    defaults = layout.Paths.from_env({})  # cloud-init writes to the default layout
    app, systemd = defaults.app, defaults.systemd
    for name in USER_DATA_FILES:
        shipped, source = written[f"{app}/{name}"], (BOOTSTRAP / name).read_text()
        if name == "requirements.txt":  # whole: the install's fingerprint hashes it
            assert shipped == source
            continue
        # Without its full-line comments and docstrings' text (EC2's cap), and nothing else.
        assert shipped == user_data_copy(name, source), name
        if name.endswith(".py"):  # the same program: the same syntax tree, docstrings blanked
            assert syntax_tree(shipped) == syntax_tree(source), name
            assert len(shipped) < len(COMMENT_LINE.sub("", source)), name
        assert not any(line.lstrip().startswith("#") for line in shipped.splitlines()[1:]), name
    bootstrap = written["/etc/jupyter-on-demand/bootstrap.env"]
    assert bootstrap == "".join(f"{k}={v}\n" for k, v in sorted(BOOTSTRAP_ENV.items()))  # sorted
    # boot.py writes config.env from the settings in SSM: a setting never changes user_data.
    assert "/etc/jupyter-on-demand/config.env" not in written
    # The idle stop's and the install's units, as the sync renders them for the default layout
    # (the unit files beside their templates), without comments: nothing to run before them.
    for name in layout.USER_DATA_UNITS:
        source = (BOOTSTRAP / name).read_text()
        assert written[f"{systemd}/{name}"] == COMMENT_LINE.sub("", source), name
    assert {entry["path"] for entry in document["write_files"]} == {
        "/etc/jupyter-on-demand/bootstrap.env",
        *(f"{app}/{name}" for name in USER_DATA_FILES),
        *(f"{systemd}/{name}" for name in layout.USER_DATA_UNITS),
    }


def test_the_unit_files_are_their_templates_rendered_for_the_default_layout() -> None:
    """What user_data writes and an older version's sync installs by these names; `boot.py
    sync` renders the templates for its layout, which on an instance is this one."""
    import boot_install

    defaults = layout.Paths.from_env({})
    values = layout.unit_values(defaults, boot_install.install_condition(defaults))
    for name in layout.UNITS:
        template = (BOOTSTRAP / f"{name}{layout.TEMPLATE_SUFFIX}").read_text()
        assert (BOOTSTRAP / name).read_text() == layout.render_unit(name, template, values), (
            f"ec2_bootstrap/{name} is out of date: run `make units`"
        )


def syntax_tree(source: str) -> str:
    """The module's syntax tree with every docstring's text blanked."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    first.value.value = ""
    return ast.dump(tree)


def test_the_tests_strip_comments_and_docstrings_as_locals_tf_does() -> None:
    locals_tf = (INFRA / "locals.tf").read_text()
    assert re.search(rf'\n\s*comment_line\s*=\s*"{re.escape(COMMENT_LINE_HCL)}"\n', locals_tf)
    assert re.search(rf'\n\s*docstring\s*=\s*"{re.escape(DOCSTRING_HCL)}"\n', locals_tf)


def test_the_syntax_tree_check_sees_a_blanked_string_that_is_no_docstring() -> None:
    """The pattern also blanks a triple-quoted string that starts a line but is no docstring;
    the installer has none, and the syntax-tree check above fails on one (a closing quote on a
    line of its own is never taken for an opening one)."""
    source = 'def f():\n    """Doc\n    more.\n    """\n    return (\n        """data"""\n    )\n'
    shipped = user_data_copy("x.py", source)
    assert shipped.startswith('def f():\n    ""\n    return')
    assert syntax_tree(shipped) != syntax_tree(source)
    assert syntax_tree(shipped.replace('(\n        ""', '(\n        """data"""')) == syntax_tree(
        source
    )


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
    functions that run in the venv); the idle checker and the spot watcher always run on the
    system Python, with the metadata client they share."""
    ours = {"__future__", "boot", "boot_install", "boot_sync", "layout", "rootfs"}
    idle_checker = [path.name for path in BOOTSTRAP.glob("idle_*.py")]
    assert "idle_check.py" in idle_checker
    idle_checker += ["imds.py", "spot_watch.py"]
    ours |= {name.removesuffix(".py") for name in idle_checker}
    installer = [name for name in USER_DATA_FILES if name.endswith(".py")]
    for name, scope in [*((n, "module") for n in installer), *((n, "all") for n in idle_checker)]:
        tree = ast.parse((BOOTSTRAP / name).read_text())
        modules = imported_modules(tree.body if scope == "module" else tree)
        outside = {m for m in modules if m not in sys.stdlib_module_names and m not in ours}
        assert not outside, f"{name} imports {outside}"
    # What the installer imports at module level, user_data ships (the bundle isn't there yet).
    for name in installer:
        module_level = imported_modules(ast.parse((BOOTSTRAP / name).read_text()).body) & ours
        assert {f"{m}.py" for m in module_level - {"__future__"}} <= set(installer), name
    service = (BOOTSTRAP / layout.IDLE_SERVICE).read_text()
    assert "ExecStart=/usr/bin/python3 /opt/jupyter-on-demand/idle_check.py --instance" in service
    assert "ExecStopPost=/bin/bash /opt/jupyter-on-demand/idle-failsafe.sh" in service
    for dependency in ("Requires=", "After=", "EnvironmentFile=", "/venv/"):
        assert dependency not in service, dependency


def test_cloud_init_schema_accepts_it(user_data: str, tmp_path) -> None:
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        pytest.fail("cloud-init is not installed (apt-get install cloud-init)")
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
        pytest.fail("shellcheck is not installed (apt-get install shellcheck)")
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
