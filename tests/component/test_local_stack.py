"""The local dev stack really serves Kafka and Weaviate, and its process bookkeeping holds up.

The infra tests use the session's `local_stack` fixture (tests/conftest.py): it brings the
stack up through `LocalStack` and stops only what it started. The process tests use a throw-away
sleeping child and need no infrastructure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import weaviate
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.query import MetadataQuery

from tooling.devinfra import process
from tooling.devinfra.process import ServerProcess
from tooling.devinfra.stack import LocalStack
from tooling.settings import FleetSettings

_KAFKA_TIMEOUT_S = 30


@pytest.fixture
def admin(local_stack: LocalStack) -> AdminClient:
    return AdminClient({"bootstrap.servers": local_stack.kafka.address})


@pytest.fixture
def kafka_topic(admin: AdminClient):
    name = f"devinfra-probe-{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(_KAFKA_TIMEOUT_S)
    yield name
    admin.delete_topics([name])[name].result(_KAFKA_TIMEOUT_S)


@pytest.mark.infra
def test_up_reports_addresses_from_settings_and_is_idempotent(
    local_stack: LocalStack, base_settings: FleetSettings
) -> None:
    pids_before = {name: info["pid"] for name, info in local_stack.status().items()}
    started = time.monotonic()
    addresses = local_stack.up(timeout_s=30)
    elapsed = time.monotonic() - started

    assert addresses == {
        "kafka": base_settings.kafka_bootstrap,
        "weaviate_http": base_settings.weaviate_http_url,
        "weaviate_grpc": f"{base_settings.weaviate_http_host}:{base_settings.weaviate_grpc_port}",
    }
    assert {name: info["pid"] for name, info in local_stack.status().items()} == pids_before
    assert elapsed < 10, f"up() on a running stack should only probe it, took {elapsed:.1f} s"


@pytest.mark.infra
def test_status_reports_both_servers_running_and_ready(local_stack: LocalStack) -> None:
    status = local_stack.status()

    assert set(status) == {"kafka", "weaviate"}
    for name, info in status.items():
        assert info["running"] is True, name
        assert info["ready"] is True, name
        assert info["started_by_us"] == (name in local_stack.started_by_us)
        if info["started_by_us"]:
            assert isinstance(info["pid"], int)
            os.kill(info["pid"], 0)  # raises if the recorded pid is not a live process
    assert status["kafka"]["address"] == local_stack.kafka.address
    assert status["weaviate"]["address"] == local_stack.weaviate.http_url
    assert status["weaviate"]["grpc_address"] == local_stack.weaviate.grpc_address


@pytest.mark.infra
def test_broker_runs_with_the_local_stack_config(admin: AdminClient) -> None:
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    configs = admin.describe_configs([broker])[broker].result(_KAFKA_TIMEOUT_S)

    assert configs["auto.create.topics.enable"].value == "false"
    assert configs["offsets.topic.replication.factor"].value == "1"
    assert configs["group.initial.rebalance.delay.ms"].value == "0"


@pytest.mark.infra
def test_kafka_round_trip_on_a_real_topic(local_stack: LocalStack, kafka_topic: str) -> None:
    producer = Producer({"bootstrap.servers": local_stack.kafka.address, "enable.idempotence": True})
    delivered = []
    producer.produce(
        kafka_topic,
        key=b"ticket-42",
        value=b'{"subject": "refund"}',
        headers=[("schema-version", b"1")],
        on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())),
    )
    assert producer.flush(_KAFKA_TIMEOUT_S) == 0
    [(error, partition, offset)] = delivered
    assert error is None

    consumer = Consumer(
        {
            "bootstrap.servers": local_stack.kafka.address,
            "group.id": f"{kafka_topic}-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([kafka_topic])
        received = None
        deadline = time.monotonic() + _KAFKA_TIMEOUT_S
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None:
                assert message.error() is None, message.error()
                received = message
        assert received is not None, f"nothing consumed from {kafka_topic} within {_KAFKA_TIMEOUT_S} s"
        assert (received.key(), received.value()) == (b"ticket-42", b'{"subject": "refund"}')
        assert received.headers() == [("schema-version", b"1")]
        assert (received.partition(), received.offset()) == (partition, offset)
        consumer.commit(message=received, asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.infra
def test_weaviate_collection_insert_and_query(local_stack: LocalStack) -> None:
    name = f"DevinfraProbe{uuid.uuid4().hex[:10]}"
    client = weaviate.connect_to_local(
        host=local_stack.weaviate.host, port=local_stack.weaviate.http_port, grpc_port=local_stack.weaviate.grpc_port
    )
    try:
        articles = client.collections.create(
            name,
            properties=[Property(name="title", data_type=DataType.TEXT)],
            vector_config=Configure.Vectors.self_provided(),
        )
        articles.data.insert({"title": "Refund window for annual plans"}, vector=[1.0, 0.0, 0.0])
        articles.data.insert({"title": "Resetting a forgotten password"}, vector=[0.0, 1.0, 0.0])

        nearest = articles.query.near_vector([0.9, 0.1, 0.0], limit=2, return_metadata=MetadataQuery(distance=True))
        keyword = articles.query.bm25("password", limit=2)

        assert [o.properties["title"] for o in nearest.objects] == [
            "Refund window for annual plans",
            "Resetting a forgotten password",
        ]
        assert nearest.objects[0].metadata.distance < nearest.objects[1].metadata.distance
        assert [o.properties["title"] for o in keyword.objects] == ["Resetting a forgotten password"]
    finally:
        client.collections.delete(name)
        client.close()


@pytest.fixture
def start_sleeper(tmp_path: Path):
    """Starts a ServerProcess for a Python child that sleeps, optionally deaf to SIGTERM like a hung server.

    Whatever a test leaves running is killed afterwards by the pid `start` returned (not through
    the pid file, which the code under test may have lost), so a failing test leaks no process.
    """
    started: list[tuple[int, str]] = []

    def start(*, ignore_sigterm: bool) -> ServerProcess:
        marker = str(tmp_path / f"sleeper-{len(started)}")
        server = ServerProcess(
            name="sleeper", pid_file=Path(marker + ".pid"), log_path=Path(marker + ".log"), cmdline_marker=marker
        )
        handler = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_sigterm else ""
        code = f"import signal, time; {handler}print('sleeping', flush=True); time.sleep(600)"
        started.append((server.start([sys.executable, "-c", code, marker], env=os.environ, cwd=tmp_path), marker))
        return server

    yield start
    for pid, marker in started:
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def test_server_process_runs_in_its_own_session_and_stops_on_sigterm(start_sleeper) -> None:
    server = start_sleeper(ignore_sigterm=False)
    pid = server.pid()

    assert pid is not None
    assert os.getsid(pid) == pid, "not a session leader: a Ctrl-C in the caller's terminal would reach it"
    assert os.getsid(pid) != os.getsid(0)
    assert server.stop(grace_s=10) is True
    assert server.pid() is None
    assert not server.pid_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # Its Popen is let go as exited: Python would otherwise warn at exit it is "still running".
    assert pid not in {child.pid for child in process._detached_children}
    assert server.stop(grace_s=10) is False


def test_server_process_is_killed_when_it_ignores_sigterm(start_sleeper) -> None:
    server = start_sleeper(ignore_sigterm=True)
    assert _wait_for_log(server, "sleeping"), server.log_tail()

    started = time.monotonic()
    assert server.stop(grace_s=1) is True
    assert time.monotonic() - started < 10
    assert server.pid() is None


def test_stale_and_foreign_pid_files_are_discarded(tmp_path: Path) -> None:
    server = ServerProcess(
        name="ghost", pid_file=tmp_path / "ghost.pid", log_path=tmp_path / "ghost.log", cmdline_marker="no-such-marker"
    )
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    server.pid_file.write_text(finished.stdout)
    assert server.pid() is None
    assert not server.pid_file.exists()

    # A live pid that belongs to another program (here: pytest itself) is not ours to stop.
    server.pid_file.write_text(f"{os.getpid()}\n")
    assert server.pid() is None
    assert server.stop(grace_s=1) is False


def _wait_for_log(server: ServerProcess, text: str, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in server.log_tail():
            return True
        time.sleep(0.05)
    return False
