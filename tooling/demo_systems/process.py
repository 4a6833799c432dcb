"""`AccountSystemProcess`: starts the demo bank's account system as a child process, waits until
it answers, switches its faults (/_sim/faults) and stops it; `systems_file` writes the systems file
(supportflow/systems.py) that points a tenant's five systems at it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tooling.demo_systems.records import SCENARIOS_PATH, write_tickets

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("account", "transactions", "product_events", "changes", "incidents")


class AccountSystemError(RuntimeError):
    """The account system did not start; says why, with its log's tail."""


class AccountSystemProcess:
    def __init__(self, state_dir: Path, tickets: list | None = None, *, seed: int = 7,
                 latency_ms: tuple[float, float] = (20.0, 120.0), scenarios: Path = SCENARIOS_PATH) -> None:
        self.state_dir = state_dir
        self.tickets = list(tickets or [])
        self.seed = seed
        self.latency_ms = latency_ms
        self.scenarios = scenarios
        self.api_key = secrets.token_hex(16)
        self.url = ""
        self.process: subprocess.Popen | None = None
        self.log_path = state_dir / "account_system.log"

    def start(self, timeout_s: float = 30.0) -> "AccountSystemProcess":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tickets_path = write_tickets(self.state_dir / "tickets.jsonl", self.tickets)
        port_file = self.state_dir / "port"
        port_file.unlink(missing_ok=True)
        env = dict(os.environ, ACCOUNT_SYSTEM_API_KEY=self.api_key)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "ab") as log_handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tooling.demo_systems.account_system", "--tickets", str(tickets_path),
                 "--scenarios", str(self.scenarios), "--seed", str(self.seed), "--port", "0",
                 "--port-file", str(port_file), "--latency-ms", f"{self.latency_ms[0]:g},{self.latency_ms[1]:g}"],
                env=env, stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AccountSystemError(f"the account system did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def set_fault(self, fault: dict) -> dict:
        """{"status": 503}, {"delay_s": 3}, {"status": 503, "count": 2}; {} recovers."""
        response = httpx.post(f"{self.url}/_sim/faults", json=fault, timeout=5)
        response.raise_for_status()
        return response.json()["faults"]

    def truth(self) -> dict[str, dict]:
        """Ticket id -> {"customer_id", "intent", "case"}: the situation each ticket was seeded with."""
        return httpx.get(f"{self.url}/_sim/truth", timeout=5).json()["tickets"]

    def stop(self, grace_s: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "AccountSystemProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def systems_file(path: Path, tenants: dict[str, AccountSystemProcess], *, timeout_s: float = 0.8) -> Path:
    """The systems file for these tenants, each tenant's five systems served by its account
    system; private to the run (0600), as the channels file is."""
    config = {"tenants": {
        tenant: {name: {"base_url": system.url, "api_key": system.api_key, "timeout_s": timeout_s}
                 for name in SYSTEMS}
        for tenant, system in tenants.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
