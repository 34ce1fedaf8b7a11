"""The page for people, in real headless Chromium against the local gateway: loads, refreshes, links."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import handler
import idle
import reply
from demo.gateway import serve
from tests.browser.chromium import chromium
from tests.lambda_src.conftest import TEAM_PASS, Stack, event


@pytest.fixture
def gateway(stack: Stack):
    server = serve(port=0)
    yield server
    server.shutdown()


def test_page_loads_refreshes_while_starting_then_shows_the_link(stack: Stack, gateway) -> None:
    url = f"http://127.0.0.1:{gateway.server_port}/v1/start?pass={TEAM_PASS}&view=page"
    with chromium() as browser:
        browser.get(url)
        message = browser.find_element(By.ID, "message")
        assert message.text == handler.STARTING_MESSAGE
        assert stack.state() == "running"
        assert browser.find_elements(By.ID, "open") == []
        requests_before = gateway.RequestHandlerClass.requests_seen

        # The instance signals Jupyter is up; the page must pick it up on its own refresh.
        ready_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        stack.ec2.create_tags(
            Resources=[stack.instance_id], Tags=[{"Key": handler.READY_TAG, "Value": ready_at}]
        )
        link = WebDriverWait(browser, 30, poll_frequency=0.5).until(
            lambda b: b.find_elements(By.ID, "open")
        )[0]
        assert gateway.RequestHandlerClass.requests_seen > requests_before
        assert link.get_attribute("href").startswith("https://")
        assert link.get_attribute("href").endswith(":8443/lab")
        assert "already running at" in browser.find_element(By.ID, "message").text

        # Once the link is shown, the page stops reloading itself.
        seen = gateway.RequestHandlerClass.requests_seen
        time.sleep(reply.PAGE_REFRESH_SECONDS + 2)
        assert gateway.RequestHandlerClass.requests_seen == seen


# --- Issue 12: the idle sentence in the viewer's local time, and the keep-awake buttons ---------


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def zone_where_it_is(hour: int) -> tuple[str, timedelta]:
    """A time zone (Etc/GMT±N, which Chromium knows) where the local time is now hour:xx, and
    its offset from UTC: the tests see local times that can't be UTC's by chance."""
    offset = (hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    name = "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    return name, timedelta(hours=offset)


def local(moment: datetime, offset: timedelta) -> str:
    """HH:MM as the page shows it in that zone: to the nearest minute."""
    return f"{moment + offset + timedelta(seconds=30):%H:%M}"


def open_page(browser, gateway, zone: str, route: str = "status") -> None:
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})
    query = urlencode({"pass": TEAM_PASS, "view": "page"})
    browser.get(f"http://127.0.0.1:{gateway.server_port}/v1/{route}?{query}")


def idle_text(browser) -> str:
    return browser.find_element(By.ID, "idle").text


def visible_buttons(browser) -> list[str]:
    panel = browser.find_element(By.ID, "keep-awake")
    assert panel.is_displayed()
    return [b.text for b in panel.find_elements(By.TAG_NAME, "button") if b.is_displayed()]


def click(browser, label: str) -> None:
    button = next(
        b for b in browser.find_elements(By.CSS_SELECTOR, "#keep-awake button") if b.text == label
    )
    button.click()


def wait_for_sentence(browser, start: str) -> str:
    WebDriverWait(browser, 20, poll_frequency=0.2).until(
        lambda b: any(e.text.startswith(start) for e in b.find_elements(By.ID, "idle"))
    )
    return idle_text(browser)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def sentence_cases(offset: timedelta) -> dict[str, tuple[str, dict[str, str], str]]:
    """(state, tags, the sentence in the zone at `offset`) per case; times on whole minutes."""
    minute = now().replace(second=0)
    stops, since = minute + timedelta(minutes=9), now() - timedelta(minutes=31, seconds=10)
    # Stopped after the fixture's launch (moto's LaunchTime): this stop's own reason.
    until, stopped = minute + timedelta(hours=3), now()
    verdict_at = iso(now())
    return {
        "busy": (
            "running",
            {idle.AWAKE_BECAUSE_TAG: "kernel busy: train.ipynb", idle.VERDICT_AT_TAG: verdict_at},
            "Busy: train.ipynb is running",
        ),
        "idle": (
            "running",
            {
                idle.AWAKE_BECAUSE_TAG: "",
                idle.STOPS_AT_TAG: iso(stops),
                idle.IDLE_SINCE_TAG: iso(since),
                idle.VERDICT_AT_TAG: verdict_at,
            },
            f"Nobody has worked for 31 min. It stops at {local(stops, offset)} unless someone does",
        ),
        "kept-awake": (
            "running",
            {
                idle.AWAKE_BECAUSE_TAG: f"kept awake until {iso(until)}",
                idle.VERDICT_AT_TAG: verdict_at,
            },
            f"Kept awake until {local(until, offset)}",
        ),
        "asleep": (
            "stopped",
            {idle.STOP_REASON_TAG: "nobody worked for 40 min", idle.STOPPED_AT_TAG: iso(stopped)},
            f"Asleep since {local(stopped, offset)}: nobody worked for 40 min",
        ),
    }


@pytest.mark.parametrize("case", ["busy", "idle", "kept-awake", "asleep"])
def test_the_page_says_why_it_is_awake_or_asleep_in_the_viewers_local_time(
    stack: Stack, gateway, case: str
) -> None:
    zone, offset = zone_where_it_is(12)
    state, tags, sentence = sentence_cases(offset)[case]
    if state == "running":
        stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    stack.set_tags(tags)
    with chromium() as browser:
        open_page(browser, gateway, zone)
        assert browser.find_element(By.ID, "message").get_attribute("data-state") == state
        assert idle_text(browser) == sentence


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("kernel busy: train.ipynb", "train.ipynb is running"),
        ("kernel starting: x.ipynb", "x.ipynb is starting"),
        ("terminal job: python train.py", "python train.py is running in a terminal"),
        ("GPU 0 at 87 %", "GPU 0 is in use at 87 %"),
        ("process python x.py at 95 % CPU", "python x.py is using 95 % CPU"),
        ("boot step install running", "the boot step install is running"),
        ("ssh session of alice", "ssh session of alice"),
    ],
)
def test_each_reason_of_the_instance_is_said_in_plain_words(reason: str, words: str) -> None:
    assert reply.in_plain_words(reason) == words


def test_several_reasons_and_a_keep_awake_make_one_sentence() -> None:
    at = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)
    told = idle.Idle(
        40.0,
        awake_because=("kernel busy: a.ipynb", "terminal job: make", "kept awake until x"),
        kept_awake_until=at,
    )
    parts = reply.idle_sentence("running", told, at)
    assert reply.render_parts(parts) == (
        "Busy: a.ipynb is running; make is running in a terminal. Kept awake until "
        '<time datetime="2026-11-29T14:00:00Z">14:00 UTC</time>'
    )


def test_keep_awake_1_h_from_the_page_keeps_it_awake_and_the_page_says_until_when(
    stack: Stack, gateway
) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    zone, offset = zone_where_it_is(12)
    with chromium() as browser:
        open_page(browser, gateway, zone)
        assert visible_buttons(browser) == ["Keep awake 1 h", "Keep awake 4 h", "Until 20:00"]
        clicked = now()
        click(browser, "Keep awake 1 h")
        sentence = wait_for_sentence(browser, "Kept awake until")
        asked = idle.KeepAwake.parse(stack.tags()[idle.KEEP_AWAKE_TAG])
        assert asked is not None
        assert asked.until - asked.set_at == timedelta(hours=1)
        assert abs(asked.set_at - clicked) <= timedelta(seconds=10)
        assert sentence == f"Kept awake until {local(asked.until, offset)}"
        assert browser.current_url.endswith(
            "/v1/status?" + urlencode({"pass": TEAM_PASS, "view": "page"})
        )
        assert "Cancel keep-awake" in visible_buttons(browser)
        assert TEAM_PASS not in browser.page_source


def test_until_20_00_keeps_it_awake_until_tonight_20_00_local_time(stack: Stack, gateway) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    zone, offset = zone_where_it_is(12)
    with chromium() as browser:
        open_page(browser, gateway, zone)
        click(browser, "Until 20:00")
        sentence = wait_for_sentence(browser, "Kept awake until")
    asked = idle.KeepAwake.parse(stack.tags()[idle.KEEP_AWAKE_TAG])
    assert asked is not None
    local_until = asked.until + offset
    tonight = local_until.replace(hour=20, minute=0, second=0)
    assert abs(local_until - tonight) <= timedelta(seconds=5)
    assert sentence == "Kept awake until 20:00"


def test_until_20_00_is_hidden_once_it_is_past_20_00(stack: Stack, gateway) -> None:
    zone, _ = zone_where_it_is(22)
    with chromium() as browser:
        open_page(browser, gateway, zone)
        assert visible_buttons(browser) == ["Keep awake 1 h", "Keep awake 4 h"]


def test_buttons_over_the_cap_are_hidden(
    stack: Stack, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_KEEP_AWAKE_HOURS", "2")
    zone, _ = zone_where_it_is(12)  # 20:00 is 7 to 8 h away
    with chromium() as browser:
        open_page(browser, gateway, zone)
        assert visible_buttons(browser) == ["Keep awake 1 h"]


def test_keep_awake_from_the_page_of_a_sleeping_instance_starts_it(stack: Stack, gateway) -> None:
    zone, _ = zone_where_it_is(12)
    with chromium() as browser:
        open_page(browser, gateway, zone)
        assert browser.find_element(By.ID, "message").text == handler.STOPPED_MESSAGE
        click(browser, "Keep awake 4 h")
        wait_for_sentence(browser, "Kept awake until")
        # moto moves a started instance straight to running; AWS would say pending first.
        state = browser.find_element(By.ID, "message").get_attribute("data-state")
        assert state in ("pending", "running")
    assert stack.state() == "running"
    asked = idle.KeepAwake.parse(stack.tags()[idle.KEEP_AWAKE_TAG])
    assert asked is not None and asked.until - asked.set_at == timedelta(hours=4)


def test_a_refused_keep_awake_is_said_on_the_page_and_nothing_is_tagged(
    stack: Stack, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    zone, _ = zone_where_it_is(12)
    with chromium() as browser:
        open_page(browser, gateway, zone)
        monkeypatch.setenv("MAX_KEEP_AWAKE_HOURS", "0.5")  # the admin lowered it meanwhile
        click(browser, "Keep awake 1 h")
        error = WebDriverWait(browser, 20, poll_frequency=0.2).until(
            lambda b: b.find_element(By.ID, "keep-awake-error").text
        )
    assert error == handler.OVER_CAP_MESSAGE.format(cap=0.5)
    assert idle.KEEP_AWAKE_TAG not in stack.tags()


def test_the_page_never_holds_the_password_and_allows_only_its_own_script(stack: Stack) -> None:
    response = handler.lambda_handler(event("/status", {"pass": TEAM_PASS, "view": "page"}), None)
    assert TEAM_PASS not in response["body"]
    policy = response["headers"]["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy
    assert "connect-src 'self'" in policy


def test_the_keep_awake_page_turns_into_the_status_page_so_a_reload_never_asks_again(
    stack: Stack, gateway
) -> None:
    stack.ec2.start_instances(InstanceIds=[stack.instance_id])
    query = urlencode({"pass": TEAM_PASS, "hours": "2", "view": "page"})
    with chromium() as browser:
        browser.get(f"http://127.0.0.1:{gateway.server_port}/v1/keep-awake?{query}")
        assert idle_text(browser).startswith("Kept awake until")
        first = stack.tags()[idle.KEEP_AWAKE_TAG]
        status_page = "/v1/status?" + urlencode({"pass": TEAM_PASS, "view": "page"})
        assert browser.current_url.endswith(status_page)
        time.sleep(1.1)  # a second ask would carry a later set=
        browser.refresh()
        assert idle_text(browser).startswith("Kept awake until")
    assert stack.tags()[idle.KEEP_AWAKE_TAG] == first
