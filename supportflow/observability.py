"""Structured JSON logs carrying the ticket id, shared platform metrics, health, and the ops HTTP
endpoint (/metrics, /healthz, /readyz) that every service exposes."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

_ticket_id: contextvars.ContextVar[str] = contextvars.ContextVar("ticket_id", default="")
_service_name = "supportflow"


@contextlib.contextmanager
def ticket_context(ticket_id: str) -> Iterator[None]:
    """Every log line written inside carries `ticket_id`."""
    token = _ticket_id.set(ticket_id)
    try:
        yield
    finally:
        _ticket_id.reset(token)


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": _service_name,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ticket_id = _ticket_id.get()
        if ticket_id:
            entry["ticket_id"] = ticket_id
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ThrottledWarnings:
    """Warnings logged at most once per `interval_s` for each (message, key), e.g. a peer's error
    code. In a peer's outage every failed call would log, from every worker thread at once; the
    calls' own metrics count every failure, so the log needs only the first and then one a while,
    each carrying how many were held back since the last (`suppressed`)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._logged_at: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def warning(self, message: str, key: str, fields: dict[str, object]) -> None:
        kind = (message, key)
        now = self._clock()
        with self._lock:
            logged_at = self._logged_at.get(kind)
            if logged_at is not None and now - logged_at < self._interval_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._logged_at[kind] = now
            held = self._held.pop(kind, 0)
        self._logger.warning(message, extra={"fields": fields | ({"suppressed": held} if held else {})})


def configure_logging(service: str, level: str = "INFO") -> None:
    global _service_name
    _service_name = service
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Platform metrics, shared by every service; the `service` label is the process's service name.
EVENTS_CONSUMED = Counter(
    "supportflow_events_consumed_total", "Events read from Kafka", ["service", "topic"]
)
EVENTS_PRODUCED = Counter(
    "supportflow_events_produced_total", "Events written to Kafka", ["service", "topic"]
)
EVENTS_DEAD_LETTERED = Counter(
    "supportflow_events_dead_lettered_total",
    "Events sent to a dead-letter topic",
    ["service", "topic", "reason"],
)
EVENTS_DUPLICATE = Counter(
    "supportflow_events_duplicate_total", "Redelivered events skipped by event id", ["service", "topic"]
)
HANDLED_IDS_MALFORMED = Counter(
    "supportflow_handled_ids_malformed_total",
    "Records of a consumer group's handled-ids topic skipped as malformed when read back",
    ["service"],
)
EVENT_PROCESSING_SECONDS = Histogram(
    "supportflow_event_processing_seconds",
    "Time to handle one event",
    ["service", "topic"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge(
    "supportflow_consumer_lag", "Messages behind the partition end", ["service", "topic", "partition"]
)
GRPC_SERVER_SECONDS = Histogram(
    "supportflow_grpc_server_handling_seconds",
    "gRPC server latency",
    ["service", "method", "code"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
GRPC_CLIENT_SECONDS = Histogram(
    "supportflow_grpc_client_handling_seconds",
    "gRPC client latency, including the deadline",
    ["service", "method", "code"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
UNHEALTHY = Gauge("supportflow_up", "1 while the service reports ready", ["service"])


class Health:
    """Liveness and readiness shared by the ops endpoint and the gRPC health service.

    `ready` turns true once dependencies answer and false on shutdown or a fatal consumer error,
    so orchestrators stop sending traffic before the process is gone.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._ready = False
        self._alive = True
        self._reason = "starting"
        self._listeners: list[Callable[[bool], None]] = []
        self._lock = threading.Lock()

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)
        listener(self._ready)

    def set_ready(self, ready: bool, reason: str = "") -> None:
        with self._lock:
            changed = ready != self._ready
            self._ready, self._reason = ready, reason or ("ok" if ready else "not ready")
        UNHEALTHY.labels(self.service).set(1 if ready else 0)
        if changed:
            for listener in self._listeners:
                listener(ready)

    def set_dead(self, reason: str) -> None:
        self._alive = False
        self.set_ready(False, reason)

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def reason(self) -> str:
        return self._reason


class _OpsHandler(BaseHTTPRequestHandler):
    health: Health
    timeout = 10.0  # seconds a client may stall before its connection is closed (probes and scrapes are quick)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith("/metrics"):
            self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif self.path.startswith("/healthz"):
            ok = self.health.alive
            self._reply(200 if ok else 503, json.dumps({"alive": ok, "reason": self.health.reason}).encode())
        elif self.path.startswith("/readyz"):
            ok = self.health.ready
            self._reply(200 if ok else 503, json.dumps({"ready": ok, "reason": self.health.reason}).encode())
        else:
            self._reply(404, b'{"error": "not found"}')

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes would flood the logs
        return


def start_ops_server(health: Health, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz in a daemon thread; port 0 picks a free port."""
    handler = type("OpsHandler", (_OpsHandler,), {"health": health})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    return server


class Stopwatch:
    """Monotonic elapsed time, for latency metrics."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
