"""Services run as separate processes (`python -m services.<name>.main`, the container's command)
for the replica tests, and reading a topic whole without a consumer group."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from supportflow.eventbus import kafka_config
from supportflow.topics import Topic
from tooling.fleet import free_port
from tooling.settings import FleetSettings

ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    """One service process with its own ops port (readiness, metrics) and log file; `env` adds
    settings of its own (a gRPC port)."""

    def __init__(self, module: str, settings: FleetSettings, log_dir: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.module, self.settings, self.name, self.ops_port = module, settings, name, free_port()
        self.env = env or {}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        env = os.environ | self.settings.to_env() | self.env | {"SUPPORTFLOW_OPS_PORT": str(self.ops_port),
                                                                "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", self.module], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True, cwd=str(ROOT))
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 45.0) -> float:
        """Seconds until the process reports ready; fails with its log's tail if it exits or takes longer."""
        started = time.monotonic()
        while not self.ready():
            self.assert_running()
            assert time.monotonic() - started < timeout_s, f"{self.name} not ready:\n{self.tail()}"
            time.sleep(0.1)
        return time.monotonic() - started

    def assert_running(self) -> None:
        assert self.process is not None and self.process.poll() is None, f"{self.name} exited:\n{self.tail()}"

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of a metric's series whose labels include `labels` (e.g. 'service="escalator"');
        0 while the process does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(float(value) for found, value in re.findall(rf'^{name}(\{{[^}}]*\}})? (\S+)$', text, re.M)
                   if labels in found)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 30 s; the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def kill_in_turn(replicas: list, kills: int, every_s: float, recovered) -> list:  # noqa: ANN001
    """kill -9 the replicas in turn, `kills` times, `every_s` apart, each started again at once;
    `recovered(kill, victim, killed_at)` waits for the victim and says what to report."""
    reports = []
    for kill in range(kills):
        time.sleep(every_s)
        victim = replicas[kill % len(replicas)]
        victim.kill()
        killed_at = time.monotonic()
        victim.start()
        reports.append(recovered(kill, victim, killed_at))
    return reports


def read_records(settings: FleetSettings, topic: Topic, timeout_s: float = 20.0) -> list:
    """Every record on the topic now, undecoded: each partition read up to its end, without a group."""
    name = topic.name_in(settings.topic_prefix)
    reader = Consumer(kafka_config(settings) | {"group.id": f"check-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        ends = {}
        for partition in reader.list_topics(name, timeout=10).topics[name].partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
            if high > low:
                ends[partition] = high
        reader.assign([TopicPartition(name, partition, OFFSET_BEGINNING) for partition in ends])
        records, deadline = [], time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for message in reader.consume(500, timeout=0.5):
                if message.error() is None:
                    records.append(message)
                    if message.offset() + 1 >= ends.get(message.partition(), 0):
                        ends.pop(message.partition(), None)
        return records
    finally:
        reader.close()
