"""What the labextension's status item costs the Jupyter server: its CPU with one JupyterLab tab
open in real headless Chromium, with the extension and without it (disabled with
`jupyter labextension disable`), in the same run.

Each run opens the tab, lets it settle, then reads the server process's CPU time
(/proc/<pid>/stat utime + stime, the whole process: tornado, the polling of both) over WINDOW
seconds. The extension polls every JOD_STATUS_POLL_SECONDS; the figure is taken at POLL (1 s,
30 times the shipped rate, so that it stands above the noise) and at the shipped 30 s, where
the per-poll cost measured at 1 s is scaled to one poll per 30 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import report
from tests.support.jupyter import PASSWORD, running_jupyter

WINDOW = 60.0
SETTLE = 15.0
POLL = 1.0
SHIPPED_POLL = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_cpu(extension: bool) -> float:
    """The Jupyter server's CPU seconds over WINDOW with one idle tab open."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser.chromium import chromium

    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        work = Path(tmp) / "work"
        env = {"JOD_STATUS_POLL_SECONDS": str(POLL)}
        if not extension:
            subprocess.run(
                [str(Path(sys.executable).parent / "jupyter"), "labextension", "disable",
                 "jupyter-on-demand", "--level=user"],
                env={**os.environ, "JUPYTER_CONFIG_DIR": str(work / "config")},
                check=True, capture_output=True,
            )  # fmt: skip
        with running_jupyter(Path(tmp) / "root", work, env=env) as jupyter, chromium() as browser:
            browser.get(f"{jupyter.url}/login?next=/lab")
            browser.find_element(By.NAME, "password").send_keys(PASSWORD)
            browser.find_element(By.ID, "login_submit").click()
            WebDriverWait(browser, 60).until(
                lambda b: b.find_elements(By.CSS_SELECTOR, ".jp-LabShell")
            )
            time.sleep(SETTLE)
            shown = bool(browser.find_elements(By.ID, "jod-idle-status"))
            if shown != extension:
                raise RuntimeError(f"the status item is {'missing' if extension else 'there'}")
            start = cpu_seconds(jupyter.process.pid)
            time.sleep(WINDOW)
            return cpu_seconds(jupyter.process.pid) - start


def main() -> None:
    without = server_cpu(extension=False)
    with_extension = server_cpu(extension=True)
    extra = max(with_extension - without, 0.0)
    per_poll = extra / (WINDOW / POLL)
    report(
        "status_polling",
        {
            "window_s": WINDOW,
            "server_cpu_without_extension_s": without,
            "server_cpu_with_extension_polling_every_1s_s": with_extension,
            "extra_core_percent_at_1s": 100 * extra / WINDOW,
            "cpu_per_poll_ms": 1000 * per_poll,
            "extra_core_percent_at_30s": 100 * per_poll / SHIPPED_POLL,
        },
    )


if __name__ == "__main__":
    main()
