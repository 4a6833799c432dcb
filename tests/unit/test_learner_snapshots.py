"""Learner snapshots: the state and position come back as saved, only for the same code and
configuration, never from a damaged or incomplete snapshot; a newer snapshot replaces the older
one's records; a restored learner goes on as if it had never stopped, and reading routing.overrides
again over it changes nothing. The snapshot topic here is a list of records per partition read as
Kafka's compacted topic is (the latest value of each key, a tombstone deleting it); on the real
broker: tests/component/test_learner_service.py and test_learner_replicas.py."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner import snapshots
from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.snapshots import HEADER_KEY, Record, SnapshotStore, learner_version
from services.learner.state import StateError
from tests.unit.test_learner_handlers import TENANTS, csat, decided, make_learner, overrides, populated

POSITION = 17
VERSION = learner_version(LearnerConfig.source_text(), "p.")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemorySnapshotLog:
    """The snapshot topic's partitions as lists of records, every record kept (as before compaction)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.partitions: dict[int, list[Record]] = {}
        self.clock = clock or Clock(1_700_000_000.0)
        self.broken = False

    def read(self, partition: int) -> list[Record]:
        if self.broken:
            raise RuntimeError("broker unreachable")
        return list(self.partitions.get(partition, []))

    def write(self, partition: int, records) -> None:  # noqa: ANN001
        if self.broken:
            raise RuntimeError("broker unreachable")
        self.partitions.setdefault(partition, []).extend(Record(k, v, self.clock()) for k, v in records)

    def live(self, partition: int) -> dict[bytes, bytes]:
        latest: dict[bytes, bytes] = {}
        for record in self.partitions.get(partition, []):
            if record.value is None:
                latest.pop(record.key, None)
            else:
                latest[record.key] = record.value
        return latest


def store(records: MemorySnapshotLog, version=VERSION, interval_s=60.0, clock=None, partition=0) -> SnapshotStore:
    return SnapshotStore(records, version, interval_s=interval_s, partition=partition, log_id="log-1",
                         clock=clock or Clock(), wall_clock=records.clock)


def test_a_saved_learner_comes_back_with_its_position_and_goes_on_counting(monkeypatch):
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 500)  # a state of several chunks
    records = MemorySnapshotLog()
    original = populated()
    store(records).save(original.export_state(), POSITION)
    assert len(records.live(0)) > 3
    snapshot = store(records).load()
    assert snapshot is not None and (snapshot.position, snapshot.log_id) == (POSITION, "log-1")
    restored = Learner.from_state(snapshot.state, LearnerConfig.load(), TENANTS)
    assert restored.kpi_rows("rho-bank") == original.kpi_rows("rho-bank")
    assert restored.kpi_rows("acme") == original.kpi_rows("acme")
    for learner in (original, restored):
        learner.on_decided(decided("d"))
        learner.on_feedback(csat("d", 60.0))
    assert restored.kpi_rows("rho-bank") == original.kpi_rows("rho-bank")


def test_a_ticket_record_survives_the_snapshot_with_every_field():
    import dataclasses

    from services.learner.kpis import CutKey, TicketRecord, record_from_state, record_state

    record = TicketRecord(CutKey("acme", "faq_bounded", "eu", "zendesk"), ev.DECISION_REVIEW, decided_at=7.0, opened_at=6.0,
                          customer_id="c-1", evidence_seconds=0.4, first_response_seconds=1.5,
                          csat={ev.CSAT_LATENCY_AT_RESOLUTION: (75.0, 9.0)}, verdict=ev.AGENT_VERDICT_EDITED,
                          edit_ratio=0.2, verdict_at=1_700_000_200.0, repeat_days=3.0, resolved_at=8.0,
                          reopened_at=9.0, reopened=True, context_loss=True, misroute=True, kb_gap=True,
                          escalated_by_agent=True, resolved_by_bot=False, handle_time_s=300.0, conversation_read=True,
                          repeated_themselves=True, qa_class="refund_pricing", qa_at=10.0, qa_sampled=True)
    defaults = TicketRecord(record.key, record.decision)
    assert all(getattr(record, f.name) != getattr(defaults, f.name)
               for f in dataclasses.fields(TicketRecord) if f.name not in ("key", "decision"))  # every field set
    assert record_from_state(json.loads(json.dumps(record_state(record)))) == record


