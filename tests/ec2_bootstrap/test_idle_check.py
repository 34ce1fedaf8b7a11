"""The idle checker against real Jupyter processes, real kernels and terminals, and real Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import idle_check
import jupyter_extensions
from tests.support.jupyter import PASSWORD, Jupyter, running_jupyter
from tests.support.kernels import execute, start_kernel, start_terminal, terminal_input

CHECKER = Path(idle_check.__file__)
IDLE_MINUTES = 0.1  # 6 s


@pytest.fixture
def jupyter(tmp_path):
    with running_jupyter(tmp_path / "root", tmp_path / "work") as server:
        yield server


def check(
    jupyter: Jupyter,
    state: Path,
    *extra: str,
    idle_minutes: float = IDLE_MINUTES,
    env: dict[str, str] | None = None,
) -> dict:
    """One cron run of the checker, in dry-run, judging only this Jupyter's process tree."""
    result = subprocess.run(
        [
            sys.executable, str(CHECKER),
            "--jupyter-url", jupyter.url,
            "--token", jupyter.token,
            "--idle-minutes", str(idle_minutes),
            "--state-file", str(state),
            "--activity-file", str(jupyter.activity_file),
            "--process-root", str(jupyter.process.pid),
            "--insecure", "--dry-run", *extra,
        ],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    decision = json.loads(lines[0])
    assert decision["reason"] in result.stderr  # every decision logs its reason
    return decision


def settle(seconds: float = IDLE_MINUTES * 60 + 2) -> None:
    time.sleep(seconds)


def test_a_cell_executed_just_now_is_active(jupyter, tmp_path) -> None:
    kernel = start_kernel(jupyter)
    time.sleep(jupyter_extensions.WRITE_INTERVAL_SECONDS + 0.5)  # the start is recorded; let it age
    execute(jupyter, "1 + 1", kernel_id=kernel)
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False and decision["action"] == "none"
    assert "kernel execute_request" in decision["reason"]


def test_a_kernel_busy_with_a_silent_sleep_longer_than_the_timeout_is_active(
    jupyter, tmp_path
) -> None:
    execute(jupyter, "import time; time.sleep(120)", wait=False)
    settle()
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False
    assert "busy" in decision["reason"] and "kernel" in decision["reason"]


def test_a_busy_kernel_stuck_past_the_cap_at_zero_cpu_is_idle(jupyter, tmp_path) -> None:
    state = tmp_path / "state.json"
    execute(jupyter, "import time; time.sleep(120)", wait=False)
    first = check(jupyter, state, "--stuck-busy-minutes", "0.05")
    assert first["idle"] is False  # just seen busy: it counts
    settle()
    decision = check(jupyter, state, "--stuck-busy-minutes", "0.05")
    assert decision["idle"] is True and decision["action"] == "would-stop"
    assert "ignored as stuck" in decision["reason"]


def test_a_terminal_running_a_silent_sleep_is_active(jupyter, tmp_path) -> None:
    terminal_input(jupyter, start_terminal(jupyter), "sleep 300\r")
    settle()
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False
    assert "terminal job sleep 300" in decision["reason"]


def test_a_terminal_running_a_cpu_loop_is_active(jupyter, tmp_path) -> None:
    terminal_input(jupyter, start_terminal(jupyter), "while :; do :; done\r")
    settle()
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False
    assert "terminal job" in decision["reason"] or "CPU" in decision["reason"]


def test_a_repl_left_open_in_a_terminal_past_the_cap_at_zero_cpu_is_idle(jupyter, tmp_path) -> None:
    state = tmp_path / "state.json"
    terminal_input(jupyter, start_terminal(jupyter), "python3 -q\r")  # waits at its >>> prompt
    time.sleep(2)
    first = check(jupyter, state, "--stuck-busy-minutes", "0.05")
    assert first["idle"] is False and "python3 -q (pid" in first["reason"]
    settle()
    decision = check(jupyter, state, "--stuck-busy-minutes", "0.05")
    assert decision["idle"] is True and decision["action"] == "would-stop"
    assert "python3 -q (pid" in decision["reason"] and "ignored" in decision["reason"]


def test_a_sleep_loop_left_in_a_terminal_past_the_cap_is_idle(jupyter, tmp_path) -> None:
    """Each `sleep` is a new job: the age belongs to the terminal, not to the job."""
    state = tmp_path / "state.json"
    terminal_input(jupyter, start_terminal(jupyter), "while true; do date; sleep 1; done\r")
    time.sleep(2)
    first = check(jupyter, state, "--stuck-busy-minutes", "0.05")
    assert first["idle"] is False and "terminal job sleep 1" in first["reason"]
    settle()
    decision = check(jupyter, state, "--stuck-busy-minutes", "0.05")
    assert decision["idle"] is True and decision["action"] == "would-stop", decision
    assert "nobody typed" in decision["reason"]


def test_a_tty_access_time_set_in_the_future_is_ignored(tmp_path) -> None:
    controller, terminal = os.openpty()
    process = subprocess.Popen(["sleep", "30"], stdin=terminal)
    try:
        future = time.time() + 10 * 365 * 86400
        os.utime(os.ttyname(terminal), (future, time.time()))  # `touch -a -d 2036-…` on one's tty
        checker = idle_check.Checker(
            idle_check.Options(jupyter_url="http://127.0.0.1:1", token="", idle_seconds=60,
                               state_file=tmp_path / "state.json")
        )  # fmt: skip
        assert checker.tty_atime(process.pid) is None
        assert checker.tty_input({process.pid}) is None
    finally:
        process.kill()
        process.wait()
        os.close(controller)
        os.close(terminal)


def test_a_training_loop_in_a_terminal_past_the_cap_is_still_active(jupyter, tmp_path) -> None:
    state = tmp_path / "state.json"
    terminal_input(jupyter, start_terminal(jupyter), "python3 -c 'while True: pass'\r")
    time.sleep(2)
    check(jupyter, state, "--stuck-busy-minutes", "0.05")
    settle()
    decision = check(jupyter, state, "--stuck-busy-minutes", "0.05")
    assert decision["idle"] is False
    assert "python3 -c" in decision["reason"]


def test_a_terminal_idle_at_its_prompt_is_idle(jupyter, tmp_path) -> None:
    terminal_input(jupyter, start_terminal(jupyter), "echo hello\r")
    settle()
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is True
    assert decision["action"] == "would-stop"


def test_two_terminals_one_active_is_active(jupyter, tmp_path) -> None:
    terminal_input(jupyter, start_terminal(jupyter), "echo idle\r")
    terminal_input(jupyter, start_terminal(jupyter), "sleep 300\r")
    settle()
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False
    assert "terminal job sleep 300" in decision["reason"]


def test_editing_and_saving_a_file_with_no_kernel_is_active(jupyter, tmp_path) -> None:
    assert jupyter.save("notes.md", "# notes\n").status_code in (200, 201)
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False
    assert "PUT /api/contents/notes.md" in decision["reason"]


def test_jupyter_killed_is_idle_after_the_timeout_and_says_why(jupyter, tmp_path) -> None:
    state = tmp_path / "state.json"
    jupyter.save("x.md", "x\n")
    assert check(jupyter, state)["idle"] is False
    jupyter.kill()
    settle()
    decision = check(jupyter, state)
    assert decision["idle"] is True
    assert "Jupyter unreachable" in decision["reason"]


def test_the_checker_polling_for_twice_the_timeout_does_not_keep_the_machine_alive(
    jupyter, tmp_path
) -> None:
    state = tmp_path / "state.json"
    jupyter.save("x.md", "x\n")
    status_before = jupyter.api("GET", "/api/status?no_track_activity=1").json()["last_activity"]
    deadline = time.monotonic() + 2 * IDLE_MINUTES * 60
    decisions = []
    while time.monotonic() < deadline:
        decisions.append(check(jupyter, state))
    assert decisions[-1]["idle"] is True
    assert (
        jupyter.api("GET", "/api/status?no_track_activity=1").json()["last_activity"]
        == status_before
    )


@pytest.mark.parametrize("zone", ["America/Sao_Paulo", "Asia/Kolkata", "Pacific/Kiritimati"])
def test_a_non_utc_timezone_gives_the_same_decisions(tmp_path, zone: str) -> None:
    env = {"TZ": zone}
    with running_jupyter(tmp_path / "root", tmp_path / "work", env=env) as jupyter:
        state = tmp_path / "state.json"
        jupyter.save("x.md", "x\n")
        active = check(jupyter, state, env=env)
        assert active["idle"] is False and active["idle_seconds"] < 5
        settle()
        idle = check(jupyter, state, env=env)
        assert idle["idle"] is True
        assert IDLE_MINUTES * 60 <= idle["idle_seconds"] < IDLE_MINUTES * 60 + 30


def fake_nvidia_smi(folder: Path, utilizations: list[int]) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    lines = "\\n".join(f"{i}, {u}" for i, u in enumerate(utilizations))
    script.write_text(f"#!/bin/sh\nprintf '{lines}\\n'\n")
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_one_busy_gpu_out_of_four_is_active(jupyter, tmp_path) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", [0, 0, 97, 0])
    settle(1)
    decision = check(jupyter, tmp_path / "state.json", env=env)
    assert decision["idle"] is False
    assert "GPU 2 at 97%" in decision["reason"]


def test_idle_gpus_do_not_keep_the_machine_awake(jupyter, tmp_path) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", [0, 1, 0, 2])
    decision = check(jupyter, tmp_path / "state.json", env=env)
    assert decision["idle"] is True
    assert "GPU" not in decision["reason"]


def test_a_fresh_boot_starts_the_clock_at_boot(jupyter, tmp_path) -> None:
    decision = check(jupyter, tmp_path / "state.json", idle_minutes=10_000)
    booted = idle_check.boot_time()
    expected = (datetime.now(UTC) - booted).total_seconds()
    assert abs(decision["idle_seconds"] - expected) < 30
    assert "boot" in decision["reason"]


def test_it_warns_about_five_minutes_before_stopping(jupyter, tmp_path) -> None:
    state = tmp_path / "state.json"
    check(jupyter, state, idle_minutes=40)
    recorded = json.loads(state.read_text())
    recorded["last_active"] = (datetime.now(UTC) - timedelta(minutes=36)).isoformat()
    state.write_text(json.dumps(recorded))
    decision = check(jupyter, state, idle_minutes=40)
    assert decision["action"] == "warn"
    assert check(jupyter, state, idle_minutes=40)["action"] == "none"  # warned once


def test_stopping_flushes_autosave_first_then_runs_the_stop_command(jupyter, tmp_path) -> None:
    log = tmp_path / "order.log"
    result = subprocess.run(
        [
            sys.executable, str(CHECKER), "--jupyter-url", jupyter.url, "--token", jupyter.token,
            "--idle-minutes", "0.01", "--state-file", str(tmp_path / "s.json"),
            "--process-root", str(jupyter.process.pid),
            "--flush-command", f"sh -c 'echo flush >> {log}'",
            "--stop-command", f"sh -c 'echo stop >> {log}'",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert json.loads(result.stdout)["action"] == "stop"
    assert log.read_text() == "flush\nstop\n"
    assert "stopping the machine" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--jupyter-url", "http://127.0.0.1:1", "--idle-minutes", "0"],
        ["--jupyter-url", "x", "--idle-minutes", "abc"],
    ],
)
def test_bad_arguments_exit_non_zero(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(CHECKER), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "error" in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T12:00:00Z", datetime(2026, 11, 28, 12, tzinfo=UTC)),
        ("2026-11-28T12:00:00+00:00", datetime(2026, 11, 28, 12, tzinfo=UTC)),
        ("2026-11-28T09:00:00-03:00", datetime(2026, 11, 28, 12, tzinfo=UTC)),
        ("2026-11-28T12:00:00", datetime(2026, 11, 28, 12, tzinfo=UTC)),
        ("garbage", None),
        (None, None),
    ],
)
def test_jupyter_times_are_read_as_aware_utc(value, expected) -> None:
    assert idle_check.parse_time(value) == expected


