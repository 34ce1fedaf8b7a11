"""The idle checker's messages to the team (idle_notify.py): what is due when, row by row; then
the real checker's main() (its clock, boot and observation injected) running the real
publish_verdict.py in the venv against a moto server on loopback, the messages read from an SQS
queue subscribed to moto's SNS topic, as an email subscription would get them."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

import idle_notify
import idle_signals
from idle_decision import Observation, Options, clock_state, decide
from idle_tags import MONTH_HOURS_TAG, STOP_REASON_TAG
from layout import env_file
from tests.ec2_bootstrap.test_idle_month import BOOTED, Machine
from tests.support.ssm import REGION, moto_ssm_server

PAGE = "https://abc123.execute-api.us-east-1.amazonaws.com/v1"
LINK = f"{PAGE}/status?view=page"
OPTIONS = Options(
    jupyter_url="http://127.0.0.1:1", token="", state_file=Path("unused"), notify=True,
    page_url=PAGE,
)  # fmt: skip
CHECK = timedelta(seconds=30)


def run(
    state: dict[str, Any], seen: Observation, now: datetime, options: Options = OPTIONS
) -> tuple[dict[str, Any], tuple[str, dict[str, str]] | None]:
    """One run's decision and the message due; the message marked as sent, as idle_check does."""
    state, verdict = decide(state, seen, options, now)
    message = idle_notify.due(state, verdict, options, now, BOOTED)
    if message is not None:
        state.update(message[1])
    return state, message


# --- What is due, with the clock injected -------------------------------------------------------


def test_the_warning_is_told_once_per_idle_period() -> None:
    start = BOOTED + timedelta(hours=1)
    state = clock_state("b", start, "a save")
    texts = []
    for minute in (34, 35, 35.5, 36, 39.5):  # the warning comes at 35 min, the stop at 40
        state, message = run(state, Observation(BOOTED), start + timedelta(minutes=minute))
        texts.append(message and message[0])
    assert texts == [None, f"Jupyter Lab stops at 09:40 UTC because nobody is working: {LINK}",
                     None, None, None]  # fmt: skip
    later = start + timedelta(minutes=39.6)  # someone saves: a new idle period, a new warning
    state, _ = run(state, Observation(BOOTED, latest={"a save": later}), later)
    state, message = run(state, Observation(BOOTED), later + timedelta(minutes=35))
    assert message is not None and message[0].startswith("Jupyter Lab stops at 10:19 UTC")


def test_an_unsent_warning_is_due_while_it_stands_and_never_after_the_stop() -> None:
    start = BOOTED + timedelta(hours=1)
    state, verdict = decide(clock_state("b", start, "x"), Observation(BOOTED),
                            OPTIONS, start + timedelta(minutes=35))  # fmt: skip
    assert verdict.action == "warn"
    for minute in (35.5, 39.5):  # not marked as sent: due at every run of the warning
        state, verdict = decide(
            state, Observation(BOOTED), OPTIONS, start + timedelta(minutes=minute)
        )
        assert idle_notify.warning(state, verdict) == start.isoformat()
    state, verdict = decide(state, Observation(BOOTED), OPTIONS, start + timedelta(minutes=40))
    assert verdict.action == "stop" and idle_notify.warning(state, verdict) is None
    busy = Observation(BOOTED, active=["kernel busy: a.ipynb"])
    state, verdict = decide(state, busy, OPTIONS, start + timedelta(minutes=39))
    assert idle_notify.warning(state, verdict) is None  # work came back: no warning stands


def test_a_long_session_is_told_once_then_daily_never_every_check() -> None:
    state = clock_state("b", BOOTED, "boot")
    busy = Observation(BOOTED, active=["terminal job: python3 train.py (pid 4242)"])
    now = BOOTED + timedelta(hours=7, minutes=59)
    told = []
    for _ in range(6 * 24 * 60 * 2):  # six days, a check every 30 s
        state, message = run(state, busy, now)
        if message is not None:
            told.append((now, message[0]))
        now += CHECK
    assert [when for when, _ in told] == [
        BOOTED + timedelta(hours=8 + 24 * day) for day in range(6)
    ]
    assert told[0][1] == (
        "Jupyter Lab has been running for 8 h (since 28 Nov 08:00 UTC), awake because of "
        f"terminal job: python3 train.py. {LINK}"
    )
    assert told[1][1].startswith("Jupyter Lab has been running for 32 h (since 28 Nov 08:00 UTC)")


