"""The browser tests' driver itself: Debian's headless Chromium, found (or installed) by
`ensure_chromium`, opens a page from a local HTTP server, runs its JavaScript on a click, and
Selenium reads the result back. No Kafka, no services: if this fails, the browser is the cause."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tooling.devinfra import browser
from tooling.devinfra.browser import WINDOW_SIZE, ToolUnavailable, ensure_chromium, headless_chrome

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driver check</title></head>
<body>
  <p id="greeting">not clicked</p>
  <button id="greet" type="button">Greet</button>
  <script>
    document.getElementById("greet").addEventListener("click", function () {
      document.getElementById("greeting").textContent = "clicked at " + location.pathname;
    });
  </script>
</body></html>
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def local_page(tmp_path: Path):
    (tmp_path / "index.html").write_text(PAGE, encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_ensure_chromium_gives_debians_browser_and_driver():
    chromium, chromedriver = ensure_chromium()
    assert chromium.name == "chromium" and chromium.is_file()
    assert chromedriver.name == "chromedriver" and chromedriver.is_file()


def test_without_root_a_missing_browser_names_the_command_to_run(monkeypatch, tmp_path):
    monkeypatch.setattr(browser, "CHROMIUM_PATH", tmp_path / "no-chromium")
    monkeypatch.setattr(browser.os, "geteuid", lambda: 1000)
    with pytest.raises(ToolUnavailable, match=r"apt-get install -y --no-install-recommends chromium chromium-driver"):
        ensure_chromium(tmp_path)
    assert not (tmp_path / "tools" / "logs" / "chromium.log").exists()  # nothing was tried


def test_headless_chromium_runs_a_pages_javascript_on_click(local_page, tmp_path):
    driver = headless_chrome(log_path=tmp_path / "chromedriver.log")
    try:
        driver.get(local_page)
        assert driver.title == "driver check"
        assert driver.find_element(By.ID, "greeting").text == "not clicked"
        driver.find_element(By.ID, "greet").click()
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "greeting"), "clicked"))
        assert driver.find_element(By.ID, "greeting").text == "clicked at /index.html"
        assert driver.capabilities["browserName"] in {"chrome", "chromium"}
        # The window is the fixed size, so screenshots of the same page are comparable run to run.
        size = driver.get_window_size()
        assert (size["width"], size["height"]) == WINDOW_SIZE
        assert driver.get_screenshot_as_png().startswith(b"\x89PNG")
    finally:
        driver.quit()