def test_an_open_tab_in_chromium_with_nobody_there_is_idle(jupyter, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser.chromium import chromium

    state = tmp_path / "state.json"
    idle_minutes = 0.3  # 18 s: longer than the tab's ~10 s polling interval
    with chromium() as browser:
        browser.get(f"{jupyter.url}/login?next=/lab")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login_submit").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".jp-LabShell"))
        time.sleep(idle_minutes * 60 + 5)
        decision = check(jupyter, state, idle_minutes=idle_minutes)
        status = jupyter.api("GET", "/api/status?no_track_activity=1").json()
    polled = idle_check.parse_time(status["last_activity"])
    assert (datetime.now(UTC) - polled).total_seconds() < idle_minutes * 60  # the tab polled
    assert decision["idle"] is True, decision["reason"]
    assert decision["action"] == "would-stop"


@pytest.mark.parametrize(
    ("method", "path", "query", "status", "counts"),
    [
        ("PUT", "/api/contents/a.ipynb", {}, 200, True),
        ("PATCH", "/api/contents/a.ipynb", {}, 200, True),
        ("DELETE", "/api/contents/a.ipynb", {}, 204, True),
        ("POST", "/api/terminals", {}, 200, True),
        ("PUT", "/lab/api/workspaces/default", {}, 204, False),  # an open tab does this every ~10 s
        ("PUT", "/api/contents/a.ipynb", {}, 409, False),
        ("GET", "/api/contents/", {"content": [b"1"]}, 200, False),  # the file browser's polling
        ("GET", "/api/contents/a.ipynb", {"type": [b"notebook"], "content": [b"1"]}, 200, True),
        ("GET", "/api/contents/a.ipynb", {"type": [b"notebook"], "content": [b"0"]}, 200, False),
        ("GET", "/api/kernels", {}, 200, False),
        ("POST", "/login", {}, 302, False),
    ],
)
def test_which_requests_count_as_interaction(method, path, query, status, counts) -> None:
    assert bool(jupyter_extensions.is_interaction(method, path, query, status)) is counts


def test_a_flush_that_cannot_even_run_never_blocks_the_stop(jupyter, tmp_path) -> None:
    log = tmp_path / "stopped"
    result = subprocess.run(
        [
            sys.executable, str(CHECKER), "--jupyter-url", jupyter.url, "--token", jupyter.token,
            "--idle-minutes", "0.01", "--state-file", str(tmp_path / "s.json"),
            "--process-root", str(jupyter.process.pid),
            "--flush-command", "/nonexistent/flush",
            "--stop-command", f"touch {log}",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert "autosave flush failed (FileNotFoundError" in result.stderr
    assert log.exists()
