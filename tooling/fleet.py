"""Start every service as its own process (as in production) and stop them again.

Used by `supportflow demo`, the end-to-end test and the latency benchmark. Each service gets its
own ops port; readiness is read from its /readyz, exactly as Kubernetes would.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from supportflow.service import DEFAULT_GRPC_PORTS, SERVICES
from tooling.settings import FleetSettings


class FleetError(RuntimeError):
    pass


@dataclass
class RunningService:
    name: str
    process: subprocess.Popen
    ops_port: int
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ServiceFleet:
    def __init__(self, settings: FleetSettings, log_dir: Path, *, ops_port_base: int = 9100, services=SERVICES) -> None:
        # gRPC ports are picked free for each fleet. The defaults (50061-50065) lie in Linux's
        # ephemeral port range, where an outgoing connection can hold one just when a service
        # starts to listen on it (a clean-clone CI run met that once).
        self._grpc_ports = {name: free_port() for name in services if name in DEFAULT_GRPC_PORTS}
        # The addresses other services dial (a gRPC API only tools call has no `<name>_addr` setting).
        self._settings = settings.replace(**{
            f"{name}_addr": f"127.0.0.1:{port}" for name, port in self._grpc_ports.items()
            if f"{name}_addr" in FleetSettings.model_fields
        })
        self._log_dir = log_dir
        self._ops_port_base = ops_port_base
        self._names = list(services)
        self.running: list[RunningService] = []

    @property
    def settings(self) -> FleetSettings:
        """The settings the services run with, their gRPC addresses included."""
        return self._settings

    def start(self, timeout_s: float = 120.0) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(self._names):
            ops_port = self._ops_port_base + index
            env = os.environ | self._settings.to_env() | {"SUPPORTFLOW_OPS_PORT": str(ops_port)}
            env.pop("SUPPORTFLOW_GRPC_PORT", None)
            if name in self._grpc_ports:
                env["SUPPORTFLOW_GRPC_PORT"] = str(self._grpc_ports[name])
            log_path = self._log_dir / f"{name}.log"
            handle = open(log_path, "ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "tooling.cli", "run", name],
                env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )
            handle.close()
            self.running.append(RunningService(name, process, ops_port, log_path))
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(self.running)
        while pending:
            for service in list(pending):
                if service.process.poll() is not None:
                    raise FleetError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
                if _ready(service.ops_port):
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                raise FleetError(f"not ready after {timeout_s:.0f}s: {names}\n{pending[0].log_tail()}")
            time.sleep(0.25)

    def stop(self, grace_s: float = 20.0) -> dict[str, int]:
        """SIGTERM everything, wait, SIGKILL stragglers; returns exit codes by service."""
        for service in self.running:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        codes = {}
        for service in self.running:
            try:
                codes[service.name] = service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                codes[service.name] = service.process.wait()
        self.running = []
        return codes

    def __enter__(self) -> "ServiceFleet":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Ports a server may be given are drawn from here, below the ephemeral range.
_SERVER_PORTS_FROM = 20000


def free_port() -> int:
    """A TCP port nothing listens on right now, for a server about to start.

    Drawn below the kernel's ephemeral range (net.ipv4.ip_local_port_range), which outgoing
    connections and servers bound to port 0 draw from: a port picked from that range can be taken
    by one of them before the server binds it (a clean-clone CI run met that). Falls back to the
    kernel's pick when the range leaves no room below it."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(_SERVER_PORTS_FROM, low) if low > _SERVER_PORTS_FROM else 0
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free TCP port between {_SERVER_PORTS_FROM} and {low}")


def _ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    try:
        with open(path) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
