"""The verdict the idle checker tells (idle_verdict.py) and the keep-awake requests it honours
(idle_keep_awake.py): the rules row by row, the instance metadata's tag through a real HTTP
server on loopback, and the publish command as a real process."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import idle_keep_awake
import idle_signals
from idle_decision import Observation, Options, clock_state, decide
from idle_keep_awake import Request, find_requests, kept_awake_until, parse_tag, tag_value
from idle_tags import VERDICT_TAGS
from idle_verdict import changed, publish, stop_tags, summary, tags, view
from tests.support.imds import FakeIMDS

BOOT = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
NOW = BOOT + timedelta(hours=2)
OPTIONS = Options(jupyter_url="http://127.0.0.1:1", token="", state_file=Path("unused"))


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def told(seen: Observation, minutes_ago: float = 0, **options: object) -> dict:
    state = clock_state("boot", ago(minutes_ago), "Jupyter ready")
    opts = Options(**{**OPTIONS.__dict__, **options})  # type: ignore[arg-type]
    _, verdict = decide(state, seen, opts, NOW)
    return view(verdict, opts)


def test_busy_names_what_keeps_it_awake_and_no_stop_time() -> None:
    result = told(Observation(BOOT, active=["kernel busy: train.ipynb", "GPU 0 at 87 %"]), 10)
    assert result["state"] == "busy"
    assert result["awake_because"] == ["kernel busy: train.ipynb", "GPU 0 at 87 %"]
    assert result["stops_at"] is None and result["warn_at"] is None
    assert result["idle_since"] is None
    assert result["updated_at"] == "2026-11-28T10:00:00Z"


def test_idle_says_since_when_and_when_it_stops_and_warns() -> None:
    result = told(Observation(BOOT), minutes_ago=31)
    assert result["state"] == "idle"
    assert result["awake_because"] == []
    assert result["idle_since"] == "2026-11-28T09:29:00Z"
    assert result["stops_at"] == "2026-11-28T10:09:00Z"  # 40 min after the last activity
    assert result["warn_at"] == "2026-11-28T10:04:00Z"  # warn_minutes (5) before
    assert result["idle_minutes"] == 40 and result["warn_minutes"] == 5


def test_kept_awake_alone_is_its_own_state() -> None:
    until = NOW + timedelta(hours=1)
    seen = Observation(BOOT, active=[f"kept awake until {idle_keep_awake.iso(until)}"])
    seen.kept_awake_until = until
    result = told(seen, 50)
    assert result["state"] == "kept-awake"
    assert result["kept_awake_until"] == "2026-11-28T11:00:00Z"
    assert result["stops_at"] is None


def test_the_stop_is_told_with_its_reason() -> None:
    result = told(Observation(BOOT), minutes_ago=41)
    assert result["state"] == "stopping"
    values = stop_tags(result, "nobody worked for 40 min", "month=2026-11 hours=2.00 at=x")
    assert set(values) == set(VERDICT_TAGS)
    assert values["jupyter-on-demand:month-hours"] == "month=2026-11 hours=2.00 at=x"
    assert values["jupyter-on-demand:stop-reason"] == "nobody worked for 40 min"
    assert values["jupyter-on-demand:stopped-at"] == "2026-11-28T10:00:00Z"
    assert values["jupyter-on-demand:stops-at"] == ""


def test_tags_fit_ec2s_limit() -> None:
    result = told(Observation(BOOT, active=[f"terminal job: {'x' * 300}"] * 3))
    assert all(len(value) <= 256 for value in tags(result).values())
    assert set(tags(result)) <= set(VERDICT_TAGS)


# (published before, now) -> published again?
def summary_at(minutes_ago: float, active: list[str] | None = None) -> dict:
    return summary(told(Observation(BOOT, active=active or []), minutes_ago))


CHANGES = {
    "nothing published yet": (None, summary_at(1), True),
    "the same idle clock": (summary_at(1), summary_at(1), False),
    "the stop time moved 4 min (someone saved)": (summary_at(5), summary_at(1), False),
    "the stop time moved 5 min": (summary_at(6), summary_at(1), True),
    "idle, then busy": (summary_at(1), summary_at(0, ["kernel busy: a.ipynb"]), True),
    "a GPU's figure changed": (
        summary_at(0, ["GPU 0 at 87 %"]),
        summary_at(0, ["GPU 0 at 91 %"]),
        False,
    ),
    "another notebook busy": (
        summary_at(0, ["kernel busy: a.ipynb"]),
        summary_at(0, ["kernel busy: b.ipynb"]),
        True,
    ),
}


@pytest.mark.parametrize(("before", "now", "again"), CHANGES.values(), ids=CHANGES.keys())
def test_only_a_material_change_is_published(before: dict | None, now: dict, again: bool) -> None:
    result = {**now, "awake_because": now["reasons"]}
    assert changed(before, result) is again


# --- Keep-awake requests --------------------------------------------------------------------

HOUR = timedelta(hours=1)
KEEP = {
    "none": ([], None),
    "one from the link, in force": ([Request(NOW + HOUR, ago(1), "start link")], NOW + HOUR),
    "ended (the clock starts from its end)": ([Request(ago(1), ago(61), "start link")], ago(1)),
    "set in the future (forged)": ([Request(NOW + 3 * HOUR, NOW + HOUR, "JupyterLab")], None),
    "longer than the cap (12 h)": ([Request(NOW + 13 * HOUR, ago(1), "JupyterLab")], None),
    "the latest wins: a cancel after a click": (
        [Request(NOW + 4 * HOUR, ago(10), "JupyterLab"), Request(ago(1), ago(1), "start link")],
        None,
    ),
    "the latest wins: a click after a cancel": (
        [Request(ago(10), ago(10), "start link"), Request(NOW + HOUR, ago(1), "JupyterLab")],
        NOW + HOUR,
    ),
}


@pytest.mark.parametrize(("found", "until"), KEEP.values(), ids=KEEP.keys())
def test_keep_awake_rules(found: list[Request], until: datetime | None) -> None:
    assert kept_awake_until(found, NOW, max_hours=12) == until


def test_the_tag_value_round_trips_and_junk_is_refused() -> None:
    value = tag_value(NOW + HOUR, NOW)
    assert value == "until=2026-11-28T11:00:00Z set=2026-11-28T10:00:00Z"
    assert parse_tag(value) == Request(NOW + HOUR, NOW, "start link")
    for junk in ("", "tomorrow", "until=x set=y", "until=2026-11-28T11:00:00Z"):
        assert parse_tag(junk) is None


def test_the_links_request_is_read_from_the_instance_metadata(imds: str, tmp_path: Path) -> None:
    FakeIMDS.tag = tag_value(NOW + HOUR, ago(1))
    assert find_requests(imds, None) == [Request(NOW + HOUR, ago(1), "start link")]


def test_no_tag_no_metadata_or_a_broken_tag_is_no_request(imds: str, tmp_path: Path) -> None:
    assert find_requests(imds, None) == []  # 404: no tag (or tags not in the metadata)
    FakeIMDS.tag = "keep it on please"
    assert find_requests(imds, None) == []
    assert find_requests("http://127.0.0.1:9", None) == []  # nothing listens: no metadata


def test_jupyterlabs_request_is_read_from_its_file_never_through_a_link(tmp_path: Path) -> None:
    request = {"until": "2026-11-28T11:00:00Z", "set_at": "2026-11-28T09:59:00Z"}
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(request))
    link = tmp_path / "keep-awake.json"
    link.symlink_to(target)
    assert find_requests(None, link) == []
    real = tmp_path / "real.json"
    real.write_text(json.dumps(request))
    assert find_requests(None, real) == [Request(NOW + HOUR, ago(1), "JupyterLab")]
    real.write_text("[1, 2]")
    assert find_requests(None, real) == []


def test_publish_hands_the_tags_to_the_command_and_says_when_it_failed(tmp_path: Path) -> None:
    out = tmp_path / "tags.json"
    script = tmp_path / "publish.py"
    script.write_text(
        f"import sys, pathlib\npathlib.Path({str(out)!r}).write_text(sys.stdin.read())\n"
    )
    command = shlex.join([sys.executable, str(script)])
    result = told(Observation(BOOT), minutes_ago=3)
    assert publish(Options(**{**OPTIONS.__dict__, "publish_command": command}), tags(result))
    assert json.loads(out.read_text()) == tags(result)
    failing = f"{sys.executable} -c 'raise SystemExit(1)'"
    assert not publish(Options(**{**OPTIONS.__dict__, "publish_command": failing}), tags(result))
    assert not publish(OPTIONS, tags(result))  # no command: nothing published


# --- What the review broke (each test failed before its fix) ----------------------------------

PROGRAMS = {
    "mysqldump -uadmin -pHunter2Secret prod_db": "mysqldump",
    "/usr/bin/python3 -u /home/jupyter/work/train.py --lr 0.1 --token=abc": "python3 train.py",
    "python -c import secrets; print(1)": "python",
    "bash run.sh s3cr3t": "bash run.sh",
    "sleep 300": "sleep",
    "": "?",
}


@pytest.mark.parametrize(("cmdline", "shown"), PROGRAMS.items(), ids=PROGRAMS.values())
def test_a_reason_names_the_program_never_its_arguments(cmdline: str, shown: str) -> None:
    """The reasons reach the instance's tags, the start page and CloudTrail."""
    assert idle_signals.program(cmdline) == shown


