"""Autosave: save latency with the git autosave hook on and off, in the same run.

PUT of a 1 MB notebook through Jupyter's contents API, as the browser saves; the median of 60
saves each way, interleaved in rounds so drift hits both sides. With autosave on, every save
also lands in a real git repo whose remote is the real smart-HTTP test server.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import report
from demo.git_remote import GitRemote
from tests.ec2_bootstrap.autosave_support import instance_clone
from tests.support.jupyter import running_jupyter
from tests.support.notebooks import notebook_model

SAVES = 60
ROUNDS = 4


BODY = ("x = " + "1" * 1000 + "\n") * 1024  # ~1 MB of code in one cell


def save_times(jupyter, count: int, tag: str) -> list[float]:
    times = []
    for i in range(count):
        model = notebook_model(f"# {tag} {i}\n" + BODY)  # each save changes the file
        start = time.perf_counter()
        response = jupyter.api("PUT", "/api/contents/big.ipynb", json=model)
        times.append(time.perf_counter() - start)
        assert response.status_code in (200, 201), response.text
    return times


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        remote = GitRemote(work / "remote")
        repo, home = instance_clone(remote, work)
        plain = work / "plain"
        plain.mkdir()
        on_times: list[float] = []
        off_times: list[float] = []
        with (
            running_jupyter(repo, work / "on", env={"HOME": str(home)}) as on,
            running_jupyter(plain, work / "off", env={"JUPYTER_AUTOSAVE": "0"}) as off,
        ):
            per_round = SAVES // ROUNDS
            for round_ in range(ROUNDS):
                off_times += save_times(off, per_round, f"off{round_}")
                on_times += save_times(on, per_round, f"on{round_}")
        remote.stop()
    figures = {
        "save_ms_median_autosave_on": statistics.median(on_times) * 1000,
        "save_ms_median_autosave_off": statistics.median(off_times) * 1000,
        "on_off_ratio": statistics.median(on_times) / statistics.median(off_times),
        "saves_each": float(len(on_times)),
    }
    report("autosave_latency", figures)
    return figures


if __name__ == "__main__":
    main()
