"""A service run in the test's own process, and a browser, as the component and browser tests use them."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tooling.devinfra.browser import ensure_chromium, headless_chrome
from supportflow.eventbus import EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts, load_builder
from tooling.settings import FleetSettings


@contextmanager
def service_running(service: str, settings: FleetSettings) -> Iterator[ServiceParts]:
    """The service's consumer loops and start hooks in this process, as run_service runs them,
    once every loop has its partitions; stopped and flushed afterwards."""
    publisher = EventPublisher(settings, service)
    parts = load_builder(service)(settings, publisher, Health(service))
    stop = threading.Event()
    threads = [threading.Thread(target=consumer.run, args=(stop,), daemon=True) for consumer in parts.consumers]
    for thread in threads:
        thread.start()
    for start in parts.on_start:
        start()
    try:
        for consumer in parts.consumers:
            assert consumer.assigned.wait(30), f"{service} consumer {consumer.group_id} got no partitions"
        yield parts
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for hook in parts.on_stop:
            hook()
        publisher.flush()


@contextmanager
def workspace_running(settings: FleetSettings) -> Iterator[tuple[str, str]]:
    """The workspace in this process; yields (its base URL, its consumer group)."""
    with service_running("workspace", settings) as parts:
        yield f"http://127.0.0.1:{settings.workspace_http_port}", parts.consumers[0].group_id


@contextmanager
def headless_browser(cache_dir: Path, log_dir: Path) -> Iterator[WebDriver]:
    """Debian's headless Chromium through chromedriver, closed afterwards."""
    chromium, chromedriver = ensure_chromium(cache_dir)
    driver = headless_chrome(chromium, chromedriver, log_path=log_dir / "chromedriver.log")
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_page(driver: WebDriver, what: str, condition: Callable[[WebDriver], object], timeout_s: float,
                  *, context: Callable[[], str] = lambda: "") -> object:
    """`condition` as a person waits for it: polled until true, with a page mid-reload read as
    "not yet" (an element gone stale, or Chrome's "does not belong to the document" for a node of
    the page just replaced); on timeout an AssertionError with the page's text and `context()`."""
    def settled(d: WebDriver) -> object:
        try:
            return condition(d)
        except WebDriverException as exc:
            if "does not belong to the document" in (exc.msg or ""):
                return False
            raise

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.25,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(settled)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text[:2000] if driver.find_elements(By.TAG_NAME, "body") else ""
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} at {driver.current_url}\n"
                             f"page text:\n{body}\n{context()}") from None
