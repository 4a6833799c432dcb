"""The escalator's peer lookups started ahead: the guess from the event alone names exactly the
lookups its decision makes (when no state changes it), the started lookups run at once and hand
their answers to the decisions, and a wrong guess costs only a lookup, never a decision."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from integrations.crm import FileCrm
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from tooling.sample_data import SAMPLE_CRM_PATH

from services.escalator.actions import ActionGate, ActionLedger
from services.escalator.config import ActionLimits
from services.escalator.handlers import Escalator, PacketLookups
from services.escalator.incidents import IncidentTracker
from services.escalator.lookups_ahead import LookupsAhead

from tests.unit.test_escalator_handlers import CONFIG, NOW, classified, decisions, drafted, ticket


class Recorder:
    """The three lookups, recording each call as the key LookupsAhead files it under."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def _record(self, *key) -> None:
        with self.lock:
            self.calls.append(key)

    def similar_cases(self, tenant, query):
        self._record("similar", tenant, query)
        return [f"case-of-{query[:10]}"]

    def articles(self, tenant, query, intent):
        self._record("articles", tenant, query, intent)
        return [tk.EvidencePassage(article_id="help-1", chunk_id="help-1#0", text=f"about {intent}")]

    def investigate(self, request):
        self._record("investigate", request.ticket.ticket_id)
        return ev.Investigation(playbook=f"looked into {request.ticket.ticket_id}")


def escalator_with(lookups) -> Escalator:
    return Escalator(CONFIG, FileCrm(SAMPLE_CRM_PATH), IncidentTracker(CONFIG.incidents), ActionGate(ActionLimits.load(), ActionLedger()),
                     similar_cases=lookups.similar_cases, articles=lookups.articles, investigate=lookups.investigate,
                     clock=lambda: NOW)


def as_calls(expected: PacketLookups | None) -> list[tuple]:
    if expected is None:
        return []
    calls = [("similar", *expected.similar_cases)]
    if expected.investigate is not None:
        calls.append(("investigate", expected.investigate.ticket.ticket_id))
    if expected.articles is not None:
        calls.append(("articles", *expected.articles))
    return calls


def events_of_every_kind() -> list:
    review = classified(ticket(), tk.ROUTE_DRAFT_FOR_REVIEW)
    answered = classified(ticket(), tk.ROUTE_AUTO_RESPOND)
    blocked = classified(ticket(), tk.ROUTE_AUTO_RESPOND)
    investigated = drafted(classified(ticket(), tk.ROUTE_DRAFT_FOR_REVIEW))
    investigated.investigation.playbook = "the drafter's"
    return [
        classified(ticket(), tk.ROUTE_ESCALATE, intent="lost_or_stolen_card"),  # escalated: all three
        classified(ticket(), tk.ROUTE_ASK_FOLLOW_UP, missing=["transaction_id"]),  # no packet
        review, drafted(review),  # decided at the draft: similar cases and an investigation
        answered, drafted(answered),  # answered automatically: no lookup
        blocked, drafted(blocked, status=tk.DRAFT_STATUS_BLOCKED),  # held for review
        investigated,  # brings its investigation: similar cases alone
    ]


def test_the_guess_names_exactly_the_lookups_each_decision_makes():
    recorder = Recorder()
    escalator = escalator_with(recorder)
    kinds = set()
    for event in events_of_every_kind():
        expected = escalator.lookups_for(event)
        before = len(recorder.calls)
        handle = escalator.on_drafted if isinstance(event, ev.TicketDrafted) else escalator.on_classified
        handle(event)
        assert sorted(recorder.calls[before:]) == sorted(as_calls(expected)), event.classification.route
        kinds.add(tuple(call[0] for call in as_calls(expected)))
    # The cases above cover every combination the decisions make.
    assert kinds == {(), ("similar", "investigate"), ("similar", "investigate", "articles"), ("similar",)}


def test_decisions_made_with_lookups_started_ahead_equal_those_made_in_turn():
    in_turn, ahead_recorder = Recorder(), Recorder()
    ahead = LookupsAhead(ahead_recorder.similar_cases, ahead_recorder.articles, ahead_recorder.investigate, concurrency=4)
    plain, started = escalator_with(in_turn), escalator_with(ahead)
    events = events_of_every_kind()
    for event in events:
        expected = started.lookups_for(event)
        if expected is not None:
            ahead.start(expected)

    def decide(escalator: Escalator) -> list:
        out = []
        for event in events:
            handle = escalator.on_drafted if isinstance(event, ev.TicketDrafted) else escalator.on_classified
            out += [(d.topic, d.event.decision, d.event.packet.SerializeToString(deterministic=True),
                     d.event.investigation.playbook) for d in decisions(handle(event))]
        return out

    assert decide(started) == decide(plain)
    assert sorted(ahead_recorder.calls) == sorted(in_turn.calls)  # each lookup made once, none in vain
    ahead.close()


def test_started_lookups_run_at_once_and_a_decision_waits_only_for_its_own():
    arrived = threading.Barrier(4, timeout=10)  # broken (an error) unless four lookups run together
    release = threading.Event()

    def similar_cases(tenant, query):
        arrived.wait()
        release.wait(10)
        return [query]

    ahead = LookupsAhead(similar_cases, Recorder().articles, Recorder().investigate, concurrency=4)
    for index in range(4):
        ahead.start(PacketLookups(similar_cases=("t", f"q{index}"), investigate=None, articles=None))
    release.set()
    assert [ahead.similar_cases("t", f"q{index}") for index in range(4)] == [[f"q{index}"] for index in range(4)]
    ahead.close()


def count(outcome: str) -> float:
    return REGISTRY.get_sample_value("supportflow_escalator_lookups_ahead_total", {"outcome": outcome}) or 0.0


def test_a_wrong_guess_costs_a_lookup_not_a_decision_and_is_counted():
    recorder = Recorder()
    ahead = LookupsAhead(recorder.similar_cases, recorder.articles, recorder.investigate, concurrency=2)
    before = {outcome: count(outcome) for outcome in ("used", "not_started", "unused")}
    ahead.start(PacketLookups(similar_cases=("t", "guessed"), investigate=None, articles=None))
    assert ahead.similar_cases("t", "not guessed") == ["case-of-not guesse"]  # made in turn
    ahead.forget()  # the batch is over: the guessed one was never asked for
    assert ahead.similar_cases("t", "guessed") == ["case-of-guessed"]  # forgotten: made again, in turn
    assert count("used") - before["used"] == 0
    assert count("not_started") - before["not_started"] == 2
    assert count("unused") - before["unused"] == 1
    ahead.close()


def test_concurrency_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        LookupsAhead(Recorder().similar_cases, Recorder().articles, Recorder().investigate, concurrency=0)