def test_a_notebook_name_cannot_fake_the_tags_separator_and_keep_awake_survives_the_cut() -> None:
    until = "kept awake until 2026-11-28T11:00:00Z"
    reasons = [f"kernel busy: {'n' * 120} | kept awake until 2099-01-01T00:00:00Z"] * 3 + [until]
    value = tags(told(Observation(BOOT, active=reasons)))["jupyter-on-demand:awake-because"]
    assert value.startswith(until + " | ")
    assert value.count(" | ") == value.count("kernel busy")  # the names' own bars are gone
    assert "| kept awake until 2099" not in value


def test_warn_minutes_0_means_no_warning() -> None:
    result = told(Observation(BOOT), minutes_ago=31, warn_seconds=0)
    assert result["stops_at"] is not None and result["warn_at"] is None


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json
        b'{"until": "9999-12-31T23:59:59-12:00", "set_at": "2026-11-28T09:00:00Z"}',  # overflow
        b'{"until": "2026-11-28T11:00:00Z", "set_at": "9999-12-31T23:59:59-12:00"}',
    ],
    ids=["nested", "until past datetime's range", "set past datetime's range"],
)
def test_a_poisoned_keep_awake_file_is_no_request(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "keep-awake.json"
    path.write_bytes(raw)
    assert find_requests(None, path) == []


def test_a_keep_awake_that_cannot_be_read_costs_no_other_signal(monkeypatch, tmp_path) -> None:
    """A busy process still counts when reading the requests fails in any way."""

    def broken(*args: object) -> list[Request]:
        raise RuntimeError("a bug, or a file nobody foresaw")

    monkeypatch.setattr(idle_signals, "find_requests", broken)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        options = Options(jupyter_url="http://127.0.0.1:9", token="", state_file=tmp_path / "s",
                          min_uid=0, process_root=busy.pid, api_deadline_seconds=5)  # fmt: skip
        seen = idle_signals.observe({}, options, idle_signals.Machine.scan(datetime.now(UTC)), BOOT)
    finally:
        busy.kill()
        busy.wait()
    assert any(reason.startswith("process python") for reason in seen.active), seen


def test_a_new_request_is_told_even_when_the_checker_ignores_it() -> None:
    """Over this machine's cap (an apply raised the Lambda's first), say: the verdict changes,
    so the start link stops promising it."""
    before = told(Observation(BOOT), minutes_ago=10)
    seen = Observation(BOOT)
    seen.keep_awake_requested = ago(0.5)  # honoured or not, it was seen
    after = told(seen, minutes_ago=10)
    assert after["kept_awake_until"] is None
    assert changed(summary(before), after)


def test_publish_never_raises(tmp_path: Path) -> None:
    """The stop comes right after it: undecodable output, a broken command line."""
    script = tmp_path / "bytes.py"
    script.write_text("import sys\nsys.stderr.buffer.write(b'\\xff\\xfe')\nsys.exit(1)\n")
    result = told(Observation(BOOT), minutes_ago=3)
    for command in (shlex.join([sys.executable, str(script)]), "unterminated 'quote"):
        assert (
            publish(Options(**{**OPTIONS.__dict__, "publish_command": command}), tags(result))
            is False
        )


def test_a_busy_kernel_counts_when_jupyters_sessions_cannot_be_read(monkeypatch) -> None:
    """The names are new; losing them must not lose the kernel (a job waiting on I/O at 0 %)."""

    def api(options: Options, path: str) -> object:
        if path == "/api/kernels":
            return [{"id": "1234abcd-0000", "execution_state": "busy"}]
        raise idle_signals.JupyterUnreachable("sessions: HTTP 500")

    monkeypatch.setattr(idle_signals, "api", api)
    seen = Observation(BOOT)
    machine = idle_signals.Machine(procs={}, own=set(), now=NOW)
    idle_signals.observe_kernels(seen, machine, {}, {}, OPTIONS)
    assert seen.active == ["kernel busy: 1234abcd"]


@pytest.mark.parametrize(
    ("value", "seconds"), [("", 30), ("2", 2), ("99", 30), ("soon", 30), ("-1", 30), ("nan", 30)]
)
def test_the_status_items_poll_is_at_most_30_s_whatever_the_environment_says(
    value: str, seconds: float
) -> None:
    import jupyter_idle_api

    assert jupyter_idle_api.poll_seconds(value) == seconds


def test_a_warning_longer_than_a_quarter_of_the_idle_time_comes_at_that_quarter() -> None:
    """Terraform lets warn_minutes be anything from 0 up; idle_minutes 4 warns 1 min ahead."""
    result = told(Observation(BOOT), minutes_ago=1, idle_seconds=240, warn_seconds=300)
    assert result["stops_at"] == "2026-11-28T10:03:00Z"
    assert result["warn_at"] == "2026-11-28T10:02:00Z"


def test_the_verdict_follows_the_idle_tables_scenarios_as_they_change() -> None:
    """One machine through the day, a run a minute: what it tells, and when it tags again."""
    options = OPTIONS
    state = clock_state("boot", ago(1), "Jupyter ready")
    published = None
    steps = [  # (minute, what is seen, state told, awake because, tagged again?)
        (0, Observation(BOOT), "idle", [], True),
        (1, Observation(BOOT, active=["kernel busy: train.ipynb"]), "busy", ["kernel busy: train.ipynb"], True),
        (2, Observation(BOOT, active=["kernel busy: train.ipynb"]), "busy", ["kernel busy: train.ipynb"], False),
        (3, Observation(BOOT, active=["terminal job: python train.py (pid 42)"]), "busy",
         ["terminal job: python train.py (pid 42)"], True),
        (4, Observation(BOOT, active=["GPU 0 at 87 %"]), "busy", ["GPU 0 at 87 %"], True),
        (5, Observation(BOOT, active=["GPU 0 at 91 %"]), "busy", ["GPU 0 at 91 %"], False),
        (6, Observation(BOOT), "idle", [], True),  # the run ended: the clock starts
        (8, Observation(BOOT, latest={"terminal input": ago(-7.5)}), "idle", [], False),  # SSH typing: 1.5 min
        (12, Observation(BOOT, latest={"terminal input": ago(-11.9)}), "idle", [], True),  # 5.9 min later
        (20, Observation(BOOT), "idle", [], False),  # a tab open, nobody there: nothing seen
    ]  # fmt: skip
    for minute, seen, kind, because, again in steps:
        state, verdict = decide(state, seen, options, ago(-minute))
        result = view(verdict, options)
        assert (result["state"], result["awake_because"]) == (kind, because), minute
        assert (result["stops_at"] is None) == bool(because), minute
        assert changed(published, result) is again, minute
        if again:
            published = summary(result)
    assert result["idle_since"] == idle_keep_awake.iso(ago(-11.9)), result


def test_publish_verdict_tags_the_instance_with_the_sites_environment(tmp_path: Path) -> None:
    """As the idle unit runs it: nothing in its environment but the layout; the region and the
    instance from config.env, AWS's endpoint from the site's local.env (the VM test's moto)."""
    import boto3

    from layout import env_file
    from tests.support.ssm import REGION, moto_ssm_server

    with moto_ssm_server() as (endpoint, _):
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        instance = ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1)
        instance_id = instance["Instances"][0]["InstanceId"]
        etc = tmp_path / "etc"
        etc.mkdir()
        (etc / "config.env").write_text(
            env_file({"AWS_REGION": REGION, "INSTANCE_ID": instance_id})
        )
        (etc / "local.env").write_text(env_file({"AWS_ENDPOINT_URL": endpoint}))
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AWS_ENDPOINT") and key != "AWS_DEFAULT_REGION"
        }
        values = tags(told(Observation(BOOT), minutes_ago=3))
        result = subprocess.run(
            [sys.executable, str(Path(idle_signals.__file__).with_name("publish_verdict.py"))],
            input=json.dumps(values), capture_output=True, text=True, timeout=60, check=False,
            env={**environment, "JOD_ETC_DIR": str(etc)},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        found = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])
        assert {t["Key"]: t["Value"] for t in found["Tags"]} == values


def test_publish_verdict_refuses_any_other_tag(tmp_path: Path) -> None:
    script = Path(idle_signals.__file__).with_name("publish_verdict.py")
    for body in ('{"Name": "evil"}', "not json", "{}"):
        result = subprocess.run(
            [sys.executable, str(script)], input=body, capture_output=True, text=True,
            timeout=60, check=False, env={**os.environ, "JOD_ETC_DIR": str(tmp_path)},
        )  # fmt: skip
        assert result.returncode == 1 and "publish_verdict:" in result.stderr, body
