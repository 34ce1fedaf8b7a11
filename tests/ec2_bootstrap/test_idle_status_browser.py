"""The idle stop as a teammate sees it in JupyterLab: real Chromium, a real Jupyter with the shipped
labextension, the real idle checker running as the timer runs it, tagging the instance in moto
with publish_verdict.py, and the real start-link handler reading those tags.

Nobody works: the status bar counts down, the warning comes at the warning time, "Keep awake 1 h"
keeps the machine awake, and the checker's verdict, the instance's tags and /v1/status all say
"kept awake until …". The extension's own polling (every second here) never counts as activity.
AWS reclaims a spot machine: the real spot watcher sees the notice in a fake instance metadata
service and writes its notice file; JupyterLab says so, once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

import handler
from idle_decision import clock_state
from idle_proc import boot_id
from idle_tags import AWAKE_BECAUSE_TAG
from layout import env_file
from tests.ec2_bootstrap.conftest import NO_BOOT_GRACE
from tests.lambda_src.conftest import call, event
from tests.support.jupyter import PASSWORD, Jupyter, running_jupyter
from tests.support.ssm import REGION, moto_ssm_server

EC2_BOOTSTRAP = Path(__file__).resolve().parents[2] / "ec2_bootstrap"
CHECKER = EC2_BOOTSTRAP / "idle_check.py"
PUBLISHER = EC2_BOOTSTRAP / "publish_verdict.py"
MOTO_AMI = "ami-03cf127a"
IDLE_MINUTES = 30.0
WARN_MINUTES = 5.0
TEAM_PASS = "correct horse battery staple"
TEAM_PASS_PARAMETER = "/jupyter-on-demand/team-pass"
LEFT_SECONDS = 50  # nobody has worked for 30 min minus this: the warning is due at once


@contextmanager
def checker_every(seconds: float, args: list[str], env: dict[str, str]) -> Iterator[list[dict]]:
    """The checker as its timer runs it, in a thread, until the block ends; its verdicts."""
    verdicts: list[dict] = []
    done = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + 600
        while not done.is_set() and time.monotonic() < deadline:
            result = subprocess.run(
                [sys.executable, str(CHECKER), *args],
                capture_output=True, text=True, timeout=120, check=False, env=env,
            )  # fmt: skip
            if result.stdout.strip():
                verdicts.append(json.loads(result.stdout.strip().splitlines()[-1]))
            done.wait(seconds)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield verdicts
    finally:
        done.set()
        thread.join(150)


def shown(browser, text: str):
    """The first element on screen whose own text holds `text`, or None."""
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.XPATH, f"//*[contains(text(), '{text}')]")
    return next((element for element in found if element.is_displayed() and element.text), None)


def instance_tags(ec2, instance_id: str) -> dict[str, str]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return {t["Key"]: t["Value"] for t in reservations[0]["Instances"][0].get("Tags", [])}


def test_the_warning_in_jupyterlab_and_keep_awake_1_h(tmp_path, monkeypatch) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser.chromium import chromium

    with moto_ssm_server() as (endpoint, ssm):
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        instance_id = ec2.run_instances(ImageId=MOTO_AMI, MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"
        ]
        # The instance's config.env, as far as publish_verdict.py reads it.
        config = tmp_path / "config.env"
        config.write_text(env_file({"AWS_REGION": REGION, "INSTANCE_ID": instance_id}))
        aws = {"AWS_ENDPOINT_URL": endpoint, "JOD_CONFIG": str(config)}
        jupyter_env = {"JOD_STATUS_POLL_SECONDS": "1", "WARN_MINUTES": str(WARN_MINUTES)}
        with running_jupyter(tmp_path / "root", tmp_path / "work", env=jupyter_env) as jupyter:
            args = checker_args(jupyter, tmp_path)
            env = {**os.environ, **aws}
            with chromium() as browser:
                browser.get(f"{jupyter.url}/login?next=/lab")
                browser.find_element(By.NAME, "password").send_keys(PASSWORD)
                browser.find_element(By.ID, "login_submit").click()
                wait = WebDriverWait(browser, 90)
                status = wait.until(lambda b: b.find_element(By.ID, "jod-idle-status"))
                # Only once JupyterLab is up (its load on a loaded machine may outlast the
                # LEFT_SECONDS below): nobody has worked for 29 min and some seconds (the idle
                # state as the checker keeps it), and the checker's timer from then on.
                idle_since = datetime.now(UTC) - timedelta(
                    minutes=IDLE_MINUTES, seconds=-LEFT_SECONDS
                )
                stops = (idle_since + timedelta(minutes=IDLE_MINUTES)).astimezone()
                stops_text = stops.strftime("%H:%M")
                state = clock_state(boot_id(), idle_since, "a save")
                (tmp_path / "idle-state.json").write_text(json.dumps(state))
                with checker_every(2, args, env) as verdicts:
                    wait.until(lambda b: status.text == f"Idle 29 min · stops {stops_text}")
                    toast = wait.until(lambda b: shown(b, "because nobody is working"))
                    assert (
                        toast.text
                        == f"This machine stops at {stops_text} because nobody is working."
                    )
                    # The tab polled every second all along, and the clock ran down: the warning.
                    wait.until(lambda _: any(v["action"] == "warn" for v in verdicts))
                    button = browser.find_element(
                        By.XPATH, "//button[normalize-space()='Keep awake 1 h']"
                    )
                    button.click()
                    wait.until(lambda b: status.text.startswith("Kept awake until "))
                    # The checker's next runs honour it, past the moment it would have stopped.
                    time.sleep(LEFT_SECONDS + 10)
                    last = verdicts[-1]
                    assert last["idle"] is False and "kept awake until" in last["reason"], last
                    assert not any(v["action"] in ("stop", "would-stop") for v in verdicts), (
                        verdicts
                    )
                    assert status.text.startswith("Kept awake until ")
            tags = instance_tags(ec2, instance_id)
            assert tags[AWAKE_BECAUSE_TAG].startswith("kept awake until "), tags
            # The start link, with the Lambda's environment, reads it from those tags.
            ssm.put_parameter(Name=TEAM_PASS_PARAMETER, Value=TEAM_PASS, Type="SecureString")
            for name, value in {
                "INSTANCE_ID": instance_id,
                "TEAM_PASS_PARAMETER": TEAM_PASS_PARAMETER,
                "IDLE_MINUTES": f"{IDLE_MINUTES:g}",
                "AWS_ENDPOINT_URL": endpoint,
            }.items():
                monkeypatch.setenv(name, value)
            handler.client.cache_clear()
            handler.PASSWORDS.clear()
            try:
                code, body = call(event("/status", {"pass": TEAM_PASS}))
            finally:
                handler.client.cache_clear()
                handler.PASSWORDS.clear()
            assert code == 200, body
            kept = body["idle"]["kept_awake_until"]
            assert kept is not None and kept in tags[AWAKE_BECAUSE_TAG]
            assert body["idle"]["awake_because"] == [f"kept awake until {kept}"]
            assert body["idle"]["stops_at"] is None
            told = json.loads(jupyter.verdict_file.read_text())
            assert told["state"] == "kept-awake"


def test_a_spot_interruption_notice_shows_once_in_jupyterlab(imds: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser.chromium import chromium
    from tests.ec2_bootstrap.test_spot_watch import Fakes, notice_at, spot_args, watching
    from tests.support.imds import FakeIMDS

    notice_file = tmp_path / "run" / "spot-interruption.json"
    fakes = Fakes.make(tmp_path / "bin")
    FakeIMDS.spot_notice, when = notice_at()
    text = (
        f"AWS reclaims this spot machine at {when.astimezone():%H:%M}: "
        "your work is being saved to GitHub."
    )
    jupyter_env = {"JOD_STATUS_POLL_SECONDS": "1", "JUPYTER_SPOT_NOTICE_FILE": str(notice_file)}
    args = spot_args(imds, fakes, notice_file)
    with (
        running_jupyter(tmp_path / "root", tmp_path / "work", env=jupyter_env) as jupyter,
        watching(args, fakes.env(), tmp_path / "watch.log") as watcher,
        chromium() as browser,
    ):
        watcher.says("stop reason tagged")
        browser.get(f"{jupyter.url}/login?next=/lab")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login_submit").click()
        toast = WebDriverWait(browser, 90).until(lambda b: shown(b, "AWS reclaims"))
        assert toast.text == text
        time.sleep(4)  # four more polls of the same notice: no second notification
        found = browser.find_elements(By.XPATH, "//*[contains(text(), 'AWS reclaims')]")
        assert len([e for e in found if e.is_displayed() and e.text]) == 1


def checker_args(jupyter: Jupyter, tmp_path: Path) -> list[str]:
    return [
        "--jupyter-url", jupyter.url, "--token", jupyter.token,
        "--idle-minutes", str(IDLE_MINUTES), "--warn-minutes", str(WARN_MINUTES),
        "--state-file", str(tmp_path / "idle-state.json"),
        "--activity-file", str(jupyter.activity_file),
        "--keep-awake-file", str(jupyter.keep_awake_file),
        "--verdict-file", str(jupyter.verdict_file),
        "--publish-command", f"{sys.executable} {PUBLISHER}",
        "--process-root", str(jupyter.process.pid), "--dry-run",
        *NO_BOOT_GRACE,
    ]  # fmt: skip
