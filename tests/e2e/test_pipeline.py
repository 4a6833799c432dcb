"""The round trip: every service as its own process on the real broker and Weaviate, the local
Zendesk, Intercom, Freshdesk, mail and API-callback stand-ins, and 200 sample tickets opened through
those five channels as their customers would open them. Each ticket gets exactly one decision and
at least one delivery on its own channel, read back from what the stand-in received; each is
traceable by ticket id on every topic; the learner counts the decisions and their (simulated)
outcomes, turns unbacked resolutions into KB proposals, and a proposed action runs once when its
customer confirms it."""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict

import pytest

from services.learner.config import LearnerConfig
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import delete_namespace_topics
from supportflow.topics import DECISION_TOPICS, Topic
from tooling.decisions import read_topic, trace_tickets
from tooling.demo import (
    confirm_a_proposal, customers_act, learner_panel, outcome_totals, pipeline_records, post_outcomes,
    run_round_trip,
)
from tooling.demo_outcomes import csat_given, unbacked_resolutions
from tooling.round_trip import CHANNELS, DEMO_TENANT, help_center_dir, load_help_center, sample_tickets

pytestmark = pytest.mark.infra

TICKETS = 200
# What a ticket's own channel receives for each decision: the answer, a note for the agents, or a
# public message asking for what is missing.
KIND_OF_DECISION = {"respond": "reply", "review": "note", "escalate": "note", "follow_up": "follow_up"}


@pytest.fixture(scope="module")
def round_trip(local_stack, base_settings, tmp_path_factory):
    # A signed gateway, as a deployment runs it: action confirmations need one.
    settings = base_settings.replace(topic_prefix=f"e2e{uuid.uuid4().hex[:8]}.", topic_partitions=3,
                                     default_tenant=DEMO_TENANT, gateway_webhook_secret=uuid.uuid4().hex)
    tickets = sample_tickets(TICKETS, run_id="e2e")
    trip = run_round_trip(settings, tickets, rate=40.0, run_dir=tmp_path_factory.mktemp("round-trip"), timeout_s=240)
    try:
        traces = trace_tickets(trip.fleet_settings, {r["ticket_id"] for r in trip.records}, list(Topic))
        decided = pipeline_records(trip.records)
        customers = customers_act(trip.servers, trip.records, tickets)
        feedback = post_outcomes(trip.fleet_settings, decided)
        panel = learner_panel(trip.fleet_settings, len(decided), totals=outcome_totals(decided, feedback), timeout_s=60.0)
        proposals = read_topic(trip.fleet_settings, Topic.KB_PROPOSALS)
        actions = confirm_a_proposal(trip.fleet_settings, timeout_s=60.0)
    finally:
        trip.stop()
        delete_namespace_topics(settings)
    return trip, traces, panel, actions, (feedback, proposals, customers), decided


def test_every_ticket_gets_exactly_one_decision(round_trip):
    trip, *_ = round_trip
    assert len(trip.sent) == TICKETS
    assert {r["channel_in"] for r in trip.records} == set(CHANNELS)
    assert trip.missing == []
    assert trip.duplicated == []


def test_every_ticket_gets_its_first_response_on_its_own_channel(round_trip):
    trip, *_ = round_trip
    assert trip.undelivered == []
    for record in trip.records:
        kinds = [item["kind"] for item in record["delivered"]]
        assert {item["channel"] for item in record["delivered"]} == {record["channel_in"]}, record["id"]
        assert kinds == [KIND_OF_DECISION[record["decision"]]], (record["id"], record["decision"], kinds)


def test_replies_cite_the_tenants_help_center_with_links_and_say_nothing_it_does_not(round_trip):
    trip, *_ = round_trip
    articles = load_help_center(help_center_dir(DEMO_TENANT))
    replies = [(r, item) for r in trip.records for item in r["delivered"] if item["kind"] == "reply"]
    assert replies, "the sample run answers some tickets automatically"
    for record, reply in replies:
        assert 1 <= len(reply["citations"]) <= 3, record["id"]
        assert all(c["article_id"] in articles and c["url"] for c in reply["citations"]), record["id"]
        assert {c["article_id"] for c in reply["citations"]} <= {c["article_id"] for c in record["citations"]}


def test_each_ticket_is_traceable_through_every_topic(round_trip):
    trip, traces, *_ = round_trip
    decision_topics = {t.base_name for t in DECISION_TOPICS.values()}
    for record in trip.records:
        seen = traces[record["ticket_id"]]
        assert seen.get(Topic.TICKETS_RECEIVED.base_name) == 1, (record["id"], seen)
        assert seen.get(Topic.TICKETS_CLASSIFIED.base_name) == 1, (record["id"], seen)
        drafted = seen.get(Topic.TICKETS_DRAFTED.base_name, 0)
        assert drafted == (1 if record["route"] in ("auto_respond", "draft_for_review") else 0), (record["id"], seen)
        assert sum(seen.get(name, 0) for name in decision_topics) == 1, (record["id"], seen)
        assert seen.get(Topic.TICKETS_DELIVERED.base_name) == 1, (record["id"], seen)
        dead = [name for name in seen if name.endswith(".dlq")]
        assert not dead, (record["id"], seen)


