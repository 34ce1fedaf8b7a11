"""The project's Jupyter config, run for real: TLS on and off, password login only, fail closed;
and the server jupyter-on-demand.service starts: lean (only the extensions the team uses, no
unused import, no call to the internet) with everything the team and the idle checker use."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

import jupyter_extensions
from tests.support.jupyter import (
    CONFIG,
    PASSWORD,
    ROOT_FLAG,
    Jupyter,
    free_port,
    hashed,
    jupyter_folders,
    login,
    running_jupyter,
    start_in_session,
    stop_process_group,
    wait_until_up,
)
from tests.support.kernels import execute

BOOTSTRAP = Path(CONFIG).parent
UNIT = BOOTSTRAP / "jupyter-on-demand.service"
APP_DIR = "/opt/jupyter-on-demand/"  # where boot.py sync puts ec2_bootstrap/ on the instance


@pytest.mark.parametrize("tls", [True, False], ids=["tls-on", "tls-off"])
def test_jupyter_serves_with_the_team_password(tmp_path, tls: bool) -> None:
    with running_jupyter(tmp_path / "root", tmp_path / "work", tls=tls) as jupyter:
        assert jupyter.url.startswith("https://" if tls else "http://")
        good = login(jupyter.url, PASSWORD)
        assert good.get(f"{jupyter.url}/api/contents", verify=False, timeout=10).status_code == 200
        bad = login(jupyter.url, "not-the-password")
        assert bad.get(f"{jupyter.url}/api/contents", verify=False, timeout=10).status_code == 403
        if tls:
            with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP is refused
                requests.get(f"{jupyter.url.replace('https', 'http')}/api/status", timeout=5)


def test_the_token_works_in_a_header_but_never_in_a_url(tmp_path) -> None:
    with running_jupyter(tmp_path / "root", tmp_path / "work") as jupyter:
        in_url = requests.get(
            f"{jupyter.url}/api/contents", params={"token": jupyter.token}, timeout=10
        )
        assert in_url.status_code == 403
        assert jupyter.api("GET", "/api/contents").status_code == 200


def test_password_change_from_the_login_page_is_off(tmp_path) -> None:
    with running_jupyter(tmp_path / "root", tmp_path / "work") as jupyter:
        session = requests.Session()
        session.get(f"{jupyter.url}/login", timeout=10)
        session.post(
            f"{jupyter.url}/login",
            data={
                "password": jupyter.token,
                "new_password": "hijacked-pass",
                "_xsrf": session.cookies.get("_xsrf"),
            },
            timeout=10,
            allow_redirects=False,
        )
        assert (
            not login(jupyter.url, "hijacked-pass")
            .get(f"{jupyter.url}/api/contents", timeout=10)
            .ok
        )
        assert not list((tmp_path / "work" / "config").glob("jupyter_server_config.json"))


def test_jupyter_refuses_to_start_without_a_password_hash(tmp_path) -> None:
    env = {
        **os.environ,
        "JUPYTER_HASHED_PASSWORD": "",
        "JUPYTER_PORT": "0",
        "JUPYTER_RUNTIME_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "jupyterlab", f"--config={CONFIG}", "--no-browser", *ROOT_FLAG],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "JUPYTER_HASHED_PASSWORD is not set" in result.stderr + result.stdout


def test_kernels_do_not_inherit_the_password_hash_or_the_token(tmp_path) -> None:
    with running_jupyter(tmp_path / "root", tmp_path / "work") as jupyter:
        out = tmp_path / "env.txt"
        execute(jupyter, f"import os; open({str(out)!r}, 'w').write(' '.join(sorted(os.environ)))")
        names = out.read_text().split()
        assert "JUPYTER_ROOT_DIR" in names  # the kernel did see the server's environment
        assert "JUPYTER_TOKEN" not in names and "JUPYTER_HASHED_PASSWORD" not in names


def rendered_unit() -> list[str]:
    """The unit's lines as `boot.py sync` renders its template for the instance's default layout
    (the unit file beside the template: test_user_data.py keeps it so)."""
    return UNIT.read_text().splitlines()


def unit_environment() -> dict[str, str]:
    """The variables of the unit's Environment= lines (one line may set several, quoted)."""
    values = [line.removeprefix("Environment=") for line in rendered_unit()
              if line.startswith("Environment=")]  # fmt: skip
    return dict(pair.split("=", 1) for value in values for pair in shlex.split(value))


