"""The idle checker against real Jupyter processes, real kernels and terminals, and real Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

import idle_check
import idle_proc
import idle_signals
import jupyter_activity
from idle_decision import Options, clock_state, parse_time
from layout import Paths
from tests.ec2_bootstrap.conftest import NO_BOOT_GRACE, recording_publisher
from tests.support.imds import FakeIMDS
from tests.support.jupyter import PASSWORD, Jupyter, running_jupyter
from tests.support.kernels import (
    execute,
    start_kernel,
    start_notebook_kernel,
    start_terminal,
    terminal_input,
)

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
            "--verdict-file", str(jupyter.verdict_file),
            "--insecure", "--dry-run", *NO_BOOT_GRACE, *extra,
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
    time.sleep(jupyter_activity.WRITE_INTERVAL_SECONDS + 0.5)  # the start is recorded; let it age
    execute(jupyter, "1 + 1", kernel_id=kernel)
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False and decision["action"] == "none"
    assert "kernel execute_request" in decision["reason"]


KERNEL_SLEEP = "import time; time.sleep(120)"  # busy for two minutes, at zero CPU


def start_work(jupyter: Jupyter, where: str, text: str) -> None:
    """`text` run in the default kernel (a cell, not waited for) or typed in a new terminal."""
    if where == "kernel":
        execute(jupyter, text, wait=False)
    else:
        terminal_input(jupyter, start_terminal(jupyter), text)


def has_all(*parts: str) -> str:
    """A pattern that finds every one of `parts`, in any order."""
    return "(?s)" + "".join(f"(?=.*{re.escape(part)})" for part in parts)


@pytest.mark.parametrize(
    ("work", "idle", "reason"),
    [
        ([("kernel", KERNEL_SLEEP)], False, has_all("busy", "kernel")),
        ([("terminal", "sleep 300\r")], False, has_all("terminal job: sleep (pid")),
        ([("terminal", "while :; do :; done\r")], False, "terminal job|CPU"),
        (
            [("terminal", "echo idle\r"), ("terminal", "sleep 300\r")],
            False,
            has_all("terminal job: sleep (pid"),
        ),
        ([("terminal", "echo hello\r")], True, None),
    ],
    ids=[
        "a kernel busy with a silent sleep longer than the timeout is active",
        "a terminal running a silent sleep is active",
        "a terminal running a CPU loop is active",
        "two terminals, one active, is active",
        "a terminal idle at its prompt is idle",
    ],
)
def test_work_in_kernels_and_terminals(
    jupyter, tmp_path, work: list[tuple[str, str]], idle: bool, reason: str | None
) -> None:
    for where, text in work:
        start_work(jupyter, where, text)
    settle()
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is idle, decision
    if idle:
        assert decision["action"] == "would-stop"
    if reason is not None:
        assert re.search(reason, decision["reason"]), decision["reason"]


@pytest.mark.parametrize(
    ("where", "text", "first_reason", "idle", "reason"),
    [
        ("kernel", KERNEL_SLEEP, None, True, has_all("ignored as stuck")),
        (  # waits at its >>> prompt
            "terminal", "python3 -q\r",
            has_all("terminal job: python3 (pid"), True, has_all("python3 (pid", "ignored"),
        ),
        (  # each `sleep` is a new job: the age belongs to the terminal, not to the job
            "terminal", "while true; do sleep 1; done\r",
            has_all("terminal job: sleep (pid"), True, has_all("nobody typed"),
        ),
        ("terminal", "python3 -c 'while True: pass'\r", None, False, has_all("terminal job: python3")),
    ],
    ids=[
        "a busy kernel stuck past the cap at zero CPU is idle",
        "a REPL left open in a terminal past the cap at zero CPU is idle",
        "a sleep loop left in a terminal past the cap is idle",
        "a training loop in a terminal past the cap is still active",
    ],
)  # fmt: skip
def test_work_busy_past_the_stuck_cap(
    jupyter, tmp_path, where: str, text: str, first_reason: str | None, idle: bool, reason: str
) -> None:
    state = tmp_path / "state.json"
    start_work(jupyter, where, text)
    if where == "terminal":
        time.sleep(2)  # the shell has started the job
    first = check_job(jupyter, state, first_reason, "--stuck-busy-minutes", "0.05")
    assert first["idle"] is False, first  # just seen busy: it counts
    if first_reason is not None:
        assert re.search(first_reason, first["reason"]), first["reason"]
    settle()
    decision = check_job(jupyter, state, reason, "--stuck-busy-minutes", "0.05")
    assert decision["idle"] is idle, decision
    if idle:
        assert decision["action"] == "would-stop", decision
    assert re.search(reason, decision["reason"]), decision["reason"]


def test_a_boot_step_running_early_in_the_boot_keeps_it_awake(jupyter, tmp_path) -> None:
    """Root's boot.py step counts while the machine booted less than the grace ago (a first
    install takes minutes); past it, a leftover step counts for nothing. The grace is set around
    the host's real uptime, whatever it is."""
    assert os.geteuid() == 0, "run as root, as CI does: the checker counts root's boot steps only"
    step = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "/opt/app/boot.py", "wake"]
    )
    try:  # Popen returns once the child exec'd: its cmdline is the step's
        up_minutes = idle_proc.uptime_seconds() / 60
        early = check(jupyter, tmp_path / "a.json", "--boot-grace-minutes", f"{up_minutes + 60}")
        late = check(jupyter, tmp_path / "b.json", "--boot-grace-minutes", f"{up_minutes - 1}")
    finally:
        step.kill()
        step.wait()
    assert early["idle"] is False and "boot step wake running" in early["reason"], early
    assert "boot step" not in late["reason"], late


