"""The learner's state as entries keyed below the shard (services/learner/entries.py): the changes a
learner reports, folded into a table batch after batch as a changelog-backed table folds them, are
its whole state, and a learner built from that table goes on exactly as the original does. A value
changed in place without being marked would leave the table stale, and the comparison below would
show it."""

from __future__ import annotations

import dataclasses
import random

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.learner.config import LearnerConfig
from services.learner.entries import EntryMap, entry_key, entry_parts
from services.learner.handlers import Learner
from services.learner.shards import shard_handlers
from services.learner.state import StateError
from services.learner.tenant_data import TenantData
from supportflow.topics import DECISION_TOPICS, Topic
from tests.unit.test_learner_handlers import TENANTS

T0 = 1_700_000_000
ARCHETYPES = (tk.ARCHETYPE_FAQ_BOUNDED, tk.ARCHETYPE_ACCOUNT_SPECIFIC, tk.ARCHETYPE_REPETITIVE)
DECISIONS = (ev.DECISION_RESPOND, ev.DECISION_REVIEW, ev.DECISION_ESCALATE, ev.DECISION_FOLLOW_UP)


def small_config() -> LearnerConfig:
    """Bounds small enough that the stream below forgets tickets, customers and held outcomes, and
    guardrails that trip on it."""
    config = LearnerConfig.load()
    return dataclasses.replace(
        config, max_tickets=40, max_customers=15, max_pending_feedback=12,
        guardrails=dataclasses.replace(config.guardrails, window=12, min_samples=4, context_loss_window=10,
                                       context_loss_min_handoffs=4),
        knowledge=dataclasses.replace(config.knowledge, proposal_min_tickets=3))


def stream(count: int, seed: int) -> list[tuple[Topic, object]]:
    """Tickets of two tenants: received, outcomes before and after their decisions, decided again
    (a customer's reply), surveys that slip, handoffs that lose context, P0 QA verdicts, resolutions
    without cited articles (knowledge gaps), agents' actions, overrides that clear a latch."""
    rng = random.Random(seed)
    out: list[tuple[Topic, object]] = []
    late: list[tuple[Topic, object]] = []
    for i in range(count):
        tenant = ("rho-bank", "acme")[i % 2]
        ticket_id = f"t-{rng.randrange(count * 2)}"  # tickets come back
        received = tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, customer_id=f"c-{rng.randrange(25)}")
        received.received_at.seconds = T0 + i * 600
        decided = ev.TicketDecided(
            meta=new_meta(tenant, "escalator"), ticket=received, decision=rng.choice(DECISIONS),
            classification=tk.Classification(archetype=rng.choice(ARCHETYPES), segment=rng.choice(["retail", "sme"]),
                                             intent=f"intent_{rng.randrange(3)}"))
        decided.timeline.decided_at.seconds = T0 + i * 600 + rng.randrange(-900, 60)  # some out of order
        feedback = ev.FeedbackReceived(meta=new_meta(tenant, "gateway"), ticket_id=ticket_id)
        kind = rng.randrange(8)
        if kind < 3:
            feedback.csat.CopyFrom(ev.CsatScore(latency=ev.CSAT_LATENCY_AT_RESOLUTION, score=float(rng.choice([20, 50, 95]))))
        elif kind == 3:
            feedback.context_loss = True
        elif kind == 4:
            feedback.qa.CopyFrom(ev.QaResult(hallucinated_policy=True, severity_class="refund_pricing", note="fee"))
        elif kind == 5:
            feedback.resolution.CopyFrom(ev.Resolution(resolved_by_bot=False, handle_time_s=90.0,
                                                       resolution_notes=f"fixed {i}"))
        elif kind == 6:
            feedback.draft_verdict.CopyFrom(ev.DraftVerdict(verdict=ev.AGENT_VERDICT_EDITED, edit_ratio=0.3))
        else:
            feedback.repeat_contact.CopyFrom(ev.RepeatContact(days_after_resolution=2, reopened=True))
        feedback.meta.occurred_at.seconds = T0 + i * 600 + 30
        events = [(Topic.TICKETS_RECEIVED, ev.TicketReceived(meta=new_meta(tenant, "gateway"), ticket=received)),
                  (DECISION_TOPICS[decided.decision], decided), (Topic.TICKETS_FEEDBACK, feedback)]
        if rng.random() < 0.3:  # the outcome before its decision: held
            events[1], events[2] = events[2], events[1]
        if rng.random() < 0.15:  # the decision comes tickets later: outcomes pile up meanwhile
            late.append(events.pop(1))
        elif late and rng.random() < 0.3:
            events.append(late.pop(0))
        if rng.random() < 0.2:
            events.append((Topic.AGENT_ACTIONS, ev.AgentAction(
                meta=new_meta(tenant, "workspace"), action_id=f"a-{i}", ticket_id=ticket_id, agent="agent:sam",
                kind=ev.AGENT_ACTION_KIND_ESCALATE, decision=decided)))
        if rng.random() < 0.15:
            events.append((Topic.KB_GAPS, ev.KbGapDetected(meta=new_meta(tenant, "retriever"), ticket_id=ticket_id)))
        if rng.random() < 0.05:  # a person clears the guardrail's latch
            events.append((Topic.ROUTING_OVERRIDES, ev.RoutingOverride(
                meta=new_meta(tenant, "workspace"), override_id=f"o-{i}", archetype=rng.choice(ARCHETYPES),
                action=ev.OVERRIDE_ACTION_CLEAR, issued_by="agent:sam")))
        out += events
    return out + late


