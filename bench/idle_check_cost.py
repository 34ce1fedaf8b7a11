"""Idle checker: CPU and memory of one timer run on a busy machine, and the stop's delay.

Baseline in the same run: `python3 -c pass`, measured the same way (CPU from os.wait4, peak RSS
from the child's own VmHWM, see peak_rss.py). The machine is made "training-like": a real Jupyter with a kernel in a CPU loop and a
terminal running a job, so the checker walks /proc, asks Jupyter and finds activity.

Stop delay: a systemd timer runs the checker every 30 s (jupyter-on-demand-idle.timer), so a deadline falls at a random
point between two runs; the stop comes at the next run plus that run's duration. Measured over runs placed at
random phases (bounded count), with each run's real duration.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, report
from tests.support.jupyter import running_jupyter
from tests.support.kernels import execute, start_terminal, terminal_input

RUNS = 15
CRON_PERIOD = 30.0  # jupyter-on-demand-idle.timer runs the checker every 30 s


def measure(command: list[str], folder: Path) -> tuple[float, float, float]:
    """(CPU seconds, peak RSS MB, wall seconds) of one run of `python <command>`."""
    out = folder / "peak.kb"
    argv = [sys.executable, str(ROOT / "bench" / "peak_rss.py"), str(out), *command]
    devnull = os.open(os.devnull, os.O_WRONLY)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    os.close(devnull)
    assert os.waitstatus_to_exitcode(status) == 0, command
    return usage.ru_utime + usage.ru_stime, int(out.read_text()) / 1024, wall


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        with running_jupyter(work / "root", work / "work") as jupyter:
            execute(jupyter, "while True: pass", wait=False)
            terminal_input(jupyter, start_terminal(jupyter), "sleep 600\r")
            state = work / "state.json"
            checker = [
                str(ROOT / "ec2_bootstrap" / "idle_check.py"),
                "--jupyter-url", jupyter.url, "--token", jupyter.token, "--idle-minutes", "40",
                "--state-file", str(state), "--activity-file", str(jupyter.activity_file),
                "--insecure", "--dry-run", "--min-uid", "0",
            ]  # fmt: skip
            measure(
                checker, work
            )  # the first run takes the 1 s CPU sample; later runs reuse the state
            baseline = [measure(["-c", "pass"], work) for _ in range(RUNS)]
            runs = []
            for _ in range(RUNS):
                state_data = state.read_text()
                # A timer run 30 s after the previous one: age the CPU sample accordingly.
                import json

                data = json.loads(state_data)
                data["cpu_sampled_at"] = time.time() - CRON_PERIOD
                state.write_text(json.dumps(data))
                runs.append(measure(checker, work))
    cpu = statistics.median(r[0] for r in runs)
    rss = max(r[1] for r in runs)
    base_cpu = statistics.median(b[0] for b in baseline)
    base_rss = max(b[1] for b in baseline)
    rng = random.Random(7)
    delays = [rng.uniform(0, CRON_PERIOD) + rng.choice(runs)[2] for _ in range(1000)]
    figures = {
        "checker_cpu_s_median": cpu,
        "checker_max_rss_mb": rss,
        "baseline_cpu_s_median": base_cpu,
        "baseline_max_rss_mb": base_rss,
        "cpu_ratio": cpu / base_cpu,
        "rss_ratio": rss / base_rss,
        "checker_wall_s_median": statistics.median(r[2] for r in runs),
        "stop_delay_s_median": statistics.median(delays),
        "stop_delay_s_max": max(delays),
    }
    report("idle_check_cost", figures)
    return figures


if __name__ == "__main__":
    main()