def unit_command() -> list[str]:
    """The unit's ExecStart, with the instance's paths mapped to this checkout and this venv."""
    line = next(line for line in rendered_unit() if line.startswith("ExecStart="))
    venv_bin = f"{Path(sys.executable).parent}/"
    return [
        word.replace(f"{APP_DIR}venv/bin/", venv_bin).replace(APP_DIR, f"{BOOTSTRAP}/")
        for word in shlex.split(line.removeprefix("ExecStart="))
    ]


@contextmanager
def running_unit(work: Path, env: dict[str, str] | None = None) -> Iterator[Jupyter]:
    """The unit's command on 127.0.0.1, with the environment the demo's `jupyter lab` gets."""
    port, token = free_port(), secrets.token_hex(16)
    (work / "root").mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "JUPYTER_IP": "127.0.0.1",
        "JUPYTER_PORT": str(port),
        "JUPYTER_ROOT_DIR": str(work / "root"),
        "JUPYTER_TOKEN": token,
        "JUPYTER_HASHED_PASSWORD": hashed(),
        **jupyter_folders(work),
        **(env or {}),
    }
    for name in ("JUPYTER_CERTFILE", "JUPYTER_KEYFILE"):
        environment.pop(name, None)
    log = work / "jupyter.log"
    process = start_in_session([*unit_command(), "--no-browser", *ROOT_FLAG], environment, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, token, process, log)
        yield Jupyter(url, token, work / "root", work / "activity.json", process, log)
    finally:
        stop_process_group(process)


@pytest.fixture(scope="module")
def unit_jupyter(tmp_path_factory) -> Iterator[Jupyter]:
    with running_unit(tmp_path_factory.mktemp("unit")) as jupyter:
        yield jupyter


def loaded_extensions(log: str) -> set[str]:
    """The server extensions Jupyter Server says it loaded, from its own log lines."""
    return set(re.findall(r"\] (\S+) \| extension was successfully loaded", log))


def page_config(jupyter: Jupyter) -> dict:
    """The page config the JupyterLab page gets (what its front end decides from)."""
    page = jupyter.api("GET", "/lab")
    page.raise_for_status()
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                      page.text, re.S)  # fmt: skip
    assert match, page.text[:500]
    return json.loads(match.group(1))


def test_the_unit_starts_only_the_server_extensions_the_team_uses(unit_jupyter) -> None:
    assert loaded_extensions(unit_jupyter.logs()) == {
        "jupyter_extensions",
        "jupyterlab",
        "jupyter_server_terminals",
    }


def test_the_unit_records_every_kind_of_interaction_it_knows(unit_jupyter) -> None:
    """The extension listens to each event and wraps each method (jupyter_activity) in the server
    the unit starts too, where jupyter_extensions.py is also the process's __main__."""
    logs = unit_jupyter.logs()
    assert "jupyter-on-demand: recording real interaction in" in logs
    assert "goes unrecorded" not in logs


def test_no_language_server_api_is_served(unit_jupyter) -> None:
    assert unit_jupyter.api("GET", "/lsp/status").status_code == 404


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (("news", "disabled"), True),  # no feed fetched from jupyterlab.github.io
        (("extensionManager", "can_install"), False),  # no PyPI search or install
        (("extensionManager", "name"), "read-only"),
    ],
    ids=["no-news-feed", "no-extension-installs", "read-only-extension-manager"],
)
def test_jupyterlab_is_told_not_to_call_the_internet(unit_jupyter, setting, expected) -> None:
    section, key = setting
    assert page_config(unit_jupyter)[section][key] == expected