def check_job(jupyter: Jupyter, state: Path, reason: str | None, *extra: str) -> dict:
    """`check`, taken again (three times at most) while its reason misses `reason`: the checker
    reads one instant of /proc, and a shell loop's instant may fall between two of its jobs.
    Each try starts from the state the first found (a try that saw no job forgets the
    terminal's age)."""
    before = state.read_bytes() if state.exists() else None
    for _ in range(2):
        decision = check(jupyter, state, *extra)
        if reason is None or re.search(reason, decision["reason"]):
            return decision
        if before is None:
            state.unlink(missing_ok=True)
        else:
            state.write_bytes(before)
        time.sleep(0.3)
    return check(jupyter, state, *extra)


def test_a_tty_access_time_set_in_the_future_is_ignored() -> None:
    controller, terminal = os.openpty()
    process = subprocess.Popen(["sleep", "30"], stdin=terminal)
    try:
        future = time.time() + 10 * 365 * 86400
        os.utime(os.ttyname(terminal), (future, time.time()))  # `touch -a -d 2036-…` on one's tty
        now = datetime.now(UTC)
        assert idle_signals.tty_atime(process.pid, now) is None
        assert idle_signals.tty_input({process.pid}, now) is None
    finally:
        process.kill()
        process.wait()
        os.close(controller)
        os.close(terminal)


def test_editing_and_saving_a_file_with_no_kernel_is_active(jupyter, tmp_path) -> None:
    assert jupyter.save("notes.md", "# notes\n").status_code in (200, 201)
    decision = check(jupyter, tmp_path / "state.json")
    assert decision["idle"] is False
    assert "interaction in Jupyter (save notes.md)" in decision["reason"]


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
    assert "GPU 2 at 97 %" in decision["reason"]


def test_idle_gpus_do_not_keep_the_machine_awake(jupyter, tmp_path) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", [0, 1, 0, 2])
    decision = check(jupyter, tmp_path / "state.json", env=env)
    assert decision["idle"] is True
    assert "GPU" not in decision["reason"]


def test_a_fresh_boot_starts_the_clock_at_boot(jupyter, tmp_path) -> None:
    decision = check(jupyter, tmp_path / "state.json", idle_minutes=10_000)
    booted = idle_proc.boot_time()
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


