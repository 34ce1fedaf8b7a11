"""Helpers to read the Terraform stack offline: parsed HCL, references, and templatefile()."""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

import layout

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infrastructure"
BOOTSTRAP = ROOT / "ec2_bootstrap"
TFVARS_EXAMPLE = ROOT / "terraform.tfvars.example"
TEMPLATE = BOOTSTRAP / "cloud-init.yaml.tftpl"
# The files of ec2_bootstrap/ that user_data ships; locals.tf uses the same fileset() pattern.
BOOTSTRAP_FILESET = "{*.py,*.sh,*.service,*.timer,*.in,*.txt}"
LABEXTENSION_FILESET = "labextensions/**"  # the prebuilt JupyterLab extension, in its folders

META_ARGUMENTS = {
    "count",
    "for_each",
    "depends_on",
    "lifecycle",
    "provider",
    "provisioner",
    "connection",
    "dynamic",
}
CHUNK = layout.BUNDLE_CHUNK_CHARS
# locals.tf comment_line: user_data's copies of the installer's files lose their full-line
# comments (not `#!`). COMMENT_LINE is the same pattern for Python's re.
COMMENT_LINE_HCL = r"/(?m)^[ \\t]*#([^!\\n][^\\n]*)?\\n/"
COMMENT_LINE = re.compile(r"(?m)^[ \t]*#([^!\n][^\n]*)?\n")
# locals.tf docstring: their Python files' docstrings lose their text (each becomes "").
DOCSTRING_HCL = r"/(?s)(^|\\n[ \\t]*)\"\"\"[^\\n].*?\"\"\"/"
DOCSTRING = re.compile(r'(?s)(^|\n[ \t]*)"""[^\n].*?"""')


def user_data_copy(name: str, source: str) -> str:
    """What user_data ships of an installer file: requirements.txt whole, the rest without
    full-line comments, the Python's docstrings blanked too (locals.tf)."""
    if name.endswith(".txt"):
        return source
    stripped = COMMENT_LINE.sub("", source)
    return DOCSTRING.sub(r'\1""', stripped) if name.endswith(".py") else stripped


INTERPOLATION = re.compile(r"\$\{(.*?)\}(?![^{]*\})", re.S)


def terraform() -> str:
    """The terraform binary; a machine without it fails these tests, saying how to get it."""
    path = shutil.which("terraform")
    if path is None:
        pytest.fail(
            "terraform is not on PATH: install Terraform >= 1.11 "
            "(https://developer.hashicorp.com/terraform/install, or the hashicorp apt repository)"
        )
    return path


@functools.cache
def parsed() -> dict[str, dict[str, Any]]:
    """Every .tf file of infrastructure/, parsed by checkov's hcl2 (values come wrapped in lists)."""
    return {path.name: hcl2.loads(path.read_text()) for path in sorted(INFRA.glob("*.tf"))}