def apply(learner: Learner, events: list[tuple[Topic, object]]) -> list[tuple]:
    """The outputs, as (topic, key, ticket) in order (their event ids are the consumer loop's)."""
    handlers = shard_handlers(learner)
    emits = []
    for topic, event in events:
        emits += handlers[topic](event)
    return [(emit.topic, emit.key, getattr(emit.event, "ticket_id", "")) for emit in emits]


def in_order(entries: dict) -> dict:
    """Each kind's (key, value) in the order the entries' numbers give: what the numbers mean."""
    kinds: dict = {}
    for key, value in entries.items():
        kind, parts = entry_parts(key)
        kinds.setdefault(kind, []).append((value[0], parts, value[1]) if kind != "shard" else (0, parts, value))
    return {kind: [(parts, value) for _, parts, value in sorted(rows)] for kind, rows in kinds.items()}


def fold(table: dict, changes: dict) -> None:
    for key, value in changes.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_changes_folded_batch_by_batch_are_the_whole_state_and_a_learner_built_from_them_goes_on_alike(seed):
    events = stream(260, seed)
    config = small_config()
    live = Learner(config, TenantData(TENANTS), replaying=True)  # held outputs too, until past_published
    live.track_changes()
    rng = random.Random(seed)
    table: dict = {}
    at, outputs, written = 0, [], set()
    while at < 900:
        batch = rng.randint(1, 25)
        outputs += apply(live, events[at:at + batch])
        at += batch
        if at > 150 and rng.random() < 0.3:
            live.past_published()
        changes = live.take_changes()
        written |= {entry_parts(key)[0] for key, value in changes.items() if value is not None}
        fold(table, changes)
        assert table == live.entries()
    assert written >= {  # every kind of state was written
        "record", "pending", "contacts", "guardrail", "override-seen", "case", "gap-group", "qa-covered",
        "held-override", "held-sample", "review", "applied"}
    assert any(topic is Topic.KB_PROPOSALS for topic, _, _ in outputs)
    assert any(topic is Topic.ROUTING_OVERRIDES for topic, _, _ in outputs)
    assert table == live.entries()

    restored = Learner.from_entries(table, config, TENANTS)
    assert in_order(restored.entries()) == in_order(live.entries())
    assert in_order(Learner.from_state(live.export_state(), config, TENANTS).entries()) == in_order(live.entries())
    for tenant in ("rho-bank", "acme"):
        assert restored.kpi_rows(tenant) == live.kpi_rows(tenant)
        assert restored.reviews(tenant) == live.reviews(tenant)
    restored.past_published()
    live.past_published()
    rest = events[at:]
    assert apply(restored, rest) == apply(live, rest)
    fold(table, restored.take_changes())  # the restored learner writes on in the table it came from
    assert table == restored.entries()
    assert [(e.topic, e.key) for e in restored.finish_replay()] == [(e.topic, e.key) for e in live.finish_replay()]
    assert in_order(restored.entries()) == in_order(live.entries())
    assert restored.kpi_rows("rho-bank") == live.kpi_rows("rho-bank")


