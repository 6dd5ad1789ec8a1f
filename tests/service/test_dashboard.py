"""The dashboard in Debian's headless Chromium against the live service: a run submitted from the
page, its charts gaining a point per epoch, pause and resume from the buttons. The page's state is
read from window.rayfit; a screenshot is kept beside the test's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions"]


@pytest.fixture
def page(server):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url)
        yield page
        browser.close()


def test_submit_watch_pause_and_resume_from_the_page(page, server, tmp_path):
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
    assert page.text_content("#runs tbody tr.selected td:nth-child(2)") == "completed"
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