def stopping_run(
    jupyter: Jupyter, tmp_path: Path, flush: str, stop: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """One real (not dry) run of the checker that finds the machine idle at once."""
    return subprocess.run(
        [
            sys.executable, str(CHECKER), "--jupyter-url", jupyter.url, "--token", jupyter.token,
            "--idle-minutes", "0.01", "--state-file", str(tmp_path / "s.json"),
            "--process-root", str(jupyter.process.pid),
            "--flush-command", flush, "--stop-command", stop, *NO_BOOT_GRACE, *extra,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_stopping_flushes_autosave_first_then_runs_the_stop_command(jupyter, tmp_path) -> None:
    log = tmp_path / "order.log"
    result = stopping_run(
        jupyter, tmp_path, f"sh -c 'echo flush >> {log}'", f"sh -c 'echo stop >> {log}'"
    )
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


def test_the_command_line_defaults_are_the_options_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("JUPYTER_TOKEN", raising=False)
    state = tmp_path / "state.json"
    options = idle_check.parse_args(
        ["--jupyter-url", "http://127.0.0.1:1", "--state-file", str(state)]
    )
    assert options == Options(jupyter_url="http://127.0.0.1:1", token="", state_file=state)


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("--idle-minutes", "idle_seconds"),
        ("--stuck-busy-minutes", "stuck_busy_seconds"),
        ("--stuck-starting-minutes", "stuck_starting_seconds"),
        ("--boot-grace-minutes", "boot_grace_seconds"),
    ],
)
def test_every_limit_is_given_in_minutes(flag: str, field: str) -> None:
    options = idle_check.parse_args(["--jupyter-url", "http://127.0.0.1:1", flag, "2.5"])
    assert getattr(options, field) == 150


def test_the_state_file_is_the_layouts_by_default(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("JOD_STATE_DIR", str(tmp_path))
    options = idle_check.parse_args(["--jupyter-url", "http://127.0.0.1:1"])
    assert options.state_file == Paths.from_env().idle_state
    assert options.state_file.parent == tmp_path


BOOTED = datetime(2026, 11, 28, 8, tzinfo=UTC)
THIS_BOOT_STATE = {"boot_id": "b", "last_active": "2026-11-28T09:00:00+00:00", "reason": "x"}


@pytest.mark.parametrize(
    ("saved", "kept"),
    [
        (json.dumps(THIS_BOOT_STATE), True),
        (json.dumps({**THIS_BOOT_STATE, "boot_id": "an earlier boot"}), False),
        ("{not json", False),
        ("[1, 2]", False),
        (None, False),
        ("symlink", False),
    ],
    ids=["this boot", "another boot", "corrupt", "not an object", "no file", "a symlink"],
)
def test_a_saved_state_counts_only_at_its_own_boot(tmp_path, saved: str | None, kept: bool) -> None:
    path = tmp_path / "state.json"
    if saved == "symlink":  # to a state of this boot: never read through a link
        (tmp_path / "elsewhere.json").write_text(json.dumps(THIS_BOOT_STATE))
        path.symlink_to(tmp_path / "elsewhere.json")
    elif saved is not None:
        path.write_text(saved)
    state = idle_check.load_state(path, "b", BOOTED)
    assert state == (THIS_BOOT_STATE if kept else clock_state("b", BOOTED, "boot"))


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
    assert parse_time(value) == expected


def test_an_open_tab_in_chromium_with_nobody_there_is_idle(tmp_path) -> None:
    """The tab polls Jupyter (~10 s), and our labextension's status item polls our endpoint
    (every second here): neither is somebody working."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser.chromium import chromium

    state = tmp_path / "state.json"
    idle_minutes = 0.3  # 18 s: longer than the tab's ~10 s polling interval
    polls = {"JOD_STATUS_POLL_SECONDS": "1"}
    with (
        running_jupyter(tmp_path / "root", tmp_path / "work", env=polls) as jupyter,
        chromium() as browser,
    ):
        browser.get(f"{jupyter.url}/login?next=/lab")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login_submit").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".jp-LabShell"))
        item = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "jod-idle-status"))
        check(jupyter, state, idle_minutes=idle_minutes)
        WebDriverWait(browser, 30).until(lambda _: item.text.startswith("Idle "))  # it polls
        time.sleep(idle_minutes * 60 + 5)
        decision = check(jupyter, state, idle_minutes=idle_minutes)
        status = jupyter.api("GET", "/api/status?no_track_activity=1").json()
        age = datetime.now(UTC) - parse_time(status["last_activity"])  # before the slow teardown
    assert age.total_seconds() < idle_minutes * 60  # the tab polled
    assert decision["idle"] is True, decision["reason"]
    assert decision["action"] == "would-stop"


def test_a_flush_that_cannot_even_run_never_blocks_the_stop(jupyter, tmp_path) -> None:
    log = tmp_path / "stopped"
    result = stopping_run(jupyter, tmp_path, "/nonexistent/flush", f"touch {log}")
    assert result.returncode == 0
    assert "autosave flush failed (FileNotFoundError" in result.stderr
    assert log.exists()


# --- The verdict, told (idle_verdict.py), and keep-awake (idle_keep_awake.py, jupyter_idle_api.py)


def published(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_a_busy_notebook_is_named_in_the_verdict_jupyterlab_reads(jupyter, tmp_path) -> None:
    kernel = start_notebook_kernel(jupyter, "experiments/train.ipynb")
    execute(jupyter, KERNEL_SLEEP, kernel_id=kernel, wait=False)
    command, out = recording_publisher(tmp_path)
    verdict_args = ("--publish-command", command)
    decision = check(jupyter, tmp_path / "state.json", *verdict_args)
    assert "kernel busy: train.ipynb" in decision["reason"]
    told = jupyter.api("GET", "/jupyter-on-demand/idle").json()  # what the status item shows
    assert told["state"] == "busy"
    assert told["awake_because"] == ["kernel busy: train.ipynb"]
    assert told["stops_at"] is None
    tagged = published(out)
    month = tagged[0].pop("jupyter-on-demand:month-hours")  # the month's hours go with it
    assert re.fullmatch(r"month=\d{4}-\d{2} hours=\d+\.\d\d at=\S+Z", month), month
    assert tagged == [
        {
            "jupyter-on-demand:awake-because": "kernel busy: train.ipynb",
            "jupyter-on-demand:stops-at": "",
            "jupyter-on-demand:idle-since": "",
            "jupyter-on-demand:verdict-at": told["updated_at"],
        }
    ]
    check(jupyter, tmp_path / "state.json", *verdict_args)
    assert len(published(out)) == 1  # the same verdict: tagged once, not at every run


def test_no_verdict_yet_is_unknown_and_the_endpoints_need_a_login(jupyter) -> None:
    told = jupyter.api("GET", "/jupyter-on-demand/idle").json()
    assert told["state"] == "unknown" and told["poll_seconds"] <= 30
    anonymous = requests.get(f"{jupyter.url}/jupyter-on-demand/idle", timeout=10)
    assert anonymous.status_code == 403
    posted = requests.post(
        f"{jupyter.url}/jupyter-on-demand/keep-awake", json={"hours": 1}, timeout=10
    )
    assert posted.status_code == 403
    assert not jupyter.keep_awake_file.exists()


@pytest.mark.parametrize("hours", [0, -1, 12.5, "4", None, True, [1]])
def test_keep_awake_from_jupyterlab_refuses_what_is_not_a_number_within_the_cap(
    jupyter, hours: object
) -> None:
    response = jupyter.api("POST", "/jupyter-on-demand/keep-awake", json={"hours": hours})
    assert response.status_code == 400
    assert response.json()["message"] == "hours must be a number above 0 and at most 12"
    assert not jupyter.keep_awake_file.exists()


def test_keep_awake_from_jupyterlab_keeps_it_awake_then_the_clock_resumes(
    jupyter, tmp_path
) -> None:
    state = tmp_path / "state.json"
    hours = 20 / 3600  # 20 s: longer than settle() below
    response = jupyter.api("POST", "/jupyter-on-demand/keep-awake", json={"hours": hours})
    assert response.status_code == 200, response.text
    until = parse_time(response.json()["kept_awake_until"])
    assert until is not None
    verdict_args = ("--keep-awake-file", str(jupyter.keep_awake_file))
    settle()  # longer than the idle limit
    decision = check(jupyter, state, *verdict_args)
    assert decision["idle"] is False, decision
    assert f"kept awake until {response.json()['kept_awake_until']}" in decision["reason"]
    told = jupyter.api("GET", "/jupyter-on-demand/idle").json()
    assert (
        told["state"] == "kept-awake"
        and told["kept_awake_until"] == response.json()["kept_awake_until"]
    )
    time.sleep(max((until - datetime.now(UTC)).total_seconds(), 0) + 1)
    decision = check(jupyter, state, *verdict_args)
    assert decision["idle"] is False, decision  # the normal clock starts again from then
    settle()
    assert check(jupyter, state, *verdict_args)["idle"] is True


def test_the_start_links_keep_awake_is_read_from_the_instance_metadata(
    jupyter, tmp_path, imds
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    FakeIMDS.tag = f"until={(now + timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')} set={now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    settle()
    decision = check(jupyter, tmp_path / "state.json", "--imds-url", imds)
    assert decision["idle"] is False
    assert "kept awake until" in decision["reason"]
    FakeIMDS.tag = f"until={now.strftime('%Y-%m-%dT%H:%M:%SZ')} set={now.strftime('%Y-%m-%dT%H:%M:%SZ')}"  # hours=0
    settle()
    assert check(jupyter, tmp_path / "state.json", "--imds-url", imds)["idle"] is True


def test_the_stop_reason_is_tagged_before_the_stop(jupyter, tmp_path) -> None:
    command, out = recording_publisher(tmp_path)
    log = tmp_path / "stopped"
    result = stopping_run(jupyter, tmp_path, "true", f"touch {log}", "--publish-command", command)
    assert result.returncode == 0 and log.exists()
    last = published(out)[-1]
    assert last["jupyter-on-demand:stop-reason"] == "nobody worked for 0.01 min"
    assert parse_time(last["jupyter-on-demand:stopped-at"]) is not None
    assert re.fullmatch(
        r"month=\d{4}-\d{2} hours=\d+\.\d\d at=\S+Z", last["jupyter-on-demand:month-hours"]
    )
