"""The page for people, in real headless Chromium against the local gateway: loads, refreshes, links."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import handler
import reply
from demo.gateway import serve
from tests.browser.chromium import chromium
from tests.lambda_src.conftest import TEAM_PASS, Stack


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
