"""A service run in the test's own process, and a browser, as the component and browser tests use them."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from selenium.webdriver.remote.webdriver import WebDriver

from supportflow.devinfra.browser import ensure_chromium, headless_chrome
from supportflow.eventbus import EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts, load_builder
from supportflow.settings import Settings


@contextmanager
def service_running(service: str, settings: Settings) -> Iterator[ServiceParts]:
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
def workspace_running(settings: Settings) -> Iterator[tuple[str, str]]:
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