def test_a_long_run_told_at_a_forged_future_time_is_told_again() -> None:
    now = BOOTED + timedelta(hours=9)
    state = {
        **clock_state("b", BOOTED, "boot"),
        idle_notify.LONG_RUN_TOLD_KEY: "2099-01-01T00:00:00+00:00",
    }
    assert run(state, Observation(BOOTED, active=["GPU 0 at 97 %"]), now)[1] is not None


def test_the_long_run_message_when_idle_says_when_it_stops_and_names_at_most_three() -> None:
    now = BOOTED + timedelta(hours=8, minutes=10)
    state = clock_state("b", now - timedelta(minutes=20), "a save")
    _, message = run(state, Observation(BOOTED), now)
    assert message is not None and message[0] == (
        "Jupyter Lab has been running for 8.2 h (since 28 Nov 08:00 UTC); nobody is working "
        f"now, it stops at 16:30 UTC. {LINK}"
    )
    many = Observation(BOOTED, active=[f"kernel busy: n{i}.ipynb" for i in range(5)])
    _, message = run(clock_state("b", now, "x"), many, now)
    assert message is not None and "n2.ipynb and 2 more. " in message[0]
    assert "n3.ipynb" not in message[0]


def test_notifications_off_means_nothing_is_due() -> None:
    off = replace(OPTIONS, notify=False)
    start = BOOTED + timedelta(hours=20)
    state = clock_state("b", start, "x")
    for minute in (35, 36, 39):
        state, message = run(state, Observation(BOOTED), start + timedelta(minutes=minute), off)
        assert message is None


def test_without_a_page_url_the_sentence_just_ends() -> None:
    no_page = replace(OPTIONS, page_url="")
    assert idle_notify.stopped_message("nobody worked for 40 min", no_page) == (
        "Jupyter Lab stopped: nobody worked for 40 min."
    )


# --- Through moto's SNS: the real checker and the real publish_verdict.py ----------------------

TOKEN = "jupyter-token-5f3a9c"  # the instance's secrets, which no message may carry
HASHED = "argon2:$argon2id$v=19$m=10240,t=10,p=8$c2FsdHNhbHQ$aGFzaGhhc2g"
SECRET_ARGUMENT = "--password=Hunter2Secret"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_ssm_server() as (endpoint, _):
        yield endpoint


class Team:
    """An SNS topic in moto with an SQS queue subscribed: what the team's emails would get."""

    def __init__(self, endpoint: str) -> None:
        kwargs: dict[str, Any] = {"region_name": REGION, "endpoint_url": endpoint}
        self.sns = boto3.client("sns", **kwargs)
        sqs = boto3.client("sqs", **kwargs)
        self.sqs = sqs
        name = f"team-{id(self)}"
        self.topic = self.sns.create_topic(Name=name)["TopicArn"]
        self.queue = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        self.sns.subscribe(
            TopicArn=self.topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"]
        )
        self.seen: list[dict[str, str]] = []

    def messages(self) -> list[dict[str, str]]:
        """Every message so far: {"Subject", "Message"}."""
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
            if not got.get("Messages"):
                return self.seen
            for item in got["Messages"]:
                body = json.loads(item["Body"])
                self.seen.append({"Subject": body.get("Subject"), "Message": body["Message"]})
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=item["ReceiptHandle"])

    def texts(self) -> list[str]:
        return [message["Message"] for message in self.messages()]