def blocks(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every `resource` or `data` block; (name, '', body) for others.
    `data` includes the data sources scoped to a `check` block (preflight.tf)."""
    for tree in parsed().values():
        entries = list(tree.get(kind, []))
        if kind == "data":
            for check in tree.get("check", []):
                for body in check.values():
                    entries += body.get("data", [])
        for entry in entries:
            for first, value in entry.items():
                if kind in ("resource", "data"):
                    for name, body in value.items():
                        yield first, name, body
                else:
                    yield first, "", value


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for name, _, body in blocks("variable")}


def resource(type_name: str, name: str) -> dict[str, Any]:
    """The body of `resource "<type_name>" "<name>"`."""
    return next(body for t, n, body in blocks("resource") if (t, n) == (type_name, name))


def variable_block(name: str) -> str:
    """The variable's HCL, verbatim from variables.tf (a block ends at the first `}` in column 0)."""
    text = (INFRA / "variables.tf").read_text()
    match = re.search(rf'^variable "{name}" \{{\n.*?^\}}\n', text, re.S | re.M)
    assert match, f"variables.tf declares no variable {name}"
    return match.group(0)


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for tree in parsed().values():
        for body in tree.get("locals", []):
            merged.update({k: v for k, v in body.items() if not k.startswith("__")})
    return merged


def unwrap(value: Any) -> Any:
    """checkov's hcl2 wraps attribute values in one-element lists."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def expressions(value: Any) -> Iterator[str]:
    for text in strings(value):
        yield from (match.group(1) for match in re.finditer(r"\$\{(.+)\}", text, re.S))


def tfvars_example() -> dict[str, Any]:
    return {k: unwrap(v) for k, v in hcl2.loads(TFVARS_EXAMPLE.read_text()).items()}


# What user_data ships (locals.tf user_data_files and user_data_units): the installer's modules,
# the fail-safe and the requirements; the idle stop's and the install's units, rendered for the
# default layout (layout.USER_DATA_UNITS).
USER_DATA_FILES = (
    "boot.py", "boot_install.py", "boot_sync.py", "layout.py", "rootfs.py", "idle-failsafe.sh",
    "requirements.txt",
)  # fmt: skip
USER_DATA_UNITS = layout.USER_DATA_UNITS


def console(expression: str) -> str:
    """Evaluate one expression with the real `terraform console` (no providers needed)."""
    with tempfile.TemporaryDirectory() as empty:
        result = console_in_module(Path(empty), "", "", expression)
    if result.returncode != 0:
        raise AssertionError(f"terraform console failed: {result.stderr}")
    return result.stdout.strip()


def console_in_module(
    folder: Path, module: str, tfvars: str, expression: str
) -> subprocess.CompletedProcess[str]:
    """`terraform console` printing `expression` in `folder`, a module whose main.tf is `module`
    (with any other files already in `folder`), its variables set by `tfvars` (a .tfvars text).

    An invalid value is reported on stderr while console still exits 0: the message is the verdict.
    """
    (folder / "main.tf").write_text(module)
    (folder / "test.tfvars").write_text(tfvars)
    return subprocess.run(
        [terraform(), "console", "-no-color", "-var-file=test.tfvars"],
        input=expression,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_with_variable(folder: Path, name: str, tfvars: str) -> subprocess.CompletedProcess[str]:
    """`terraform console` printing `jsonencode(var.<name>)` in `folder`, a module that holds only
    the variable exactly as variables.tf declares it, set by `tfvars`."""
    return console_in_module(folder, variable_block(name), tfvars, f"jsonencode(var.{name})")


def accepted(result: subprocess.CompletedProcess[str]) -> object:
    """The value a console printed with `jsonencode(...)`, after no error."""
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr
    return json.loads(json.loads(result.stdout))


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """A console's refusal of a variable's value, on one line."""
    # terraform console reports an invalid variable but still exits 0: the message is the verdict.
    assert "Invalid value for variable" in result.stderr, result.stdout + result.stderr
    return one_line(result.stderr)


def evaluate_for_each(expression: str, variable: str, values: list[Any]) -> list[Any]:
    """A module's expression (`${...}` as hcl2 reads it) that reads `var.<variable>`, evaluated by
    the real `terraform console` once for each of `values`."""
    # checkov's hcl2 prints the literal null as Python's None.
    body = expression.removeprefix("${").removesuffix("}").replace("None", "null")
    body = body.replace(f"var.{variable}", "v")
    return json.loads(json.loads(console(f"jsonencode([for v in {json.dumps(values)} : {body}])")))


def one_line(text: str) -> str:
    """Terraform's diagnostics, unwrapped (80 columns behind a │ gutter) into one line."""
    return re.sub(r"\s+", " ", " ".join(line.strip(" │╷╵") for line in text.splitlines()))


def render_template(bootstrap_env: dict[str, str], bootstrap_dir: Path = BOOTSTRAP) -> str:
    """Render cloud-init.yaml.tftpl exactly as locals.tf does. bootstrap_env is what user_data
    writes to /etc/jupyter-on-demand/bootstrap.env: AWS_REGION and BOOTSTRAP_PARAMETER_PREFIX
    (locals.tf bootstrap_env); everything else reaches the instance through the settings parameter
    (render_settings)."""
    pairs = ", ".join(f'"{k}" = "{v}"' for k, v in bootstrap_env.items())
    directory = str(bootstrap_dir)
    names = ", ".join(f'"{n}"' for n in USER_DATA_FILES)
    units = ", ".join(f'"{n}"' for n in USER_DATA_UNITS)
    stripped = f'replace(file("{directory}/${{name}}"), "{COMMENT_LINE_HCL}", "")'
    python = f'replace({stripped}, "{DOCSTRING_HCL}", "$1\\"\\"")'
    expression = (
        f'base64encode(templatefile("{directory}/cloud-init.yaml.tftpl", {{'
        f'files = {{ for name in [{names}] : name => endswith(name, ".txt") ? '
        f'file("{directory}/${{name}}") : endswith(name, ".py") ? {python} : {stripped} }}, '
        f"units = {{ for name in [{units}] : name => {stripped} }}, "
        f"bootstrap_env = {{ {pairs} }} }}))"
    )
    return base64.b64decode(console(expression).strip('"')).decode()


def bundle_files(bootstrap_dir: Path = BOOTSTRAP) -> dict[str, str]:
    """{name: content} of what locals.tf's bootstrap_files ships: the top-level files of its
    fileset, and the prebuilt labextension's by their paths in its folders."""
    patterns = BOOTSTRAP_FILESET.strip("{}").split(",")
    top = [p for pattern in patterns for p in bootstrap_dir.glob(pattern)]
    built = [
        p for p in bootstrap_dir.glob(LABEXTENSION_FILESET.replace("**", "**/*")) if p.is_file()
    ]
    assert built, "the prebuilt labextension is missing: make labextension"
    return {p.relative_to(bootstrap_dir).as_posix(): p.read_text() for p in sorted(top + built)}


def render_bundle(bootstrap_dir: Path = BOOTSTRAP) -> dict[str, str]:
    """The SSM parameters (name suffix => value) of the code bundle, exactly as locals.tf builds them."""
    directory = str(bootstrap_dir)
    bundle = (
        f'base64gzip(jsonencode({{ for name in setunion(fileset("{directory}", "{BOOTSTRAP_FILESET}"), '
        f'fileset("{directory}", "{LABEXTENSION_FILESET}")) : name => file("{directory}/${{name}}") }}))'
    )
    expression = (
        f"base64encode(jsonencode({{ sha256 = sha256({bundle}), "
        f"chunks = [for offset in range(0, length({bundle}), {CHUNK}) : substr({bundle}, offset, {CHUNK})] }}))"
    )
    decoded = json.loads(base64.b64decode(console(expression).strip('"')))
    parameters = {str(i): chunk for i, chunk in enumerate(decoded["chunks"])}
    parameters["manifest"] = json.dumps(
        {"chunks": len(decoded["chunks"]), "sha256": decoded["sha256"]}
    )
    return parameters


def render_settings(settings: dict[str, str]) -> str:
    """The value of the SSM parameter <prefix>/settings, as ssm.tf writes it:
    jsonencode(local.instance_config), a JSON object of strings (keys: layout.SETTINGS)."""
    pairs = ", ".join(f'"{k}" = "{v}"' for k, v in settings.items())
    return json.loads(console(f"jsonencode({{ {pairs} }})"))
