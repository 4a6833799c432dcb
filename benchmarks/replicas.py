"""Service replicas as processes for the benchmarks on Kafka: started as a container starts them
(`python -m services.<name>.main`) from a checkout, each with its own log file, and stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tooling.settings import FleetSettings


def start_replica(service: str, settings: FleetSettings, index: int, code_dir: Path,
                  env: dict[str, str]) -> subprocess.Popen:
    """Replica `index` of `service` with the settings' environment plus `env`; its output goes to
    <cache>/bench-runs/<service>-<topic prefix><index>.log."""
    logs = settings.cache_dir / "bench-runs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{service}-{settings.topic_prefix}{index}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", f"services.{service}.main"], cwd=str(code_dir),
                                env=os.environ | settings.to_env() | {"PYTHONPATH": str(code_dir), "PYTHONUNBUFFERED": "1"} | env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_replicas(processes: list[subprocess.Popen], timeout_s: float = 30.0) -> None:
    """SIGTERM to each, then wait; one that does not stop in time is killed."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