def test_the_state_is_json_and_comes_back_whole():
    """Every part (panel records, held outcomes, guardrails, knowledge loop, QA sampler, held
    overrides) is written as JSON values and read back to the same state."""
    learner = populated()
    learner.on_feedback(csat("not-decided-yet", 70.0))  # an outcome held for its decision
    learner.on_feedback(ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id="a",
                                            qa=ev.QaResult(hallucinated_policy=True, note="invented fee")))
    state = learner.export_state()
    values = json.loads(state)  # entries by kind, as [key parts, number, value] (services/learner/entries.py)
    assert all(values["entries"][kind] for kind in ("record", "pending", "guardrail", "qa-covered"))
    assert values["meta"]["kpis"]["pending_feedback"] == 1
    restored = Learner.from_state(state, LearnerConfig.load(), TENANTS)
    assert restored.export_state() == state
    assert restored.kpi_rows("rho-bank") == learner.kpi_rows("rho-bank")


@pytest.mark.parametrize("damage, why", [
    (lambda state: b"\x80\x05" + state, "cannot be read"),  # not JSON (a pickle's opening bytes)
    (lambda state: state.replace(b'"record":[', b'"row":['), "unknown kind 'row'"),
    (lambda state: state.replace(b'"record_fields":[', b'"record_fields":["mood",'), "records of another shape"),
    (lambda state: state.replace(b"supportflow.contracts.v1.FeedbackReceived", b"os.system"), "'os.system'"),
])
def test_a_state_this_learner_cannot_read_is_refused_by_name(damage, why):
    learner = populated()
    learner.on_feedback(csat("not-decided-yet", 70.0))
    with pytest.raises(StateError, match=why):
        Learner.from_state(damage(learner.export_state()), LearnerConfig.load(), TENANTS)


def test_a_restored_learner_holds_its_overrides_until_the_replay_ends():
    learner = Learner.from_state(make_learner().export_state(), LearnerConfig.load(), TENANTS)
    assert learner.on_decided(decided("t1")) == []
    assert learner.on_feedback(ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id="t1",
                                                   qa=ev.QaResult(hallucinated_policy=True, note="invented fee"))) == []
    [held] = overrides(learner.finish_replay())
    assert held.topic.base_name == "routing.overrides"


def test_overrides_read_again_over_a_restored_learner_change_nothing():
    def clearing(override_id: str) -> ev.RoutingOverride:
        return ev.RoutingOverride(meta=new_meta("rho-bank", "cli"), override_id=override_id,
                                  archetype=tk.ARCHETYPE_FAQ_BOUNDED, action=ev.OVERRIDE_ACTION_CLEAR,
                                  issued_by="human:ops")

    learner = make_learner()
    [latch] = overrides(learner.on_decided(decided("t1")) + learner.on_feedback(
        ev.FeedbackReceived(meta=new_meta("rho-bank", "gateway"), ticket_id="t1",
                            qa=ev.QaResult(hallucinated_policy=True, note="invented fee"))))
    history = [latch.event, clearing("clear-1")]
    for override in history:
        learner.on_override(override)
    for i in range(5):  # CSAT gathered after a person cleared the latch
        learner.on_decided(decided(f"s{i}"))
        learner.on_feedback(csat(f"s{i}", 90.0))
    before = learner.snapshot().guardrails

    restored = Learner.from_state(learner.export_state(), LearnerConfig.load(), TENANTS)
    for override in history:  # the overrides topic, read from its beginning after the restart
        restored.on_override(override)
    assert restored.snapshot().guardrails == before
    assert [g.samples for g in before if g.archetype == "faq_bounded"] == [5]