class Instance(Machine):
    """The checker run with the instance's settings (--instance, JOD_* folders in tmp_path),
    config.env naming the topic, local.env moto's endpoint; the publish command is the real
    publish_verdict.py in this venv (botocore), as the instance runs it."""

    def setup(self, endpoint: str, topic: str, **settings: str) -> None:
        self.ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        launched = self.ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1)
        self.instance_id = launched["Instances"][0]["InstanceId"]
        etc = self.tmp_path / "etc"
        (etc / "secrets").mkdir(parents=True)
        config = {"AWS_REGION": REGION, "INSTANCE_ID": self.instance_id, "IDLE_MINUTES": "40",
                  "WARN_MINUTES": "5", "LONG_RUN_HOURS": "8", "NOTIFY_TOPIC_ARN": topic,
                  "PAGE_URL": PAGE, **settings}  # fmt: skip
        (etc / "config.env").write_text(env_file(config))
        (etc / "local.env").write_text(env_file({"AWS_ENDPOINT_URL": endpoint}))
        (etc / "secrets" / "jupyter.env").write_text(
            env_file({"JUPYTER_TOKEN": TOKEN, "JUPYTER_HASHED_PASSWORD": HASHED})
        )
        for variable, folder in (("JOD_ETC_DIR", "etc"), ("JOD_STATE_DIR", "state"),
                                 ("JOD_RUN_DIR", "run"), ("JOD_APP_DIR", "app")):  # fmt: skip
            self.monkeypatch.setenv(variable, str(self.tmp_path / folder))
        self.monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        script = Path(idle_notify.__file__).with_name("publish_verdict.py")
        self.publish = shlex.join([sys.executable, str(script)])

    def topic(self, arn: str) -> None:
        """config.env names another topic."""
        config = self.tmp_path / "etc" / "config.env"
        lines = [line for line in config.read_text().splitlines() if "NOTIFY_TOPIC_ARN" not in line]
        config.write_text("\n".join([*lines, f"NOTIFY_TOPIC_ARN={arn}", ""]))

    @property
    def state_file(self) -> Path:
        return self.tmp_path / "state" / "idle-state.json"

    def check(self, *args: str, after: timedelta = timedelta(0)) -> dict[str, Any]:
        return self.run("--instance", "--publish-command", self.publish, *args, after=after)

    def tags(self) -> dict[str, str]:
        found = self.ec2.describe_tags(
            Filters=[{"Name": "resource-id", "Values": [self.instance_id]}]
        )
        return {tag["Key"]: tag["Value"] for tag in found["Tags"]}


