"""Learner snapshots: the state and positions come back as saved, only for the same code and
configuration, never from a damaged file; a restored learner goes on as if it had never stopped,
and reading routing.overrides again over it changes nothing."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import LearnerConfig
from services.learner.handlers import Learner
from services.learner.snapshots import SnapshotStore, file_name, learner_version
from services.learner.state import StateError
from tests.unit.test_learner_handlers import TENANTS, csat, decided, make_learner, overrides, populated

POSITIONS = {("p.tickets.responded", 0): 17, ("p.tickets.feedback", 2): 5}
VERSION = learner_version(LearnerConfig.source_text(), "p.")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(tmp_path, version=VERSION, interval_s=60.0, clock=None) -> SnapshotStore:
    return SnapshotStore(tmp_path, version, interval_s=interval_s, clock=clock or Clock())


def test_a_saved_learner_comes_back_with_its_positions_and_goes_on_counting(tmp_path):
    original = populated()
    store(tmp_path).save(original.export_state(), POSITIONS)
    snapshot = store(tmp_path).load()
    assert snapshot is not None and snapshot.positions == POSITIONS
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
    values = json.loads(state)
    assert set(values) == {"kpis", "guardrails", "knowledge", "sampler", "held", "held_samples", "published", "reviews",
                           "applied"}
    assert values["kpis"]["pending"] and values["guardrails"]["guards"] and values["sampler"]["covered"]
    restored = Learner.from_state(state, LearnerConfig.load(), TENANTS)
    assert restored.export_state() == state
    assert restored.kpi_rows("rho-bank") == learner.kpi_rows("rho-bank")


@pytest.mark.parametrize("damage, why", [
    (lambda state: b"\x80\x05" + state, "cannot be read"),  # not JSON (a pickle's opening bytes)
    (lambda state: state.replace(b'"records"', b'"rows"'), "cannot be read"),
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


def test_only_the_same_code_and_configuration_load_a_snapshot(tmp_path):
    store(tmp_path).save(populated().export_state(), POSITIONS)
    assert store(tmp_path, version="another").load() is None
    other_config = LearnerConfig.source_text() + "\n# tuned\n"
    assert learner_version(other_config, "p.") != VERSION
    assert learner_version(LearnerConfig.source_text(), "other.") != VERSION


@pytest.mark.parametrize("damage", ["truncate", "header", "empty"])
def test_a_damaged_snapshot_is_not_loaded(tmp_path, damage):
    store(tmp_path).save(populated().export_state(), POSITIONS)
    path = tmp_path / file_name(0)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:-10], "header": b"{not json\n" + data, "empty": b""}[damage])
    assert store(tmp_path).load() is None


def test_no_snapshot_yet_means_a_full_replay(tmp_path):
    assert store(tmp_path / "never-written").load() is None


def test_a_snapshot_is_due_after_the_interval_and_only_if_the_positions_moved(tmp_path):
    clock = Clock()
    saving = store(tmp_path, interval_s=60.0, clock=clock)
    assert not saving.due(POSITIONS)
    clock.now += 61
    assert saving.due(POSITIONS)
    saving.save(b"state", POSITIONS)
    clock.now += 61
    assert not saving.due(POSITIONS) and not saving.changed(POSITIONS)
    moved = POSITIONS | {("p.tickets.responded", 0): 18}
    assert saving.due(moved) and saving.changed(moved)


def test_a_failed_save_is_counted_and_the_learner_goes_on(tmp_path):
    def saves(outcome: str) -> float:
        return REGISTRY.get_sample_value("supportflow_learner_snapshots_total", {"outcome": outcome}) or 0.0

    failed, saved = saves("failed"), saves("saved")
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    assert store(blocked).try_save(populated().export_state, POSITIONS) is False
    assert store(tmp_path).try_save(populated().export_state, POSITIONS) is True
    assert (saves("failed") - failed, saves("saved") - saved) == (1, 1)
    assert not list(tmp_path.glob(f".{file_name(0)}.*"))  # no temporary file left behind
