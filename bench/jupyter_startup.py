"""Jupyter's start: from the process's start to its port accepting TCP, as on a wake.

Three commands, interleaved, RUNS times each, in the same run:
- the project's server as jupyter-on-demand.service starts it (its ExecStart: the project's
  config, started by jupyter_extensions.main);
- `jupyter lab --config=<the project's config>`: the same config with the stock launcher, which
  imports the IRI grammar jupyter_extensions.UNUSED_IMPORTS skips (what the unit ran before);
- baseline: a stock `jupyter lab` (no config file, an empty config folder, only the flags a test
  needs), what any JupyterLab install of the same versions takes.

The port is polled every 10 ms; each start is bounded (TIMEOUT) and stopped with SIGTERM.
Where node is on PATH, JupyterLab asks yarn for its registry at import (~0.3 s on this machine)
in all three; the figures say whether it was.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import report
from tests.ec2_bootstrap.test_jupyter_config import unit_command
from tests.support.jupyter import CONFIG, ROOT_FLAG, free_port, hashed, stop_process_group

RUNS = 5
TIMEOUT = 60.0
POLL = 0.01


def time_to_listen(command: list[str], work: Path, env: dict[str, str], port: int) -> float:
    """Seconds from Popen to the first accepted TCP connection on 127.0.0.1:port."""
    log = work / "jupyter.log"
    with log.open("w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while True:
            elapsed = time.perf_counter() - start
            if process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited:\n{log.read_text()[-2000:]}")
            if elapsed > TIMEOUT:
                raise RuntimeError(f"{command[:3]} not listening after {TIMEOUT} s")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return elapsed
            except OSError:
                time.sleep(POLL)
    finally:
        stop_process_group(process)


def one_start(kind: str, folder: Path, password_hash: str) -> float:
    work = Path(tempfile.mkdtemp(dir=folder))
    (work / "root").mkdir()
    port = free_port()
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_DATA_DIR": str(work / "data"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
    }
    if kind == "stock_lab":
        command = [str(venv_bin / "jupyter"), "lab", "--ip=127.0.0.1", f"--port={port}",
                   f"--ServerApp.root_dir={work / 'root'}", "--IdentityProvider.token=bench"]  # fmt: skip
    else:
        env |= {
            "JUPYTER_IP": "127.0.0.1",
            "JUPYTER_PORT": str(port),
            "JUPYTER_ROOT_DIR": str(work / "root"),
            "JUPYTER_HASHED_PASSWORD": password_hash,
            "JUPYTER_ACTIVITY_FILE": str(work / "activity.json"),
        }
        if kind == "project_unit":
            command = unit_command()
        else:
            command = [str(venv_bin / "jupyter"), "lab", f"--config={CONFIG}"]
    return time_to_listen([*command, "--no-browser", *ROOT_FLAG], work, env, port)


def main() -> dict[str, float | str]:
    kinds = ("stock_lab", "project_jupyter_lab", "project_unit")
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    password_hash = hashed()
    with tempfile.TemporaryDirectory() as folder:
        one_start("stock_lab", Path(folder), password_hash)  # warm the page cache and bytecode
        for _ in range(RUNS):
            for kind in kinds:
                samples[kind].append(one_start(kind, Path(folder), password_hash))
    medians = {kind: statistics.median(values) for kind, values in samples.items()}
    base = medians["stock_lab"]
    figures: dict[str, float | str] = {
        "baseline_stock_jupyter_lab_s_median": base,
        "project_jupyter_lab_s_median": medians["project_jupyter_lab"],
        "project_unit_s_median": medians["project_unit"],
        "project_jupyter_lab_ratio": medians["project_jupyter_lab"] / base,
        "project_unit_ratio": medians["project_unit"] / base,
        "project_unit_s_max": max(samples["project_unit"]),
        "runs_each": float(RUNS),
        "node_on_path": "yes" if shutil.which("node") else "no",
    }
    report("jupyter_startup", figures)
    return figures


if __name__ == "__main__":
    main()
