"""Runs one service as a process: logs, ops endpoint, consumer loops, gRPC server, graceful stop.

A service module `services/<name>/main.py` exposes `build(settings, publisher, health) ->
ServiceParts` (or runs itself: `run_service(settings, stop)`); `python -m services.<name>.main` (the container's command) and `supportflow run
<name>` call `run_service`. Everything service-specific lives in
`build`; everything every service does the same way lives here.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from threadpoolctl import threadpool_limits

from supportflow.eventbus import ConsumerLoop, EventPublisher, ensure_topics
from supportflow.observability import Health, configure_logging, start_ops_server
from supportflow.rpc import Registration, create_server
from supportflow.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SERVICES = ("gateway", "classifier", "retriever", "investigator", "drafter", "escalator", "learner", "delivery",
            "workspace")

# The gRPC port each service listens on when SUPPORTFLOW_GRPC_PORT is not set (0: no gRPC API).
DEFAULT_GRPC_PORTS = {"classifier": 50061, "retriever": 50062, "drafter": 50063, "learner": 50065,
                      "investigator": 50066}


@dataclass
class ServiceParts:
    consumers: list[ConsumerLoop] = field(default_factory=list)
    grpc: list[Registration] = field(default_factory=list)
    # Extra start/stop work (the gateway's HTTP server, a policy-file watcher...).
    on_start: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)


Builder = Callable[[Settings, EventPublisher, Health], ServiceParts]

EXIT_STATE_LOST = 3  # the process's exit code when it refuses to start on unrecoverable state


class StateLost(RuntimeError):
    """A service's state cannot be recovered (a table's changelog, the learner's log: gone) while
    its inputs were handled before. It refuses to start rather than start empty and forget it
    silently; the message says what is gone and how to start again."""


def refuse_start(service: str, health: Health, exc: StateLost) -> int:
    """Log, mark the health dead and say on stderr why the service will not start; the exit code."""
    log.error("refusing to start: %s", exc)
    health.set_dead(f"state cannot be recovered: {exc}")
    print(f"{service}: refusing to start: {exc}", file=sys.stderr)
    return EXIT_STATE_LOST


def limit_blas_threads() -> None:
    """One BLAS thread per encode, process-wide. A server runs many small encodes at once, and
    OpenBLAS's own worker threads then fight the request threads for the cores: on two busy cores
    one query encode took 60-100 ms with the default threads and 11 ms with one. Every service
    process calls this at start (run_service), and the commands that measure them do too."""
    threadpool_limits(1, user_api="blas")


def start_process(service: str, settings: Settings, stop: threading.Event | None = None
                  ) -> tuple[threading.Event, Health, Any]:
    """What every service process does first, whatever runs its events: JSON logs, `stop` set on
    SIGTERM/SIGINT, one BLAS thread, its health and ops endpoint (returned: shut it down at the
    end), its topics."""
    configure_logging(service, settings.log_level)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    limit_blas_threads()
    health = Health(service)
    ops = start_ops_server(health, settings.ops_port)
    ensure_topics(settings)
    return stop, health, ops


def load_builder(service: str) -> Builder:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{service}.main").build


def run_service(service: str, settings: Settings, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set); returns the process exit code. A service whose
    main module has a `run_service(settings, stop)` of its own (the escalator: a faust app) runs
    that instead of consumer loops."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    own_runner = getattr(importlib.import_module(f"services.{service}.main"), "run_service", None)
    if own_runner is not None:
        return own_runner(settings, stop)
    stop, health, ops = start_process(service, settings, stop)
    publisher = EventPublisher(settings, service)
    try:
        parts = load_builder(service)(settings, publisher, health)
    except StateLost as exc:
        ops.shutdown()
        return refuse_start(service, health, exc)

    grpc_server = None
    grpc_port = settings.grpc_port or DEFAULT_GRPC_PORTS.get(service, 0)
    if parts.grpc:
        grpc_server, bound = create_server(service, parts.grpc, health, grpc_port)
        grpc_server.start()
        log.info("gRPC serving", extra={"fields": {"port": bound}})
    for start in parts.on_start:
        start()

    threads = []
    for index, consumer in enumerate(parts.consumers):
        thread = threading.Thread(target=_run_consumer, args=(consumer, stop), name=f"consumer-{index}", daemon=True)
        thread.start()
        threads.append(thread)
    for consumer in parts.consumers:
        while not consumer.assigned.wait(0.2) and not stop.is_set() and consumer.error is None:
            pass
    if not stop.is_set() and all(c.error is None for c in parts.consumers):
        health.set_ready(True)
        log.info("ready", extra={"fields": {"ops_port": ops.server_address[1]}})

    while not stop.wait(0.5):
        if any(c.error is not None for c in parts.consumers):
            break
    failed = any(c.error is not None for c in parts.consumers)
    lost = next((c.error for c in parts.consumers if isinstance(c.error, StateLost)), None)

    health.set_ready(False, "shutting down")
    log.info("stopping")
    # Inputs first (RPCs, then the consumers finish their batch), then what they were using.
    if grpc_server is not None:
        grpc_server.stop(grace=5).wait(6)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    for stop_hook in parts.on_stop:
        stop_hook()
    publisher.flush()
    ops.shutdown()
    if lost is not None:  # found while running (the learner's shard taken from a snapshot the log no longer holds)
        return refuse_start(service, health, lost)
    return 1 if failed else 0


def main(service: str, settings_class: type[Settings]) -> NoReturn:
    """`python -m services.<name>.main`, the container's command: the service's own settings
    (`settings_class`) from the environment (every invalid variable named at once, exit 2), then
    run until SIGTERM."""
    try:
        settings = settings_class.from_env()
    except SettingsError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    raise SystemExit(run_service(service, settings))


def _run_consumer(consumer: ConsumerLoop, stop: threading.Event) -> None:
    try:
        consumer.run(stop)
    except BaseException:  # noqa: BLE001 - already logged by the loop; the main thread exits non-zero
        pass