def test_jupyterlab_never_asks_pypi_for_a_newer_version(monkeypatch) -> None:
    """Checked on the config, not the server: asking a server that does check would reach pypi.org."""
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("JUPYTER_HASHED_PASSWORD", hashed())
    monkeypatch.setenv("JUPYTER_AUTOSAVE", "0")
    from jupyterlab import NeverCheckForUpdate
    from jupyterlab.labapp import LabApp

    config = PyFileConfigLoader(Path(CONFIG).name, path=str(BOOTSTRAP)).load_config()
    assert LabApp(config=config).check_for_updates_class is NeverCheckForUpdate


@pytest.mark.parametrize(
    "path", ["/api/status", "/api/sessions", "/api/kernels", "/api/terminals", "/api/contents"]
)
def test_the_unit_serves_what_the_idle_checker_reads_with_the_token(unit_jupyter, path) -> None:
    assert unit_jupyter.api("GET", path).status_code == 200


def test_the_unit_serves_the_team_password_login(unit_jupyter) -> None:
    good = login(unit_jupyter.url, PASSWORD)
    assert good.get(f"{unit_jupyter.url}/api/contents", timeout=10).status_code == 200
    bad = login(unit_jupyter.url, "not-the-password")
    assert bad.get(f"{unit_jupyter.url}/api/contents", timeout=10).status_code == 403


def test_the_idle_checker_tells_the_units_server_from_a_users_process(unit_jupyter) -> None:
    """The checker ignores the server's own CPU (an open tab's polling) by its command line."""
    import idle_check

    server = idle_check.read_proc(unit_jupyter.process.pid)
    assert server is not None
    assert idle_check.JUPYTER_SERVER.search(server.cmdline)


def test_the_unit_serves_terminals(unit_jupyter) -> None:
    created = unit_jupyter.api("POST", "/api/terminals")
    assert created.status_code == 200
    name = created.json()["name"]
    assert name in [t["name"] for t in unit_jupyter.api("GET", "/api/terminals").json()]
    assert unit_jupyter.api("DELETE", f"/api/terminals/{name}").status_code == 204