def test_only_the_same_code_and_configuration_load_a_snapshot():
    records = MemorySnapshotLog()
    store(records).save(populated().export_state(), POSITION)
    assert store(records, version="another").load() is None
    other_config = LearnerConfig.source_text() + "\n# tuned\n"
    assert learner_version(other_config, "p.") != VERSION
    assert learner_version(LearnerConfig.source_text(), "other.") != VERSION


def test_each_shard_has_its_own_snapshot():
    records = MemorySnapshotLog()
    store(records, partition=3).save(b"three", 3)
    store(records, partition=5).save(b"five", 5)
    assert (store(records, partition=3).load().state, store(records, partition=5).load().position) == (b"three", 5)
    assert store(records, partition=4).load() is None


def test_a_new_snapshot_replaces_the_older_ones_records(monkeypatch):
    """Its chunks, then its header, then tombstones for the chunks of the one it replaces: what
    compaction keeps is one snapshot."""
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 4)
    records = MemorySnapshotLog()
    store(records).save(b"first state", 1)
    saving = store(records)
    assert saving.load().state == b"first state"
    saving.save(b"second, longer state", 2)
    live = records.live(0)
    assert len(live) == 1 + 5  # the header and the second snapshot's five chunks
    assert store(records).load().state == b"second, longer state"
    keys = [record.key for record in records.partitions[0]]
    header_at = max(i for i, key in enumerate(keys) if key == HEADER_KEY)
    assert all(records.partitions[0][i].value is None for i in range(header_at + 1, len(keys)))  # after the header


@pytest.mark.parametrize("damage", ["chunk_missing", "chunk_changed", "header_not_json"])
def test_a_damaged_or_incomplete_snapshot_is_not_loaded(monkeypatch, damage):
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 1000)
    records = MemorySnapshotLog()
    store(records).save(populated().export_state(), POSITION)
    chunk = next(key for key in records.live(0) if key.startswith(b"chunk/"))
    records.write(0, {"chunk_missing": [(chunk, None)], "chunk_changed": [(chunk, b"x" * 1000)],
                      "header_not_json": [(HEADER_KEY, b"{not json")]}[damage])
    assert store(records).load() is None


def test_no_snapshot_yet_or_none_readable_means_a_full_replay():
    records = MemorySnapshotLog()
    assert store(records).load() is None
    store(records).save(b"state", 3)
    records.broken = True
    assert store(records).load() is None


def test_chunks_no_header_names_are_deleted_once_old():
    """A writer that lost the shard mid-save leaves chunks without a header; a reader deletes them
    once they are older than an hour, not before (they may be a save in progress elsewhere)."""
    records = MemorySnapshotLog()
    store(records).save(b"kept", 1)
    records.write(0, [(b"chunk/abandoned/00000", b"half a state")])
    assert store(records).load().state == b"kept" and b"chunk/abandoned/00000" in records.live(0)
    records.clock.now += snapshots.ORPHAN_AGE_S + 1
    assert store(records).load().state == b"kept" and b"chunk/abandoned/00000" not in records.live(0)


def test_a_snapshot_is_due_after_the_interval_and_only_if_the_position_moved():
    clock = Clock()
    saving = store(MemorySnapshotLog(), interval_s=60.0, clock=clock)
    assert not saving.due(POSITION)
    clock.now += 61
    assert saving.due(POSITION)
    saving.save(b"state", POSITION)
    clock.now += 61
    assert not saving.due(POSITION) and not saving.changed(POSITION)
    assert saving.due(POSITION + 1) and saving.changed(POSITION + 1)


def test_a_failed_save_is_counted_and_the_learner_goes_on():
    def saves(outcome: str) -> float:
        return REGISTRY.get_sample_value("supportflow_learner_snapshots_total", {"outcome": outcome}) or 0.0

    failed, saved = saves("failed"), saves("saved")
    records = MemorySnapshotLog()
    records.broken = True
    assert store(records).try_save(populated().export_state, POSITION) is False
    records.broken = False
    assert store(records).try_save(populated().export_state, POSITION) is True
    assert (saves("failed") - failed, saves("saved") - saved) == (1, 1)
