"""How long the project's boot steps add to a wake, measured locally (root, as CI runs).

    PYTHONPATH=ec2_bootstrap .venv/bin/python -m tests.ec2_bootstrap.wake_timing --wake wake --runs 7
    PYTHONPATH=ec2_bootstrap .venv/bin/python -m tests.ec2_bootstrap.wake_timing \
        --bootstrap /tmp/old/ec2_bootstrap \
        --wake sync,secrets --runs 7

A throw-away instance layout as on the machine (the user_data files in the app folder, the code
bundle, the settings and both secrets in a moto server, a git smart-HTTP remote, a real
unprivileged service user, the system Python's venv): the first boot runs `install` and the wake
steps once; every later wake runs `install` (which returns at once) and the wake steps, each as
its own process, as the units do. Prints the median seconds of each step and of all of them (all_steps) over
`--runs` wakes. The wake steps are those of the units of the version measured: `sync,secrets`
(the secrets unit's ExecStartPre and ExecStart before the one-process wake), `wake,ready` (the
secrets and the ready unit) after it, `wake` once the wake also tags the instance ready. A
stand-in for Jupyter (HTTPS, answers every GET with 200) listens on the settings' port, so the
ready wait ends at its first poll: what is measured is the steps' own work.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import requests

import layout
from demo.git_remote import GitRemote
from tests.infrastructure.terraform import render_bundle
from tests.support.ssm import PREFIX, put_bundle, put_secrets, put_settings, settings_for
from tests.support.system_python import system_python_version, system_venv, wheelhouse

USER = "jod-wake-timing"
TOKEN = "ghp_wake_timing_token_0123456789"
ROOT = Path(__file__).resolve().parents[2]


def ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/bash", USER], check=True
        )


@contextmanager
def standin_jupyter(folder: Path) -> Iterator[int]:
    """An HTTPS server on loopback answering 200 (what the ready step polls): its port."""
    cert, key = folder / "standin.crt", folder / "standin.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def measure(
    bootstrap: Path, wake: list[str], runs: int, profile: Path | None = None
) -> dict[str, float]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    ensure_user()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto's, for this process
        os.environ.setdefault(key, "testing")
    python = system_venv()
    root = Path(tempfile.mkdtemp(prefix="jod-wake-timing-", dir="/var/tmp"))
    root.chmod(0o755)
    home = root / "home"
    home.mkdir()
    user = pwd.getpwnam(USER)
    os.chown(home, user.pw_uid, user.pw_gid)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto.get_host_and_port()[1]}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)
    remote = GitRemote(root / "remote", token=TOKEN)
    jupyter = standin_jupyter(root)
    port = jupyter.__enter__()
    try:
        ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=endpoint)
        put_secrets(ssm, "the-team-password", TOKEN)
        put_bundle(ssm, PREFIX, render_bundle(bootstrap))
        settings = settings_for(remote.url, JUPYTER_PORT=str(port))
        put_settings(ssm, PREFIX, settings)
        etc = root / "etc"
        etc.mkdir()
        site = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "INSTANCE_ID": "i-0123456789abcdef0",
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(wheelhouse(system_python_version())),
        }
        where = {"AWS_REGION": "us-east-1", "BOOTSTRAP_PARAMETER_PREFIX": PREFIX}
        (etc / "bootstrap.env").write_text(layout.env_file(where))
        (etc / "local.env").write_text(layout.env_file(site))
        # What user_data wrote before bootstrap.env: the version measured may read only this.
        config = layout.config_values(where, settings, site)
        (etc / "config.env").write_text(layout.env_file(config))
        app = root / "app"
        app.mkdir()
        # The installer of the version measured (whatever its user_data ships is among these;
        # the first sync writes the same files again).
        for path in bootstrap.iterdir():
            if path.is_file():
                shutil.copy(path, app / path.name)
        (app / "venv").symlink_to(python.parent.parent)
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "JOD_CONFIG": str(etc / "config.env"),
            "JOD_ETC_DIR": str(etc),
            "JOD_STATE_DIR": str(root / "state"),
            "JOD_APP_DIR": str(app),
            "JOD_HOME": str(home),
            "JOD_USER": USER,
            "JOD_SYSTEMD_DIR": str(root / "systemd"),
            "JOD_SYSTEMCTL": "true",
            "JOD_SYSTEM_ETC": str(root / "system-etc"),
            "JOD_RUN_DIR": str(root / "run"),
        }

        def step(name: str, profiled: bool = False) -> float:
            interpreter = "/usr/bin/python3" if name == "install" else str(python)
            flags = []
            if profiled and profile is not None:  # cProfile's own overhead: not timed
                profile.mkdir(parents=True, exist_ok=True)
                flags = ["-X", "importtime", "-m", "cProfile", "-o", str(profile / f"{name}.prof")]
            started = time.perf_counter()
            result = subprocess.run(
                [interpreter, *flags, str(app / "boot.py"), name],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            elapsed = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(f"boot.py {name} failed:\n{result.stderr}")
            if flags:
                (profile / f"{name}.importtime").write_text(result.stderr)
            return elapsed

        first = {name: step(name) for name in ["install", *wake]}
        samples: dict[str, list[float]] = {name: [] for name in ["install", *wake, "all_steps"]}
        for _ in range(runs):
            times = {name: step(name) for name in ["install", *wake]}
            for name, seconds in times.items():
                samples[name].append(seconds)
            samples["all_steps"].append(sum(times.values()))
        if profile is not None:
            for name in ["install", *wake]:
                step(name, profiled=True)
        figures = {f"first_boot_{name}_s": seconds for name, seconds in first.items()}
        figures |= {f"{name}_median_s": statistics.median(s) for name, s in samples.items()}
        return figures
    finally:
        jupyter.__exit__(None, None, None)
        remote.stop()
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["userdel", USER], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=Path, default=ROOT / "ec2_bootstrap")
    parser.add_argument("--wake", default="wake", help="the wake steps, comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--profile",
        type=Path,
        help="after the timed wakes, one more under cProfile and -X importtime, into this folder",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the steps create a user and run as root, as on the machine")
    figures = measure(args.bootstrap.resolve(), args.wake.split(","), args.runs, args.profile)
    for name, seconds in figures.items():
        print(f"{name}: {seconds:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