@pytest.fixture
def team(moto: str) -> Team:
    return Team(moto)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto: str, team: Team) -> Instance:
    machine = Instance(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    machine.setup(moto, team.topic)
    return machine


def no_secret_in(texts: list[str]) -> None:
    for text in texts:
        assert TOKEN not in text and "argon2" not in text and "Hunter2" not in text, text
        assert " --" not in text and " -p" not in text, text  # no command line's arguments


def test_one_message_per_warning(instance: Instance, team: Team) -> None:
    instance.check()  # idle since the boot: 5 min
    assert team.texts() == []
    warned = instance.check(after=timedelta(minutes=30, seconds=30))  # 35.5 min
    assert warned["action"] == "warn"
    instance.check(after=CHECK)
    instance.check(after=CHECK)
    assert team.messages() == [
        {
            "Subject": "jupyter-on-demand",
            "Message": f"Jupyter Lab stops at 08:40 UTC because nobody is working: {LINK}",
        }
    ]
    instance.seen = ["kernel busy: train.ipynb"]  # work, then idle again: a second warning
    instance.check(after=CHECK)
    instance.seen = []
    instance.check(after=timedelta(minutes=36))
    assert team.texts()[1:] == [f"Jupyter Lab stops at 09:17 UTC because nobody is working: {LINK}"]
    assert not instance.stopped
    no_secret_in(team.texts())


def test_a_failed_warning_is_sent_at_a_later_run_but_not_after_the_stop(
    instance: Instance, team: Team
) -> None:
    """The fault: SNS refuses (a topic that is gone); the tags still go, the message waits."""
    instance.check()
    instance.topic(team.topic.replace(":team-", ":gone-"))
    assert instance.check(after=timedelta(minutes=30, seconds=30))["action"] == "warn"
    assert team.texts() == []
    instance.topic(team.topic)
    instance.check(after=CHECK)  # a retry waits idle_notify.RETRY_AFTER
    assert team.texts() == []
    instance.check(after=idle_notify.RETRY_AFTER)  # still in the warning: sent now
    assert team.texts() == [f"Jupyter Lab stops at 08:40 UTC because nobody is working: {LINK}"]
    instance.seen = ["kernel busy: a.ipynb"]
    instance.check(after=CHECK)
    instance.seen = []
    instance.topic(team.topic.replace(":team-", ":gone-"))
    assert instance.check(after=timedelta(minutes=36))["action"] == "warn"  # it fails again
    instance.topic(team.topic)
    instance.check(after=timedelta(minutes=5))  # the stop: its message, not the old warning
    assert instance.stopped
    assert team.texts()[1:] == [f"Jupyter Lab stopped: nobody worked for 40 min. {LINK}"]


def test_the_stop_message_goes_with_the_stop_tags_and_its_reason(
    instance: Instance, team: Team
) -> None:
    instance.check()
    instance.check(after=timedelta(minutes=40))
    assert instance.stopped
    assert team.texts() == [f"Jupyter Lab stopped: nobody worked for 40 min. {LINK}"]
    tags = instance.tags()
    assert tags[STOP_REASON_TAG] == "nobody worked for 40 min"
    assert tags[MONTH_HOURS_TAG] == "month=2026-11 hours=0.75 at=2026-11-28T08:45:00Z"


def test_the_long_run_message_fires_once_then_after_a_day(instance: Instance, team: Team) -> None:
    job = f"/usr/bin/python3 -u /home/jupyter/work/train.py {SECRET_ARGUMENT}"
    instance.seen = [f"terminal job: {idle_signals.program(job)} (pid 4242)", "GPU 0 at 97 %"]
    instance.check(after=timedelta(hours=7, minutes=54, seconds=30))  # 7 h 59.5 min
    assert team.texts() == []
    instance.check(after=CHECK)  # 8 h
    for _ in range(3):
        instance.check(after=CHECK)
    instance.check(after=timedelta(hours=12))
    expected = (
        "Jupyter Lab has been running for 8 h (since 28 Nov 08:00 UTC), awake because of "
        f"terminal job: python3 train.py, GPU 0 at 97 %. {LINK}"
    )
    assert team.texts() == [expected]
    state = instance.state()  # the state's time of the message moved a day back
    state[idle_notify.LONG_RUN_TOLD_KEY] = "2026-11-27T20:05:00+00:00"
    instance.state_file.write_text(json.dumps(state))
    instance.check(after=CHECK)
    assert team.texts()[1:] == [expected.replace("for 8 h", "for 20 h")]
    instance.check(after=CHECK)
    assert len(team.texts()) == 2
    no_secret_in(team.texts())


def test_a_new_boot_starts_the_long_run_count_again(instance: Instance, team: Team) -> None:
    instance.seen = ["GPU 0 at 97 %"]
    instance.check(after=timedelta(hours=8))
    assert len(team.texts()) == 1
    instance.boot_id, instance.booted_at = "boot-2", instance.now + timedelta(hours=1)
    instance.now = instance.booted_at
    instance.check(after=timedelta(hours=7))
    assert len(team.texts()) == 1
    instance.check(after=timedelta(hours=1))
    assert team.texts()[1].startswith("Jupyter Lab has been running for 8 h (since 28 Nov 17:05")


def test_nothing_is_sent_when_no_topic_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto: str, team: Team
) -> None:
    instance = Instance(tmp_path, monkeypatch, now=BOOTED + timedelta(minutes=5))
    instance.setup(moto, "")
    instance.seen = ["GPU 0 at 97 %"]
    instance.check(after=timedelta(hours=9))  # a long run
    instance.seen = []
    instance.check(after=timedelta(minutes=35, seconds=30))  # a warning
    instance.check(after=timedelta(minutes=5))  # the stop
    assert instance.stopped
    assert instance.tags()[STOP_REASON_TAG] == "nobody worked for 40 min"  # the tags still went
    instance.check("--notify", after=timedelta(hours=1))  # told to notify: still no topic
    assert team.messages() == []  # and publish_verdict.py sends nothing without a topic


def test_a_dry_run_tells_nobody(instance: Instance, team: Team) -> None:
    instance.seen = ["GPU 0 at 97 %"]
    instance.check("--dry-run", after=timedelta(hours=9))
    instance.seen = []
    assert instance.check("--dry-run", after=timedelta(minutes=36))["action"] == "warn"
    assert team.messages() == []
