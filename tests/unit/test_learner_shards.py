"""The learner's shards without a broker: a shard per log partition taken, applied, snapshotted
when it goes to another replica and taken again from that snapshot; each tenant's panel from its
own shard alone."""

from __future__ import annotations

from supportflow.topics import Topic

from services.learner.config import LearnerConfig
from services.learner.shards import LearnerShards, shard_of
from services.learner.snapshots import shard_stores
from tests.unit.test_learner_handlers import TENANTS, csat, decided

LOG = "p.learner.events"
SHARD = shard_of("rho-bank")


def shards(snapshots=None) -> LearnerShards:  # noqa: ANN001
    return LearnerShards(LearnerConfig.load(), TENANTS, LOG, snapshots)


def apply(owner: LearnerShards, partition: int, events: list, start: int) -> int:
    """Apply `events` as the loop would, at offsets from `start`; the position after them."""
    for event in events:
        topic = Topic.TICKETS_FEEDBACK if event.DESCRIPTOR.name == "FeedbackReceived" else Topic.TICKETS_RESPONDED
        owner.handlers(partition)[topic](event)
    owner.after_batch({(LOG, partition): start + len(events)})
    return start + len(events)


def test_a_shard_is_applied_only_where_it_is_held_and_serves_only_its_tenants():
    owner = shards()
    assert owner.assigned([SHARD]) == {SHARD: None}  # no snapshot: from the partition's beginning
    assert owner.handlers((SHARD + 1) % 8) is None and owner.learner_of("rho-bank") is not None
    other = next(f"t{i}" for i in range(100) if shard_of(f"t{i}") != SHARD)
    assert owner.learner_of(other) is None  # asked of the replica holding it
    apply(owner, SHARD, [decided("t1"), csat("t1", 90.0)], 0)
    assert owner.position(SHARD) == 2
    [row] = owner.learner_of("rho-bank").kpi_rows("rho-bank", "faq_bounded", "retail", "all")
    assert row.tickets == 1
    owner.revoked([SHARD])
    assert owner.handlers(SHARD) is None and owner.learner_of("rho-bank") is None and owner.held() == []


def test_a_shard_given_up_is_snapshotted_and_taken_again_from_there_replaying_what_came_after(tmp_path):
    stores = shard_stores(tmp_path, "v1", interval_s=300.0)
    first = shards(stores)
    first.assigned([SHARD])
    position = apply(first, SHARD, [decided("t1"), csat("t1", 90.0), decided("t2")], 0)
    first.revoked([SHARD])  # to another replica: its state is saved with its position
    assert (tmp_path / f"learner-{SHARD}.snapshot").exists()
    assert stores(SHARD).saved_position() == {(LOG, SHARD): position}

    again = shards(stores)
    assert again.assigned([SHARD]) == {SHARD: position}  # reads on from there
    [shard] = again.held()
    assert shard.replaying  # holds its outputs until it has applied up to the partition's end
    apply(again, SHARD, [csat("t2", 70.0)], position)
    [row] = again.learner_of("rho-bank").kpi_rows("rho-bank", "faq_bounded", "retail", "all")
    assert row.tickets == 2 and row.values["csat_at_resolution_mean"] == 80.0


def test_a_snapshot_of_other_code_is_not_used_and_the_shard_replays_from_the_beginning(tmp_path):
    shard_stores(tmp_path, "old", interval_s=300.0)(SHARD).save(b"{}", {(LOG, SHARD): 5})
    owner = shards(shard_stores(tmp_path, "new", interval_s=300.0))
    assert owner.assigned([SHARD]) == {SHARD: None}