def test_decisions_carry_what_each_route_promises(round_trip):
    trip, *_ = round_trip
    for record in trip.records:
        assert record["intent"], record["id"]
        assert 0.0 <= record["confidence"] <= 1.0
        assert record["timings_ms"]["received_to_decided"] is not None
        if record["decision"] == "escalate":
            assert record["packet"] and record["packet"].get("target_queue"), record["id"]
        if record["decision"] == "respond":
            assert record["citations"], record["id"]
            assert all(claim["verified"] for claim in record["ledger"]), record["id"]
            assert not any(citation["stale"] for citation in record["citations"]), record["id"]
            assert record["case_type"] != "policy_exception", record["id"]
    hostile = [r for r in trip.records if r["label"].startswith("hostile:")]
    assert hostile and all(r["decision"] != "respond" for r in hostile)


def test_escalation_packets_name_similar_cases_from_the_imported_history(round_trip):
    from tooling.demo import sample_cases

    trip, *_ = round_trip
    history = sample_cases()
    named = [
        case_id
        for record in trip.records
        if record["decision"] in ("escalate", "review") and record["packet"]
        for case_id in record["packet"].get("similar_case_ids", [])
    ]
    assert named, "no packet named a similar resolved case"
    assert set(named) <= set(history)  # only cases the demo imported, in this tenant


def test_the_learner_counts_every_decision_by_archetype(round_trip):
    trip, _, panel, *_ = round_trip
    assert panel is not None, "the learner never answered Learner.GetKpis"
    rollups = [row for row in panel if row.segment == "all" and row.channel == "all"]
    assert sum(row.tickets for row in rollups) == len(trip.records)
    for rollup in rollups:  # each archetype's cuts by segment, and by channel, add up to its rollup
        for cut in ("segment", "channel"):
            parts = [r for r in panel if r.archetype == rollup.archetype and getattr(r, cut) != "all"
                     and (r.channel if cut == "segment" else r.segment) == "all"]
            assert sum(r.tickets for r in parts) == rollup.tickets, (rollup.archetype, cut)
    by_archetype = defaultdict(int)
    for record in trip.records:
        by_archetype[record["archetype"]] += 1
    assert {row.archetype: int(row.tickets) for row in rollups} == by_archetype


def test_a_proposed_action_runs_once_when_its_customer_confirms_it(round_trip):
    from services.escalator.config import EscalationConfig

    trip, _, _, actions, _, _ = round_trip
    tools = EscalationConfig.load().proposed_tools
    asking = {r["ticket_id"] for r in trip.records if r["intent"] in tools and "prompt_injection" not in r["risk_flags"]}
    assert asking, "the sample tickets include some that ask for a password reset"
    assert {p.ticket_id for p in actions.proposals} >= asking
    # A customer's later message on a ticket (the simulated customers write back) is classified
    # afresh, and may ask for an action itself; never one a prompt injection asked for.
    assert {p.requested_by.removeprefix("escalator:intent:") for p in actions.proposals} <= set(tools)
    injected = {r["ticket_id"] for r in trip.records if "prompt_injection" in r["risk_flags"]}
    assert not injected & {p.ticket_id for p in actions.proposals}
    first, again = actions.confirmed
    assert first.status == ev.ACTION_STATUS_DRY_RUN and first.proposal_id == actions.proposals[0].action_id
    assert again.status == ev.ACTION_STATUS_REFUSED and "already confirmed" in again.reason


def test_the_learner_counts_every_outcome_the_helpdesk_reported(round_trip):
    trip, _, panel, _, (feedback, _, customers), decided = round_trip
    rows = {row.archetype: row.values for row in panel if row.segment == "all" and row.channel == "all"}
    assert sum(values["tickets_resolved"] for values in rows.values()) == len(decided)
    # The customers' ratings reach the learner through their helpdesks' webhooks, on each
    # helpdesk's own scale; the agents' verdicts through the feedback API.
    archetype_of_ticket = {r["ticket_id"]: r["archetype"] for r in trip.records}
    scores, verdicts = defaultdict(list), defaultdict(list)
    for ticket_id, given in csat_given(customers).items():
        scores[archetype_of_ticket[ticket_id]].extend(given)
    archetype = {r["id"]: r["archetype"] for r in decided}
    for payload in feedback:
        if payload["kind"] == "draft_verdict":
            verdicts[archetype[payload["ticket_id"]]].append(payload["verdict"])
    assert scores, "the simulated customers rated some tickets"
    for name in set(rows) - set(scores):
        assert "csat_at_resolution_mean" not in rows[name], name
    for name, values in scores.items():
        assert rows[name]["csat_at_resolution_mean"] == pytest.approx(statistics.mean(values)), name
    assert verdicts, "the run has review drafts with citations"
    for name, given in verdicts.items():
        assert rows[name]["draft_acceptance_rate"] == pytest.approx(given.count("accepted") / len(given)), name


def test_unbacked_resolutions_become_one_kb_proposal_per_topic(round_trip):
    *_, (feedback, proposals, _), decided = round_trip
    min_tickets = LearnerConfig.load().knowledge.proposal_min_tickets
    intents = {r["id"]: r["intent"] for r in decided}
    with_notes = defaultdict(set)  # a ticket the retriever reported a gap for counts whatever it cites
    for payload in feedback:
        if payload["kind"] == "resolution" and payload["resolution_notes"]:
            with_notes[intents[payload["ticket_id"]]].add(payload["ticket_id"])
    citing_nothing = {intent for intent, tickets in unbacked_resolutions(decided, feedback).items()
                      if len(tickets) >= min_tickets}
    topics = [p.topic for p in proposals]
    assert len(topics) == len(set(topics))
    assert citing_nothing <= set(topics) <= {i for i, tickets in with_notes.items() if len(tickets) >= min_tickets}
    for p in proposals:
        assert len(p.source_ticket_ids) == min_tickets and set(p.source_ticket_ids) <= with_notes[p.topic]
        assert p.title and "## How agents resolved it" in p.body