def test_the_unit_never_imports_the_format_checkers_jupyter_does_not_use(tmp_path) -> None:
    """rfc3987_syntax compiles ~40 parsers at import (half of a start), isoduration brings arrow,
    and no Jupyter schema uses the formats they and the other optional checkers check. (The
    trace lists a left-out module itself, with no time: its submodules show it was not loaded.)"""
    with running_unit(tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"}) as jupyter:
        assert login(jupyter.url, PASSWORD).get(f"{jupyter.url}/api/status", timeout=10).ok
    imported = re.findall(r"^import time:.*\| +(\S+)$", jupyter.logs(), re.M)
    assert "jupyterlab.labapp" in imported  # the trace covers the server's imports
    assert "jsonschema._format" in imported
    for name in ("rfc3987_syntax.syntax_helpers", "lark", "isoduration.parser", "arrow",
                 "webcolors._definitions", "uri_template.uritemplate", "fqdn._compat"):  # fmt: skip
        assert name not in imported
    # Each one, the single-module ones too, in the launcher's own way.
    script = (
        "import sys, jupyter_extensions as j; j.leave_out_unused_imports(); "
        "import jupyterlab.labapp, jsonschema; "
        "print([n for n in j.UNUSED_IMPORTS if sys.modules[n] is not None])"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=BOOTSTRAP, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"


def test_the_launcher_imports_with_the_cyclic_gc_off_and_launches_with_it_on(monkeypatch) -> None:
    """Jupyter's imports create ~100 000 objects that all stay alive: the cyclic garbage collector
    only costs them time (about 7 % of the import under emulation). It is back on before Jupyter
    reads its config or serves anything."""
    import gc

    from jupyterlab.labapp import LabApp

    seen: list[tuple[str, bool]] = []
    monkeypatch.delenv("JOD_WAIT_FOR_WAKE", raising=False)
    monkeypatch.setattr(jupyter_extensions, "leave_out_unused_imports",
                        lambda: seen.append(("imports", gc.isenabled())))  # fmt: skip
    monkeypatch.setattr(LabApp, "launch_instance",
                        classmethod(lambda cls, argv: seen.append(("launch", gc.isenabled()))))  # fmt: skip
    assert gc.isenabled()
    assert jupyter_extensions.main(["jupyter-lab", "--no-browser"]) == 0
    assert seen == [("imports", False), ("launch", True)]
    assert gc.isenabled()


def test_the_format_checkers_left_out_are_the_optional_ones_of_formats_jupyter_does_not_use() -> (
    None
):
    """Each module UNUSED_IMPORTS leaves out but argcomplete is one jsonschema imports
    `with suppress(ImportError)` for a format checker, and no schema the server loads names one
    of those formats: Jupyter's event and settings schemas (jupyter_lsp's, which does, is off in
    the project's config). The JSON Schema metaschemas' "uri-reference" on `$id` goes unchecked in
    schemas Jupyter ships."""
    import jsonschema._format
    import traitlets.config.argcomplete_config

    source = Path(jsonschema._format.__file__).read_text()
    for name in set(jupyter_extensions.UNUSED_IMPORTS) - {"argcomplete"}:
        pattern = rf"with suppress\(ImportError\):\n(?:    .*\n)*?    +(from {name} import|import {name}\b)"
        assert re.search(pattern, source), name
    # argcomplete: traitlets' optional shell completion, written for its absence too.
    source = Path(traitlets.config.argcomplete_config.__file__).read_text()
    assert re.search(r"\ntry:\n    import argcomplete\n(?:    .*\n)*except ImportError:\n", source)
    unchecked = {"duration", "color", "uri-template", "hostname", "json-pointer",
                 "relative-json-pointer", "date-time", "uri", "uri-reference", "iri", "iri-reference"}  # fmt: skip
    site = Path(jsonschema._format.__file__).parents[1]
    shipped = [
        path
        for folder in (site, Path(sys.prefix) / "share" / "jupyter" / "lab")
        for pattern in ("jupyter*/**/*.json", "jupyter*/**/*.yaml", "schemas/**/*.json")
        for path in folder.glob(pattern)
        if "jupyter_lsp" not in path.parts
    ]
    assert len(shipped) > 20
    used: set[str] = set()
    for path in shipped:
        used |= set(re.findall(r'"?format"?\s*:\s*"?([\w-]+)', path.read_text(errors="replace")))
    assert not used & unchecked, used & unchecked
    assert '\n    "jupyter_lsp": False,\n' in CONFIG.read_text()


def test_a_jupyter_config_planted_in_the_home_never_runs_in_the_server(tmp_path) -> None:
    """A notebook can write ~/.jupyter/jupyter_config.py; the unit points Jupyter's config path
    at root's folder, so it never runs (it would at every boot, with no process to see)."""
    environment = unit_environment()
    assert environment["JUPYTER_CONFIG_DIR"].startswith("/opt/jupyter-on-demand/")
    home = tmp_path / "home"
    marker = tmp_path / "planted-config-ran"
    (home / ".jupyter").mkdir(parents=True)
    (home / ".jupyter" / "jupyter_config.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (home / ".jupyter" / "jupyter_server_config.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
    )
    (home / ".ipython").mkdir()  # kernels make it; then jupyter_core wants to migrate config
    config_dir = tmp_path / "jupyter-config"  # as `boot.py sync` makes it, in place of /opt's
    config_dir.mkdir()
    (config_dir / "migrated").write_text("not migrated\n")
    env = {"HOME": str(home), "JUPYTER_CONFIG_DIR": str(config_dir)}
    with running_jupyter(tmp_path / "root", tmp_path / "work", env=env) as jupyter:
        assert login(jupyter.url, PASSWORD).get(f"{jupyter.url}/api/status", timeout=10).ok
    assert not marker.exists()
