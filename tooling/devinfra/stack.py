"""The local stack: one Kafka broker and one Weaviate node for development and tests.

`supportflow dev up|down|status` and the pytest fixtures drive it through `LocalStack`. Servers run
detached and are found again through pid files, so any process can stop what an earlier one
started. A server that is already healthy on a configured port is reused and never stopped by us.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock

from tooling.devinfra.kafka import KafkaBroker
from tooling.devinfra.process import ServerStartError, wait_for
from tooling.devinfra.weaviate import WeaviateServer
from tooling.settings import FleetSettings

Server = KafkaBroker | WeaviateServer

# How long each server gets to shut down cleanly before SIGKILL. Kafka flushes its logs and
# writes a clean-shutdown marker; killing it earlier makes the next start recover segments.
_STOP_GRACE_S = {"kafka": 30.0, "weaviate": 20.0}
# The setting to change when a port is taken by something else.
_PORT_SETTING = {"kafka": "SUPPORTFLOW_KAFKA_BOOTSTRAP", "weaviate": "SUPPORTFLOW_WEAVIATE_HTTP_PORT"}
_READY_PROBE_TIMEOUT_S = 3.0


class LocalStack:
    """Installs, starts, checks and stops the local Kafka broker and Weaviate node.

    Every method is safe to call repeatedly and from several processes at once: a lock file under
    the state dir serialises them, pid files are verified before they are trusted, and a server is
    only started when nothing healthy answers on its port.
    """

    COMPONENTS = ("kafka", "weaviate")

    def __init__(self, settings: FleetSettings) -> None:
        self.kafka = KafkaBroker(settings)
        self.weaviate = WeaviateServer(settings)
        self._servers: dict[str, Server] = {"kafka": self.kafka, "weaviate": self.weaviate}
        self._lock_path = settings.cache_dir / "state" / "stack.lock"
        self._started: set[str] = set()

    @property
    def started_by_us(self) -> frozenset[str]:
        """Components this object started (and has not stopped): what a test fixture should stop."""
        return frozenset(self._started)

    def addresses(self) -> dict[str, str]:
        """Where clients connect: Kafka bootstrap, Weaviate HTTP URL, Weaviate gRPC host:port."""
        return {
            "kafka": self.kafka.address,
            "weaviate_http": self.weaviate.http_url,
            "weaviate_grpc": self.weaviate.grpc_address,
        }

    def install(self) -> dict[str, Path]:
        """Fetch Kafka's jars and build Weaviate's binary into the cache, unless already there.

        Raises ToolUnavailable naming what to install when java, mvn or go is missing. The first
        Weaviate build takes many minutes; later calls return at once.
        """
        with FileLock(self._lock_path):
            return self._install(self.COMPONENTS)

    def up(self, timeout_s: float = 180) -> dict[str, str]:
        """Start whatever is not running yet, wait until every server really serves, return addresses.

        `timeout_s` bounds the wait for readiness, not a first-time install. A server that exits
        or is not ready in time raises ServerStartError with the end of its log; if this call
        started it, it is stopped first so that the next `up()` starts it afresh.
        """
        with FileLock(self._lock_path):
            plan = {name: self._plan(name) for name in self.COMPONENTS}
            to_start = [name for name, action in plan.items() if action == "start"]
            self._install(to_start)
            deadline = time.monotonic() + timeout_s  # after the install: a first build takes minutes
            for name in to_start:
                self._servers[name].start()
                self._started.add(name)
            for name, action in plan.items():
                try:
                    self._wait_until_ready(name, deadline, timeout_s, watch_process=action != "reuse")
                except ServerStartError:
                    if action == "start":
                        self._servers[name].process.stop(grace_s=_STOP_GRACE_S[name])
                        self._started.discard(name)
                    raise
        return self.addresses()

    def down(self, components: Iterable[str] | None = None) -> list[str]:
        """Stop our servers (all by default, or only `components`); returns the names stopped.

        Only servers recorded in our pid files are stopped: a reused server that someone else
        started is left alone. A test session passes `started_by_us` to leave a stack that was
        already up (from `supportflow dev up`) running.
        """
        names = self.COMPONENTS if components is None else tuple(components)
        stopped = []
        with FileLock(self._lock_path):
            for name in names:
                if self._servers[name].process.stop(grace_s=_STOP_GRACE_S[name]):
                    stopped.append(name)
                self._started.discard(name)
        return stopped

    def status(self) -> dict[str, dict[str, object]]:
        """Per component: running, ready, pid (None unless we manage it), address, started_by_us."""
        report: dict[str, dict[str, object]] = {}
        addresses = {"kafka": self.kafka.address, "weaviate": self.weaviate.http_url}
        for name, server in self._servers.items():
            pid = server.process.pid()
            ready = server.is_ready(timeout_s=_READY_PROBE_TIMEOUT_S)
            report[name] = {
                "running": pid is not None or ready,
                "ready": ready,
                "pid": pid,
                "address": addresses[name],
                "log": str(server.process.log_path),
                "started_by_us": name in self._started,
            }
        report["weaviate"]["grpc_address"] = self.weaviate.grpc_address
        return report

    def _install(self, names: Iterable[str]) -> dict[str, Path]:
        return {name: self._servers[name].install() for name in names}

    def _plan(self, name: str) -> str:
        """What `up` does with a component: "wait" for our running server (it may still be booting),
        "reuse" a healthy server someone else runs on the port, or "start" one."""
        server = self._servers[name]
        if server.process.pid() is not None:
            return "wait"
        if server.is_ready(timeout_s=_READY_PROBE_TIMEOUT_S):
            return "reuse"
        if server.port_in_use():
            raise ServerStartError(
                f"the {name} port is taken by a process that is not a ready {name} server; stop it, "
                f"or point {_PORT_SETTING[name]} at a free port"
            )
        return "start"

    def _wait_until_ready(self, name: str, deadline: float, timeout_s: float, *, watch_process: bool) -> None:
        """Block until `name` is ready; with `watch_process`, fail as soon as our process has exited."""
        server = self._servers[name]
        exited = False

        def ready_or_exited() -> bool:
            nonlocal exited
            remaining = deadline - time.monotonic()
            if server.is_ready(timeout_s=max(0.5, min(_READY_PROBE_TIMEOUT_S, remaining))):
                return True
            exited = watch_process and server.process.pid() is None
            return exited

        if not wait_for(ready_or_exited, timeout_s=max(0.0, deadline - time.monotonic())):
            raise server.process.startup_failure(f"was not ready within {timeout_s:.0f} s")
        if exited:
            raise server.process.startup_failure("exited during start-up")
