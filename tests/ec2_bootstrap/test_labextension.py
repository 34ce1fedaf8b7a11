"""The prebuilt JupyterLab extension that ships (ec2_bootstrap/labextensions/) is exactly what its
source (ec2_bootstrap/labextension/) builds: real `npm ci` from the npm registry and the real
`jupyter labextension build`, in a temporary copy of the source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "ec2_bootstrap" / "labextension"
SHIPPED = ROOT / "ec2_bootstrap" / "labextensions" / "jupyter-on-demand"
NAME = "jupyter-on-demand"
# The build tree of the source: never copied, `npm ci` and `tsc` make them again.
BUILD_TREE = {"node_modules", "lib"}


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def node_tools() -> dict[str, str]:
    """node and npm; a machine without them fails, saying how to get them."""
    tools = {tool: shutil.which(tool) for tool in ("node", "npm")}
    missing = [tool for tool, path in tools.items() if path is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not on PATH: the JupyterLab extension builds with Node.js "
            ">= 18 and npm (apt-get install nodejs npm, or https://nodejs.org/en/download)"
        )
    return {tool: str(path) for tool, path in tools.items()}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` failed ({result.returncode}) in {cwd}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def test_shipped_build_names_the_extension_and_its_entry() -> None:
    package = json.loads((SHIPPED / "package.json").read_text())
    assert package["name"] == NAME
    load = package["jupyterlab"]["_build"]["load"]
    assert load.startswith("static/remoteEntry."), load
    assert (SHIPPED / load).is_file(), f"{load} is missing: run make labextension and commit"


def test_shipped_build_is_what_the_source_builds(tmp_path: Path) -> None:
    tools = node_tools()
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "jupyter-labextension").exists():
        pytest.fail(f"no jupyter-labextension beside {sys.executable}: run make setup")
    source = tmp_path / "ec2_bootstrap" / "labextension"
    shutil.copytree(
        SOURCE, source, ignore=lambda folder, _: BUILD_TREE if Path(folder) == SOURCE else set()
    )
    env = {**os.environ, "PATH": os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")])}

    run([tools["npm"], "ci"], source, env)
    run([tools["npm"], "run", "build"], source, env)

    built = files_of(tmp_path / "ec2_bootstrap" / "labextensions" / NAME)
    shipped = files_of(SHIPPED)
    differing = sorted(
        name for name in built.keys() | shipped.keys() if built.get(name) != shipped.get(name)
    )
    assert not differing, (
        f"the committed {SHIPPED.relative_to(ROOT)} is not what its source builds; these files "
        f"differ (or exist on one side only): {', '.join(differing)}. "
        "Run make labextension and commit the result."
    )