def test_nothing_changed_reports_no_change_and_a_forgotten_entry_is_reported_deleted():
    config = small_config()
    learner = Learner(config, TenantData(TENANTS))
    apply(learner, stream(30, 4))
    with pytest.raises(RuntimeError):  # not tracked unless asked: the marks would pile up untaken
        learner.take_changes()
    learner.track_changes()
    apply(learner, stream(30, 4))
    first = learner.take_changes()
    assert first and learner.entries() == {**learner.entries(), **{k: v for k, v in first.items() if v is not None}}
    assert learner.take_changes() == {}
    apply(learner, stream(60, 5))  # forgets the oldest tickets (max_tickets 40)
    changes = learner.take_changes()
    assert any(value is None and key.startswith('["record"') for key, value in changes.items())


def test_entries_of_an_unknown_kind_or_shape_are_refused():
    learner = Learner(small_config(), TenantData(TENANTS))
    apply(learner, stream(20, 6))
    entries = learner.entries()
    for damaged in ({**entries, entry_key("unheard-of", ("x",)): [0, 1]},
                    {**entries, entry_key("record", ("acme", "t-x")): [0, ["too", "short"]]},
                    {key: value for key, value in entries.items() if entry_parts(key)[0] != "shard"},  # no meta entry
                    {**entries, "not a key": [0, 1]}):
        with pytest.raises(StateError):
            Learner.from_entries(damaged, small_config(), TENANTS)
    for key in ('"record"', "[]", '["record", 1]'):  # JSON, but not a list of strings
        with pytest.raises(StateError):
            entry_parts(key)
    assert entry_parts(entry_key("record", ("acme", 't-"1"'))) == ("record", ("acme", 't-"1"'))


def test_an_entry_map_keeps_its_order_through_entries_that_come_in_any_order():
    entries_of = EntryMap("n", int, int)
    for key in "abcde":
        entries_of[key] = ord(key)
    entries_of.move_to_end("b")
    entries_of.popitem(last=False)
    again = EntryMap("n", int, int)
    again.load(reversed(entries_of.rows()))
    assert list(again.keys()) == ["c", "d", "e", "b"]
    assert again["b"] == ord("b")
    pairs = EntryMap("p", int, int)  # keys of two parts come back as tuples
    pairs[("x", "1")] = 1
    again = EntryMap("p", int, int)
    again.load(pairs.rows())
    assert list(again.items()) == [(("x", "1"), 1)]


def test_a_tracked_map_marks_and_renumbers_a_key_moved_to_its_end():
    entries_of = EntryMap("n", int, int)
    entries_of["a"], entries_of["b"] = 1, 2  # untracked: plain writes, nothing marked
    entries_of.track_changes()
    changes: dict = {}
    entries_of.take_changes(changes)
    assert changes == {}
    entries_of.move_to_end("a")
    entries_of.take_changes(changes)
    assert changes == {entry_key("n", "a"): [2, 1]}  # after b's number 1
    entries_of.popitem(last=False)
    entries_of.take_changes(changes)
    assert changes[entry_key("n", "b")] is None
