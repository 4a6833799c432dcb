"""The learner's shards without a broker: a shard per log partition taken, applied, snapshotted
when it goes to another replica and taken again from that snapshot (not from a snapshot of another
log: the replica stops); each tenant's panel from its own shard alone."""

from __future__ import annotations

import grpc
import pytest

from supportflow.eventbus import TransientError
from supportflow.service import StateLost
from supportflow.topics import Topic

from services.learner.config import LearnerConfig
from services.learner.main import check_snapshot_kept
from services.learner.settings import LearnerSettings
from services.learner.shards import LearnerShards, shard_of
from services.learner.snapshots import shard_stores
from tests.unit.test_learner_handlers import TENANTS, csat, decided, resolution
from tests.unit.test_learner_snapshots import MemorySnapshotLog

LOG = "p.learner.events"
SHARD = shard_of("rho-bank")


def shards(snapshots=None) -> LearnerShards:  # noqa: ANN001
    return LearnerShards(LearnerConfig.load(), TENANTS, LOG, snapshots)


def apply(owner: LearnerShards, partition: int, events: list, start: int) -> int:
    """Apply `events` as the loop would, at offsets from `start`; the position after them."""
    for offset, event in enumerate(events, start):
        topic = Topic.TICKETS_FEEDBACK if event.DESCRIPTOR.name == "FeedbackReceived" else Topic.TICKETS_RESPONDED
        owner.handlers(partition, offset)[topic](event)
    owner.after_batch({(LOG, partition): start + len(events)})
    return start + len(events)


def test_a_shard_is_applied_only_where_it_is_held_and_serves_only_its_tenants():
    owner = shards()
    assert owner.assigned([SHARD], {}) == {SHARD: None}  # no snapshot: from the partition's beginning
    assert owner.handlers((SHARD + 1) % 8, 0) is None and owner.learner_of("rho-bank") is not None
    other = next(f"t{i}" for i in range(100) if shard_of(f"t{i}") != SHARD)
    assert owner.learner_of(other) is None  # asked of the replica holding it
    apply(owner, SHARD, [decided("t1"), csat("t1", 90.0)], 0)
    assert owner.position(SHARD) == 2
    [row] = owner.learner_of("rho-bank").kpi_rows("rho-bank", "faq_bounded", "retail", "all")
    assert row.tickets == 1
    owner.revoked([SHARD])
    assert owner.handlers(SHARD, 0) is None and owner.learner_of("rho-bank") is None and owner.held() == []


def test_a_shard_given_up_is_snapshotted_and_taken_again_from_there_replaying_what_came_after():
    records = MemorySnapshotLog()
    stores = shard_stores(records, "v1", 300.0, "log-1")
    first = shards(stores)
    first.assigned([SHARD], {})
    position = apply(first, SHARD, [decided("t1"), csat("t1", 90.0), decided("t2")], 0)
    first.revoked([SHARD])  # to another replica: its state is saved with its position
    assert stores(SHARD).load().position == position

    again = shards(stores)  # another replica: the snapshot is in the shared topic
    assert again.assigned([SHARD], {}) == {SHARD: position}  # reads on from there
    [shard] = again.held()
    assert shard.replaying  # holds its outputs until it has applied up to the partition's end
    apply(again, SHARD, [csat("t2", 70.0)], position)
    [row] = again.learner_of("rho-bank").kpi_rows("rho-bank", "faq_bounded", "retail", "all")
    assert row.tickets == 2 and row.values["csat_at_resolution_mean"] == 80.0


@pytest.mark.parametrize("committed", [{}, {SHARD: 4}, {SHARD: 0}])
def test_a_replay_emits_outputs_only_past_the_previous_holders_committed_position(committed):
    owner = shards()
    owner.assigned([SHARD], committed)
    tickets = ["t1", "t2", "t3"]
    events = [event for ticket in tickets for event in (decided(ticket), resolution(ticket, "Reset the card."))]
    outputs = []
    for offset, event in enumerate(events):  # offsets 0..5: t1, t2 before 4, t3 past it
        topic = Topic.TICKETS_FEEDBACK if event.DESCRIPTOR.name == "FeedbackReceived" else Topic.TICKETS_RESPONDED
        outputs += [(e.topic, e.key) for e in owner.handlers(SHARD, offset)[topic](event)]
    # Before that position the previous holders published the outputs. Not known (Kafka could
    # not say), the replay publishes nothing until its end, as before the commits were kept.
    expected = {(): [], (4,): ["t3"], (0,): tickets}[tuple(committed.values())]
    assert [key for topic, key in outputs if topic is Topic.TICKETS_RESOLVED] == expected
    # Sampled: the week's first ticket of the archetype (t1), emitted only when it is past that position.
    assert [key for topic, key in outputs if topic is Topic.QA_SAMPLES] == [key for key in expected if key == "t1"]
    [shard] = owner.held()
    assert shard.replaying  # until the replay's end, which publishes what was held (main.finish_replays)


