"""Which learner replica holds a shard, and asking it for a panel.

The replicas share the log's partitions in one consumer group (main.py), each member named by its
client id `learner@<host>:<gRPC port>`. A panel question (GetKpis) about a tenant whose shard
another replica holds is asked of that replica: the group's description (Kafka's admin API) says
which member holds the partition, and its client id where to call. The call carries a header
saying it was routed; a replica asked so that does not hold the shard (it moved a moment ago)
answers UNAVAILABLE and the asker (servicer.py) looks again, until its deadline.
"""

from __future__ import annotations

import logging
import socket
import threading

import grpc
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.eventbus import kafka_config
from supportflow.rpc import open_channel
from supportflow.settings import Settings

from services.learner.shards import shard_of

ROUTED = "sf-learner-routed"  # gRPC metadata on a panel question one replica asks another
MEMBER_PREFIX = "learner@"

log = logging.getLogger(__name__)


def advertised_address(host: str, port: int) -> str:
    """Where the other replicas reach this one: `host` (a pod's IP, from the chart) or, unset, the
    address this machine's name resolves to."""
    if not host:
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    return f"{host}:{port}"


def member_name(address: str) -> str:
    return f"{MEMBER_PREFIX}{address}"


def was_routed(context: grpc.ServicerContext | None) -> bool:
    return context is not None and any(key == ROUTED for key, _ in context.invocation_metadata() or ())


class PanelOwners:
    """Finds the replica that holds a tenant's shard and asks it for the panel."""

    def __init__(self, settings: Settings, group: str, log_name: str, own_address: str) -> None:
        self._admin = AdminClient(kafka_config(settings))
        self._group = group
        self._log_name = log_name
        self._own = own_address
        self._channels: dict[str, tuple[grpc.Channel, services_pb2_grpc.LearnerStub]] = {}
        self._lock = threading.Lock()

    def address_of(self, partition: int) -> str | None:
        """The address of the member holding `partition` of the log; None while nobody does (a
        rebalance) or Kafka cannot say."""
        try:
            group = self._admin.describe_consumer_groups([self._group], request_timeout=5)[self._group].result(timeout=5)
        except (KafkaException, TimeoutError) as exc:
            log.info("learner group not described", extra={"fields": {"error": str(exc) or type(exc).__name__}})
            return None
        for member in group.members:
            for tp in member.assignment.topic_partitions if member.assignment else ():
                if tp.topic == self._log_name and tp.partition == partition and member.client_id.startswith(MEMBER_PREFIX):
                    return member.client_id[len(MEMBER_PREFIX):]
        return None

    def ask(self, request: services_pb2.GetKpisRequest, tenant: str,
            timeout_s: float) -> services_pb2.GetKpisResponse | None:
        """The panel from the replica holding `tenant`'s shard, asked once; None when there is no
        answer to have now: no replica holds the shard (a rebalance), this one does (taken a
        moment ago), or the holder is unavailable or moving it (the caller looks again). Other
        gRPC errors are raised."""
        address = self.address_of(shard_of(tenant))
        if address is None or address == self._own or timeout_s <= 0:
            return None
        try:
            return self._stub(address).GetKpis(request, timeout=timeout_s, metadata=((ROUTED, "1"),))
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            log.info("learner replica did not answer for a shard", extra={"fields": {
                "address": address, "tenant": tenant, "error": exc.details()}})
            return None

    def close(self) -> None:
        with self._lock:
            for channel, _ in self._channels.values():
                channel.close()
            self._channels.clear()

    def _stub(self, address: str) -> services_pb2_grpc.LearnerStub:
        with self._lock:
            if address not in self._channels:
                channel = open_channel("learner", address, 5.0)
                self._channels[address] = (channel, services_pb2_grpc.LearnerStub(channel))
            return self._channels[address][1]
