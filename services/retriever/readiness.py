"""Readiness follows Weaviate: the retriever cannot answer a search without it.

`WeaviateReadinessWatch` probes Weaviate in a background thread. Once the service has become ready,
the watch takes readiness down while Weaviate does not answer (reason `weaviate unavailable`) and
gives it back when Weaviate answers again. It only ever restores readiness it took away itself, so
it never overrides a shutdown or a dead consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from supportflow.observability import Health

log = logging.getLogger(__name__)

NOT_READY_REASON = "weaviate unavailable"


class WeaviateReadinessWatch:
    def __init__(self, probe: Callable[[], bool], health: Health, *, interval_s: float = 2.0) -> None:
        self._probe = probe
        self._health = health
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._armed = threading.Event()  # set once the service has been ready
        self._thread: threading.Thread | None = None
        health.on_change(lambda ready: self._armed.set() if ready else None)

    def wait_until_available(self, timeout_s: float) -> bool:
        """Block up to `timeout_s` for a first answer, so the service does not turn ready against a
        Weaviate that is still booting."""
        deadline = time.monotonic() + timeout_s
        while not self._stop.is_set():
            if self._probe():
                return True
            if time.monotonic() >= deadline:
                return False
            self._stop.wait(0.5)
        return False

    def check_once(self) -> bool:
        available = self._probe()
        if not self._armed.is_set():
            return available
        if not available and self._health.ready:
            log.warning("Weaviate does not answer; not ready")
            self._health.set_ready(False, NOT_READY_REASON)
        elif available and not self._health.ready and self._health.reason == NOT_READY_REASON and self._health.alive:
            log.info("Weaviate answers again; ready")
            self._health.set_ready(True)
        return available

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="weaviate-readiness", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval_s + 1)
