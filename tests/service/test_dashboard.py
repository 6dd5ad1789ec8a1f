"""The dashboard in Debian's headless Chromium against a live service that requires a token: a run
submitted from the page, its charts gaining a point per epoch, pause and resume from the buttons.
The page's state is read from window.rayfit; a screenshot is kept beside the test's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.service.live import Server

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions"]


TOKEN = "dashboard-token-0123456789"


@pytest.fixture(scope="module")
def guarded(cluster, tmp_path_factory):
    """A service that requires a token: the page must send it on every call and its WebSocket."""
    address, env, _ = cluster
    guarded = Server(tmp_path_factory.mktemp("dashboard"), env | {"RAYFIT_SERVICE_TOKEN": TOKEN}, address).start()
    yield guarded
    guarded.stop()


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, guarded):
    """The dashboard opened with the token in the address's fragment (never sent to the server)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{guarded.url}/#token={TOKEN}")
    return page


def test_without_the_token_the_page_says_so(browser, guarded):
    page = browser.new_page()
    page.goto(guarded.url)
    page.wait_for_function("document.getElementById('status').textContent !== ''")
    assert page.text_content("#status").startswith("401: missing or wrong bearer token")


def test_submit_watch_pause_and_resume_from_the_page(page, guarded, tmp_path):
    epochs = 40
    page.select_option("#submit-kind", "native")
    page.fill("#submit-body", json.dumps({"name": "browser", "data": {"source": "sklearn:digits"},
                                          "trainer": {"epochs": -1}, "tracking": {"enabled": False}}))
    page.click("#submit-button")
    page.wait_for_function("document.getElementById('submit-error').textContent !== ''")
    assert page.text_content("#submit-error") == "422: body: trainer.epochs: Input should be greater than 0, got -1"

    page.fill("#submit-body", json.dumps({"name": "browser", "data": {"source": "sklearn:digits"},
                                          "trainer": {"epochs": epochs, "batch_size": 16},
                                          "tracking": {"enabled": False}}))
    page.click("#submit-button")
    page.wait_for_function("window.rayfit.selected && window.rayfit.points.loss >= 2", timeout=120_000)
    page.click("#pause-button")
    page.wait_for_function("window.rayfit.runState === 'paused'", timeout=60_000)
    paused_at = page.evaluate("window.rayfit.points.loss")
    assert 2 <= paused_at < epochs
    assert page.is_enabled("#resume-button") and not page.is_enabled("#pause-button")
    page.click("#resume-button")
    page.wait_for_function("window.rayfit.runState === 'completed'", timeout=120_000)
    points = page.evaluate("window.rayfit.points")
    assert points["loss"] == points["accuracy"] == points["lr"] == points["system"] == epochs
    page.wait_for_function(  # the table follows within a refresh
        "document.querySelector('#runs tbody tr.selected td:nth-child(2)')?.textContent === 'completed'")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