def test_a_snapshot_of_other_code_is_not_used_and_the_shard_replays_from_the_beginning():
    records = MemorySnapshotLog()
    shard_stores(records, "old", 300.0, "log-1")(SHARD).save(b"{}", 5)
    owner = shards(shard_stores(records, "new", 300.0, "log-1"))
    assert owner.assigned([SHARD], {}) == {SHARD: None}


class PartitionEnds:
    """LogEnd's answer: every partition of the log ends at `end` (None: Kafka does not answer)."""

    def __init__(self, end: int | None) -> None:
        self.end = end

    def offset(self, partition: int, timeout_s: float) -> int:
        if self.end is None:
            raise TransientError("no answer in time")
        return self.end


@pytest.mark.parametrize("log_id, end", [("log-2", 10), ("log-1", 1)], ids=["created_again", "shorter"])
def test_a_snapshot_of_another_log_stops_the_replica_taking_it(log_id, end):
    """The log deleted and created again since the snapshot: another topic id, or (the same name
    written anew) a partition ending before the snapshot's position."""
    records = MemorySnapshotLog()
    first = shards(shard_stores(records, "v1", 300.0, "log-1"))
    first.assigned([SHARD], {})
    apply(first, SHARD, [decided("t1"), csat("t1", 90.0)], 0)
    first.revoked([SHARD])

    check = check_snapshot_kept(LearnerSettings(topic_prefix="p."), PartitionEnds(end), log_id)
    again = LearnerShards(LearnerConfig.load(), TENANTS, LOG, shard_stores(records, "v1", 300.0, "log-1"),
                          check_kept=check)
    with pytest.raises(StateLost, match="the log was deleted and created again") as lost:
        again.assigned([SHARD], {})
    assert "--delete-offsets" in str(lost.value)
    for end in (10, None):  # the same log, or its end unknown for now: the snapshot is used
        check = check_snapshot_kept(LearnerSettings(topic_prefix="p."), PartitionEnds(end), "log-1")
        same = LearnerShards(LearnerConfig.load(), TENANTS, LOG, shard_stores(records, "v1", 300.0, "log-1"),
                             check_kept=check)
        assert same.assigned([SHARD], {}) == {SHARD: 2}


class Context:
    """A call's context: its remaining time, whether it was routed here, and an abort that raises."""

    def __init__(self, routed: bool = False) -> None:
        self._metadata = (("sf-learner-routed", "1"),) if routed else ()

    def time_remaining(self):
        return 2.0

    def invocation_metadata(self):
        return self._metadata

    def abort(self, code, details):
        raise grpc.RpcError(f"{code.name}: {details}")


def test_the_panel_of_a_shard_held_elsewhere_is_asked_of_its_holder_and_a_routed_question_is_not_routed_again():
    from supportflow.contracts.v1 import services_pb2

    from services.learner.servicer import LearnerServicer

    asked = []
    answer = services_pb2.GetKpisResponse(rows=[services_pb2.KpiRow(archetype="faq_bounded", tickets=7)])

    def elsewhere(request, tenant, seconds):
        asked.append(tenant)
        return None if len(asked) == 1 else answer  # the first look finds the shard moving
    servicer = LearnerServicer(lambda _tenant: None, "rho-bank", max_wait_s=5.0, elsewhere=elsewhere)
    assert servicer.GetKpis(services_pb2.GetKpisRequest(tenant_id="acme"), Context()) is answer
    assert asked == ["acme", "acme"]
    with pytest.raises(grpc.RpcError, match="UNAVAILABLE"):
        servicer.GetKpis(services_pb2.GetKpisRequest(tenant_id="acme"), Context(routed=True))
    assert asked == ["acme", "acme"]  # a question routed here is never routed on

    owner = shards()  # the shard taken here while the question waits: answered from it
    held = iter([None, "taken"])
    servicer = LearnerServicer(lambda tenant: owner.learner_of(tenant) if next(held, "taken") == "taken" else None,
                               "rho-bank", elsewhere=lambda *_: None)
    owner.assigned([SHARD], {})
    apply(owner, SHARD, [decided("t1")], 0)
    response = servicer.GetKpis(services_pb2.GetKpisRequest(tenant_id="rho-bank"), Context())
    assert {(r.archetype, r.segment, r.channel): r.tickets for r in response.rows}[("faq_bounded", "all", "all")] == 1
