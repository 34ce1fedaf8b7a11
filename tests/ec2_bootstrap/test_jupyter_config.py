"""The project's Jupyter config, run for real: TLS on and off, password login only, fail closed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from demo.jupyter import CONFIG, PASSWORD, ROOT_FLAG, login, running_jupyter
from tests.support.kernels import execute


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


def unit_environment() -> dict[str, str]:
    unit = (Path(CONFIG).parent / "jupyter-on-demand.service").read_text()
    pairs = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Environment=")]
    return dict(pair.split("=", 1) for pair in pairs)


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
